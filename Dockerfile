# One static image with both binaries: the operator Deployment runs `sluice-operator run`, mover
# Jobs run `sluice-mover job` from the same image, so the two always match.
#
#   docker build -t ghcr.io/sluice-dev/sluice:0.1.0 .

# The toolchain the project is developed with. Alpine's Rust targets musl and links statically
# by default, so the binaries need no libc.
FROM rust:1.95-alpine AS build
# C compilers for zstd-sys and ring.
RUN apk add --no-cache build-base perl
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice-mover -p sluice-operator \
    && mkdir -p /out \
    && cp target/release/sluice-mover target/release/sluice-operator /out/ \
    && ! ldd /out/sluice-mover 2>/dev/null | grep -q '=>' \
    && ! ldd /out/sluice-operator 2>/dev/null | grep -q '=>'

# Distroless "static": CA certificates, /etc/passwd with the nonroot user, nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice-mover /out/sluice-operator /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sluice-operator"]
CMD ["run"]

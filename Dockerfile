# The Sluice image: the operator Deployment runs `sluice-operator run`, mover Jobs run
# `sluice-mover job` from the same image, so the two always match.
#
#   docker build -t localhost/sluice:0.1.0 .
#
# This file is also what `make image` builds from, without a Docker engine: it runs
# `cargo build --release` itself, then assembles the final stage below (its base, the files
# its COPY --from lines name, USER, ENTRYPOINT, CMD, ENV, LABEL) into an OCI archive with
# `sluice-image` (image/). Keep the final stage to those instructions; make image refuses
# any other, so the two recipes cannot drift apart.

# The toolchain the project is developed with, on the Debian release of the runtime below.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice-mover -p sluice-operator \
    && mkdir -p /out \
    && cp target/release/sluice-mover target/release/sluice-operator /out/

# Distroless "cc": Debian 12's C runtime (glibc, libgcc), CA certificates, /etc/passwd with
# the nonroot user (65532); no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sluice-mover /out/sluice-operator /usr/local/bin/
LABEL org.opencontainers.image.title="Sluice"
LABEL org.opencontainers.image.description="Backups of Kubernetes PersistentVolumeClaims into restic-format repositories"
LABEL org.opencontainers.image.source="https://github.com/sluice-dev/sluice"
LABEL org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sluice-operator"]
CMD ["run"]

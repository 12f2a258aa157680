# Sluice's verbs. Build output and tool caches live under ~/.cache/sluice,
# never in the tree.
CACHE ?= $(HOME)/.cache/sluice
export CARGO_TARGET_DIR ?= $(CACHE)/target
# The workspace version, which tags the image.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

.PHONY: build image test lint crds tools e2e demo cluster quickstart bench bench-job bench-operator fuzz

## build: release binaries (sluice-mover, sluice-operator, crdgen)
build:
	cargo build --release --workspace

## image: the Sluice image as an OCI archive, built without a Docker engine from the Dockerfile's final stage; the last line is the archive's path
image:
	cargo build --release -p sluice-mover -p sluice-operator -p sluice-image
	$(CARGO_TARGET_DIR)/release/sluice-image --dockerfile Dockerfile --binaries $(CARGO_TARGET_DIR)/release \
		--name localhost/sluice:$(VERSION) --out $(CARGO_TARGET_DIR)/image/sluice-$(VERSION).oci.tar

## quickstart: back up and restore a sample directory to a local repository
quickstart:
	hack/quickstart.sh

## tools: build the pinned restic, MinIO, etcd, Kubernetes, snapshotter, Helm, crane and registry binaries and the CSI test driver
tools:
	e2e/tools.sh

## test: every test (lint, unit, restic-oracle, MinIO, control plane, e2e)
test: tools lint
	# The e2e scenarios run these binaries; cargo test builds a package's binaries only for its
	# own integration tests, and kubectl-sluice has none.
	cargo build -p sluice-mover -p sluice-operator -p kubectl-sluice
	cargo test --workspace --no-fail-fast

## lint: formatting and clippy, warnings are errors
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## crds: regenerate config/crd and the Helm chart's copy (charts/sluice/files/crds) from the API types
crds:
	cargo run -q -p sluice-api --features crd --bin crdgen

## e2e: the end-to-end scenarios on the local cluster with a real node (they run the image of the built binaries)
e2e: tools
	cargo build -p sluice-mover -p sluice-operator -p kubectl-sluice
	cargo test -p sluice-e2e --no-fail-fast

## cluster: MinIO, the control plane, a real node and Sluice from this tree, up until Ctrl-C/SIGTERM; export lines go to $$SLUICE_ENV_FILE
cluster: tools
	cargo build -p sluice-mover -p sluice-operator -p sluice-e2e
	$(CARGO_TARGET_DIR)/debug/sluice-e2e-cluster

## demo: Sluice end to end on a local cluster: back a PVC up, restore it, compare; Ctrl-C stops (SLUICE_DEMO_EXIT=1 exits at the end)
demo: tools
	cargo build -p sluice-mover -p sluice-operator -p sluice-e2e
	$(CARGO_TARGET_DIR)/debug/sluice-e2e-demo

## bench: Sluice vs restic on every dataset and file system (root fs; ext4 with and without a journal and XFS on loop devices, as root), at full scale, with each operation's floor on this machine, a Block volume's backup against restic on its image file, and a scale section (2M small files, a 100 GiB sparse file; BENCH_SCALE_SECTION=0 skips it) (BENCH_SCALE=0.02 for a quick run, BENCH_DATASETS, BENCH_FS for a subset); writes bench/results.md
bench:
	cargo build --release -p sluice-mover
	cargo build --release -p sluice-repo --example rates
	python3 bench/bench.py

## bench-job: what one mover Job costs on the real node (release binaries): a 1 GiB volume backed up once, then SLUICE_BENCH_JOB_SYNCS unchanged syncs (default 5), each cut into trigger to Job, Pod, scheduling, container start, repository open (one key derivation), backup, Pod end and status, with the fixed cost and the whole sync; a few minutes
bench-job: tools
	cargo build --release --bin sluice-mover --bin sluice-operator --bin sluice-e2e-bench-job
	$(CARGO_TARGET_DIR)/release/sluice-e2e-bench-job

## bench-operator: sluice-operator (dev profile, as make e2e builds it) against the real control plane (no node) with SLUICE_BENCH_SOURCES ReplicationSources (default 5000, 20 to 30 minutes; 200 for a quick run of a few minutes): memory, CPU, API requests by verb, watches, due-to-Job latency, starts per minute, resync after a restart, and what 100 syncs of one source leave; the last line is a JSON summary
bench-operator: tools
	cargo build -p sluice-operator -p sluice-e2e --bin sluice-operator --bin sluice-e2e-bench-operator
	$(CARGO_TARGET_DIR)/debug/sluice-e2e-bench-operator

## fuzz: each fuzz target of repo/fuzz for FUZZ_SECONDS (default 60) on nightly, seeded from restic's test repositories and one written here; corpora and crashes under $(CACHE)/fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := pack_header index_json tree_json snapshot_json key_file lock_file repository
FUZZ_DIR := $(CACHE)/fuzz
fuzz:
	test -x $(CACHE)/cargo-fuzz/bin/cargo-fuzz || cargo install --locked cargo-fuzz@0.13.2 --root $(CACHE)/cargo-fuzz
	cargo run -q -p sluice-repo --example fuzz_seeds -- $(FUZZ_DIR)/corpus
	cd repo/fuzz && PATH=$(CACHE)/cargo-fuzz/bin:$$PATH CARGO_TARGET_DIR=$(CACHE)/target-fuzz \
		cargo +nightly fuzz build
	cd repo/fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/artifacts/$$t && \
		PATH=$(CACHE)/cargo-fuzz/bin:$$PATH CARGO_TARGET_DIR=$(CACHE)/target-fuzz \
		cargo +nightly fuzz run $$t $(FUZZ_DIR)/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=60 -rss_limit_mb=2048 \
			-artifact_prefix=$(FUZZ_DIR)/artifacts/$$t/ -print_final_stats=1 || exit 1; \
	done

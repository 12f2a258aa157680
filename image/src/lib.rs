//! Container images without a Docker engine.
//!
//! `make image` builds the Sluice image (`sluice-operator` and
//! `sluice-mover`, non-root, no shell, CA certificates) as an OCI archive
//! from the final stage of the project's Dockerfile, so the Dockerfile stays
//! the one description of the image: [`dockerfile`] reads that stage,
//! [`base`] reproduces its distroless base from this machine's Debian 12
//! packages, [`layer`] writes the file system as one reproducible layer and
//! [`oci`] packs layer, config and manifest into the archive. The end-to-end
//! harness builds its images (Sluice's, and the pod sandbox's) with the same
//! code.

pub mod base;
pub mod dockerfile;
pub mod layer;
pub mod oci;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A built image archive.
#[derive(Debug)]
pub struct Built {
    /// `REPOSITORY:TAG`.
    pub name: String,
    /// The manifest digest, `sha256:...`.
    pub digest: String,
    /// The archive.
    pub archive: PathBuf,
    /// Bytes a registry stores and a node pulls (the compressed layer).
    pub compressed_size: u64,
    /// Bytes of the unpacked file system (the uncompressed layer).
    pub unpacked_size: u64,
}

/// Builds image `name` from the final stage of `dockerfile` into the
/// archive `out`. Each file its `COPY --from=STAGE` lines take from a build
/// stage is taken from `binaries` by file name instead: that is what
/// `cargo build` made here.
pub fn build_from_dockerfile(
    dockerfile: &str,
    binaries: &Path,
    name: &str,
    out: &Path,
) -> Result<Built> {
    let stage = dockerfile::parse_final_stage(dockerfile)?;
    let mut copied = Vec::new();
    let mut entries = Vec::new();
    for copy in &stage.copies {
        if copy.from.is_none() {
            bail!(
                "COPY {} from the build context: make image copies only build outputs (COPY --from=STAGE)",
                copy.sources.join(" ")
            );
        }
        for source in &copy.sources {
            let file_name = Path::new(source)
                .file_name()
                .with_context(|| format!("COPY source {source} has no file name"))?;
            let host = binaries.join(file_name);
            if !host.is_file() {
                bail!(
                    "{} does not exist: build it first (cargo build --release -p sluice-mover -p sluice-operator)",
                    host.display()
                );
            }
            entries.push(layer::Entry::host_file(
                &copy.destination_of(source),
                &host,
                0o755,
            ));
            copied.push(host);
        }
    }
    let mut all = base::entries(&stage.base, &copied)?;
    all.extend(entries);
    let mut env = base::env();
    env.extend(stage.env.iter().cloned());
    let config = oci::RunConfig {
        user: stage.user.clone(),
        env,
        entrypoint: stage.entrypoint.clone(),
        cmd: stage.cmd.clone(),
        labels: stage.labels.clone(),
    };
    build(name, &all, &config, out)
}

/// Builds image `name` holding `entries`, run as `config`, into `out`.
pub fn build(
    name: &str,
    entries: &[layer::Entry],
    config: &oci::RunConfig,
    out: &Path,
) -> Result<Built> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let layer_path = out.with_extension("layer.tar.gz");
    let layer = layer::write(entries, &layer_path)?;
    let archive = oci::write_archive(name, &layer, config, out)?;
    std::fs::remove_file(&layer_path)?;
    Ok(Built {
        name: name.to_string(),
        digest: archive.digest,
        archive: out.to_path_buf(),
        compressed_size: layer.size,
        unpacked_size: layer.unpacked_size,
    })
}

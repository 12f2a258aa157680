//! The images the real node runs, built here (no registry is reachable):
//! Sluice's, from the Dockerfile's final stage and the binaries this test
//! run was built with, exactly as `make image` builds it from release
//! binaries; and the pod sandbox ("pause") image, from `e2e/pause/pause.c`.

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_image::layer::Entry;
use sluice_image::oci::RunConfig;

use crate::stack::workspace_binary;

/// The name the e2e overlay (`config/e2e`) gives the Sluice image.
pub const SLUICE_IMAGE: &str = "localhost/sluice:e2e";
/// The pod sandbox image containerd is configured with.
pub const PAUSE_IMAGE: &str = "localhost/sluice-pause:e2e";

const DOCKERFILE: &str = include_str!("../../Dockerfile");
const PAUSE_SOURCE: &str = include_str!("../pause/pause.c");

/// Builds the Sluice image from the workspace's `sluice-mover` and
/// `sluice-operator` next to the running test into `dir`; returns the
/// archive. The binaries lose their debug information on the way (a test
/// build's is ten times the code), not their symbols.
pub fn sluice(dir: &Path) -> PathBuf {
    let binaries = dir.join("bin");
    std::fs::create_dir_all(&binaries)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", binaries.display()));
    for name in ["sluice-mover", "sluice-operator"] {
        let output = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(workspace_binary(name))
            .arg(binaries.join(name))
            .output()
            .unwrap_or_else(|e| panic!("cannot run objcopy (binutils): {e}"));
        assert!(
            output.status.success(),
            "objcopy --strip-debug {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let built = sluice_image::build_from_dockerfile(
        DOCKERFILE,
        &binaries,
        SLUICE_IMAGE,
        &dir.join("sluice.oci.tar"),
    )
    .unwrap_or_else(|e| panic!("cannot build the Sluice image: {e:#}"));
    built.archive
}

/// Compiles the pause program statically and builds the sandbox image
/// from it into `dir`; returns the archive.
pub fn pause(dir: &Path) -> PathBuf {
    let source = dir.join("pause.c");
    let binary = dir.join("pause");
    std::fs::write(&source, PAUSE_SOURCE)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", source.display()));
    let output = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| panic!("cannot run gcc to build the pause image: {e}"));
    assert!(
        output.status.success(),
        "gcc -static pause.c failed (is libc6-dev installed?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config = RunConfig {
        entrypoint: vec!["/pause".into()],
        ..RunConfig::default()
    };
    sluice_image::build(
        PAUSE_IMAGE,
        &[Entry::host_file("/pause", &binary, 0o755)],
        &config,
        &dir.join("pause.oci.tar"),
    )
    .unwrap_or_else(|e| panic!("cannot build the pause image: {e:#}"))
    .archive
}

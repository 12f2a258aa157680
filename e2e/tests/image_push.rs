//! The README's "push the image to your registry" step, run as written: the archive `make
//! image` builds (here from this test run's binaries, by the same code), unpacked to an OCI
//! layout and pushed with `crane push` to a local registry (the distribution registry on
//! 127.0.0.1, both built pinned by `e2e/tools.sh crane registry`). The registry then serves the
//! very manifest the archive holds. No cluster needed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluice_e2e::images;
use sluice_testkit::Tool;
use sluice_testkit::probe::http_get;
use sluice_testkit::process::{Daemon, free_port, succeed};

fn start_registry(dir: &Path) -> (Daemon, u16) {
    let port = free_port();
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        ),
    )
    .unwrap();
    let mut command = Command::new(Tool::Registry.path());
    command.arg("serve").arg(&config);
    let mut registry = Daemon::spawn("registry", command, &dir.join("registry.log"));
    registry.wait_ready("the registry", Duration::from_secs(30), || {
        matches!(http_get(port, "/v2/"), Some((200, _)))
    });
    (registry, port)
}

#[test]
fn crane_pushes_the_image_archive_to_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let archive = images::sluice(dir.path());
    let (_registry, port) = start_registry(dir.path());

    // The README's commands.
    let layout = dir.path().join("sluice-oci");
    std::fs::create_dir_all(&layout).unwrap();
    let mut untar = Command::new("tar");
    untar.arg("-xf").arg(&archive).arg("-C").arg(&layout);
    succeed(untar);
    let reference = format!("127.0.0.1:{port}/sluice:0.1.0");
    let mut push = Command::new(Tool::Crane.path());
    push.arg("push")
        .arg(&layout)
        .arg(&reference)
        .arg("--insecure");
    succeed(push);

    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("the archive's index names its manifest");
    let mut digest = Command::new(Tool::Crane.path());
    digest.arg("digest").arg(&reference).arg("--insecure");
    assert_eq!(
        succeed(digest).trim(),
        manifest_digest,
        "the registry serves the archive's manifest, byte for byte"
    );
    let mut config = Command::new(Tool::Crane.path());
    config.arg("config").arg(&reference).arg("--insecure");
    let config: Value = serde_json::from_str(&succeed(config)).unwrap();
    assert_eq!(config["config"]["User"], "65532:65532", "{config}");
}

//! Block-mode volumes on the real node: a ReplicationSource of a Block PVC
//! (a loop device of the CSI test driver, holding an ext4 image) backs the
//! device up as one file `volume.img`, which `restic restore` yields
//! byte for byte; a second backup after changing 1 MiB adds about 1 MiB; a
//! ReplicationDestination with `volumeMode: Block` makes a Block PVC and
//! writes the image onto its device; and a Filesystem destination of that
//! repository fails with `VolumeModeMismatch`.

mod scenario;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use scenario::{SYNC, destination, manual_sync, source};
use sluice_e2e::Stack;
use sluice_e2e::storage::STORAGE_CLASS;

const NS: &str = "block";
const REPO: &str = "block/repo";
const MIB: u64 = 1 << 20;

#[test]
fn block_volume_scenarios() {
    let stack = Stack::start();
    stack.namespace(NS);
    stack.repository_secret(NS, "repo", REPO, None);
    let image = block_claim(&stack, "disk");
    make_filesystem_image(&image);

    let snapshot = backup_reads_the_device_as_one_image_file(&stack, &image);
    a_second_backup_after_changing_one_mib_adds_about_one_mib(&stack, &image, &snapshot);
    a_block_destination_writes_the_image_onto_a_new_block_claim(&stack, &image);
    a_filesystem_destination_of_a_block_backup_says_volume_mode_mismatch(&stack);
}

/// A bound 64 MiB Block PVC; returns its image file on the node.
fn block_claim(stack: &Stack, name: &str) -> PathBuf {
    stack.cluster.apply(&format!(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}, namespace: {NS}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: {STORAGE_CLASS}
  volumeMode: Block
  resources: {{requests: {{storage: 64Mi}}}}
"
    ));
    stack.wait_claim_image(NS, name)
}

/// An ext4 file system filling the volume, populated from a directory.
fn make_filesystem_image(image: &Path) {
    let content = tempfile::tempdir().unwrap();
    fs::write(
        content.path().join("hello.txt"),
        "hello from a Block volume\n",
    )
    .unwrap();
    fs::create_dir(content.path().join("data")).unwrap();
    for i in 0..8u64 {
        fs::write(
            content.path().join(format!("data/part-{i}.bin")),
            sluice_testkit::data::random_bytes(i, MIB as usize),
        )
        .unwrap();
    }
    let made = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(content.path())
        .arg(image)
        .output()
        .expect("mkfs.ext4 (e2fsprogs) is needed to make the file system image");
    assert!(
        made.status.success(),
        "mkfs.ext4 {}: {}",
        image.display(),
        String::from_utf8_lossy(&made.stderr)
    );
}

fn backup_reads_the_device_as_one_image_file(stack: &Stack, image: &Path) -> String {
    stack
        .cluster
        .apply(&source(NS, "disk", "Direct", "").replace("sourcePVC: data", "sourcePVC: disk"));
    let object = "replicationsource/disk";
    stack.wait_field(NS, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    assert_eq!(stack.condition(NS, object, "Ready"), "True/SyncSucceeded");
    assert_eq!(
        stack.get(NS, object, "{.status.lastSync.totalBytes}"),
        (64 * MIB).to_string()
    );
    let snapshot = stack.get(NS, object, "{.status.lastSync.snapshotID}");
    let listed = stack.run_restic(REPO, &["ls", &snapshot]);
    assert!(
        listed.lines().any(|l| l == "/volume.img"),
        "restic ls {snapshot}:\n{listed}"
    );
    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().to_string_lossy().into_owned();
    stack.run_restic(REPO, &["restore", &snapshot, "--target", &target]);
    assert!(
        fs::read(restored.path().join("volume.img")).unwrap() == fs::read(image).unwrap(),
        "restic restore of {snapshot} is not the device's image"
    );
    stack.run_restic(REPO, &["check", "--read-data"]);
    snapshot
}

fn a_second_backup_after_changing_one_mib_adds_about_one_mib(
    stack: &Stack,
    image: &Path,
    first: &str,
) {
    let device = fs::OpenOptions::new().write(true).open(image).unwrap();
    device
        .write_all_at(
            &sluice_testkit::data::random_bytes(99, MIB as usize),
            40 * MIB,
        )
        .unwrap();
    device.sync_all().unwrap();
    let second = manual_sync(stack, NS, "disk", "two");
    assert_ne!(second, first);
    let added: u64 = stack
        .get(
            NS,
            "replicationsource/disk",
            "{.status.lastSync.bytesAdded}",
        )
        .parse()
        .unwrap();
    eprintln!("second Block backup after changing 1 MiB of 64 MiB added {added} bytes");
    assert!(
        (MIB..10 * MIB).contains(&added),
        "the second backup added {added} bytes for 1 MiB changed"
    );
}

fn a_block_destination_writes_the_image_onto_a_new_block_claim(stack: &Stack, image: &Path) {
    stack.cluster.apply(
        &destination(NS, "restored", "Direct", "    volumeMode: Block\n")
            .replace("capacity: 1Gi", "capacity: 64Mi"),
    );
    let object = "replicationdestination/restored";
    stack.wait_field(NS, object, "{.status.lastManualSync}", SYNC, |v| v == "one");
    assert_eq!(stack.condition(NS, object, "Ready"), "True/SyncSucceeded");
    let claim = stack.get(NS, object, "{.status.latestImage.name}");
    assert_eq!(
        stack.get(NS, &format!("pvc/{claim}"), "{.spec.volumeMode}"),
        "Block"
    );
    let restored = stack.wait_claim_image(NS, &claim);
    assert!(
        fs::read(&restored).unwrap() == fs::read(image).unwrap(),
        "the restored device differs from the source's"
    );
    let hello = Command::new("debugfs")
        .args(["-R", "cat /hello.txt"])
        .arg(&restored)
        .output()
        .expect("debugfs (e2fsprogs) reads the restored file system");
    assert_eq!(
        String::from_utf8_lossy(&hello.stdout),
        "hello from a Block volume\n"
    );
}

fn a_filesystem_destination_of_a_block_backup_says_volume_mode_mismatch(stack: &Stack) {
    stack
        .cluster
        .apply(&destination(NS, "as-files", "Direct", ""));
    let object = "replicationdestination/as-files";
    let ready_reason = "{.status.conditions[?(@.type==\"Ready\")].reason}";
    stack.wait_field(NS, object, ready_reason, SYNC, |v| {
        v == "VolumeModeMismatch"
    });
    let message = stack.get(
        NS,
        object,
        "{.status.conditions[?(@.type==\"Ready\")].message}",
    );
    assert!(
        message.contains("spec.restic.volumeMode: Block"),
        "the condition says what to set: {message}"
    );
    assert_eq!(stack.get(NS, object, "{.status.latestImage}"), "");
}

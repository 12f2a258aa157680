//! Block volumes through `sluice-mover job`: a device (here an image file,
//! or a loop device over one) is backed up as the one file `volume.img`,
//! restored onto a device with only its non-zero chunks written, and
//! `restic restore` of the snapshot yields the image. A snapshot that does
//! not fit the volume's mode is refused with `VolumeModeMismatch`.

mod support;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use support::*;

const MIB: u64 = 1 << 20;

fn result(path: &Path) -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// A 64 MiB device image: 24 MiB of data in three runs, the rest zeros
/// written out (a device reads zeros; nothing in it is a hole).
fn write_image(path: &Path) {
    let f = fs::File::create(path).unwrap();
    f.write_all_at(&vec![0u8; 64 * MIB as usize], 0).unwrap();
    for (i, at) in [0u64, 20, 50].into_iter().enumerate() {
        f.write_all_at(&random_bytes(i as u64 + 1, 8 * MIB as usize), at * MIB)
            .unwrap();
    }
}

fn block_job(repo: &Repo, actions: &str, device: &Path, log: &Path) -> Command {
    let mut c = repo.sluice();
    c.arg("job")
        .env("SLUICE_JOB_ACTIONS", actions)
        .env("SLUICE_BLOCK_DEVICE", device)
        .env("SLUICE_DATA_DIR", "/nonexistent")
        .env("SLUICE_HOSTNAME", "ns/disk")
        .env("SLUICE_RESULT_FILE", log);
    c
}

#[test]
fn a_block_volume_round_trips_as_one_image_file() {
    let w = workdir();
    let device = w.path().join("device.img");
    write_image(&device);
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    let log = w.path().join("termination-log");

    ok(&mut block_job(&repo, "backup", &device, &log));
    let first = result(&log);
    assert_eq!(first["filesNew"], 1, "{first}");
    assert_eq!(first["totalBytes"], 64 * MIB, "{first}");
    let added = first["bytesAdded"].as_u64().unwrap();
    // The data, one zero chunk, and at each of the five edges between data
    // and zeros a chunk holding both: 40 MiB of zeros cost at most 3 MiB.
    assert!(
        (24 * MIB..27 * MIB).contains(&added),
        "first backup added {added} bytes for 24 MiB of data"
    );
    let snaps: serde_json::Value =
        serde_json::from_str(&stdout(&ok(repo.restic().args(["snapshots", "--json"])))).unwrap();
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/volume.img"]));

    // restic sees one file with the device's bytes.
    let restored_by_restic = w.path().join("restic");
    restic_restore(&repo, "latest", &restored_by_restic);
    assert_eq!(
        files_below(&restored_by_restic),
        [restored_by_restic.join("volume.img")]
    );
    assert!(fs::read(restored_by_restic.join("volume.img")).unwrap() == fs::read(&device).unwrap());

    // Change 1 MiB inside the second data run: the next backup reads the
    // device again, and only the chunks around the change are new: the
    // changed MiB and the chunks it touches (measured 2.6 to 5.5 MB; the
    // repository's random polynomial decides where).
    let f = fs::OpenOptions::new().write(true).open(&device).unwrap();
    f.write_all_at(&random_bytes(99, MIB as usize), 23 * MIB)
        .unwrap();
    ok(&mut block_job(&repo, "backup", &device, &log));
    let second = result(&log);
    assert_eq!(second["filesChanged"], 1, "{second}");
    let added = second["bytesAdded"].as_u64().unwrap();
    eprintln!("second backup after changing 1 MiB of 64 MiB added {added} bytes");
    assert!(
        (MIB..10 * MIB).contains(&added),
        "second backup added {added} bytes for 1 MiB changed"
    );

    // Onto a fresh (all-zero, sparse) device: identical, and the zero
    // chunks were not written, so it stays as sparse as the data allows.
    let target = w.path().join("target.img");
    fs::File::create(&target)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    ok(&mut block_job(&repo, "restore", &target, &log));
    let r = result(&log);
    assert_eq!(r["snapshotId"], second["snapshotId"], "{r}");
    assert!(fs::read(&target).unwrap() == fs::read(&device).unwrap());
    let written = allocated(&target);
    assert!(
        written < 26 * MIB,
        "restore onto a zeroed device allocated {written} bytes for 24 MiB of data"
    );

    // Onto a device holding other data, zeros are written too.
    let dirty = w.path().join("dirty.img");
    fs::write(&dirty, random_bytes(7, 64 * MIB as usize)).unwrap();
    ok(&mut block_job(&repo, "restore", &dirty, &log));
    assert!(fs::read(&dirty).unwrap() == fs::read(&device).unwrap());
}

#[test]
fn a_disk_image_restic_backed_up_restores_onto_a_device() {
    let w = workdir();
    let images = w.path().join("images/vm");
    fs::create_dir_all(&images).unwrap();
    let image = images.join("disk.raw");
    write_image(&image);
    std::os::unix::fs::symlink("disk.raw", images.join("current")).unwrap();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.restic().arg("init"));
    ok(repo.restic().arg("backup").arg(&images));
    let target = w.path().join("target.img");
    fs::File::create(&target)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    let log = w.path().join("termination-log");
    // restic recorded this machine's host name.
    ok(block_job(&repo, "restore", &target, &log).env_remove("SLUICE_HOSTNAME"));
    assert!(fs::read(&target).unwrap() == fs::read(&image).unwrap());
}

#[test]
fn snapshots_that_do_not_fit_the_volume_mode_are_refused() {
    let w = workdir();
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    let log = w.path().join("termination-log");

    // A Block volume's image into a Filesystem volume.
    let device = w.path().join("device.img");
    write_image(&device);
    ok(&mut block_job(&repo, "backup", &device, &log));
    let dir = w.path().join("dir");
    fs::create_dir(&dir).unwrap();
    let out = fails(
        repo.sluice()
            .arg("job")
            .env("SLUICE_JOB_ACTIONS", "restore")
            .env("SLUICE_DATA_DIR", &dir)
            .env("SLUICE_RESULT_FILE", &log),
    );
    let r = result(&log);
    assert_eq!(r["errorClass"], "VolumeModeMismatch", "{r}");
    let message = r["message"].as_str().unwrap();
    assert!(
        message.contains("spec.restic.volumeMode: Block"),
        "{message}"
    );
    assert!(
        stderr(&out).contains("Block volume's image"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "nothing written");

    // A tree of files onto a Block volume.
    let data = w.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("a"), b"a").unwrap();
    fs::write(data.join("b"), b"b").unwrap();
    ok(repo
        .sluice()
        .arg("job")
        .env("SLUICE_JOB_ACTIONS", "backup")
        .env("SLUICE_DATA_DIR", &data)
        .env("SLUICE_HOSTNAME", "ns/files")
        .env("SLUICE_RESULT_FILE", &log));
    let before = fs::read(&device).unwrap();
    let mut restore = block_job(&repo, "restore", &device, &log);
    fails(restore.env("SLUICE_HOSTNAME", "ns/files"));
    let r = result(&log);
    assert_eq!(r["errorClass"], "VolumeModeMismatch", "{r}");
    let message = r["message"].as_str().unwrap();
    assert!(message.contains("more than one regular file"), "{message}");
    assert!(
        fs::read(&device).unwrap() == before,
        "the device is untouched"
    );
}

/// A loop device attached to an image file, detached on drop.
struct Loop(String);

impl Loop {
    fn attach(image: &Path) -> Loop {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image)
            .output()
            .expect("losetup (util-linux) is needed to attach a loop device");
        assert!(
            out.status.success(),
            "losetup --find --show {} failed (this test needs root and loop devices): {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["--detach", &self.0]).status();
    }
}

#[test]
fn a_loop_device_backs_up_and_restores_like_its_image() {
    assert!(is_root(), "attaching loop devices needs root");
    let w = workdir();
    let image = w.path().join("source.img");
    write_image(&image);
    let source = Loop::attach(&image);
    let repo = Repo::local(&w.path().join("repo"));
    ok(repo.sluice().arg("init"));
    let log = w.path().join("termination-log");
    ok(&mut block_job(&repo, "backup", Path::new(&source.0), &log));
    let r = result(&log);
    assert_eq!(r["totalBytes"], 64 * MIB, "{r}");

    let target_image = w.path().join("target.img");
    fs::File::create(&target_image)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    let target = Loop::attach(&target_image);
    ok(&mut block_job(&repo, "restore", Path::new(&target.0), &log));
    drop(target);
    assert!(fs::read(&target_image).unwrap() == fs::read(&image).unwrap());

    // A device smaller than the image is refused before anything is written.
    let small_image = w.path().join("small.img");
    fs::File::create(&small_image)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    let small = Loop::attach(&small_image);
    let out = fails(&mut block_job(&repo, "restore", Path::new(&small.0), &log));
    assert!(
        stderr(&out).contains("give the volume at least 67108864 bytes"),
        "{}",
        stderr(&out)
    );
}

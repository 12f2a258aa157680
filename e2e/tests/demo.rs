//! `make demo`, end to end: the demo binary in its exit mode backs a PVC of
//! sample data up, restores the latest snapshot into a new PVC, reports the
//! two volumes identical, and stops everything it started.

use std::path::Path;
use std::process::Command;

#[test]
fn demo_restores_a_volume_equal_to_its_source_and_cleans_up() {
    let demo = Path::new(env!("CARGO_BIN_EXE_sluice-e2e-demo"));
    let dir = demo.parent().expect("a binary has a directory");
    for name in ["sluice-mover", "sluice-operator"] {
        assert!(
            dir.join(name).is_file(),
            "{name} not found in {}: the demo runs the workspace's binaries from there; build them with `cargo build -p sluice-mover -p sluice-operator` (`cargo test --workspace` and `make demo` do)",
            dir.display()
        );
    }
    let output = Command::new(demo)
        .arg("--exit")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", demo.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sluice-e2e-demo --exit failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let context = format!("demo output:\n{stdout}");

    // Step 3: restic reads the repository, and one manual trigger made one
    // backup.
    assert!(
        stdout.lines().any(|l| l.trim() == "1 snapshots"),
        "restic snapshots should list exactly the one snapshot of manual trigger demo-1; {context}"
    );

    // Step 5: the printer columns show both objects succeeded.
    for object in [
        "replicationsource.sluice.dev/app-data ",
        "replicationdestination.sluice.dev/app-data-restore ",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(object) && l.contains("SyncSucceeded")),
            "no SyncSucceeded row for {object:?} in kubectl get; {context}"
        );
    }

    // Step 6: both volumes counted the same, and diff found no difference.
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("==> [6/6]"))
        .unwrap_or_else(|| panic!("no step 6; {context}"));
    let volume = |line: &str| -> (String, String) {
        let (name, counts) = line
            .trim()
            .split_once("  ")
            .unwrap_or_else(|| panic!("not a volume line: {line:?}; {context}"));
        (name.to_string(), counts.trim().to_string())
    };
    let (source, source_counts) = volume(lines[header + 1]);
    let (restored, restored_counts) = volume(lines[header + 2]);
    assert_eq!(source, "app-data");
    assert_ne!(restored, source, "the restore went into a new PVC");
    assert!(
        source_counts.starts_with("305 files, 1 symlink, 13 directories, "),
        "sample data: {source_counts}"
    );
    assert_eq!(restored_counts, source_counts, "{context}");
    assert!(
        lines[header + 3].contains("diff -r --no-dereference: identical"),
        "{context}"
    );

    // The exploration hints name the cluster, which is gone after the exit.
    let kubeconfig = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("export KUBECONFIG="))
        .unwrap_or_else(|| panic!("no KUBECONFIG hint; {context}"));
    assert!(
        !Path::new(kubeconfig).exists(),
        "{kubeconfig} still exists after the demo exited"
    );
}

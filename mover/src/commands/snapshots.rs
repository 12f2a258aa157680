//! `snapshots`: list snapshots, as a table or restic's JSON array.

use anyhow::Result;
use serde_json::json;
use sluice_repo::snapshot::{SnapshotEntry, SnapshotFilter};

use crate::args::{Global, SnapshotsArgs};
use crate::repo_open::RepoConfig;

/// restic's JSON object for one snapshot: the stored fields plus the ids.
pub fn snapshot_json(e: &SnapshotEntry) -> serde_json::Value {
    let mut v = serde_json::to_value(&e.snapshot).expect("snapshot JSON");
    let obj = v.as_object_mut().expect("object");
    obj.insert("id".into(), json!(e.id.to_hex()));
    obj.insert("short_id".into(), json!(e.id.short()));
    v
}

pub fn run(g: &Global, a: &SnapshotsArgs) -> Result<i32> {
    let repo = RepoConfig::from_env(g)?.open()?;
    let _lock = super::lock(&repo, g, false)?;
    let filter = SnapshotFilter {
        hosts: a.host.clone(),
        tags: a.tag.clone(),
        paths: a.path.clone(),
    };
    let list: Vec<SnapshotEntry> = repo
        .list_snapshots()?
        .into_iter()
        .filter(|e| filter.matches(&e.snapshot))
        .collect();
    if g.json {
        let arr: Vec<_> = list.iter().map(snapshot_json).collect();
        println!("{}", serde_json::Value::Array(arr));
        return Ok(0);
    }
    println!(
        "{:<10} {:<25} {:<20} {:<15} Paths",
        "ID", "Time", "Host", "Tags"
    );
    println!("{}", "-".repeat(80));
    for e in &list {
        let s = &e.snapshot;
        let time = s
            .zoned_time()
            .map(|z| z.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| s.time.clone());
        println!(
            "{:<10} {:<25} {:<20} {:<15} {}",
            e.id.short(),
            time,
            s.hostname,
            s.tags.join(","),
            s.paths.join("\n")
        );
    }
    println!("{}", "-".repeat(80));
    println!("{} snapshots", list.len());
    Ok(0)
}

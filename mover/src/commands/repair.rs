//! `repair index` and `repair snapshots`: restic's repairs, for a repository that lost an
//! index file or the data of some snapshots.

use anyhow::{Result, bail};
use sluice_repo::repair::{self, SnapshotRepairOptions};

use crate::args::{Global, RepairCommand, RepairSnapshotsArgs};
use crate::repo_open::RepoConfig;

pub fn run(g: &Global, command: &RepairCommand) -> Result<i32> {
    match command {
        RepairCommand::Index => index(g),
        RepairCommand::Snapshots(a) => snapshots(g, a),
    }
}

fn index(g: &Global) -> Result<i32> {
    let mut repo = RepoConfig::from_env(g)?.open()?;
    let _lock = super::lock(&repo, g, true)?;
    let say = |line: &str| {
        if !g.json && !g.quiet {
            println!("{line}");
        }
    };
    let report = repair::repair_index(&mut repo, &say)?;
    for (pack, why) in &report.unreadable {
        eprintln!("error: pack {pack}: left out of the index, its header cannot be read: {why}");
    }
    if g.json {
        crate::output::json_line(&serde_json::json!({
            "message_type": "summary",
            "packs": report.packs,
            "headers_read": report.headers_read,
            "unreadable_packs": report.unreadable.iter().map(|(p, _)| p.to_hex()).collect::<Vec<_>>(),
            "index_files_removed": report.index_files_removed,
        }));
    } else {
        say(&format!(
            "done: the index lists {} packs ({} headers read)",
            report.packs, report.headers_read
        ));
    }
    if !report.unreadable.is_empty() {
        bail!(
            "the index was rebuilt, but {} packs are damaged and left out (listed above): run `sluice-mover check` to see which snapshots they break, then `sluice-mover repair snapshots`",
            report.unreadable.len()
        );
    }
    Ok(0)
}

fn snapshots(g: &Global, a: &RepairSnapshotsArgs) -> Result<i32> {
    let mut repo = RepoConfig::from_env(g)?.open()?;
    let _lock = super::lock(&repo, g, !a.dry_run)?;
    repo.load_index()?;
    let options = SnapshotRepairOptions {
        forget: a.forget,
        dry_run: a.dry_run,
        ids: a.ids.clone(),
    };
    let report = repair::repair_snapshots(&mut repo, &options, &mut |line| {
        if !g.json && !g.quiet {
            println!("{line}");
        }
    })?;
    if g.json {
        crate::output::json_line(&serde_json::json!({
            "message_type": "summary",
            "modified": report.modified,
            "unreadable": report.unreadable_left.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
        }));
    } else if !g.quiet {
        let verb = if a.dry_run {
            "would modify"
        } else {
            "modified"
        };
        if report.modified == 0 {
            println!("no snapshots were modified");
        } else {
            println!("{verb} {} snapshots", report.modified);
        }
    }
    if let Some(first) = report.unreadable_left.first() {
        bail!(
            "{} snapshot files are unreadable: `sluice-mover repair snapshots --forget {}` removes one (name each to remove)",
            report.unreadable_left.len(),
            first.short()
        );
    }
    Ok(0)
}

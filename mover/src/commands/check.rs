//! `check`: report damage by pack, blob and the snapshots it breaks.

use anyhow::{Result, anyhow};
use sluice_repo::Repository;
use sluice_repo::check::{self, ReadData};

use crate::args::{CheckArgs, Global};
use crate::repo_open::RepoConfig;

pub fn run(g: &Global, a: &CheckArgs) -> Result<i32> {
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => s.parse().map_err(|e: String| anyhow!(e))?,
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let mut repo = RepoConfig::from_env(g)?.open()?;
    check(&mut repo, g, read_data)?;
    Ok(0)
}

/// Locks the open repository, checks it and prints what it found; an error
/// when anything is damaged. The core the `check` command and the `job`
/// share.
pub fn check(repo: &mut Repository, g: &Global, read_data: ReadData) -> Result<()> {
    let _lock = super::lock(repo, g, false)?;
    let say = |line: &str| {
        if !g.json && !g.quiet {
            println!("{line}");
        }
    };
    let report = check::check(repo, read_data, &say)?;
    for note in &report.notes {
        say(note);
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    if g.json {
        let errors: Vec<_> = report
            .errors
            .iter()
            .map(|e| {
                serde_json::json!({
                    "pack": e.pack.map(|p| p.to_hex()),
                    "blob": e.blob.map(|b| b.to_hex()),
                    "message": e.message,
                    "snapshots": e.snapshots.iter().map(|s| s.to_hex()).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"message_type": "summary", "num_errors": report.errors.len(), "errors": errors, "notes": report.notes, "packs_read": report.packs_read})
        );
    }
    if report.errors.is_empty() {
        say("no errors were found");
        Ok(())
    } else {
        Err(anyhow!(
            "repository contains {} errors (listed above): restore what you can; when blobs are missing from the index run `sluice-mover repair index`, then `sluice-mover repair snapshots` for what is still missing",
            report.errors.len()
        ))
    }
}

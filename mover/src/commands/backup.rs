//! `backup`: back up paths into a new snapshot.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use serde::Serialize;
use sluice_repo::Repository;
use sluice_repo::archiver::{self, BackupOptions, ParentChoice, Progress};
use sluice_repo::snapshot::Summary;

use crate::args::{BackupArgs, Global};
use crate::output::{bytes, duration};
use crate::progress::{Mode, Sample, Ticker};
use crate::repo_open::RepoConfig;

/// Parses `--time` as restic does ("2006-01-02 15:04:05" local time), also
/// accepting RFC 3339.
pub fn parse_time(s: &str) -> Result<jiff::Timestamp> {
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    let dt: jiff::civil::DateTime = s
        .parse()
        .with_context(|| format!("invalid --time {s:?}: use \"YYYY-MM-DD HH:MM:SS\""))?;
    Ok(dt.to_zoned(jiff::tz::TimeZone::system())?.timestamp())
}

pub fn run(g: &Global, a: &BackupArgs) -> Result<i32> {
    let working_dir = std::env::current_dir().context("cannot read the current directory")?;
    let mut opts = BackupOptions::new(a.paths.clone(), working_dir);
    if let Some(h) = &a.host {
        opts.hostname = h.clone();
    }
    opts.tags = a.tag.clone();
    opts.excludes = a.exclude.clone();
    opts.time = a.time.as_deref().map(parse_time).transpose()?;
    opts.parent = match (&a.parent, a.force) {
        (_, true) => ParentChoice::None,
        (Some(p), _) => ParentChoice::Id(
            p.parse()
                .with_context(|| format!("invalid --parent {p:?}"))?,
        ),
        (None, _) => ParentChoice::Auto,
    };
    let mut repo = RepoConfig::from_env(g)?.open()?;
    let result = backup(&mut repo, g, &opts)?;
    Ok(if result.warnings.is_empty() {
        0
    } else {
        crate::exit::PARTIAL
    })
}

/// restic's `backup --json` summary line: the snapshot's stored summary
/// (the same field names) plus what only this run knows.
#[derive(Serialize)]
struct SummaryMessage<'a> {
    message_type: &'static str,
    #[serde(flatten)]
    summary: &'a Summary,
    total_duration: f64,
    snapshot_id: String,
}

/// Locks the open repository, backs up and prints the summary: the core
/// the `backup` command and the `job` share.
pub fn backup(
    repo: &mut Repository,
    g: &Global,
    opts: &BackupOptions,
) -> Result<archiver::BackupResult> {
    let _lock = super::lock(repo, g, false)?;
    repo.load_index()?;
    let progress = Arc::new(Progress::default());
    let p = progress.clone();
    let ticker = Ticker::start(
        Mode::detect(g.json, g.quiet, g.progress_log),
        "backup",
        move || Sample {
            files_done: p.files_done.load(Ordering::Relaxed),
            files_total: p.files_seen.load(Ordering::Relaxed),
            bytes_done: p.bytes_done.load(Ordering::Relaxed),
            bytes_total: p.bytes_seen.load(Ordering::Relaxed),
            totals_final: p.walk_done.load(Ordering::Relaxed),
        },
    );
    let started = std::time::Instant::now();
    let result = archiver::backup(repo, opts, &progress);
    ticker.finish();
    let result = result?;
    let secs = started.elapsed().as_secs_f64();
    for w in &result.warnings {
        eprintln!("warning: {w}");
    }
    let s = result.snapshot.summary.clone().unwrap_or_default();
    if g.json {
        let message = SummaryMessage {
            message_type: "summary",
            summary: &s,
            total_duration: secs,
            snapshot_id: result.id.to_hex(),
        };
        crate::output::json_line(&serde_json::to_value(message).expect("summary JSON"));
    } else if !g.quiet {
        match &result.parent {
            Some(p) => println!("using parent snapshot {}", p.short()),
            None => println!("no parent snapshot found, will read all files"),
        }
        println!();
        println!(
            "Files:       {:>5} new, {:>5} changed, {:>5} unmodified",
            s.files_new, s.files_changed, s.files_unmodified
        );
        println!(
            "Dirs:        {:>5} new, {:>5} changed, {:>5} unmodified",
            s.dirs_new, s.dirs_changed, s.dirs_unmodified
        );
        println!(
            "Added to the repository: {} ({} stored)",
            bytes(s.data_added),
            bytes(s.data_added_packed)
        );
        println!();
        println!(
            "processed {} files, {} in {}",
            s.total_files_processed,
            bytes(s.total_bytes_processed),
            duration(secs)
        );
        println!("snapshot {} saved", result.id.short());
    }
    Ok(result)
}

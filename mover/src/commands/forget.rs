//! `forget`: apply a retention policy and delete the snapshots it drops.

use anyhow::{Context, Result, anyhow};
use serde_json::json;
use sluice_repo::Repository;
use sluice_repo::backend::FileKind;
use sluice_repo::forget::{
    ForgetCandidate, GroupBy, KeepDuration, RetainPolicy, apply_policy, group_snapshots,
};
use sluice_repo::prune::MaxUnused;
use sluice_repo::snapshot::SnapshotEntry;

use crate::args::{ForgetArgs, Global};
use crate::repo_open::RepoConfig;

/// A snapshot with its time parsed once, as the policy wants it.
struct Candidate {
    entry: SnapshotEntry,
    time: jiff::Zoned,
}

impl ForgetCandidate for Candidate {
    fn time(&self) -> &jiff::Zoned {
        &self.time
    }
    fn hostname(&self) -> &str {
        &self.entry.snapshot.hostname
    }
    fn paths(&self) -> &[String] {
        &self.entry.snapshot.paths
    }
    fn tags(&self) -> &[String] {
        &self.entry.snapshot.tags
    }
}

/// A list as Go's encoder writes a nil slice: `null` when empty.
fn go_list(items: Vec<serde_json::Value>) -> serde_json::Value {
    if items.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::Array(items)
    }
}

fn within(flag: &str, v: &Option<String>) -> Result<KeepDuration> {
    match v {
        None => Ok(KeepDuration::default()),
        Some(s) => s.parse().map_err(|e| anyhow!("--{flag}: {e}")),
    }
}

/// `a,b` is one tag list: a snapshot matches when it has all of them.
fn tag_lists(flags: &[String]) -> Vec<Vec<String>> {
    flags
        .iter()
        .map(|f| {
            f.split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The policy from the flags; every value is validated before the
/// repository is touched.
fn policy(a: &ForgetArgs) -> Result<RetainPolicy> {
    Ok(RetainPolicy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: within("keep-within", &a.keep_within)?,
        within_hourly: within("keep-within-hourly", &a.keep_within_hourly)?,
        within_daily: within("keep-within-daily", &a.keep_within_daily)?,
        within_weekly: within("keep-within-weekly", &a.keep_within_weekly)?,
        within_monthly: within("keep-within-monthly", &a.keep_within_monthly)?,
        within_yearly: within("keep-within-yearly", &a.keep_within_yearly)?,
        tags: tag_lists(&a.keep_tag),
    })
}

/// What a `forget` run does: which snapshots it considers, the policy it
/// applies to each group of them, and whether a prune follows.
pub struct ForgetOptions {
    pub policy: RetainPolicy,
    /// Only snapshots of these hosts (all when empty).
    pub hosts: Vec<String>,
    /// Only snapshots with all tags of one of these lists (all when empty).
    pub tags: Vec<Vec<String>>,
    /// Only snapshots of exactly these paths (all when empty).
    pub paths: Vec<String>,
    pub group_by: GroupBy,
    /// Only print what would be removed.
    pub dry_run: bool,
    /// Prune afterwards, leaving at most this much unused space.
    pub prune: Option<MaxUnused>,
}

impl ForgetOptions {
    /// The snapshots of one host under `policy`, grouped as restic groups
    /// by default: what a mover Job forgets, leaving other sources that
    /// share the repository alone.
    pub fn for_host(host: String, policy: RetainPolicy) -> ForgetOptions {
        ForgetOptions {
            policy,
            hosts: vec![host],
            tags: Vec::new(),
            paths: Vec::new(),
            group_by: GroupBy::default(),
            dry_run: false,
            prune: None,
        }
    }
}

pub fn run(g: &Global, a: &ForgetArgs) -> Result<i32> {
    let policy = policy(a)?;
    let max_unused: MaxUnused = a.max_unused.parse().map_err(|e: String| anyhow!(e))?;
    let opts = ForgetOptions {
        policy,
        hosts: a.host.clone(),
        tags: tag_lists(&a.tag),
        paths: a.path.clone(),
        group_by: a.group_by,
        dry_run: a.dry_run,
        prune: a.prune.then_some(max_unused),
    };
    let mut repo = RepoConfig::from_env(g)?.open()?;
    forget(&mut repo, g, &opts)?;
    Ok(0)
}

/// Locks the open repository exclusively, applies the policy, removes the
/// snapshots it drops (and prunes, if asked) and prints what it did: the
/// core the `forget` command and the `job` share.
pub fn forget(repo: &mut Repository, g: &Global, opts: &ForgetOptions) -> Result<()> {
    let lock = super::lock(repo, g, true)?;
    let mut candidates = Vec::new();
    for entry in repo.list_snapshots()? {
        let s = &entry.snapshot;
        let host_ok = opts.hosts.is_empty() || opts.hosts.contains(&s.hostname);
        let tag_ok = opts.tags.is_empty() || opts.tags.iter().any(|l| s.has_tags(l));
        let path_ok = opts.paths.is_empty() || s.has_paths(&opts.paths);
        if !(host_ok && tag_ok && path_ok) {
            continue;
        }
        let time = s.zoned_time().with_context(|| {
            format!(
                "snapshot {} has an unreadable time {:?}",
                entry.id.short(),
                s.time
            )
        })?;
        candidates.push(Candidate { entry, time });
    }
    let policy = &opts.policy;
    if policy.is_empty() {
        if g.json {
            println!("[]");
        } else {
            println!("no policy was specified, no snapshots will be removed");
        }
        return Ok(());
    }

    let now = jiff::Timestamp::now();
    let mut groups_json = Vec::new();
    let mut doomed = Vec::new();
    for (key, members) in group_snapshots(&candidates, opts.group_by) {
        let outcome = apply_policy(&members, policy, now);
        let snap = |c: &Candidate| super::snapshots::snapshot_json(&c.entry);
        if g.json {
            let reasons: Vec<_> = outcome
                .keep
                .iter()
                .zip(&outcome.reasons)
                .map(|(c, r)| json!({"snapshot": snap(c), "matches": r.matches}))
                .collect();
            groups_json.push(json!({
                "tags": key.tags,
                "host": key.host,
                "paths": key.paths,
                "keep": go_list(outcome.keep.iter().map(|c| snap(c)).collect()),
                "remove": go_list(outcome.remove.iter().map(|c| snap(c)).collect()),
                "reasons": go_list(reasons),
            }));
        } else if !g.quiet {
            let mut title = Vec::new();
            if !key.host.is_empty() {
                title.push(format!("host [{}]", key.host));
            }
            if let Some(p) = &key.paths {
                title.push(format!("paths [{}]", p.join(", ")));
            }
            if let Some(t) = &key.tags {
                title.push(format!("tags [{}]", t.join(", ")));
            }
            println!("snapshots for {}:", title.join(", "));
            println!("keep {} snapshots:", outcome.keep.len());
            for (c, r) in outcome.keep.iter().zip(&outcome.reasons) {
                println!(
                    "  {}  {}  {}",
                    c.entry.id.short(),
                    c.entry.snapshot.time,
                    r.matches.join(", ")
                );
            }
            if !outcome.remove.is_empty() {
                println!("remove {} snapshots:", outcome.remove.len());
                for c in &outcome.remove {
                    println!("  {}  {}", c.entry.id.short(), c.entry.snapshot.time);
                }
            }
            println!();
        }
        doomed.extend(outcome.remove.iter().map(|c| c.entry.id));
    }
    if g.json {
        println!("{}", serde_json::Value::Array(groups_json));
    }
    if opts.dry_run {
        if !g.json {
            println!("would have removed {} snapshots", doomed.len());
        }
        return Ok(());
    }
    for id in &doomed {
        repo.backend().remove(FileKind::Snapshot, &id.to_hex())?;
    }
    if !g.json && !g.quiet {
        println!("removed {} snapshots", doomed.len());
    }
    if let Some(max_unused) = opts.prune
        && !doomed.is_empty()
    {
        super::prune::prune_locked(repo, g, max_unused, false)?;
    }
    drop(lock);
    Ok(())
}

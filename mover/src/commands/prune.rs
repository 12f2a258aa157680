//! `prune`: delete and repack packs so only data snapshots need remains.

use anyhow::{Result, anyhow};
use sluice_repo::Repository;
use sluice_repo::prune::{self, Amount, MaxUnused, PruneOptions};

use crate::args::{Global, PruneArgs};
use crate::output::bytes;
use crate::repo_open::RepoConfig;

pub fn run(g: &Global, a: &PruneArgs) -> Result<i32> {
    let max_unused: MaxUnused = a.max_unused.parse().map_err(|e: String| anyhow!(e))?;
    let mut repo = RepoConfig::from_env(g)?.open()?;
    prune(&mut repo, g, max_unused, a.dry_run)?;
    Ok(0)
}

/// Locks the open repository exclusively and prunes it: the core the
/// `prune` command and the `job` share.
pub fn prune(
    repo: &mut Repository,
    g: &Global,
    max_unused: MaxUnused,
    dry_run: bool,
) -> Result<()> {
    let _lock = super::lock(repo, g, true)?;
    prune_locked(repo, g, max_unused, dry_run)
}

fn amount(a: Amount) -> String {
    format!("{} blobs / {}", a.blobs, bytes(a.bytes))
}

/// Prunes a repository the caller has locked exclusively (also the last
/// step of `forget --prune`).
pub fn prune_locked(
    repo: &mut Repository,
    g: &Global,
    max_unused: MaxUnused,
    dry_run: bool,
) -> Result<()> {
    let say = |line: &str| {
        if !g.json && !g.quiet {
            println!("{line}");
        }
    };
    say("loading indexes and finding data that is still in use");
    let plan = prune::plan(repo, &PruneOptions { max_unused })?;
    let s = plan.stats.clone();
    let total = Amount {
        blobs: s.delete.blobs + s.repack_removes.blobs,
        bytes: s.delete.bytes + s.repack_removes.bytes + s.unindexed_bytes,
    };
    let share = |n: u64, of: u64| {
        if of == 0 {
            0.0
        } else {
            n as f64 * 100.0 / of as f64
        }
    };
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "dry_run": dry_run,
                "used_blobs": s.used.blobs, "used_size": s.used.bytes,
                "unused_blobs": s.unused.blobs, "unused_size": s.unused.bytes,
                "repack_blobs": s.repack.blobs, "repack_size": s.repack.bytes,
                "remove_blobs": total.blobs, "remove_size": total.bytes,
                "packs_delete": s.packs_delete, "packs_repack": s.packs_repack, "packs_keep": s.packs_keep,
                "packs_unreferenced": s.packs_unindexed,
                "remaining_blobs": s.remaining.blobs, "remaining_size": s.remaining.bytes,
                "unused_size_after_prune": s.unused_after,
            })
        );
    } else if !g.quiet {
        println!("used:                 {}", amount(s.used));
        println!("unused:               {}", amount(s.unused));
        println!();
        println!("to repack:            {}", amount(s.repack));
        println!("this removes:         {}", amount(s.repack_removes));
        println!("to delete:            {}", amount(s.delete));
        println!("total prune:          {}", amount(total));
        println!("remaining:            {}", amount(s.remaining));
        println!(
            "unused size after prune: {} ({:.2}% of remaining size)",
            bytes(s.unused_after),
            share(s.unused_after, s.remaining.bytes)
        );
        println!();
        println!(
            "packs: {} to delete, {} to repack, {} kept, {} unreferenced ({})",
            s.packs_delete,
            s.packs_repack,
            s.packs_keep,
            s.packs_unindexed,
            bytes(s.unindexed_bytes)
        );
    }
    if dry_run {
        say("dry run: nothing was changed");
        return Ok(());
    }
    if plan.is_noop() {
        say("nothing to do");
        return Ok(());
    }
    prune::execute(repo, plan, &say)?;
    say("done");
    Ok(())
}

//! `unlock`: remove locks left by processes that are gone.

use anyhow::Result;
use sluice_repo::lock::{self, LockOptions};

use crate::args::{Global, UnlockArgs};
use crate::repo_open::RepoConfig;

pub fn run(g: &Global, a: &UnlockArgs) -> Result<i32> {
    let repo = RepoConfig::from_env(g)?.open()?;
    let removed = lock::remove_stale(&repo, &LockOptions::shared(), a.remove_all)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({"message_type": "summary", "removed_locks": removed})
        );
    } else if !g.quiet {
        println!("successfully removed {removed} locks");
    }
    Ok(0)
}

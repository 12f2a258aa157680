//! `init`: create a repository.

use anyhow::Result;

use crate::args::Global;
use crate::repo_open::RepoConfig;

pub fn run(g: &Global) -> Result<i32> {
    let config = RepoConfig::from_env(g)?;
    let backend = config.backend()?;
    let location = backend.location();
    let repo = config.init(backend)?;
    let id = &repo.config().id;
    if g.json {
        crate::output::json_line(&serde_json::json!({
            "message_type": "initialized",
            "id": id,
            "repository": location,
        }));
    } else if !g.quiet {
        println!("created restic repository {} at {location}", &id[..10]);
        println!();
        println!("Please note that knowledge of your password is required to access");
        println!("the repository. Losing your password means that your data is");
        println!("irrecoverably lost.");
    }
    Ok(0)
}

//! `init`: create a repository.

use anyhow::Result;
use sluice_repo::Repository;

use crate::args::Global;
use crate::repo_open;

pub fn run(g: &Global) -> Result<i32> {
    let backend = repo_open::backend(g)?;
    let password = repo_open::password(g)?;
    let location = backend.location();
    let repo = Repository::init(backend, &password, repo_open::kdf(g), repo_open::options(g))?;
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

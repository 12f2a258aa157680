//! Exit codes and the one-line error report, as restic's.

use sluice_repo::Error;

/// Generic failure.
pub const FAILURE: i32 = 1;
/// A backup finished, but some files could not be read.
pub const PARTIAL: i32 = 3;
/// No repository at the given location.
pub const NO_REPOSITORY: i32 = 10;
/// The repository is locked by someone else.
pub const LOCKED: i32 = 11;
/// No key opens with the password.
pub const WRONG_PASSWORD: i32 = 12;

/// The exit code for an error.
pub fn code(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<Error>() {
        Some(Error::RepositoryNotFound { .. }) => NO_REPOSITORY,
        Some(Error::Locked { .. }) => LOCKED,
        Some(Error::WrongPassword { .. }) => WRONG_PASSWORD,
        _ => FAILURE,
    }
}

/// What to run about an error, in this program's commands: the engine's
/// messages say what failed and leave this to the program that has the
/// commands.
fn advice(e: &Error) -> Option<&'static str> {
    match e {
        Error::RepositoryNotFound { .. } => {
            Some("run `sluice-mover init` first, or check RESTIC_REPOSITORY")
        }
        Error::Locked { .. } => {
            Some("retry later, or run `sluice-mover unlock` if that process is gone")
        }
        Error::SnapshotNotFound { .. } => Some("list them with `sluice-mover snapshots`"),
        _ => None,
    }
}

/// The error on one line: context layers outermost first, then what to do.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = format!("{e}");
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !line.contains(&c) {
            line.push_str(": ");
            line.push_str(&c);
        }
    }
    if let Some(advice) = e.downcast_ref::<Error>().and_then(advice) {
        line.push_str(": ");
        line.push_str(advice);
    }
    line
}

/// Prints the error as one line on stderr, or into `termination_log` when given (falling back
/// to stderr if that cannot be written), and returns its exit code.
pub fn report(e: &anyhow::Error, termination_log: Option<&std::path::Path>) -> i32 {
    let line = format!("Fatal: {}", one_line(e));
    if termination_log.is_none_or(|log| std::fs::write(log, &line).is_err()) {
        eprintln!("{line}");
    }
    code(e)
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn lines_join_the_context_and_end_with_what_to_run() {
        let not_found = || Error::RepositoryNotFound {
            location: "/srv/repo".into(),
        };
        for (e, line, exit) in [
            (
                anyhow::Error::from(not_found()),
                "no repository at /srv/repo: run `sluice-mover init` first, or check RESTIC_REPOSITORY",
                NO_REPOSITORY,
            ),
            (
                Err::<(), _>(not_found()).context("open").unwrap_err(),
                "open: no repository at /srv/repo: run `sluice-mover init` first, or check RESTIC_REPOSITORY",
                NO_REPOSITORY,
            ),
            (
                Error::Locked {
                    holder: "pid 7 on node-a".into(),
                }
                .into(),
                "repository is locked by pid 7 on node-a: retry later, or run `sluice-mover unlock` if that process is gone",
                LOCKED,
            ),
            (
                Error::SnapshotNotFound { spec: "abc".into() }.into(),
                "no snapshot with id \"abc\": list them with `sluice-mover snapshots`",
                FAILURE,
            ),
            (
                Error::WrongPassword {
                    location: "/srv/repo".into(),
                }
                .into(),
                "wrong password for repository /srv/repo: no key file could be opened with it",
                WRONG_PASSWORD,
            ),
            (anyhow::anyhow!("plain"), "plain", FAILURE),
        ] {
            assert_eq!(one_line(&e), line);
            assert_eq!(code(&e), exit, "{line}");
        }
    }
}

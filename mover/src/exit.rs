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

/// Prints the error as one line on stderr and returns its exit code.
pub fn report(e: &anyhow::Error) -> i32 {
    let mut line = format!("{e}");
    // Context layers read best outermost first, joined on one line.
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !line.contains(&c) {
            line.push_str(": ");
            line.push_str(&c);
        }
    }
    eprintln!("Fatal: {line}");
    code(e)
}

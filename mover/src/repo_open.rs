//! Opening the repository the global flags and restic's environment name.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use sluice_repo::backend::{self, Backend};
use sluice_repo::key::{CALIBRATION_TARGET, KdfParams};
use sluice_repo::repository::{DEFAULT_PACK_SIZE, Options};

use crate::args::Global;

/// The repository location, or an error saying how to give one.
pub fn location(g: &Global) -> Result<String> {
    match &g.repo {
        Some(r) if !r.is_empty() => Ok(r.clone()),
        _ => bail!("no repository given: set RESTIC_REPOSITORY or use -r/--repo"),
    }
}

/// The password from `--password-file`, `RESTIC_PASSWORD_FILE` or
/// `RESTIC_PASSWORD`, trimmed as restic trims it.
pub fn password(g: &Global) -> Result<String> {
    if let Some(f) = &g.password_file {
        let s = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read password file {}", f.display()))?;
        let p = s.trim();
        if p.is_empty() {
            bail!(
                "password file {} is empty: an empty password is not allowed, put the repository password in it",
                f.display()
            );
        }
        return Ok(p.to_string());
    }
    match std::env::var("RESTIC_PASSWORD") {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => bail!(
            "no password given: set RESTIC_PASSWORD or RESTIC_PASSWORD_FILE, or use --password-file"
        ),
    }
}

/// Write options from the flags.
pub fn options(g: &Global) -> Options {
    Options {
        compression: g.compression,
        pack_size: g.pack_size.map(|m| m << 20).unwrap_or(DEFAULT_PACK_SIZE),
    }
}

/// The scrypt cost of keys this run creates: calibrated like restic's (about 0.5 s here),
/// unless a test asked for the weak one.
pub fn kdf(g: &Global) -> KdfParams {
    if g.insecure_test_kdf {
        KdfParams::INSECURE_FOR_TESTS
    } else {
        KdfParams::calibrate(CALIBRATION_TARGET)
    }
}

/// The backend for the repository location.
pub fn backend(g: &Global) -> Result<Arc<dyn Backend>> {
    let loc = location(g)?;
    if let Some(ca) = &g.cacert {
        // The object-storage backend reads its CA from the environment.
        // SAFETY: set before any thread that reads the environment starts.
        unsafe { std::env::set_var("RESTIC_CACERT", ca) };
    }
    Ok(Arc::from(backend::open(&loc)?))
}

/// Opens the repository with the password.
pub fn open(g: &Global) -> Result<sluice_repo::Repository> {
    let backend = backend(g)?;
    let password = password(g)?;
    Ok(sluice_repo::Repository::open(
        backend,
        &password,
        options(g),
    )?)
}

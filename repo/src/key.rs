//! Key files: password-protected copies of the master key in `keys/`.
//!
//! scrypt turns the password into a key that opens the file's `data`, which
//! is the master key encrypted like any other object. Several key files may
//! exist (one per password); opening tries each.
//!
//! Key files are untrusted input like everything else in a repository: their
//! scrypt parameters decide how much memory and time deriving takes, so a key
//! file asking for more than [`MAX_MEMORY`] or [`MAX_WORK`] is skipped with a
//! warning instead of being derived (scrypt would allocate `128·r·N` bytes:
//! `N = 2^40` aborts the process).

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FileKind, Payload};
use crate::crypto::Key;
use crate::{Error, Id, Result};

/// The JSON of a key file, field for field as restic writes it.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    created: String,
    username: String,
    hostname: String,
    kdf: String,
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
    salt: String,
    data: String,
}

/// The scrypt cost of a key: `N` (a power of two), `r` and `p`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub n: u64,
    pub r: u32,
    pub p: u32,
}

/// The most memory (`128·r·N` bytes) deriving one key may take: eight times what
/// restic's calibration uses (32 MiB).
pub const MAX_MEMORY: u64 = 256 << 20;

/// The most work (`N·r·p`) deriving one key may take: 64 times restic's lowest
/// calibration, which leaves room for keys calibrated on machines far faster than
/// the one opening them.
pub const MAX_WORK: u64 = (1 << 15) * 8 * 64;

/// restic tries at most this many key files before giving up.
pub const MAX_KEYS_TRIED: usize = 20;

/// How long restic's calibration aims for one derivation to take.
pub const CALIBRATION_TARGET: Duration = Duration::from_millis(500);

impl KdfParams {
    /// restic's starting point and lowest calibration on a machine of any speed:
    /// `N = 2^15`, `r = 8`, `p = 1` (32 MiB).
    pub const MINIMUM: KdfParams = KdfParams {
        n: 1 << 15,
        r: 8,
        p: 1,
    };

    /// For tests that create many repositories: derives in about a millisecond, and
    /// so protects nothing. Never for a real key.
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams {
        n: 1 << 10,
        r: 8,
        p: 1,
    };

    /// Calibrates like restic: `N` and `r` stay at [`KdfParams::MINIMUM`] (restic's
    /// 60 MiB memory budget gives exactly that), and `p` rises until one derivation
    /// takes about `target` on this machine. Key files sit in object storage where
    /// they can be attacked offline, so the cost is what protects the password.
    pub fn calibrate(target: Duration) -> KdfParams {
        let base = KdfParams::MINIMUM;
        // The faster of two runs: a busy machine makes single runs slow, which would
        // calibrate too low.
        let once = (0..2)
            .map(|_| {
                let started = Instant::now();
                derive_checked(b"calibration", &[0u8; 64], base).expect("valid parameters");
                started.elapsed()
            })
            .min()
            .expect("two runs");
        calibrated_p(base, once, target)
    }

    /// Why opening a key with these parameters is refused, if it is.
    pub fn refusal(&self) -> Option<String> {
        if !self.n.is_power_of_two() || self.n < 2 || self.r == 0 || self.p == 0 {
            return Some(format!(
                "invalid scrypt parameters N={} r={} p={}",
                self.n, self.r, self.p
            ));
        }
        let memory = 128u128 * u128::from(self.r) * u128::from(self.n);
        if memory > u128::from(MAX_MEMORY) {
            return Some(format!(
                "scrypt N={} r={} would need {} MiB, more than the {} MiB allowed",
                self.n,
                self.r,
                memory >> 20,
                MAX_MEMORY >> 20
            ));
        }
        let work = u128::from(self.n) * u128::from(self.r) * u128::from(self.p);
        if work > u128::from(MAX_WORK) {
            return Some(format!(
                "scrypt N={} r={} p={} would take {}x restic's calibrated cost, more than the {}x allowed",
                self.n,
                self.r,
                self.p,
                work / u128::from(KdfParams::MINIMUM.work()),
                MAX_WORK / KdfParams::MINIMUM.work()
            ));
        }
        None
    }

    fn work(&self) -> u64 {
        self.n * u64::from(self.r) * u64::from(self.p)
    }
}

/// The `p` that makes one derivation take about `target`, given that `base` (with
/// `p = 1`) took `once`: the largest whose time stays under the target, as restic's
/// loop ends, never below 1 and never beyond what [`MAX_WORK`] lets others open.
fn calibrated_p(base: KdfParams, once: Duration, target: Duration) -> KdfParams {
    let fits = (target.as_nanos() / once.as_nanos().max(1)) as u64;
    let most = MAX_WORK / base.work();
    KdfParams {
        p: fits.clamp(1, most) as u32,
        ..base
    }
}

fn derive_checked(password: &[u8], salt: &[u8], params: KdfParams) -> Option<Key> {
    if params.refusal().is_some() {
        return None;
    }
    let scrypt_params =
        scrypt::Params::new(params.n.trailing_zeros() as u8, params.r, params.p, 64).ok()?;
    let mut out = [0u8; 64];
    scrypt::scrypt(password, salt, &scrypt_params, &mut out).ok()?;
    Some(Key::from_kdf_output(&out))
}

/// Writes a new key file protecting `master` with `password`, derived with `params`.
pub fn add(backend: &dyn Backend, master: &Key, password: &str, params: KdfParams) -> Result<Id> {
    let mut salt = [0u8; 64];
    rand::rng().fill_bytes(&mut salt);
    let user_key = derive_checked(password.as_bytes(), &salt, params).ok_or_else(|| {
        Error::Invalid(format!(
            "cannot create a key with {params:?}: {}",
            params.refusal().unwrap_or_default()
        ))
    })?;
    let file = KeyFile {
        created: crate::time::now_rfc3339(),
        username: crate::host::username(),
        hostname: crate::host::hostname(),
        kdf: "scrypt".into(),
        n: params.n,
        r: params.r,
        p: params.p,
        salt: B64.encode(salt),
        data: B64.encode(user_key.seal(&master.to_json())),
    };
    let bytes = serde_json::to_vec(&file).expect("key file JSON");
    let id = Id::hash(&bytes);
    backend.save(FileKind::Key, &id.to_hex(), Payload::Bytes(&bytes))?;
    Ok(id)
}

/// What one key file gave with a password.
enum Tried {
    /// The password opened it.
    Opened(Key),
    /// The password does not open it.
    NotThisOne,
    /// It cannot be used at all; the reason names the file.
    Unusable(String),
}

/// Tries `password` on one key file's bytes.
fn try_key(raw: &[u8], password: &str) -> Tried {
    let file = match serde_json::from_slice::<KeyFile>(raw) {
        Ok(f) => f,
        Err(e) => return Tried::Unusable(format!("not a key file: {e}")),
    };
    if file.kdf != "scrypt" {
        return Tried::Unusable(format!("unknown key derivation {:?}", file.kdf));
    }
    let params = KdfParams {
        n: file.n,
        r: file.r,
        p: file.p,
    };
    if let Some(why) = params.refusal() {
        return Tried::Unusable(why);
    }
    let (Ok(salt), Ok(data)) = (B64.decode(&file.salt), B64.decode(&file.data)) else {
        return Tried::Unusable("salt or data is not base64".into());
    };
    let Some(user_key) = derive_checked(password.as_bytes(), &salt, params) else {
        return Tried::Unusable("scrypt refused its parameters".into());
    };
    match user_key.open(&data).ok().and_then(|p| Key::from_json(&p)) {
        Some(master) => Tried::Opened(master),
        None => Tried::NotThisOne,
    }
}

/// Finds the master key by trying `password` on the key files, at most
/// [`MAX_KEYS_TRIED`] of them as restic does. A key file that cannot be read or used
/// is skipped with a warning naming it. A master key is taken only when `accept`
/// agrees (the caller checks it opens the config): a stray key file protecting another
/// master key under the same password, as a lost race to create the repository
/// leaves, must not shadow the real one.
pub fn open(backend: &dyn Backend, password: &str, accept: &dyn Fn(&Key) -> bool) -> Result<Key> {
    let mut keys = backend.list(FileKind::Key)?;
    keys.sort_by(|a, b| a.name.cmp(&b.name));
    let mut unreachable = None;
    for listed in keys.iter().take(MAX_KEYS_TRIED) {
        let raw = match backend.load(FileKind::Key, &listed.name) {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                tracing::warn!(key = %listed.name, error = %e, "skipping a key file that cannot be read");
                unreachable.get_or_insert(e);
                continue;
            }
        };
        match try_key(&raw, password) {
            Tried::Opened(master) if accept(&master) => return Ok(master),
            Tried::Opened(_) => tracing::warn!(
                key = %listed.name,
                "skipping a key file whose master key does not open this repository's config (left by another init?)"
            ),
            Tried::NotThisOne => {}
            Tried::Unusable(why) => {
                tracing::warn!(key = %listed.name, "skipping unusable key file: {why}")
            }
        }
    }
    // A key that could not be read may be the one: say so rather than "wrong password".
    if let Some(e) = unreachable {
        return Err(e.into());
    }
    if keys.len() > MAX_KEYS_TRIED {
        return Err(Error::WrongPassword {
            location: format!(
                "{} (only the first {MAX_KEYS_TRIED} of {} key files were tried, as restic does)",
                backend.location(),
                keys.len()
            ),
        });
    }
    Err(Error::WrongPassword {
        location: backend.location(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_parameters_are_refused_before_deriving() {
        let ok = |n, r, p| KdfParams { n, r, p }.refusal().is_none();
        assert!(ok(1 << 15, 8, 1));
        assert!(ok(1 << 15, 8, 64));
        assert!(ok(1 << 18, 8, 1)); // 256 MiB
        assert!(ok(2, 1, 1));
        for (n, r, p) in [
            (1u64 << 40, 8, 1),     // the key that aborted the process
            (1 << 19, 8, 1),        // 512 MiB
            (1 << 15, 8, 65),       // too much work
            (1 << 15, u32::MAX, 1), // memory overflow in u64
            (1 << 15, 8, u32::MAX), // work overflow in u64
            (3, 8, 1),              // not a power of two
            (0, 8, 1),
            (1, 8, 1),
            (1 << 15, 0, 1),
            (1 << 15, 8, 0),
        ] {
            assert!(!ok(n, r, p), "N={n} r={r} p={p} accepted");
        }
    }

    #[test]
    fn calibration_picks_the_largest_p_under_the_target() {
        let base = KdfParams::MINIMUM;
        let ms = Duration::from_millis;
        for (once, want) in [
            (ms(170), 2), // this machine, busy
            (ms(100), 5),
            (ms(20), 25),
            (ms(1), 64), // capped: others must be able to open it
            (ms(900), 1),
            (Duration::ZERO, 64),
        ] {
            assert_eq!(calibrated_p(base, once, ms(500)).p, want, "{once:?}");
        }
        assert!(calibrated_p(base, ms(1), ms(500)).refusal().is_none());
    }

    #[test]
    fn unusable_key_files_are_skipped_not_fatal() {
        assert!(matches!(try_key(b"not json", "pw"), Tried::Unusable(_)));
        let file = |n: u64| {
            format!(
                r#"{{"created":"","username":"","hostname":"","kdf":"scrypt","N":{n},"r":8,"p":1,"salt":"AAAA","data":"AAAA"}}"#
            )
        };
        match try_key(file(1 << 40).as_bytes(), "pw") {
            Tried::Unusable(why) => assert!(why.contains("MiB"), "{why}"),
            _ => panic!("a 2^40 key was derived"),
        }
        assert!(matches!(
            try_key(file(1 << 10).as_bytes(), "pw"),
            Tried::NotThisOne
        ));
    }
}

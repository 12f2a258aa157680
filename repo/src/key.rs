//! Key files: password-protected copies of the master key in `keys/`.
//!
//! scrypt turns the password into a key that opens the file's `data`, which
//! is the master key encrypted like any other object. Several key files may
//! exist (one per password); opening tries each.

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

/// scrypt cost for new keys: restic's lower calibration bound, so opening a
/// repository stays fast in short-lived mover Pods.
const NEW_KEY_LOG_N: u8 = 15;
const NEW_KEY_R: u32 = 8;
const NEW_KEY_P: u32 = 1;

fn derive(password: &[u8], salt: &[u8], n: u64, r: u32, p: u32) -> Option<Key> {
    if !n.is_power_of_two() || n < 2 {
        return None;
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p, 64).ok()?;
    let mut out = [0u8; 64];
    scrypt::scrypt(password, salt, &params, &mut out).ok()?;
    Some(Key::from_kdf_output(&out))
}

/// Writes a new key file protecting `master` with `password`.
pub fn add(backend: &dyn Backend, master: &Key, password: &str) -> Result<Id> {
    let mut salt = [0u8; 64];
    rand::rng().fill_bytes(&mut salt);
    let n = 1u64 << NEW_KEY_LOG_N;
    let user_key = derive(password.as_bytes(), &salt, n, NEW_KEY_R, NEW_KEY_P)
        .expect("valid scrypt parameters");
    let file = KeyFile {
        created: crate::time::now_rfc3339(),
        username: crate::host::username(),
        hostname: crate::host::hostname(),
        kdf: "scrypt".into(),
        n,
        r: NEW_KEY_R,
        p: NEW_KEY_P,
        salt: B64.encode(salt),
        data: B64.encode(user_key.seal(&master.to_json())),
    };
    let bytes = serde_json::to_vec(&file).expect("key file JSON");
    let id = Id::hash(&bytes);
    backend.save(FileKind::Key, &id.to_hex(), Payload::Bytes(&bytes))?;
    Ok(id)
}

/// Finds the master key by trying `password` on every key file.
pub fn open(backend: &dyn Backend, password: &str) -> Result<Key> {
    let keys = backend.list(FileKind::Key)?;
    for listed in keys {
        let raw = backend.load(FileKind::Key, &listed.name)?;
        let Ok(file) = serde_json::from_slice::<KeyFile>(&raw) else {
            tracing::warn!(key = %listed.name, "skipping unreadable key file");
            continue;
        };
        if file.kdf != "scrypt" {
            continue;
        }
        let (Ok(salt), Ok(data)) = (B64.decode(&file.salt), B64.decode(&file.data)) else {
            continue;
        };
        let Some(user_key) = derive(password.as_bytes(), &salt, file.n, file.r, file.p) else {
            continue;
        };
        if let Ok(plain) = user_key.open(&data)
            && let Some(master) = Key::from_json(&plain)
        {
            return Ok(master);
        }
    }
    Err(Error::WrongPassword {
        location: backend.location(),
    })
}

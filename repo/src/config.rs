//! The repository's `config` file: format version, repository id and the
//! chunker polynomial every client must share for deduplication to work.

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::Id;
use crate::chunker::Polynomial;

/// The only repository version Sluice writes (v2: compression).
pub const VERSION: u32 = 2;

/// The decrypted `config` file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Config {
    pub version: u32,
    pub id: String,
    pub chunker_polynomial: Polynomial,
}

impl Config {
    /// A new v2 config with a random id and irreducible polynomial.
    pub fn new() -> Config {
        let mut id = [0u8; 32];
        rand::rng().fill_bytes(&mut id);
        Config {
            version: VERSION,
            id: Id(id).to_hex(),
            chunker_polynomial: Polynomial::random_irreducible(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

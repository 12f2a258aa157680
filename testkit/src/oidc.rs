//! A minimal OpenID Connect issuer on 127.0.0.1: a discovery document, a
//! JSON Web Key Set with one RSA key, and RS256-signed ID tokens, for
//! servers that trust web identities (MinIO's STS) to verify.
//!
//! It plays the part a cluster's ServiceAccount issuer plays for IRSA. The
//! key is made and the tokens are signed with the `openssl` CLI, like the
//! rest of the test PKI.

use std::io::{BufRead, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::process::{succeed, succeed_with_input};

/// The key id tokens name in their header and the key set lists.
const KEY_ID: &str = "sluice-test";

/// A running issuer; it stops when dropped.
pub struct OidcIssuer {
    address: SocketAddr,
    key: PathBuf,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<()>>,
}

impl OidcIssuer {
    /// Makes an RSA key in `dir` and starts serving its discovery document
    /// and key set on a free port of 127.0.0.1.
    pub fn start(dir: &Path) -> OidcIssuer {
        let key = dir.join("oidc-key.pem");
        let mut genrsa = Command::new("openssl");
        genrsa
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .arg("-out")
            .arg(&key);
        succeed(genrsa);
        let mut modulus = Command::new("openssl");
        modulus.args(["rsa", "-noout", "-modulus", "-in"]).arg(&key);
        let modulus = succeed(modulus);
        let hex = modulus
            .trim()
            .strip_prefix("Modulus=")
            .unwrap_or_else(|| panic!("openssl printed no modulus: {modulus}"));
        let n = decode_hex(hex);

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1 for the OIDC issuer: {e}"));
        let address = listener.local_addr().expect("local address");
        let issuer = format!("http://{address}");
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/keys"),
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
        .to_string();
        let keys = json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": KEY_ID,
            "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB",
        }]})
        .to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        answer(stream, &discovery, &keys);
                    }
                }
            })
        };
        OidcIssuer {
            address,
            key,
            stop,
            server: Some(server),
        }
    }

    /// The issuer URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The discovery document's URL, which servers are configured with.
    pub fn config_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.url())
    }

    /// An ID token for `subject` and `audience`, valid for `lifetime_secs`
    /// from now (negative: already expired), signed with the issuer's key.
    pub fn token(&self, subject: &str, audience: &str, lifetime_secs: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        self.sign(&json!({
            "iss": self.url(),
            "sub": subject,
            "aud": audience,
            "iat": now,
            "exp": now + lifetime_secs,
        }))
    }

    /// A token with exactly these claims.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": KEY_ID});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut openssl = Command::new("openssl");
        openssl.args(["dgst", "-sha256", "-sign"]).arg(&self.key);
        let signature = succeed_with_input(openssl, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

impl Drop for OidcIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

/// Answers one HTTP/1.1 request for the discovery document or the key set.
fn answer(stream: TcpStream, discovery: &str, keys: &str) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the headers; no request here has a body.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match path {
        "/.well-known/openid-configuration" => ("200 OK", discovery),
        "/keys" => ("200 OK", keys),
        _ => ("404 Not Found", "{}"),
    };
    let mut stream = &stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex modulus"))
        .collect()
}

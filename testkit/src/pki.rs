//! Certificates and keys for the local control plane, made with the
//! `openssl` CLI.
//!
//! One CA signs the API server's serving certificate and the admin client
//! certificate (group `system:masters`), so a single CA file verifies both
//! directions; a separate key pair signs service-account tokens.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths of the generated files, all inside one directory.
#[derive(Clone, Debug)]
pub struct Pki {
    /// CA certificate: trusted by clients for the server and by the server
    /// for clients; handed to Pods as the cluster's root CA.
    pub ca_cert: PathBuf,
    /// Serving certificate of kube-apiserver (127.0.0.1, localhost, the
    /// in-cluster service names).
    pub server_cert: PathBuf,
    /// Key of `server_cert`.
    pub server_key: PathBuf,
    /// Client certificate of the cluster admin (`system:masters`).
    pub admin_cert: PathBuf,
    /// Key of `admin_cert`.
    pub admin_key: PathBuf,
    /// Private key that signs service-account tokens.
    pub service_account_key: PathBuf,
    /// Public half of `service_account_key`, which verifies tokens.
    pub service_account_pub: PathBuf,
}

// Extension profiles for `openssl req -x509 -extensions NAME`.
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
";

impl Pki {
    /// Generates a fresh CA, serving and admin certificates and a
    /// service-account key pair in `dir`.
    pub fn generate(dir: &Path) -> Pki {
        let config = dir.join("openssl.cnf");
        fs::write(&config, OPENSSL_CONFIG)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let pki = Pki {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("apiserver.crt"),
            server_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            service_account_key: dir.join("sa.key"),
            service_account_pub: dir.join("sa.pub"),
        };
        let ca_key = dir.join("ca.key");
        certificate(
            &config,
            "ca",
            "/CN=sluice-e2e-ca",
            None,
            &ca_key,
            &pki.ca_cert,
        );
        let issuer = Some((pki.ca_cert.as_path(), ca_key.as_path()));
        certificate(
            &config,
            "server",
            "/CN=kube-apiserver",
            issuer,
            &pki.server_key,
            &pki.server_cert,
        );
        certificate(
            &config,
            "client",
            "/O=system:masters/CN=sluice-e2e-admin",
            issuer,
            &pki.admin_key,
            &pki.admin_cert,
        );
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            path_str(&pki.service_account_key),
        ]);
        openssl(&[
            "pkey",
            "-in",
            path_str(&pki.service_account_key),
            "-pubout",
            "-out",
            path_str(&pki.service_account_pub),
        ]);
        pki
    }
}

/// A new P-256 key and a certificate for it, self-signed when `issuer` is
/// None, else signed by the issuer's (certificate, key).
fn certificate(
    config: &Path,
    profile: &str,
    subject: &str,
    issuer: Option<(&Path, &Path)>,
    key: &Path,
    cert: &Path,
) {
    let mut args = vec![
        "req",
        "-config",
        path_str(config),
        "-x509",
        "-extensions",
        profile,
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "3650",
        "-subj",
        subject,
        "-keyout",
        path_str(key),
        "-out",
        path_str(cert),
    ];
    if let Some((ca_cert, ca_key)) = issuer {
        args.extend(["-CA", path_str(ca_cert), "-CAkey", path_str(ca_key)]);
    }
    openssl(&args);
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl: {e}: install it (apt-get install openssl)")
        });
    if !output.status.success() {
        panic!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("path {} is not UTF-8: use a UTF-8 TMPDIR", path.display()))
}

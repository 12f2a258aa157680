//! Certificates and keys for the local control plane, made with the
//! `openssl` CLI.
//!
//! One CA signs the API server's serving certificate and the admin client
//! certificate (group `system:masters`), so a single CA file verifies both
//! directions; a separate key pair signs service-account tokens.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths of the generated files, all inside one directory.
#[derive(Clone, Debug)]
pub struct Pki {
    /// CA certificate: trusted by clients for the server and by the server
    /// for clients; handed to Pods as the cluster's root CA.
    pub ca_cert: PathBuf,
    /// Key of `ca_cert`, which signs what [`Pki::issue`] makes.
    pub ca_key: PathBuf,
    /// Serving certificate of kube-apiserver (127.0.0.1, the addresses given
    /// to [`Pki::generate`], localhost, the in-cluster service names).
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
    dir: PathBuf,
}

/// A certificate and its key.
#[derive(Clone, Debug)]
pub struct Credential {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a certificate [`Pki::issue`] makes is for.
#[derive(Clone, Copy, Debug)]
pub enum Usage {
    /// TLS client authentication; the subject names the identity.
    Client,
    /// TLS serving for the given addresses.
    Server,
}

// Extension profiles for `openssl req -x509 -extensions NAME`; the server
// profile's subjectAltName comes from the `SAN` environment variable.
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
subjectAltName = ${ENV::SAN}
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
";

/// Names an API server answers to inside a cluster.
const APISERVER_NAMES: &str = "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local";

impl Pki {
    /// Generates a fresh CA, the API server's serving certificate (for
    /// 127.0.0.1 and `addresses`, such as a test bridge's address and the
    /// `kubernetes` Service's IP), an admin client certificate and a
    /// service-account key pair in `dir`.
    pub fn generate(dir: &Path, addresses: &[IpAddr]) -> Pki {
        let config = dir.join("openssl.cnf");
        fs::write(&config, OPENSSL_CONFIG)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let pki = Pki {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("apiserver.crt"),
            server_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            service_account_key: dir.join("sa.key"),
            service_account_pub: dir.join("sa.pub"),
            dir: dir.to_path_buf(),
        };
        certificate(
            &config,
            "ca",
            "/CN=sluice-e2e-ca",
            "",
            None,
            &pki.ca_key,
            &pki.ca_cert,
        );
        let issuer = Some((pki.ca_cert.as_path(), pki.ca_key.as_path()));
        certificate(
            &config,
            "server",
            "/CN=kube-apiserver",
            &format!("{},{APISERVER_NAMES}", ip_names(addresses)),
            issuer,
            &pki.server_key,
            &pki.server_cert,
        );
        certificate(
            &config,
            "client",
            "/O=system:masters/CN=sluice-e2e-admin",
            "",
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

    /// A certificate `name.crt`/`name.key` signed by the CA: for a client
    /// whose identity is `subject` (e.g. `/O=system:nodes/CN=system:node:n`),
    /// or for a server at 127.0.0.1 and `addresses`.
    pub fn issue(
        &self,
        name: &str,
        usage: Usage,
        subject: &str,
        addresses: &[IpAddr],
    ) -> Credential {
        let credential = Credential {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        };
        let (profile, san) = match usage {
            Usage::Client => ("client", String::new()),
            Usage::Server => ("server", format!("{},DNS:localhost", ip_names(addresses))),
        };
        certificate(
            &self.dir.join("openssl.cnf"),
            profile,
            subject,
            &san,
            Some((&self.ca_cert, &self.ca_key)),
            &credential.key,
            &credential.cert,
        );
        credential
    }
}

/// `IP:127.0.0.1,IP:a,IP:b` for a subjectAltName.
fn ip_names(addresses: &[IpAddr]) -> String {
    std::iter::once(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .chain(addresses.iter().copied())
        .map(|a| format!("IP:{a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A new P-256 key and a certificate for it, self-signed when `issuer` is
/// None, else signed by the issuer's (certificate, key).
fn certificate(
    config: &Path,
    profile: &str,
    subject: &str,
    san: &str,
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
    openssl_with(&args, san);
}

fn openssl(args: &[&str]) {
    openssl_with(args, "");
}

/// Runs openssl with `san` as the server profile's subjectAltName (the
/// config refers to it even in profiles that do not use it).
fn openssl_with(args: &[&str], san: &str) {
    let san = if san.is_empty() { "DNS:unused" } else { san };
    let output = Command::new("openssl")
        .args(args)
        .env("SAN", san)
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

//! The base image of the final stage, assembled from this machine.
//!
//! The Dockerfile builds on `gcr.io/distroless/cc-debian12`: Debian 12's C
//! runtime (glibc and libgcc), CA certificates, the time zone database, and
//! `/etc/passwd` with the `nonroot` user (65532), and nothing else: no
//! shell, no package manager. No registry is reachable here, so `make
//! image` makes the equivalent from this machine's own Debian 12 packages:
//! exactly the shared libraries the binaries load (as the dynamic loader
//! resolves them), the CA bundle of `ca-certificates`, `tzdata`'s
//! `/usr/share/zoneinfo` (schedules name IANA zones), and the same account
//! files. On a machine that is not Debian 12 it refuses, rather than mixing
//! another libc into the image.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::layer::Entry;

/// The bases `make image` can reproduce.
const DISTROLESS_CC: &str = "gcr.io/distroless/cc-debian12";

/// Debian's CA bundle, which rustls' native roots and OpenSSL both read.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The time zone database of Debian's `tzdata`.
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// The unprivileged account of distroless' `nonroot` images.
pub const NONROOT_UID: u32 = 65532;

const PASSWD: &str = "\
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
";

const GROUP: &str = "\
root:x:0:
nobody:x:65534:
nonroot:x:65532:
";

/// Host name lookups from /etc/hosts, then DNS, as distroless sets it.
const NSSWITCH: &str = "hosts: files dns\n";

/// The environment distroless images set.
pub fn env() -> Vec<(String, String)> {
    vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("SSL_CERT_FILE".into(), CA_BUNDLE.into()),
    ]
}

/// The entries of `base` for an image holding `binaries` (host paths).
pub fn entries(base: &str, binaries: &[PathBuf]) -> Result<Vec<Entry>> {
    let name = base.split(':').next().unwrap_or(base);
    if name != DISTROLESS_CC {
        bail!(
            "make image can reproduce the base {DISTROLESS_CC}[:nonroot] only, not {base}: \
             use docker build for another base"
        );
    }
    check_debian_12(&fs::read_to_string("/etc/os-release").unwrap_or_default())?;
    let mut entries = vec![
        Entry::dir("/etc", 0o755),
        Entry::bytes("/etc/passwd", PASSWD, 0o644),
        Entry::bytes("/etc/group", GROUP, 0o644),
        Entry::bytes("/etc/nsswitch.conf", NSSWITCH, 0o644),
        Entry::host_file(CA_BUNDLE, Path::new(CA_BUNDLE), 0o644),
        Entry::dir("/tmp", 0o1777),
        Entry::dir("/home/nonroot", 0o700).owned_by(NONROOT_UID),
        Entry::symlink("/etc/localtime", Path::new("/usr/share/zoneinfo/Etc/UTC")),
    ];
    entries.extend(tree(Path::new(ZONEINFO))?);
    let mut libraries = Vec::new();
    for binary in binaries {
        let output = Command::new("ldd")
            .arg(binary)
            .output()
            .context("cannot run ldd to find the binaries' shared libraries")?;
        let text = String::from_utf8_lossy(&output.stdout);
        for library in
            shared_libraries(&text).with_context(|| format!("ldd {}", binary.display()))?
        {
            if !libraries.contains(&library) {
                libraries.push(library);
            }
        }
    }
    for library in libraries {
        // The image keeps the path the loader looks for; the content is
        // that of the file the host path resolves to.
        let resolved =
            fs::canonicalize(&library).with_context(|| format!("cannot resolve {library}"))?;
        entries.push(Entry::host_file(&library, &resolved, 0o755));
    }
    Ok(entries)
}

/// The files, directories and symlinks below `root`, at the same paths.
fn tree(root: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let listing =
            fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in listing {
            let path = entry?.path();
            let image_path = path.to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_symlink() {
                out.push(Entry::symlink(&image_path, &fs::read_link(&path)?));
            } else if meta.is_dir() {
                out.push(Entry::dir(&image_path, 0o755));
                stack.push(path);
            } else {
                out.push(Entry::host_file(&image_path, &path, 0o644));
            }
        }
    }
    Ok(out)
}

/// Refuses any machine other than Debian 12, whose packages the base is
/// made of.
fn check_debian_12(os_release: &str) -> Result<()> {
    let field = |key: &str| {
        os_release.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .map(|v| v.trim_matches('"').to_string())
        })
    };
    match (field("ID").as_deref(), field("VERSION_ID").as_deref()) {
        (Some("debian"), Some("12")) => Ok(()),
        (id, version) => bail!(
            "the base {DISTROLESS_CC} is Debian 12's runtime, which make image takes from this \
             machine's packages, but this machine is {} {}: run make image on Debian 12, or use \
             docker build",
            id.unwrap_or("unknown"),
            version.unwrap_or("")
        ),
    }
}

/// The libraries in `ldd` output, loader included; the kernel's vDSO is
/// not a file. A library ldd cannot find is an error.
fn shared_libraries(ldd: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for line in ldd.lines().map(str::trim) {
        if line.contains("not a dynamic executable") || line.starts_with("statically linked") {
            return Ok(Vec::new());
        }
        if line.contains("=> not found") {
            bail!("a library is missing on this machine: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, resolved)) => resolved.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            out.push(path.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_libraries_and_the_loader_in_ldd_output() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffc)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n";
        assert_eq!(
            shared_libraries(ldd).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
        assert!(
            shared_libraries("\tnot a dynamic executable\n")
                .unwrap()
                .is_empty()
        );
        assert!(shared_libraries("\tlibfoo.so => not found\n").is_err());
    }

    #[test]
    fn the_base_has_certificates_zones_and_the_nonroot_user() {
        let entries = entries("gcr.io/distroless/cc-debian12:nonroot", &[]).unwrap();
        let has = |path: &str| entries.iter().any(|e| e.path == path);
        for path in [
            CA_BUNDLE,
            "/usr/share/zoneinfo/Europe/Berlin",
            "/etc/passwd",
            "/etc/localtime",
            "/tmp",
        ] {
            assert!(has(path), "{path} is missing from the base");
        }
        let home = entries.iter().find(|e| e.path == "/home/nonroot").unwrap();
        assert_eq!(home.uid, NONROOT_UID);
    }

    #[test]
    fn only_debian_12_supplies_the_base() {
        assert!(check_debian_12("ID=debian\nVERSION_ID=\"12\"\n").is_ok());
        let error = check_debian_12("ID=ubuntu\nVERSION_ID=\"24.04\"\n").unwrap_err();
        assert!(error.to_string().contains("ubuntu 24.04"), "{error}");
        assert!(entries("alpine:3", &[]).is_err());
    }
}

//! Which repository a sync uses, as one key: the `RESTIC_REPOSITORY` of its Secret, normalised,
//! so that every source and destination writing into the same repository shares one queue
//! ([`crate::queue`]) however its Secret spells the URL.
//!
//! The key is shown in conditions and metrics, so it never carries credentials: a user and
//! password in the URL (`rest:https://user:secret@host/`) are dropped, as is anything after
//! `?` or `#`. Only the URL is read; passwords and keys never reach this module.

/// The normalised repository URL of `RESTIC_REPOSITORY` `url`: backend prefix and host in lower
/// case, credentials, query and trailing slashes removed, `s3.amazonaws.com` the same with or
/// without `https://`. A local path stays a path.
pub fn key(url: &str) -> String {
    let url = url.trim();
    let Some((backend, rest)) = split_backend(url) else {
        return trim_path(url).to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    match rest.split_once("://") {
        Some((scheme, location)) => {
            let location = without_userinfo(location);
            let (host, path) = location.split_once('/').unwrap_or((location, ""));
            let host = host.to_ascii_lowercase();
            let path = trim_path(path);
            let scheme = scheme.to_ascii_lowercase();
            let joined = if path.is_empty() {
                host
            } else {
                format!("{host}/{path}")
            };
            if backend == "s3" && scheme == "https" && joined.starts_with("s3.amazonaws.com/") {
                // restic reads `s3:s3.amazonaws.com/bucket` as https.
                format!("s3:{joined}")
            } else {
                format!("{backend}:{scheme}://{joined}")
            }
        }
        None => {
            let location = without_userinfo(rest);
            format!("{backend}:{}", trim_path(location))
        }
    }
}

/// `s3`, `rest`, `b2`, `azure`, `gs`, `sftp`, `swift`, `rclone` and what follows the colon; `None`
/// for a local path.
fn split_backend(url: &str) -> Option<(String, &str)> {
    let (backend, rest) = url.split_once(':')?;
    let known = [
        "s3", "rest", "b2", "azure", "gs", "sftp", "swift", "rclone", "local",
    ];
    let backend = backend.to_ascii_lowercase();
    known.contains(&backend.as_str()).then_some((backend, rest))
}

/// `location` without a `user[:password]@` before its host.
fn without_userinfo(location: &str) -> &str {
    let host_end = location.find('/').unwrap_or(location.len());
    match location[..host_end].rfind('@') {
        Some(at) => &location[at + 1..],
        None => location,
    }
}

fn trim_path(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() && path.starts_with('/') {
        "/"
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn spellings_of_one_repository_share_a_key() {
        let cases = [
            (
                "s3:http://minio.storage:9000/backups",
                "s3:http://minio.storage:9000/backups",
            ),
            (
                "S3:HTTP://MinIO.Storage:9000/backups/",
                "s3:http://minio.storage:9000/backups",
            ),
            (
                " s3:http://minio.storage:9000/backups// ",
                "s3:http://minio.storage:9000/backups",
            ),
            (
                "s3:https://s3.amazonaws.com/bucket/prefix",
                "s3:s3.amazonaws.com/bucket/prefix",
            ),
            (
                "s3:s3.amazonaws.com/bucket/prefix/",
                "s3:s3.amazonaws.com/bucket/prefix",
            ),
            ("/srv/restic/", "/srv/restic"),
            ("/", "/"),
            ("local:/srv/restic/", "local:/srv/restic"),
            ("b2:bucket:path/", "b2:bucket:path"),
            ("azure:container:/path", "azure:container:/path"),
            ("gs:bucket:/path/", "gs:bucket:/path"),
        ];
        for (url, expected) in cases {
            assert_eq!(key(url), expected, "{url}");
        }
    }

    #[test]
    fn the_path_keeps_its_case_so_two_buckets_stay_two() {
        assert_ne!(
            key("s3:http://minio:9000/Backups"),
            key("s3:http://minio:9000/backups")
        );
        assert_ne!(
            key("s3:http://minio:9000/backups/a"),
            key("s3:http://minio:9000/backups/b")
        );
    }

    #[test]
    fn credentials_never_reach_the_key() {
        let cases = [
            (
                "rest:https://user:s3cr3t@backup.example:8000/repo/",
                "rest:https://backup.example:8000/repo",
            ),
            (
                "rest:http://only-user@backup.example/",
                "rest:http://backup.example",
            ),
            ("sftp:backup@host:/srv/repo", "sftp:host:/srv/repo"),
            (
                "s3:http://minio:9000/bucket?AWSAccessKeyId=AKIA&Signature=x",
                "s3:http://minio:9000/bucket",
            ),
            (
                "rest:https://user:p@ss@host/repo#frag",
                "rest:https://host/repo",
            ),
        ];
        for (url, expected) in cases {
            let found = key(url);
            assert_eq!(found, expected, "{url}");
            for secret in ["s3cr3t", "only-user", "AKIA", "Signature", "p@ss"] {
                assert!(!found.contains(secret), "{url} -> {found}");
            }
        }
    }
}

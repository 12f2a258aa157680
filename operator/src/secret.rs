//! The repository Secret: checked before any Job exists, so a typo is a clear condition rather
//! than a mover Pod stuck in `CreateContainerConfigError`.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;

use crate::{decide::SecretSeen, repository};

/// How often an object blocked on a failure retrying cannot fix (wrong password, missing keys)
/// reads its repository Secret again, so fixing the Secret unblocks it within this time.
/// Polling one Secret needs only `get`; a watch would need `list` on every Secret in the cluster.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Keys the mover cannot start without.
pub const REQUIRED_KEYS: [&str; 2] = ["RESTIC_REPOSITORY", "RESTIC_PASSWORD"];

/// The required keys `secret` lacks (or holds empty).
pub fn missing_keys(secret: &Secret) -> Vec<&'static str> {
    REQUIRED_KEYS
        .into_iter()
        .filter(|key| {
            let in_data = secret
                .data
                .as_ref()
                .and_then(|data| data.get(*key))
                .is_some_and(|value| !value.0.is_empty());
            let in_string_data = secret
                .string_data
                .as_ref()
                .and_then(|data| data.get(*key))
                .is_some_and(|value| !value.is_empty());
            !in_data && !in_string_data
        })
        .collect()
}

/// The one-line message of an unusable Secret.
pub fn invalid_message(namespace: &str, name: &str, missing: &[&str]) -> String {
    if missing.is_empty() {
        format!(
            "repository Secret {namespace}/{name} not found; create it with RESTIC_REPOSITORY and RESTIC_PASSWORD"
        )
    } else {
        format!(
            "repository Secret {namespace}/{name} lacks {}; add the key(s) to the Secret",
            missing.join(" and ")
        )
    }
}

/// What deciding needs of the repository Secret `namespace/name`, found or not.
pub fn seen(namespace: &str, name: &str, secret: Option<&Secret>) -> SecretSeen {
    let unusable = match secret {
        None => Some(invalid_message(namespace, name, &[])),
        Some(secret) => {
            let missing = missing_keys(secret);
            (!missing.is_empty()).then(|| invalid_message(namespace, name, &missing))
        }
    };
    SecretSeen {
        modified: secret.and_then(last_modified),
        unusable,
        repository: secret
            .and_then(|secret| value(secret, "RESTIC_REPOSITORY"))
            .map(|url| repository::key(&url)),
    }
}

/// The value of `key` in `secret`, from `data` or `stringData`; `None` when absent or not UTF-8.
fn value(secret: &Secret, key: &str) -> Option<String> {
    let data = secret.data.as_ref().and_then(|data| data.get(key));
    let from_data = data.and_then(|bytes| String::from_utf8(bytes.0.clone()).ok());
    from_data.or_else(|| secret.string_data.as_ref()?.get(key).cloned())
}

/// When the Secret was last written, from its managed fields: a Secret edited after a
/// non-retryable failure is worth another try.
pub fn last_modified(secret: &Secret) -> Option<Timestamp> {
    let created = secret
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|time| time.0);
    let updates = secret
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|field| field.time.as_ref().map(|time| time.0));
    created.into_iter().chain(updates).max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    #[test]
    fn reports_each_missing_or_empty_key() {
        let mut secret = Secret::default();
        assert_eq!(missing_keys(&secret), REQUIRED_KEYS);
        secret.data = Some(BTreeMap::from([
            (
                "RESTIC_REPOSITORY".to_string(),
                ByteString(b"s3:http://minio/b".to_vec()),
            ),
            ("RESTIC_PASSWORD".to_string(), ByteString(Vec::new())),
        ]));
        assert_eq!(missing_keys(&secret), ["RESTIC_PASSWORD"]);
        secret.string_data = Some(BTreeMap::from([(
            "RESTIC_PASSWORD".to_string(),
            "pw".to_string(),
        )]));
        assert!(missing_keys(&secret).is_empty());
        let message = invalid_message("apps", "repo", &["RESTIC_PASSWORD"]);
        assert_eq!(
            message,
            "repository Secret apps/repo lacks RESTIC_PASSWORD; add the key(s) to the Secret"
        );
    }

    #[test]
    fn seen_says_why_a_secret_is_unusable_and_when_it_changed() {
        let missing = seen("apps", "repo", None);
        assert_eq!(missing.modified, None);
        assert!(missing.unusable.unwrap().contains("apps/repo not found"));
        let created: Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        let mut secret = Secret::default();
        secret.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created),
        );
        let lacking = seen("apps", "repo", Some(&secret));
        assert_eq!(lacking.modified, Some(created));
        assert!(
            lacking
                .unusable
                .unwrap()
                .contains("lacks RESTIC_REPOSITORY and RESTIC_PASSWORD")
        );
        secret.string_data = Some(BTreeMap::from(
            REQUIRED_KEYS.map(|key| (key.to_string(), "x".to_string())),
        ));
        assert_eq!(seen("apps", "repo", Some(&secret)).unusable, None);
    }

    #[test]
    fn seen_keys_the_repository_without_its_credentials() {
        let secret = Secret {
            data: Some(BTreeMap::from([(
                "RESTIC_REPOSITORY".to_string(),
                ByteString(b"rest:https://user:pw@Backup.Example/repo/".to_vec()),
            )])),
            ..Default::default()
        };
        assert_eq!(
            seen("apps", "repo", Some(&secret)).repository.as_deref(),
            Some("rest:https://backup.example/repo")
        );
        assert_eq!(seen("apps", "repo", None).repository, None);
    }
}

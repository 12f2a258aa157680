//! Sluice's own writes that its watches have not delivered yet.
//!
//! A reconcile reads the objects it works on from watch caches, and a watch lags the writes
//! that cause it: under load by seconds. Two reconciles in a row then disagreed with
//! themselves. One woken by a Job event read its object from before its own last status
//! write, decided a status from it and was refused as stale (409), a quarter of all status
//! applies at 5,000 sources (bench/operator.md). One woken by its own status write found no
//! Job in the Jobs cache yet and created it again (409 and a `GET`).
//!
//! [`Unseen`] holds each object as the API server returned it from Sluice's write (a status
//! apply, a create) until the watch delivers that version or a later one. A reconcile reads
//! whichever is newer: the cache or the write. Newer is decided by comparing resource versions
//! as KEP-5504 defines them, which Kubernetes made a stable guarantee in v1.35 and which every
//! etcd-backed API server before it already satisfied. A version that is not a decimal number
//! (an aggregated API, a non-etcd store) is never taken as newer, so the cache is read, as
//! without this module.

use std::{
    cmp::Ordering,
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use kube::{Resource, runtime::reflector::ObjectRef};

/// How long a write is held without its watch delivering it. A watch that lags longer, or
/// restarted and missed the object's deletion, falls back to reading the cache alone.
pub const HELD_AT_MOST: Duration = Duration::from_secs(120);

/// Objects of kind `K` as Sluice last wrote them, until their watch shows them.
pub struct Unseen<K: Resource<DynamicType = ()>> {
    written: Mutex<HashMap<ObjectRef<K>, Written<K>>>,
}

struct Written<K> {
    object: Arc<K>,
    at: Instant,
}

impl<K: Resource<DynamicType = ()>> Default for Unseen<K> {
    fn default() -> Self {
        Self {
            written: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Unseen<K> {
    /// Remembers `object` as the API server returned it from Sluice's write.
    pub fn wrote(&self, object: K) {
        self.wrote_at(object, Instant::now());
    }

    fn wrote_at(&self, object: K, now: Instant) {
        let reference = ObjectRef::from_obj(&object);
        let mut written = self.lock();
        written.retain(|_, held| now.duration_since(held.at) < HELD_AT_MOST);
        written.insert(
            reference,
            Written {
                object: Arc::new(object),
                at: now,
            },
        );
    }

    /// The newer of `cached`, what the watch holds of `reference`, and Sluice's own write of
    /// it.
    pub fn newest(&self, reference: &ObjectRef<K>, cached: Option<Arc<K>>) -> Option<Arc<K>> {
        self.newest_at(reference, cached, Instant::now())
    }

    fn newest_at(
        &self,
        reference: &ObjectRef<K>,
        cached: Option<Arc<K>>,
        now: Instant,
    ) -> Option<Arc<K>> {
        let written = self.lock();
        let Some(held) = written.get(reference) else {
            return cached;
        };
        let cached_version = cached.as_deref().map(version);
        if reads_write(
            version(held.object.as_ref()),
            cached_version,
            now.duration_since(held.at),
        ) {
            Some(held.object.clone())
        } else {
            cached
        }
    }

    /// The watch delivered `object`: a write it has caught up with is no longer held.
    pub fn seen(&self, object: &K) {
        let reference = ObjectRef::from_obj(object);
        let mut written = self.lock();
        let caught_up = written.get(&reference).is_some_and(|held| {
            compare_versions(version(object), version(held.object.as_ref()))
                .is_some_and(Ordering::is_ge)
        });
        if caught_up {
            written.remove(&reference);
        }
    }

    /// Drops what is held of `reference`: Sluice deleted it, or a write was refused as stale.
    pub fn forget(&self, reference: &ObjectRef<K>) {
        self.lock().remove(reference);
    }

    /// How many writes are held (for tests: the map is private).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// A panic while holding the map left it consistent (every change is one call).
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<K>, Written<K>>> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn version<K: Resource>(object: &K) -> &str {
    object.meta().resource_version.as_deref().unwrap_or("")
}

/// Whether a reconcile reads Sluice's write, at `written` and `age` old, over the cache's copy
/// at `cached` (`None`: the cache does not hold the object, as after a create).
fn reads_write(written: &str, cached: Option<&str>, age: Duration) -> bool {
    if age >= HELD_AT_MOST {
        return false;
    }
    match cached {
        None => true,
        Some(cached) => compare_versions(written, cached) == Some(Ordering::Greater),
    }
}

/// How two resource versions of objects of one kind compare (KEP-5504): decimal numbers
/// without leading zeros, the longer being larger; `None` when either is not such a number.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    let comparable =
        |v: &str| !v.is_empty() && !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit());
    (comparable(a) && comparable(b)).then(|| a.len().cmp(&b.len()).then_with(|| a.cmp(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::Job;
    use kube::api::ObjectMeta;

    #[test]
    fn resource_versions_compare_as_kep_5504_defines() {
        use Ordering::*;
        for (a, b, expected) in [
            ("9", "10", Some(Less)),
            ("10", "9", Some(Greater)),
            ("123", "123", Some(Equal)),
            ("1000000000000", "999999999999", Some(Greater)),
            ("124", "123", Some(Greater)),
            ("", "1", None),
            ("01", "1", None),
            ("0", "1", None),
            ("12a", "1", None),
            ("1", "opaque", None),
        ] {
            assert_eq!(compare_versions(a, b), expected, "{a} vs {b}");
        }
    }

    #[test]
    fn a_write_is_read_only_while_newer_than_the_cache_and_young() {
        let young = Duration::from_secs(1);
        for (written, cached, age, expected) in [
            ("12", None, young, true),
            ("12", Some("11"), young, true),
            ("12", Some("12"), young, false),
            ("12", Some("13"), young, false),
            ("12", Some("opaque"), young, false),
            ("opaque", None, young, true),
            ("12", Some("11"), HELD_AT_MOST, false),
            ("12", None, HELD_AT_MOST, false),
        ] {
            assert_eq!(
                reads_write(written, cached, age),
                expected,
                "write {written}, cache {cached:?}, {age:?} old"
            );
        }
    }

    fn job(name: &str, version: &str) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("apps".into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn version_of(object: Option<Arc<Job>>) -> Option<String> {
        object.and_then(|o| o.metadata.resource_version.clone())
    }

    #[test]
    fn a_write_is_held_until_the_watch_delivers_it_or_a_later_version() {
        let unseen = Unseen::default();
        let reference = ObjectRef::from_obj(&job("a", "1"));
        unseen.wrote(job("a", "12"));
        let read =
            |cached: &str| version_of(unseen.newest(&reference, Some(Arc::new(job("a", cached)))));
        assert_eq!(
            read("11").as_deref(),
            Some("12"),
            "a cache behind the write"
        );
        assert_eq!(
            version_of(unseen.newest(&reference, None)).as_deref(),
            Some("12")
        );
        unseen.seen(&job("a", "11"));
        assert_eq!(unseen.len(), 1, "an older version does not catch up");
        unseen.seen(&job("a", "13"));
        assert_eq!(unseen.len(), 0, "a later version does");
        assert_eq!(read("11").as_deref(), Some("11"));
    }

    #[test]
    fn forgotten_and_old_writes_are_not_read() {
        let unseen = Unseen::default();
        let reference = ObjectRef::from_obj(&job("a", "1"));
        let start = Instant::now();
        unseen.wrote_at(job("a", "12"), start);
        unseen.forget(&reference);
        assert_eq!(unseen.newest(&reference, None), None);
        unseen.wrote_at(job("a", "12"), start);
        let later = start + HELD_AT_MOST;
        assert_eq!(unseen.newest_at(&reference, None, later), None);
        unseen.wrote_at(job("b", "14"), later);
        assert_eq!(unseen.len(), 1, "a write swept the one held too long");
    }
}

//! `sluice-operator convert-volsync`: translate VolSync restic manifests into Sluice's.
//!
//! Migration is meant to be a mechanical edit of a GitOps repository: feed the files in, commit
//! what comes out. The conversion walks each VolSync object field by field, removing what it
//! carries over; whatever is left is reported, so nothing is dropped silently. Documents of other
//! kinds (the repository Secret, the application) pass through unchanged, so a whole file can be
//! converted in one go.

use std::{
    fmt,
    io::{Read, Write},
    path::PathBuf,
    process::ExitCode,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sluice_api::{
    CopyMethod, DestinationCopyMethod, MoverConfig, OnMissingSnapshot, ReplicationDestination,
    ReplicationDestinationSpec, ReplicationSource, ReplicationSourceSpec, ResticDestinationSpec,
    ResticSourceSpec, RetainPolicy, Trigger,
};

/// VolSync records every restic snapshot under this host name.
const VOLSYNC_HOSTNAME: &str = "volsync";

/// Arguments of `convert-volsync`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// VolSync YAML files (multi-document) to convert; none or `-` reads standard input.
    pub files: Vec<PathBuf>,
}

/// Runs the subcommand: converted YAML on stdout, one line per field not carried over on
/// stderr. Fails when an input cannot be read or an object cannot be converted.
pub fn run(args: Args) -> ExitCode {
    let mut inputs = Vec::new();
    if args.files.is_empty() || args.files.iter().any(|f| f.as_os_str() == "-") {
        let mut text = String::new();
        if let Err(err) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("convert-volsync: cannot read standard input: {err}");
            return ExitCode::FAILURE;
        }
        inputs.push(("<stdin>".to_owned(), text));
    }
    for file in args.files.iter().filter(|f| f.as_os_str() != "-") {
        match std::fs::read_to_string(file) {
            Ok(text) => inputs.push((file.display().to_string(), text)),
            Err(err) => {
                eprintln!("convert-volsync: cannot read {}: {err}", file.display());
                return ExitCode::FAILURE;
            }
        }
    }

    let mut documents = Vec::new();
    let mut failed = false;
    for (name, text) in inputs {
        match convert(&text) {
            Ok(conversion) => {
                for note in &conversion.notes {
                    eprintln!("{name}: {note}");
                }
                failed |= conversion
                    .notes
                    .iter()
                    .any(|n| n.severity == Severity::NotConverted);
                documents.extend(conversion.documents);
            }
            Err(err) => {
                eprintln!("convert-volsync: {name} is not valid YAML: {err}");
                failed = true;
            }
        }
    }
    if let Err(err) = std::io::stdout().write_all(documents.join("---\n").as_bytes()) {
        eprintln!("convert-volsync: cannot write standard output: {err}");
        return ExitCode::FAILURE;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The output of converting one multi-document input.
#[derive(Debug)]
pub struct Conversion {
    /// YAML documents, in input order: converted objects and passed-through ones.
    pub documents: Vec<String>,
    /// What was not carried over, or not converted at all.
    pub notes: Vec<Note>,
}

/// One remark about the conversion of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// `Kind namespace/name` of the object.
    pub object: String,
    /// Path of the field concerned (`spec.restic.cacheCapacity`), empty for the whole object.
    pub field: String,
    /// What happened and why.
    pub text: String,
    /// Whether the object still converted.
    pub severity: Severity,
}

/// How much a [`Note`] matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The field was dropped or changed; the object converted.
    Dropped,
    /// Worth knowing, nothing lost.
    Info,
    /// The object was not converted and is missing from the output.
    NotConverted,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Dropped => "not carried over",
            Severity::Info => "note",
            Severity::NotConverted => "not converted",
        };
        if self.field.is_empty() {
            write!(f, "{}: {label}: {}", self.object, self.text)
        } else {
            write!(f, "{}: {} {label}: {}", self.object, self.field, self.text)
        }
    }
}

/// The input of `convert-volsync` is not YAML; nothing of it converts.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct NotYaml(#[from] serde_saphyr::Error);

/// Why one VolSync object is not converted (the others still are); the text of its
/// [`Severity::NotConverted`] note.
#[derive(Debug, thiserror::Error)]
enum Unconvertible {
    #[error("VolSync kind {0} has no Sluice equivalent")]
    Kind(String),
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("uses VolSync's {0} mover; Sluice converts only the restic mover")]
    OtherMover(&'static str),
    #[error("spec.restic is missing; Sluice converts only the restic mover")]
    NoRestic,
    #[error("{path} is not an object: {value}")]
    NotAnObject { path: String, value: Value },
    #[error("{field}: {source}")]
    Invalid {
        field: String,
        source: serde_json::Error,
    },
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
}

/// Converts every VolSync restic ReplicationSource and ReplicationDestination in a multi-document
/// YAML text; other documents pass through. Fails only when the text is not YAML.
pub fn convert(input: &str) -> Result<Conversion, NotYaml> {
    let values: Vec<Value> = serde_saphyr::from_multiple(input)?;
    let mut conversion = Conversion {
        documents: Vec::new(),
        notes: Vec::new(),
    };
    for value in values.into_iter().filter(|v| !v.is_null()) {
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        let is_volsync = value["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("volsync.backube/"));
        let mut notes = Notes::new(&value);
        let yaml = match (is_volsync, kind.as_str()) {
            (true, "ReplicationSource") => {
                convert_source(value, &mut notes).and_then(|s| Ok(serde_saphyr::to_string(&s)?))
            }
            (true, "ReplicationDestination") => convert_destination(value, &mut notes)
                .and_then(|d| Ok(serde_saphyr::to_string(&d)?)),
            (true, _) => Err(Unconvertible::Kind(kind)),
            (false, _) => serde_saphyr::to_string(&value).map_err(Unconvertible::from),
        };
        match yaml {
            Ok(yaml) => conversion.documents.push(yaml),
            Err(reason) => notes.push("", Severity::NotConverted, reason.to_string()),
        }
        conversion.notes.extend(notes.notes);
    }
    Ok(conversion)
}

fn convert_source(mut value: Value, notes: &mut Notes) -> Result<ReplicationSource, Unconvertible> {
    let mut spec = Fields::new("spec", value["spec"].take())?;
    let source_pvc: String = spec
        .take("sourcePVC")?
        .ok_or(Unconvertible::Missing("spec.sourcePVC"))?;
    let trigger = convert_trigger(&mut spec, notes)?;
    let paused = spec.take("paused")?.unwrap_or(false);
    let mut restic = restic_fields(&mut spec)?;

    let copy_method = match restic.take::<String>("copyMethod")?.as_deref() {
        Some("Snapshot") => CopyMethod::Snapshot,
        Some("Clone") => CopyMethod::Clone,
        Some("Direct" | "None") => CopyMethod::Direct,
        other => {
            notes.push(
                "spec.restic.copyMethod",
                Severity::Dropped,
                format!("{other:?} is not a VolSync copy method; using Snapshot"),
            );
            CopyMethod::Snapshot
        }
    };
    let retain = convert_retain(&mut restic, notes)?;
    let custom_ca = convert_custom_ca(&mut restic, notes)?;
    let mut converted = ResticSourceSpec {
        repository: restic
            .take("repository")?
            .ok_or(Unconvertible::Missing("spec.restic.repository"))?,
        copy_method,
        retain,
        prune_interval_days: restic.take("pruneIntervalDays")?,
        check_interval_days: None,
        capacity: restic.take("capacity")?,
        storage_class_name: restic.take("storageClassName")?,
        access_modes: restic.take("accessModes")?,
        volume_snapshot_class_name: restic.take("volumeSnapshotClassName")?,
        custom_ca,
        unlock: restic.take("unlock")?,
        exclude: Vec::new(),
        tags: Vec::new(),
        hostname: Some(VOLSYNC_HOSTNAME.to_owned()),
        mover: convert_mover(&mut restic)?,
    };
    if converted.prune_interval_days.is_some_and(|days| days < 1) {
        converted.prune_interval_days = None;
        notes.push(
            "spec.restic.pruneIntervalDays",
            Severity::Dropped,
            "must be at least 1; Sluice's default (7) applies",
        );
    }
    notes.push(
        "spec.restic.hostname",
        Severity::Info,
        "set to \"volsync\", the host VolSync records snapshots under, so retention and the parent snapshot continue the VolSync history",
    );
    restic.finish(notes);
    spec.finish(notes);

    let mut source = ReplicationSource::new(
        &name(&value)?,
        ReplicationSourceSpec {
            source_pvc,
            trigger,
            paused,
            restic: converted,
        },
    );
    copy_metadata(&mut value, &mut source.metadata)?;
    Ok(source)
}

fn convert_destination(
    mut value: Value,
    notes: &mut Notes,
) -> Result<ReplicationDestination, Unconvertible> {
    let mut spec = Fields::new("spec", value["spec"].take())?;
    let trigger = convert_trigger(&mut spec, notes)?;
    let paused = spec.take("paused")?.unwrap_or(false);
    let mut restic = restic_fields(&mut spec)?;

    let destination_pvc: Option<String> = restic.take("destinationPVC")?;
    let copy_method = match restic.take::<String>("copyMethod")?.as_deref() {
        Some("Snapshot") => DestinationCopyMethod::Snapshot,
        Some("Direct" | "None") => DestinationCopyMethod::Direct,
        other => {
            notes.push(
                "spec.restic.copyMethod",
                Severity::Dropped,
                format!("{other:?} is not possible on a ReplicationDestination; using Snapshot"),
            );
            DestinationCopyMethod::Snapshot
        }
    };
    let custom_ca = convert_custom_ca(&mut restic, notes)?;
    let converted = ResticDestinationSpec {
        repository: restic
            .take("repository")?
            .ok_or(Unconvertible::Missing("spec.restic.repository"))?,
        copy_method,
        destination_pvc,
        capacity: restic.take("capacity")?,
        access_modes: restic.take("accessModes")?,
        storage_class_name: restic.take("storageClassName")?,
        volume_snapshot_class_name: restic.take("volumeSnapshotClassName")?,
        volume_mode: None,
        restore_as_of: restic.take("restoreAsOf")?,
        previous: restic.take("previous")?,
        enable_file_deletion: restic.take("enableFileDeletion")?.unwrap_or(false),
        on_missing_snapshot: OnMissingSnapshot::Fail,
        hostname: None,
        custom_ca,
        mover: convert_mover(&mut restic)?,
    };
    if converted.destination_pvc.is_none()
        && (converted.capacity.is_none() || converted.access_modes.is_none())
    {
        notes.push(
            "spec.restic.capacity",
            Severity::Info,
            "Sluice requires capacity and accessModes when destinationPVC is not set; add them before applying",
        );
    }
    restic.finish(notes);
    spec.finish(notes);

    let mut destination = ReplicationDestination::new(
        &name(&value)?,
        ReplicationDestinationSpec {
            trigger,
            paused,
            restic: converted,
        },
    );
    copy_metadata(&mut value, &mut destination.metadata)?;
    Ok(destination)
}

/// Takes `spec.restic`, refusing objects that use another VolSync mover.
fn restic_fields(spec: &mut Fields) -> Result<Fields, Unconvertible> {
    for mover in [
        "rsync",
        "rsyncTLS",
        "rclone",
        "syncthing",
        "kopia",
        "external",
    ] {
        if spec.fields.get(mover).is_some_and(|v| !v.is_null()) {
            return Err(Unconvertible::OtherMover(mover));
        }
    }
    let restic = spec.fields.remove("restic").unwrap_or(Value::Null);
    if restic.is_null() {
        return Err(Unconvertible::NoRestic);
    }
    Fields::new("spec.restic", restic)
}

fn convert_trigger(spec: &mut Fields, notes: &mut Notes) -> Result<Option<Trigger>, Unconvertible> {
    let Some(value) = spec.fields.remove("trigger").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let mut fields = Fields::new("spec.trigger", value)?;
    let trigger = Trigger {
        schedule: fields.take("schedule")?,
        manual: fields.take("manual")?,
        time_zone: None,
        jitter: None,
    };
    fields.finish(notes);
    Ok(Some(trigger))
}

fn convert_retain(
    restic: &mut Fields,
    notes: &mut Notes,
) -> Result<Option<RetainPolicy>, Unconvertible> {
    let Some(value) = restic.fields.remove("retain").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let mut fields = Fields::new("spec.restic.retain", value)?;
    let mut count = |key: &str, notes: &mut Notes| -> Result<Option<i32>, Unconvertible> {
        let n: Option<i32> = fields.take(key)?;
        if n.is_some_and(|n| n < 1) {
            notes.push(
                &format!("spec.restic.retain.{key}"),
                Severity::Dropped,
                "keeps nothing in restic; Sluice requires at least 1, so the rule is left out",
            );
            return Ok(None);
        }
        Ok(n)
    };
    let mut retain = RetainPolicy {
        last: count("last", notes)?,
        hourly: count("hourly", notes)?,
        daily: count("daily", notes)?,
        weekly: count("weekly", notes)?,
        monthly: count("monthly", notes)?,
        yearly: count("yearly", notes)?,
        within: None,
    };
    retain.within = fields.take("within")?;
    fields.finish(notes);
    Ok((retain != RetainPolicy::default()).then_some(retain))
}

fn convert_custom_ca(
    restic: &mut Fields,
    notes: &mut Notes,
) -> Result<Option<sluice_api::CustomCa>, Unconvertible> {
    let Some(value) = restic.fields.remove("customCA").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let mut fields = Fields::new("spec.restic.customCA", value)?;
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let secret_name = non_empty(fields.take("secretName")?);
    let config_map_name = non_empty(fields.take("configMapName")?);
    let key = non_empty(fields.take("key")?);
    fields.finish(notes);
    // `kubectl get` shows VolSync's unset customCA as `{}`.
    if secret_name.is_none() && config_map_name.is_none() && key.is_none() {
        return Ok(None);
    }
    match (secret_name.is_some() != config_map_name.is_some(), key) {
        (true, Some(key)) => Ok(Some(sluice_api::CustomCa {
            secret_name,
            config_map_name,
            key,
        })),
        _ => {
            notes.push(
                "spec.restic.customCA",
                Severity::Dropped,
                "needs a key and exactly one of secretName or configMapName",
            );
            Ok(None)
        }
    }
}

fn convert_mover(restic: &mut Fields) -> Result<MoverConfig, Unconvertible> {
    Ok(MoverConfig {
        mover_security_context: restic.take("moverSecurityContext")?,
        mover_service_account: restic.take("moverServiceAccount")?,
        mover_resources: restic.take("moverResources")?,
        mover_pod_labels: restic.take("moverPodLabels")?.unwrap_or_default(),
        mover_affinity: restic.take("moverAffinity")?,
    })
}

fn name(value: &Value) -> Result<String, Unconvertible> {
    value["metadata"]["name"]
        .as_str()
        .map(str::to_owned)
        .ok_or(Unconvertible::Missing("metadata.name"))
}

/// Keeps what users write in metadata; drops what the API server fills in (uid, status, ...).
fn copy_metadata(value: &mut Value, meta: &mut ObjectMeta) -> Result<(), Unconvertible> {
    let mut metadata = Fields::new("metadata", value["metadata"].take())?;
    meta.namespace = metadata.take("namespace")?;
    meta.labels = metadata.take("labels")?;
    let mut annotations: Option<std::collections::BTreeMap<String, String>> =
        metadata.take("annotations")?;
    if let Some(map) = &mut annotations {
        map.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    meta.annotations = annotations.filter(|m| !m.is_empty());
    Ok(())
}

/// The fields of one VolSync object still to be converted.
struct Fields {
    path: String,
    fields: Map<String, Value>,
}

impl Fields {
    fn new(path: &str, value: Value) -> Result<Self, Unconvertible> {
        match value {
            Value::Object(fields) => Ok(Self {
                path: path.to_owned(),
                fields,
            }),
            Value::Null => Ok(Self {
                path: path.to_owned(),
                fields: Map::new(),
            }),
            value => Err(Unconvertible::NotAnObject {
                path: path.to_owned(),
                value,
            }),
        }
    }

    /// Removes `key` and parses it as `T`; a null or absent field is `None`.
    fn take<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, Unconvertible> {
        match self.fields.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => {
                serde_json::from_value(value)
                    .map(Some)
                    .map_err(|source| Unconvertible::Invalid {
                        field: format!("{}.{key}", self.path),
                        source,
                    })
            }
        }
    }

    /// Reports every field that was not taken, in name order (the map's
    /// own order is not stable once fields are removed from it).
    fn finish(self, notes: &mut Notes) {
        let mut left: Vec<(String, Value)> = self.fields.into_iter().collect();
        left.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, value) in left {
            if value.is_null() {
                continue;
            }
            let field = format!("{}.{key}", self.path);
            let why = match key.as_str() {
                "cacheCapacity" | "cacheStorageClassName" | "cacheAccessModes" => {
                    "Sluice's mover keeps no restic cache volume"
                }
                "cleanupTempPVC" | "cleanupCachePVC" => {
                    "Sluice always removes its temporary volumes after a sync"
                }
                _ => "no Sluice equivalent",
            };
            notes.push(&field, Severity::Dropped, why);
        }
    }
}

/// Notes about one object.
struct Notes {
    object: String,
    notes: Vec<Note>,
}

impl Notes {
    fn new(value: &Value) -> Self {
        let kind = value["kind"].as_str().unwrap_or("object");
        let name = value["metadata"]["name"].as_str().unwrap_or("<unnamed>");
        let object = match value["metadata"]["namespace"].as_str() {
            Some(namespace) => format!("{kind} {namespace}/{name}"),
            None => format!("{kind} {name}"),
        };
        Self {
            object,
            notes: Vec::new(),
        }
    }

    fn push(&mut self, field: &str, severity: Severity, text: impl Into<String>) {
        self.notes.push(Note {
            object: self.object.clone(),
            field: field.to_owned(),
            text: text.into(),
            severity,
        });
    }
}

#[cfg(test)]
mod tests {
    use sluice_api::AccessMode;

    use super::*;

    /// A ReplicationSource as home-lab GitOps repositories write them, with the repository
    /// Secret in the same file.
    const GITOPS_SOURCE: &str = r#"
---
apiVersion: v1
kind: Secret
metadata:
  name: plex-volsync-secret
  namespace: media
stringData:
  RESTIC_REPOSITORY: s3:http://minio.storage.svc:9000/volsync/plex
  RESTIC_PASSWORD: hunter2
---
apiVersion: volsync.backube/v1alpha1
kind: ReplicationSource
metadata:
  name: plex
  namespace: media
  labels:
    app.kubernetes.io/name: plex
spec:
  sourcePVC: plex-config
  trigger:
    schedule: "0 * * * *"
  restic:
    copyMethod: Snapshot
    pruneIntervalDays: 7
    repository: plex-volsync-secret
    volumeSnapshotClassName: csi-ceph-blockpool
    cacheCapacity: 2Gi
    cacheStorageClassName: local-hostpath
    cacheAccessModes: ["ReadWriteOnce"]
    storageClassName: ceph-block
    accessModes: ["ReadWriteOnce"]
    moverSecurityContext:
      runAsUser: 568
      runAsGroup: 568
      fsGroup: 568
    retain:
      hourly: 24
      daily: 7
      weekly: 0
"#;

    /// A ReplicationDestination as `kubectl get -o yaml` prints it: server fields, status, the
    /// empty `customCA: {}` VolSync always serializes, and its cleanup flags.
    const LIVE_DESTINATION: &str = r#"
apiVersion: volsync.backube/v1alpha1
kind: ReplicationDestination
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"volsync.backube/v1alpha1"}
    team: storage
  creationTimestamp: "2025-05-19T21:58:03Z"
  generation: 1
  name: technitium-dst
  namespace: network
  resourceVersion: "6291315"
  uid: 6e5dee73-c304-4bc5-b4b3-ce186e9be91d
spec:
  trigger:
    manual: restore-once
  restic:
    accessModes:
    - ReadWriteOnce
    cacheAccessModes:
    - ReadWriteOnce
    cacheCapacity: 5Gi
    cacheStorageClassName: democratic-volsync-nfs
    capacity: 10Gi
    cleanupCachePVC: true
    cleanupTempPVC: true
    copyMethod: Snapshot
    customCA: {}
    enableFileDeletion: true
    moverResources:
      limits:
        memory: 1Gi
    moverSecurityContext:
      fsGroup: 1000
      runAsGroup: 1000
      runAsUser: 1000
    previous: 1
    repository: technitium-volsync-secret
    restoreAsOf: "2025-05-18T00:00:00Z"
    storageClassName: democratic-volsync-nfs
    volumeSnapshotClassName: democratic-volsync-nfs
status:
  lastSyncDuration: 1m2.5s
  lastSyncTime: "2025-05-19T22:00:00Z"
  latestImage:
    apiGroup: snapshot.storage.k8s.io
    kind: VolumeSnapshot
    name: volsync-technitium-dst-dest-20250519220000
"#;

    fn converted(input: &str) -> Conversion {
        convert(input).expect("input is YAML")
    }

    fn fields_with(notes: &[Note], severity: Severity) -> Vec<&str> {
        notes
            .iter()
            .filter(|n| n.severity == severity)
            .map(|n| n.field.as_str())
            .collect()
    }

    #[test]
    fn gitops_source_converts_and_reports_the_cache_fields() {
        let conversion = converted(GITOPS_SOURCE);
        assert_eq!(conversion.documents.len(), 2);
        let secret: Value = serde_saphyr::from_str(&conversion.documents[0]).unwrap();
        assert_eq!(secret["kind"], "Secret", "other kinds pass through");
        assert_eq!(secret["stringData"]["RESTIC_PASSWORD"], "hunter2");

        let source: ReplicationSource = serde_saphyr::from_str(&conversion.documents[1]).unwrap();
        assert_eq!(source.metadata.name.as_deref(), Some("plex"));
        assert_eq!(source.metadata.namespace.as_deref(), Some("media"));
        assert_eq!(
            source.metadata.labels.as_ref().unwrap()["app.kubernetes.io/name"],
            "plex"
        );
        assert_eq!(source.spec.source_pvc, "plex-config");
        assert_eq!(
            source.spec.trigger.unwrap().schedule.as_deref(),
            Some("0 * * * *")
        );
        let restic = source.spec.restic;
        assert_eq!(restic.repository, "plex-volsync-secret");
        assert_eq!(restic.copy_method, CopyMethod::Snapshot);
        assert_eq!(restic.prune_interval_days, Some(7));
        assert_eq!(
            restic.volume_snapshot_class_name.as_deref(),
            Some("csi-ceph-blockpool")
        );
        assert_eq!(restic.storage_class_name.as_deref(), Some("ceph-block"));
        assert_eq!(restic.access_modes, Some(vec![AccessMode::ReadWriteOnce]));
        assert_eq!(
            restic.mover.mover_security_context.unwrap().fs_group,
            Some(568)
        );
        let retain = restic.retain.unwrap();
        assert_eq!(
            (retain.hourly, retain.daily, retain.weekly),
            (Some(24), Some(7), None)
        );
        assert_eq!(restic.hostname.as_deref(), Some("volsync"));

        assert_eq!(
            fields_with(&conversion.notes, Severity::Dropped),
            [
                "spec.restic.retain.weekly",
                "spec.restic.cacheAccessModes",
                "spec.restic.cacheCapacity",
                "spec.restic.cacheStorageClassName",
            ]
        );
        assert_eq!(
            fields_with(&conversion.notes, Severity::Info),
            ["spec.restic.hostname"]
        );
        assert!(
            conversion.notes.iter().any(|n| n.to_string()
                == "ReplicationSource media/plex: spec.restic.cacheAccessModes not carried over: Sluice's mover keeps no restic cache volume"),
            "{:?}",
            conversion.notes.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
    }

    #[test]
    fn live_destination_drops_server_fields_and_reports_cleanup_flags() {
        let conversion = converted(LIVE_DESTINATION);
        assert_eq!(conversion.documents.len(), 1);
        let text = &conversion.documents[0];
        for server_field in [
            "status",
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "last-applied",
        ] {
            assert!(
                !text.contains(server_field),
                "{server_field} leaked into:\n{text}"
            );
        }
        let destination: ReplicationDestination = serde_saphyr::from_str(text).unwrap();
        assert_eq!(
            destination.metadata.annotations.as_ref().unwrap()["team"],
            "storage"
        );
        assert_eq!(
            destination.spec.trigger.unwrap().manual.as_deref(),
            Some("restore-once")
        );
        let restic = destination.spec.restic;
        assert_eq!(restic.repository, "technitium-volsync-secret");
        assert_eq!(restic.copy_method, DestinationCopyMethod::Snapshot);
        assert_eq!(restic.capacity.unwrap().0, "10Gi");
        assert_eq!(restic.access_modes, Some(vec![AccessMode::ReadWriteOnce]));
        assert_eq!(restic.previous, Some(1));
        assert!(restic.enable_file_deletion);
        assert_eq!(
            restic.restore_as_of.unwrap().0.to_string(),
            "2025-05-18T00:00:00Z"
        );
        assert!(
            restic.custom_ca.is_none(),
            "VolSync's empty customCA means none"
        );
        assert!(
            restic.hostname.is_none(),
            "restores consider every host, as VolSync does"
        );
        assert_eq!(
            restic.mover.mover_resources.unwrap().limits.unwrap()["memory"].0,
            "1Gi"
        );

        assert_eq!(
            fields_with(&conversion.notes, Severity::Dropped),
            [
                "spec.restic.cacheAccessModes",
                "spec.restic.cacheCapacity",
                "spec.restic.cacheStorageClassName",
                "spec.restic.cleanupCachePVC",
                "spec.restic.cleanupTempPVC",
            ]
        );
        assert!(
            conversion
                .notes
                .iter()
                .all(|n| n.object == "ReplicationDestination network/technitium-dst")
        );
    }

    #[test]
    fn other_movers_are_refused_and_the_rest_still_converts() {
        let input = r#"
apiVersion: volsync.backube/v1alpha1
kind: ReplicationSource
metadata: {name: mirror, namespace: apps}
spec:
  sourcePVC: data
  rsync:
    address: backup.example.com
    copyMethod: Clone
---
apiVersion: volsync.backube/v1alpha1
kind: ReplicationSource
metadata: {name: direct, namespace: apps}
spec:
  sourcePVC: data
  paused: true
  restic:
    repository: restic-config
    copyMethod: None
    customCA:
      secretName: minio-ca
      key: ca.crt
    unlock: "2024-01-01"
    moverServiceAccount: backup
    moverPodLabels: {team: storage}
"#;
        let conversion = converted(input);
        assert_eq!(conversion.documents.len(), 1);
        let refused = &conversion.notes[0];
        assert_eq!(refused.severity, Severity::NotConverted);
        assert_eq!(
            refused.to_string(),
            "ReplicationSource apps/mirror: not converted: uses VolSync's rsync mover; Sluice converts only the restic mover"
        );

        let source: ReplicationSource = serde_saphyr::from_str(&conversion.documents[0]).unwrap();
        assert!(source.spec.paused);
        let restic = source.spec.restic;
        assert_eq!(
            restic.copy_method,
            CopyMethod::Direct,
            "VolSync's deprecated None is Direct"
        );
        let ca = restic.custom_ca.unwrap();
        assert_eq!(
            (ca.secret_name.as_deref(), ca.key.as_str()),
            (Some("minio-ca"), "ca.crt")
        );
        assert_eq!(restic.unlock.as_deref(), Some("2024-01-01"));
        assert_eq!(
            restic.mover.mover_service_account.as_deref(),
            Some("backup")
        );
        assert_eq!(restic.mover.mover_pod_labels["team"], "storage");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_reported_not_guessed() {
        let input = r#"
apiVersion: volsync.backube/v1alpha1
kind: ReplicationDestination
metadata: {name: restore}
spec:
  restic:
    repository: restic-config
    copyMethod: Clone
    destinationPVC: data
    someFutureField: 3
---
apiVersion: volsync.backube/v1alpha1
kind: ReplicationDestination
metadata: {name: broken}
spec:
  restic:
    repository: restic-config
    copyMethod: Direct
    destinationPVC: data
    previous: many
"#;
        let conversion = converted(input);
        assert_eq!(conversion.documents.len(), 1);
        let destination: ReplicationDestination =
            serde_saphyr::from_str(&conversion.documents[0]).unwrap();
        assert_eq!(
            destination.spec.restic.copy_method,
            DestinationCopyMethod::Snapshot
        );
        let notes: Vec<String> = conversion.notes.iter().map(ToString::to_string).collect();
        assert_eq!(notes.len(), 3, "{notes:#?}");
        assert!(notes[0].starts_with("ReplicationDestination restore: spec.restic.copyMethod not carried over: Some(\"Clone\")"));
        assert_eq!(
            notes[1],
            "ReplicationDestination restore: spec.restic.someFutureField not carried over: no Sluice equivalent"
        );
        assert!(
            notes[2].starts_with(
                "ReplicationDestination broken: not converted: spec.restic.previous: invalid type"
            ),
            "{}",
            notes[2]
        );
    }

    #[test]
    fn new_pvc_without_capacity_gets_a_reminder() {
        let conversion = converted(
            "apiVersion: volsync.backube/v1alpha1\nkind: ReplicationDestination\nmetadata: {name: r}\nspec:\n  restic: {repository: x, copyMethod: Direct}\n",
        );
        assert_eq!(conversion.documents.len(), 1);
        assert_eq!(
            fields_with(&conversion.notes, Severity::Info),
            ["spec.restic.capacity"]
        );
    }

    #[test]
    fn invalid_yaml_is_an_error() {
        assert!(convert("spec: [unclosed").is_err());
    }
}

//! `kubectl sluice migrate volsync`: translate VolSync restic manifests into Sluice's.
//!
//! Migration is meant to be a mechanical edit of a GitOps repository: feed the files in, commit
//! what comes out. The conversion walks each VolSync object field by field, removing what it
//! carries over; whatever is left is reported, so nothing is dropped silently. Documents of other
//! kinds (the repository Secret, the application) pass through unchanged, so a whole file can be
//! converted in one go.

use std::{
    fmt,
    io::{Read, Write},
};

use anyhow::{Context as _, Result};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sluice_api::{
    CopyMethod, DestinationCopyMethod, MoverConfig, OnMissingSnapshot, ReplicationDestination,
    ReplicationDestinationSpec, ReplicationSource, ReplicationSourceSpec, ResticDestinationSpec,
    ResticSourceSpec, RetainPolicy, Trigger,
};

use crate::cli::{EXIT_FAILED, MigrateVolsyncArgs};

/// VolSync records every restic snapshot under this host name.
const VOLSYNC_HOSTNAME: &str = "volsync";

/// Runs `migrate volsync`: converted YAML on stdout, one line per field not carried over on
/// stderr. Exit code 1 when an input cannot be read or an object cannot be converted; the
/// objects that converted are still written.
pub fn run(args: &MigrateVolsyncArgs) -> Result<u8> {
    let mut inputs = Vec::new();
    if args.files.is_empty() || args.files.iter().any(|f| f.as_os_str() == "-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        inputs.push(("<stdin>".to_owned(), text));
    }
    for file in args.files.iter().filter(|f| f.as_os_str() != "-") {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        inputs.push((file.display().to_string(), text));
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
                eprintln!("error: {name} is not valid YAML: {err}");
                failed = true;
            }
        }
    }
    std::io::stdout()
        .write_all(documents.join("---\n").as_bytes())
        .context("cannot write standard output")?;
    Ok(if failed { EXIT_FAILED } else { 0 })
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
        verify: None,
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
mod tests;

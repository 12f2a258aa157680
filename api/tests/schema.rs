//! The generated schemas carry the validation the API server enforces.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, ValidationRule,
};
use kube::CustomResourceExt;
use sluice_api::{ReplicationDestination, ReplicationSource, SCHEDULE_PATTERN};

fn root(crd: &CustomResourceDefinition) -> &JSONSchemaProps {
    assert_eq!(crd.spec.versions.len(), 1);
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    version
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap()
}

fn at<'a>(schema: &'a JSONSchemaProps, path: &[&str]) -> &'a JSONSchemaProps {
    path.iter().fold(schema, |s, key| {
        s.properties
            .as_ref()
            .and_then(|p| p.get(*key))
            .unwrap_or_else(|| panic!("no property {key} in path {path:?}"))
    })
}

fn rules(schema: &JSONSchemaProps) -> Vec<&ValidationRule> {
    schema.x_kubernetes_validations.iter().flatten().collect()
}

fn enum_values(schema: &JSONSchemaProps) -> Vec<String> {
    schema
        .enum_
        .iter()
        .flatten()
        .map(|v| v.0.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn both_kinds_are_namespaced_with_status_short_names_and_columns() {
    for (crd, short) in [
        (ReplicationSource::crd(), "rsrc"),
        (ReplicationDestination::crd(), "rdst"),
    ] {
        assert_eq!(crd.spec.group, "sluice.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec![short.to_owned()]));
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        for column in ["Last sync", "Duration", "Next sync", "Status"] {
            assert!(
                columns.contains(&column),
                "{} lacks column {column}",
                crd.spec.names.kind
            );
        }
    }
    let source = ReplicationSource::crd();
    assert_eq!(
        source.spec.versions[0]
            .additional_printer_columns
            .as_ref()
            .unwrap()[0]
            .json_path,
        ".spec.sourcePVC"
    );
}

#[test]
fn schedule_has_the_cron_pattern() {
    for crd in [ReplicationSource::crd(), ReplicationDestination::crd()] {
        let schedule = at(root(&crd), &["spec", "trigger", "schedule"]);
        assert_eq!(schedule.pattern.as_deref(), Some(SCHEDULE_PATTERN));
    }
    for shorthand in ["@hourly", "@daily", "@weekly", "@monthly", "@yearly"] {
        assert!(
            SCHEDULE_PATTERN.contains(&shorthand[1..]),
            "{shorthand} missing"
        );
    }
}

#[test]
fn restore_as_of_is_rfc3339() {
    let crd = ReplicationDestination::crd();
    let field = at(root(&crd), &["spec", "restic", "restoreAsOf"]);
    assert_eq!(field.type_.as_deref(), Some("string"));
    assert_eq!(field.format.as_deref(), Some("date-time"));
}

#[test]
fn destination_takes_capacity_and_access_modes_together_without_destination_pvc() {
    let crd = ReplicationDestination::crd();
    let restic = at(root(&crd), &["spec", "restic"]);
    let rule = rules(restic)
        .into_iter()
        .find(|r| r.rule.contains("destinationPVC"))
        .expect("CEL rule about destinationPVC");
    assert_eq!(
        rule.rule,
        "has(self.destinationPVC) || has(self.capacity) == has(self.accessModes)"
    );
    let message = rule.message.as_deref().unwrap();
    for field in [
        "spec.restic.capacity",
        "spec.restic.accessModes",
        "spec.restic.destinationPVC",
    ] {
        assert!(
            message.contains(field),
            "message {message:?} does not name {field}"
        );
    }
}

#[test]
fn a_destination_without_a_target_takes_no_trigger() {
    let crd = ReplicationDestination::crd();
    let spec = at(root(&crd), &["spec"]);
    let rule = rules(spec)
        .into_iter()
        .find(|r| r.rule.contains("trigger"))
        .expect("CEL rule about spec.trigger");
    assert_eq!(
        rule.rule,
        "has(self.restic.destinationPVC) || has(self.restic.capacity) || !has(self.trigger)"
    );
    assert!(rule.message.as_deref().unwrap().contains("dataSourceRef"));
}

#[test]
fn destination_rejects_clone_by_enum_and_by_rule() {
    let crd = ReplicationDestination::crd();
    let restic = at(root(&crd), &["spec", "restic"]);
    assert_eq!(
        enum_values(at(restic, &["copyMethod"])),
        ["Snapshot", "Direct"]
    );
    let rule = rules(restic)
        .into_iter()
        .find(|r| r.rule.contains("Clone"))
        .expect("CEL rule about Clone");
    assert!(
        rule.message
            .as_deref()
            .unwrap()
            .contains("spec.restic.copyMethod")
    );

    let source = ReplicationSource::crd();
    let copy = at(root(&source), &["spec", "restic", "copyMethod"]);
    assert_eq!(enum_values(copy), ["Snapshot", "Clone", "Direct"]);
}

#[test]
fn counts_have_minimums() {
    let source = ReplicationSource::crd();
    let restic = at(root(&source), &["spec", "restic"]);
    for field in ["pruneIntervalDays", "checkIntervalDays"] {
        assert_eq!(at(restic, &[field]).minimum, Some(1.0), "{field}");
    }
    for field in ["last", "hourly", "daily", "weekly", "monthly", "yearly"] {
        assert_eq!(
            at(restic, &["retain", field]).minimum,
            Some(1.0),
            "retain.{field}"
        );
    }
    let destination = ReplicationDestination::crd();
    assert_eq!(
        at(root(&destination), &["spec", "restic", "previous"]).minimum,
        Some(0.0)
    );
}

#[test]
fn every_cel_message_names_its_field() {
    for crd in [ReplicationSource::crd(), ReplicationDestination::crd()] {
        let json = serde_json::to_value(&crd).unwrap();
        let mut found = 0;
        visit_rules(&json, &mut |rule| {
            found += 1;
            let message = rule["message"].as_str().expect("every rule has a message");
            assert!(
                message.starts_with("spec."),
                "message {message:?} does not name a field"
            );
        });
        assert!(
            found >= 3,
            "{} has only {found} CEL rules",
            crd.spec.names.kind
        );
    }
}

fn visit_rules(value: &serde_json::Value, f: &mut impl FnMut(&serde_json::Value)) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                if key == "x-kubernetes-validations" {
                    child.as_array().unwrap().iter().for_each(&mut *f);
                } else {
                    visit_rules(child, f);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| visit_rules(v, f)),
        _ => {}
    }
}

#[test]
fn conditions_are_a_list_map_keyed_by_type() {
    for crd in [ReplicationSource::crd(), ReplicationDestination::crd()] {
        let conditions = at(root(&crd), &["status", "conditions"]);
        assert_eq!(conditions.x_kubernetes_list_type.as_deref(), Some("map"));
        assert_eq!(
            conditions.x_kubernetes_list_map_keys,
            Some(vec!["type".to_owned()])
        );
    }
}

#[test]
fn access_modes_are_restricted_to_kubernetes_values() {
    let crd = ReplicationDestination::crd();
    let modes = at(root(&crd), &["spec", "restic", "accessModes"]);
    assert_eq!(modes.min_items, Some(1));
    let items = match modes.items.as_ref().unwrap() {
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(s) => s,
        other => panic!("unexpected items {other:?}"),
    };
    assert_eq!(
        enum_values(items),
        [
            "ReadWriteOnce",
            "ReadOnlyMany",
            "ReadWriteMany",
            "ReadWriteOncePod"
        ]
    );
}

#[test]
fn mover_fields_sit_beside_the_restic_fields_as_in_volsync() {
    let crd = ReplicationSource::crd();
    let restic = at(root(&crd), &["spec", "restic"]);
    for field in [
        "moverSecurityContext",
        "moverServiceAccount",
        "moverResources",
        "moverPodLabels",
        "moverAffinity",
        "customCA",
        "unlock",
        "exclude",
        "tags",
        "hostname",
    ] {
        at(restic, &[field]);
    }
}

//! Which image mover Jobs run when none is configured: the operator's own.
//!
//! The Sluice image carries both `sluice-operator` and `sluice-mover`, so a user who pushed it
//! to a registry and pointed the Deployment at it (one `images:` entry, or the chart's `image`)
//! has configured the movers too. `SLUICE_MOVER_IMAGE` still overrides it.

use k8s_openapi::api::core::v1::Pod;

/// Name of the operator's container in the shipped Deployment and the Helm chart.
pub const OPERATOR_CONTAINER: &str = "operator";

/// The image of the operator's container in its own Pod: the only container, or the one named
/// [`OPERATOR_CONTAINER`]. The error says what to set instead.
pub fn own_image(pod: &Pod) -> Result<String, String> {
    let containers = pod
        .spec
        .as_ref()
        .map_or(&[][..], |spec| &spec.containers[..]);
    let container = match containers {
        [only] => Some(only),
        several => several.iter().find(|c| c.name == OPERATOR_CONTAINER),
    };
    container
        .and_then(|c| c.image.clone())
        .filter(|image| !image.is_empty())
        .ok_or_else(|| {
            format!(
                "cannot tell the operator's own image (no container named {OPERATOR_CONTAINER:?} among {}); set SLUICE_MOVER_IMAGE to the Sluice image",
                containers.len()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod(containers: &[(&str, Option<&str>)]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: containers
                    .iter()
                    .map(|(name, image)| Container {
                        name: name.to_string(),
                        image: image.map(str::to_string),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_operator_containers_image_is_the_movers() {
        let cases: [(&str, Pod, Result<&str, &str>); 6] = [
            (
                "a single container, whatever its name",
                pod(&[("manager", Some("reg.example/sluice:1"))]),
                Ok("reg.example/sluice:1"),
            ),
            (
                "the operator container beside a sidecar",
                pod(&[
                    ("istio-proxy", Some("istio/proxy")),
                    ("operator", Some("reg.example/sluice@sha256:ab")),
                ]),
                Ok("reg.example/sluice@sha256:ab"),
            ),
            (
                "several containers, none named operator",
                pod(&[("a", Some("x")), ("b", Some("y"))]),
                Err("among 2"),
            ),
            (
                "a container without an image",
                pod(&[("operator", None)]),
                Err("SLUICE_MOVER_IMAGE"),
            ),
            (
                "an empty image",
                pod(&[("operator", Some(""))]),
                Err("SLUICE_MOVER_IMAGE"),
            ),
            ("no spec", Pod::default(), Err("among 0")),
        ];
        for (case, pod, expected) in cases {
            match (own_image(&pod), expected) {
                (Ok(image), Ok(want)) => assert_eq!(image, want, "{case}"),
                (Err(error), Err(want)) => assert!(error.contains(want), "{case}: {error}"),
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }
}

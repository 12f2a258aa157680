//! An OCI image archive: the `oci-layout` directory format, as one tar.
//!
//! It holds `oci-layout`, `index.json` and `blobs/sha256/*` (the layer, the
//! image config and the manifest). containerd imports it
//! (`ctr images import`, which reads the `io.containerd.image.name`
//! annotation), and `skopeo copy oci-archive:FILE docker://REGISTRY/...`
//! pushes it. The image digest is the manifest's, as a registry reports it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::layer::Layer;

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// How a container of the image runs: the `config` object of the OCI image
/// configuration.
#[derive(Debug, Default)]
pub struct RunConfig {
    pub user: Option<String>,
    pub env: Vec<(String, String)>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub labels: Vec<(String, String)>,
}

/// What was written.
#[derive(Debug)]
pub struct Archive {
    /// `sha256:...` of the manifest: the image's digest.
    pub digest: String,
}

/// Writes the image `name` (`REPOSITORY:TAG`) of one `layer` run as
/// `config` to the archive `out`.
pub fn write_archive(name: &str, layer: &Layer, config: &RunConfig, out: &Path) -> Result<Archive> {
    let config_blob = serde_json::to_vec(&image_config(layer, config))?;
    let config_digest = digest(&config_blob);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_blob.len()},
        "layers": [{"mediaType": LAYER_TYPE, "digest": layer.digest, "size": layer.size}],
    });
    let manifest_blob = serde_json::to_vec(&manifest)?;
    let manifest_digest = digest(&manifest_blob);
    let tag = name
        .rsplit_once(':')
        .map(|(_, tag)| tag)
        .unwrap_or("latest");
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": MANIFEST_TYPE,
            "digest": manifest_digest,
            "size": manifest_blob.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    });

    let tmp = out.with_extension("partial");
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    add_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add_bytes(&mut tar, "index.json", &serde_json::to_vec(&index)?)?;
    add_bytes(&mut tar, &blob_path(&manifest_digest), &manifest_blob)?;
    add_bytes(&mut tar, &blob_path(&config_digest), &config_blob)?;
    let mut layer_file = File::open(&layer.path)?;
    let mut header = header(layer.size);
    tar.append_data(&mut header, blob_path(&layer.digest), &mut layer_file)?;
    tar.into_inner()?.flush()?;
    std::fs::rename(&tmp, out)?;
    Ok(Archive {
        digest: manifest_digest,
    })
}

fn image_config(layer: &Layer, config: &RunConfig) -> Value {
    let pairs = |list: &[(String, String)]| -> serde_json::Map<String, Value> {
        list.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect()
    };
    let env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut run = json!({"Env": env, "Labels": pairs(&config.labels)});
    if let Some(user) = &config.user {
        run["User"] = json!(user);
    }
    if !config.entrypoint.is_empty() {
        run["Entrypoint"] = json!(config.entrypoint);
    }
    if !config.cmd.is_empty() {
        run["Cmd"] = json!(config.cmd);
    }
    json!({
        // Reproducible: the same binaries give the same digest.
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "make image (sluice-image)"}],
    })
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_size(size);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn add_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> Result<()> {
    let mut header = header(bytes.len() as u64);
    tar.append_data(&mut header, path, bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{self, Entry};
    use std::io::Read;

    #[test]
    fn archive_is_an_oci_layout_whose_digests_match_the_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let layer = layer::write(
            &[Entry::bytes("/hello", "hi\n", 0o755)],
            &dir.path().join("layer.tar.gz"),
        )
        .unwrap();
        let config = RunConfig {
            user: Some("65532:65532".into()),
            entrypoint: vec!["/hello".into()],
            ..RunConfig::default()
        };
        let out = dir.path().join("image.tar");
        let archive = write_archive("localhost/hello:1.0", &layer, &config, &out).unwrap();

        let mut files = std::collections::BTreeMap::new();
        let mut tar = tar::Archive::new(File::open(&out).unwrap());
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            files.insert(path, bytes);
        }
        for (path, bytes) in &files {
            if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                assert_eq!(digest(bytes), format!("sha256:{hex}"), "{path}");
            }
        }
        let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let entry = &index["manifests"][0];
        assert_eq!(entry["digest"], archive.digest.as_str());
        assert_eq!(
            entry["annotations"]["io.containerd.image.name"],
            "localhost/hello:1.0"
        );
        let manifest: Value = serde_json::from_slice(&files[&blob_path(&archive.digest)]).unwrap();
        let config_digest = manifest["config"]["digest"].as_str().unwrap();
        let image: Value = serde_json::from_slice(&files[&blob_path(config_digest)]).unwrap();
        assert_eq!(image["config"]["User"], "65532:65532");
        assert_eq!(image["rootfs"]["diff_ids"][0], layer.diff_id.as_str());
        assert_eq!(manifest["layers"][0]["digest"], layer.digest.as_str());
    }
}

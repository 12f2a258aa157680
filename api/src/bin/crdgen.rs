//! Writes the CRD manifests to `config/crd/` and to the Helm chart's `charts/sluice/files/crds/`,
//! or only to the directory given as the only argument.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

fn write_all(dir: &Path, files: &[(&str, String)]) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    for (name, yaml) in files {
        let path = dir.join(name);
        std::fs::write(&path, yaml)
            .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let crds = sluice_api::crd_yaml::crd_files();
    let mut with_kustomization = crds.clone();
    with_kustomization.push(("kustomization.yaml", sluice_api::crd_yaml::kustomization()));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let targets = match std::env::args_os().nth(1) {
        Some(dir) => vec![(PathBuf::from(dir), &with_kustomization)],
        None => vec![
            (root.join("config/crd"), &with_kustomization),
            (root.join(sluice_api::crd_yaml::CHART_CRD_DIR), &crds),
        ],
    };
    for (dir, files) in targets {
        if let Err(err) = write_all(&dir, files) {
            eprintln!("crdgen: {err}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

//! Writes the CRD manifests to `config/crd/` (or the directory given as the only argument).

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/crd"));
    let mut files = sluice_api::crd_yaml::crd_files();
    files.push(("kustomization.yaml", sluice_api::crd_yaml::kustomization()));
    if let Err(err) = std::fs::create_dir_all(&dir) {
        eprintln!("crdgen: cannot create {}: {err}", dir.display());
        return ExitCode::FAILURE;
    }
    for (name, yaml) in files {
        let path = dir.join(name);
        if let Err(err) = std::fs::write(&path, yaml) {
            eprintln!("crdgen: cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}

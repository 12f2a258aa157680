//! `sluice-image`: builds the Sluice image as an OCI archive without a Docker
//! engine (`make image`). The last line printed is the archive's path.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Builds the Sluice image from the Dockerfile's final stage and the
/// binaries cargo built, as an OCI image archive.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The Dockerfile whose final stage describes the image.
    #[arg(long, default_value = "Dockerfile")]
    dockerfile: PathBuf,
    /// Where the binaries its COPY --from lines name were built.
    #[arg(long)]
    binaries: PathBuf,
    /// The image's name.
    #[arg(long, default_value = concat!("localhost/sluice:", env!("CARGO_PKG_VERSION")))]
    name: String,
    /// The archive to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let run = || -> anyhow::Result<sluice_image::Built> {
        let dockerfile = std::fs::read_to_string(&args.dockerfile)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.dockerfile.display()))?;
        sluice_image::build_from_dockerfile(&dockerfile, &args.binaries, &args.name, &args.out)
    };
    match run() {
        Ok(built) => {
            println!("image    {}", built.name);
            println!("digest   {}", built.digest);
            println!(
                "size     {:.1} MiB compressed, {:.1} MiB unpacked",
                mib(built.compressed_size),
                mib(built.unpacked_size)
            );
            println!(
                "load it  ctr -n k8s.io images import {0}   |   skopeo copy oci-archive:{0} docker://REGISTRY/sluice:TAG",
                built.archive.display()
            );
            println!("{}", built.archive.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("sluice-image: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

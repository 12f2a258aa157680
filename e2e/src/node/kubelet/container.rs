//! One container as a local process.
//!
//! The process gets a private mount namespace in which each volume is
//! bind-mounted at its `mountPath` (read-only where asked) and the
//! termination-message file at its path, so the mover sees `/data` and
//! writes `/dev/termination-log` exactly as in a real Pod. Mount points that
//! do not exist on the host are created there (empty directories or files),
//! because a mount namespace shares the host's filesystem.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;

/// A host path made visible at `target` inside the container.
#[derive(Clone, Debug)]
pub(super) struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Everything needed to start one container process.
#[derive(Clone, Debug)]
pub(super) struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub working_dir: Option<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub log: PathBuf,
}

pub(super) fn spawn(launch: &Launch) -> anyhow::Result<tokio::process::Child> {
    let mut mounts = Vec::new();
    for mount in &launch.mounts {
        create_mount_point(mount)?;
        mounts.push((
            c_path(&mount.source)?,
            c_path(&mount.target)?,
            mount.read_only,
        ));
    }
    let working_dir = launch.working_dir.as_deref().map(c_path).transpose()?;
    let (uid, gid) = (launch.uid, launch.gid);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)
        .with_context(|| format!("cannot open {}", launch.log.display()))?;
    let mut command = std::process::Command::new(&launch.program);
    command
        .args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // A group of its own, so stopping the container stops its children.
        .process_group(0);
    // SAFETY: runs between fork and exec; only system calls on memory
    // prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            if !mounts.is_empty() {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                // Keep the container's mounts from propagating to the host.
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                for (source, target, read_only) in &mounts {
                    let bind = libc::MS_BIND | libc::MS_REC;
                    check(libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        bind,
                        std::ptr::null(),
                    ))?;
                    if *read_only {
                        let remount = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                        check(libc::mount(
                            std::ptr::null(),
                            target.as_ptr(),
                            std::ptr::null(),
                            remount,
                            std::ptr::null(),
                        ))?;
                    }
                }
            }
            if let Some(dir) = &working_dir {
                check(libc::chdir(dir.as_ptr()))?;
            }
            if let Some(gid) = gid {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(gid))?;
            }
            if let Some(uid) = uid {
                check(libc::setuid(uid))?;
            }
            Ok(())
        });
    }
    tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", launch.program.display()))
}

/// Sends `signal` to the container's process group.
pub(super) fn signal(child: &tokio::process::Child, signal: libc::c_int) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on the process group this module created.
        unsafe { libc::kill(-(pid as libc::pid_t), signal) };
    }
}

fn create_mount_point(mount: &Mount) -> anyhow::Result<()> {
    if mount.target.exists() {
        return Ok(());
    }
    if mount.source.is_dir() {
        std::fs::create_dir_all(&mount.target)
    } else {
        if let Some(parent) = mount.target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        File::create(&mount.target).map(drop)
    }
    .with_context(|| format!("cannot create mount point {}", mount.target.display()))
}

fn c_path(path: &Path) -> anyhow::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("path {} contains a NUL byte", path.display()))
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

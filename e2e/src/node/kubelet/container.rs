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
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
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
    /// Supplementary groups: the Pod's `fsGroup` and `supplementalGroups`.
    pub groups: Vec<u32>,
    pub log: PathBuf,
}

/// Where the container's volume sources are opened while it mounts them,
/// far above any descriptor the process inherits.
const FIRST_SOURCE_FD: libc::c_int = 900;

pub(super) fn spawn(launch: &Launch) -> anyhow::Result<tokio::process::Child> {
    // Inside the new mount namespace every source is opened before any
    // mount and bound through /proc/self/fd, so a mount over a parent of a
    // later source (an emptyDir at /tmp, with the node's files under /tmp)
    // cannot hide that source. The descriptor numbers, and so the paths, are
    // fixed before the fork: pre_exec must not allocate.
    let mut mounts = Vec::new();
    for (index, mount) in launch.mounts.iter().enumerate() {
        create_mount_point(mount)?;
        let fd = FIRST_SOURCE_FD + index as libc::c_int;
        mounts.push((
            c_path(&mount.source)?,
            fd,
            c_path(Path::new(&format!("/proc/self/fd/{fd}")))?,
            c_path(&mount.target)?,
            mount.read_only,
        ));
    }
    let groups: Vec<libc::gid_t> = launch.groups.clone();
    let working_dir = launch.working_dir.as_deref().map(c_path).transpose()?;
    let (uid, gid) = (launch.uid, launch.gid);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)
        .with_context(|| format!("cannot open {}", launch.log.display()))?;
    // Executed through a descriptor opened here, as root: a Pod that runs
    // as another user could not search the directories on the way to a
    // stand-in program under /root, and a kubelet's image layers have no
    // such problem.
    let program = File::options()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(&launch.program)
        .with_context(|| format!("cannot open {}", launch.program.display()))?;
    let mut command = std::process::Command::new(format!("/proc/self/fd/{}", program.as_raw_fd()));
    command
        .arg0(&launch.program)
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
                for (source, fd, _, _, _) in &mounts {
                    let opened = libc::open(source.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                    check(opened)?;
                    check(libc::dup2(opened, *fd))?;
                    check(libc::close(opened))?;
                }
                for (_, fd, source, target, read_only) in &mounts {
                    let bind = libc::MS_BIND | libc::MS_REC;
                    check(libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        bind,
                        std::ptr::null(),
                    ))?;
                    check(libc::close(*fd))?;
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
            if gid.is_some() || !groups.is_empty() {
                check(libc::setgroups(groups.len(), groups.as_ptr()))?;
            }
            if let Some(gid) = gid {
                check(libc::setgid(gid))?;
            }
            if let Some(uid) = uid {
                check(libc::setuid(uid))?;
            }
            Ok(())
        });
    }
    let child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", launch.program.display()));
    drop(program);
    child
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

/// A system call's result as an error when it reports failure (-1).
fn check(result: libc::c_int) -> io::Result<()> {
    if result >= 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

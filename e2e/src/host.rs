//! What the test cluster makes on this machine outside its own files: the
//! bridge its Pods and servers share, the cgroups its containers run in,
//! iptables chains, mounts and loop devices; and how all of it is removed.
//!
//! Those are machine-wide (one network namespace, one cgroup tree, one set
//! of iptables tables), so only one real-node cluster runs on a machine at
//! a time: [`HostLease`] takes a lock that a second test binary (or a
//! second engineer's run) waits for. Holding it, the harness may also
//! remove what a killed earlier run left behind, because nothing else uses
//! names of this scheme. The same [`clean`] runs before a cluster starts
//! and when the lease is dropped.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The bridge every Pod's network interface is attached to.
pub const BRIDGE: &str = "sluice-e2e0";
/// The machine's address on [`BRIDGE`]: the API server, MinIO and the
/// kubelet listen here, and it is the one way out of a Pod.
pub const BRIDGE_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 234, 0, 1);
/// Prefix length of [`POD_SUBNET`].
pub const POD_PREFIX: u8 = 24;
/// Pod addresses, on [`BRIDGE`].
pub const POD_SUBNET: &str = "10.234.0.0/24";
/// Service cluster IPs; kube-proxy translates them to endpoints.
pub const SERVICE_SUBNET: &str = "10.235.0.0/24";
/// The `kubernetes` Service's cluster IP, the first of [`SERVICE_SUBNET`].
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 235, 0, 1);
/// The cgroup (in every hierarchy) that holds containerd, its shims and
/// every container: the kubelet's `cgroupRoot`.
pub const CGROUP: &str = "sluice-e2e";
/// The CNI network name, which names its cached results too.
pub const CNI_NETWORK: &str = "sluice-e2e";
/// The containerd namespace the CRI plugin (and so the kubelet) uses.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// Prefix of the node's temporary directory (volumes, containerd, kubelet).
pub const NODE_DIR_PREFIX: &str = "sluice-node-";

/// The lock on this machine's real-node resources; held while a cluster
/// with a node exists. Dropping it removes them.
#[derive(Debug)]
pub struct HostLease {
    _lock: File,
}

impl Drop for HostLease {
    fn drop(&mut self) {
        clean();
    }
}

impl HostLease {
    /// Waits for the machine lock, removes what an earlier run left, and
    /// creates the bridge (see [`create_bridge`]).
    pub fn acquire() -> HostLease {
        let path = std::env::temp_dir().join("sluice-e2e-node.lock");
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open the node lock {}: {e}", path.display()));
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            eprintln!(
                "waiting for another real-node cluster on this machine to stop (lock {}, held by {})",
                path.display(),
                holder.trim()
            );
            // SAFETY: as above.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
                panic!(
                    "cannot lock {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        let _ = lock.set_len(0);
        let _ = writeln!(lock, "pid {} ({})", std::process::id(), program_name());
        clean();
        create_bridge();
        HostLease { _lock: lock }
    }
}

fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// Creates [`BRIDGE`] with [`BRIDGE_ADDRESS`], up. The CNI bridge plugin
/// attaches Pods to it but is not its gateway, so it never turns on IP
/// forwarding: Pods reach the machine's bridge address and each other,
/// never any other network.
fn create_bridge() {
    run("ip", &["link", "add", BRIDGE, "type", "bridge"]);
    run(
        "ip",
        &[
            "addr",
            "add",
            &format!("{BRIDGE_ADDRESS}/{POD_PREFIX}"),
            "dev",
            BRIDGE,
        ],
    );
    run("ip", &["link", "set", BRIDGE, "up"]);
}

/// The bridge address as an [`IpAddr`].
pub fn bridge_address() -> IpAddr {
    IpAddr::V4(BRIDGE_ADDRESS)
}

/// Creates the cluster's cgroup in every cgroup v1 hierarchy (the cpuset
/// one seeded from its parent, as the kernel requires) and returns the
/// `cgroup.procs` file of its `containerd` child in the pids hierarchy,
/// which a process joins to be killed with the node.
pub fn create_cgroups() -> PathBuf {
    for hierarchy in hierarchies() {
        let dir = hierarchy.join(CGROUP);
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", dir.display()));
        if hierarchy.ends_with("cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let parent = fs::read_to_string(hierarchy.join(file)).unwrap_or_default();
                fs::write(dir.join(file), parent.trim())
                    .unwrap_or_else(|e| panic!("cannot seed {}/{file}: {e}", dir.display()));
            }
        }
    }
    let containerd = Path::new("/sys/fs/cgroup/pids")
        .join(CGROUP)
        .join("containerd");
    fs::create_dir_all(&containerd)
        .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", containerd.display()));
    containerd.join("cgroup.procs")
}

/// Kills every process of the node (containerd, its shims and the
/// containers, which outlive a killed containerd), then removes the mounts
/// and loop devices below `node_dir`.
pub fn release_node(node_dir: &Path) {
    kill_cgroup_processes();
    remove_runtime_leftovers(node_dir);
    unmount_below(node_dir);
    detach_loops_below(node_dir);
}

/// Removes everything of this scheme: processes, mounts and loop devices of
/// any node directory (see [`release_node`]), the cgroups, the iptables
/// chains the kubelet and kube-proxy made, cached CNI results, the bridge
/// and the directories of nodes of killed runs. Each step tolerates what is
/// already gone.
pub fn clean() {
    release_node(&std::env::temp_dir().join(NODE_DIR_PREFIX));
    remove_cgroups();
    remove_kube_chains();
    remove_cni_results();
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        run("ip", &["link", "del", BRIDGE]);
    }
    remove_stale_node_dirs();
}

fn hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists() && !p.ends_with("unified"))
        .collect();
    out.sort();
    out
}

/// Every cgroup directory below `root`, deepest first.
fn cgroups_below(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        out.push(dir);
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

fn kill_cgroup_processes() {
    let root = Path::new("/sys/fs/cgroup/pids").join(CGROUP);
    if !root.exists() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut alive = 0;
        for dir in cgroups_below(&root) {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                alive += 1;
                // SAFETY: kill(2) of a process in the test cluster's cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if alive == 0 {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("warning: {alive} processes of cgroup {CGROUP} did not die");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn remove_cgroups() {
    for hierarchy in hierarchies() {
        let root = hierarchy.join(CGROUP);
        if root.exists() {
            for dir in cgroups_below(&root) {
                let _ = fs::remove_dir(&dir);
            }
        }
    }
}

/// Mount points below `prefix` (a directory, or the start of directory
/// names), deepest first, from /proc/self/mountinfo.
pub fn mounts_below(prefix: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = prefix.to_string_lossy().into_owned();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(&prefix))
        .map(PathBuf::from)
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Undoes the octal escapes (`\040` for a space) of /proc/self/mountinfo.
fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            out.push(
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'),
            );
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unmount_below(prefix: &Path) {
    // A mount can be stacked on another at the same point: repeat until
    // none is left (or nothing more comes off).
    for _ in 0..10 {
        let mounts = mounts_below(prefix);
        if mounts.is_empty() {
            return;
        }
        for mount in mounts {
            let path = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes())
                .expect("no NUL in a mount path");
            // SAFETY: umount2 with a valid C string.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
    eprintln!(
        "warning: mounts below {} could not all be removed",
        prefix.display()
    );
}

fn detach_loops_below(prefix: &Path) {
    let Ok(output) = Command::new("losetup")
        .args(["--list", "--noheadings", "--output", "NAME,BACK-FILE"])
        .output()
    else {
        return;
    };
    let prefix = prefix.to_string_lossy().into_owned();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some((device, file)) = line.trim().split_once(char::is_whitespace)
            && file.trim().starts_with(&prefix)
        {
            let _ = Command::new("losetup").args(["--detach", device]).status();
        }
    }
}

/// Drops every chain named `KUBE-*` and every rule that jumps to one, in
/// every table, for IPv4 and IPv6: the kubelet's and kube-proxy's, which
/// are the only ones of that prefix on this machine.
fn remove_kube_chains() {
    for (save, restore) in [
        ("iptables-save", "iptables-restore"),
        ("ip6tables-save", "ip6tables-restore"),
    ] {
        let Ok(output) = Command::new(save).output() else {
            continue;
        };
        let rules = String::from_utf8_lossy(&output.stdout);
        if !rules.contains("KUBE-") {
            continue;
        }
        let kept: String = rules
            .lines()
            .filter(|line| !line.contains("KUBE-"))
            .map(|line| format!("{line}\n"))
            .collect();
        let mut child = Command::new(restore)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {restore}: {e}"));
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(kept.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write to {restore}: {e}"));
        let status = child.wait().unwrap_or_else(|e| panic!("{restore}: {e}"));
        if !status.success() {
            eprintln!("warning: {restore} failed; KUBE-* chains may remain");
        }
    }
}

/// What the node's killed shims and CNI left outside its directory: a shim's
/// socket in /run/containerd/s (named by the SHA-256 of containerd's
/// address, namespace and task id) and libcni's cached results for each
/// sandbox (named `NETWORK-ID-INTERFACE`). The ids are those of the tasks
/// and sandboxes in the node's containerd state directories, for every
/// node directory below `node_dir` (a directory, or a name prefix).
fn remove_runtime_leftovers(node_dir: &Path) {
    use sha2::Digest as _;
    let prefix = node_dir.to_string_lossy().into_owned();
    let parent = node_dir.parent().unwrap_or(Path::new("/"));
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let containerd = dir.join("containerd");
        let socket = containerd.join("containerd.sock");
        let state = containerd.join("state");
        let mut ids = Vec::new();
        for listing in [
            state
                .join("io.containerd.runtime.v2.task")
                .join(CRI_NAMESPACE),
            state.join("io.containerd.grpc.v1.cri/sandboxes"),
        ] {
            if let Ok(entries) = fs::read_dir(listing) {
                ids.extend(
                    entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned()),
                );
            }
        }
        for id in ids {
            let key = format!("{}/{CRI_NAMESPACE}/{id}", socket.display());
            let shim = Path::new("/run/containerd/s").join(hex::encode(sha2::Sha256::digest(key)));
            let _ = fs::remove_file(shim);
            if let Ok(results) = fs::read_dir("/var/lib/cni/results") {
                for result in results.flatten() {
                    if result
                        .file_name()
                        .to_string_lossy()
                        .contains(&format!("-{id}-"))
                    {
                        let _ = fs::remove_file(result.path());
                    }
                }
            }
        }
    }
}

/// libcni caches each attachment's result under /var/lib/cni, named by
/// network; the containerd 1.6 CRI plugin offers no other directory.
fn remove_cni_results() {
    let dir = Path::new("/var/lib/cni/results");
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{CNI_NETWORK}-"))
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn remove_stale_node_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // Never delete through a mount that would not come off.
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(NODE_DIR_PREFIX)
            && mounts_below(&path).is_empty()
        {
            let _ = fs::remove_dir_all(path);
        }
    }
}

/// Runs a host command that must succeed.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if !output.status.success() {
        panic!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mount_path(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount_path(r"/plain"), "/plain");
        assert_eq!(unescape_mount_path(r"/odd\04"), r"/odd\04");
    }
}

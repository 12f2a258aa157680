//! Child processes the harness owns.
//!
//! Every component runs as a [`Daemon`]: its output goes to a log file that a
//! failure message quotes, it is killed when dropped (also while a test
//! panics), and the kernel kills it if the test process itself dies, so an
//! aborted or timed-out test never leaves an API server eating the machine.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// A long-running child process with its output in a log file.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Daemon {
        let out = open_log(log);
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot reopen log {}: {e}", log.display()));
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: a terminal's Ctrl-C reaches only the
            // harness, which then stops the components in order.
            .process_group(0);
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe system calls.
        unsafe {
            command.pre_exec(|| {
                // The PDEATHSIG is tied to the thread that forked, which is
                // why spawn_detached forks from a thread that never exits.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The cluster binary blocks SIGINT/SIGTERM to wait for them;
                // children must still die of them.
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                Ok(())
            });
        }
        let program = command.get_program().to_string_lossy().into_owned();
        let child = spawn_detached(command)
            .unwrap_or_else(|e| panic!("cannot start {name} ({program}): {e}"));
        Daemon {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// The component's name, as used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Polls `probe` until it returns true, panicking with the log's tail if
    /// the process exits or `timeout` passes first.
    pub fn wait_ready(&mut self, what: &str, timeout: Duration, mut probe: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if probe() {
                return;
            }
            if !self.is_running() {
                panic!(
                    "{} exited before {what}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not {what} after {timeout:?}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(30)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the process gracefully (SIGTERM), killing it if it has not
    /// exited within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + grace;
            while let Ok(None) = child.try_wait() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.wait();
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if thread::panicking() {
            eprintln!(
                "--- last lines of {} ({}):\n{}",
                self.name,
                self.log.display(),
                self.log_tail(15)
            );
        }
        self.kill();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A TCP port on `address` (an address of this machine) that was free a
/// moment ago.
pub fn free_port_on(address: IpAddr) -> u16 {
    TcpListener::bind((address, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port on {address}: {e}"))
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open log {}: {e}", path.display()))
}

type SpawnRequest = (Command, Sender<io::Result<Child>>);

/// Forks from one thread that lives as long as the process: the test harness
/// runs each test on its own thread, and a PDEATHSIG child forked from that
/// thread would die with it even while a shared cluster is still in use.
fn spawn_detached(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("sluice-e2e-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("cannot start the process spawner thread");
        requests
    });
    let (reply, result) = mpsc::channel();
    spawner
        .send((command, reply))
        .expect("the process spawner thread has stopped");
    result
        .recv()
        .expect("the process spawner thread has stopped")
}

/// Runs `command` to completion and returns its stdout; panics with the command line, stdout
/// and stderr when it cannot start or exits unsuccessfully, so a test's failure shows why.
pub fn succeed(mut command: Command) -> String {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `command` with `input` on its stdin and returns its stdout (bytes); panics like
/// [`succeed`]. For filters that read all input before writing, such as `openssl dgst`.
pub fn succeed_with_input(mut command: Command, input: &[u8]) -> Vec<u8> {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    std::io::Write::write_all(&mut child.stdin.take().expect("piped stdin"), input)
        .unwrap_or_else(|e| panic!("cannot write to {shown}: {e}"));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("cannot wait for {shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

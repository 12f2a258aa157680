//! SIGINT and SIGTERM for the long-running binaries (`make cluster`,
//! `make demo`): blocked in every thread and taken by one waiter, so a
//! Ctrl-C stops the components in order instead of killing the harness
//! mid-step. The components' own processes unblock them again (see
//! `sluice_testkit::process::Daemon::spawn`), so they still die of them.

/// The blocked stop signals.
pub struct StopSignals {
    set: libc::sigset_t,
}

impl StopSignals {
    /// Blocks SIGINT and SIGTERM in the calling thread. Call it before any
    /// other thread starts, so that every thread inherits the mask.
    pub fn block() -> StopSignals {
        // SAFETY: sigemptyset initialises the set before sigaddset and
        // pthread_sigmask use it.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            set
        };
        StopSignals { set }
    }

    /// Waits for the next stop signal and returns its number.
    pub fn wait(&self) -> i32 {
        let mut signal = 0;
        // SAFETY: the set is initialised and its signals are blocked.
        unsafe { libc::sigwait(&self.set, &mut signal) };
        signal
    }
}

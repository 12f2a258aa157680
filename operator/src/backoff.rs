//! How long to wait after a failed sync, and when not to retry at all.
//!
//! Transient failures (network, a lock held by a live process, an unexpected mover error) are
//! retried with capped exponential backoff so a broken bucket does not become a Job storm.
//! Failures that the same Job cannot fix (wrong password, missing Secret keys, no repository, a
//! lock a live process held past the mover's lock-retry window) wait for the user to change the
//! spec or the Secret.

use std::time::Duration;

use sluice_api::mover_result::ErrorClass;

/// Delay after the first failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(30);

/// No retry waits longer than this, so a fixed outage is noticed within the hour.
pub const MAX_RETRY: Duration = Duration::from_secs(3600);

/// What to do after a failed sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Start the next attempt after this delay.
    After(Duration),
    /// Start nothing until the spec or the repository Secret changes.
    WaitForChange,
}

/// The retry decision after `consecutive_failures` failures in a row (counting this one).
pub fn after_failure(class: ErrorClass, consecutive_failures: u32) -> Retry {
    if !class.is_retryable() {
        return Retry::WaitForChange;
    }
    Retry::After(retry_delay(consecutive_failures))
}

/// `FIRST_RETRY * 2^(n-1)`, capped at [`MAX_RETRY`].
pub fn retry_delay(consecutive_failures: u32) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1u32 << exponent).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_then_cap() {
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
        assert_eq!(retry_delay(0), FIRST_RETRY);
    }

    #[test]
    fn transient_failures_retry() {
        for class in [ErrorClass::Network, ErrorClass::Internal] {
            assert_eq!(
                after_failure(class, 2),
                Retry::After(Duration::from_secs(60))
            );
        }
    }

    #[test]
    fn permanent_failures_wait_for_a_change() {
        for class in [
            ErrorClass::WrongPassword,
            ErrorClass::RepositoryNotFound,
            ErrorClass::Config,
            ErrorClass::Corrupt,
            ErrorClass::NoSnapshot,
            ErrorClass::Locked,
        ] {
            assert_eq!(after_failure(class, 1), Retry::WaitForChange, "{class:?}");
        }
    }
}

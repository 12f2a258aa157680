//! The circuit breaker: a repository whose backend cannot be reached gets no more mover Jobs
//! until a probe reaches it again.
//!
//! Without it, an object-store outage becomes a pile of failed Jobs: every due source starts a
//! Job, each retries the backend for minutes, fails, and backs off on its own clock. Here the
//! first sync that fails because the backend is unreachable ([`trips`]) opens the repository's
//! breaker. Syncs due into it afterwards are parked: their objects say why, and no Job is
//! created. One probe at a time, a small mover Job that only asks the backend for the
//! repository's `config`, is let through on a capped exponential backoff ([`ProbePolicy`]);
//! when it reaches the backend (or any sync into the repository succeeds) the breaker closes
//! and the parked syncs are woken, in the order they were parked, to go through the
//! repository's queue ([`crate::queue`]) once each.
//!
//! Only reachability trips it: a wrong password, a missing path or an unreadable file is the
//! failing object's own, and is handled by that object's backoff or `Stalled` condition. Bad
//! credentials do not trip it either: they belong to one Secret, while the breaker is keyed by
//! the repository URL, which Secrets in other namespaces may share with working credentials;
//! each such object already stops after its first failure and waits for its Secret to change.
//!
//! [`Breakers`] holds every open breaker in the operator's memory; a restart forgets them, and
//! the first sync that fails again opens the breaker again.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use sluice_api::mover_result::ErrorClass;

use crate::{plan, queue::Syncer};

/// A probe Job that has not reported after this long is taken as failed (its Pod could not be
/// scheduled or pulled, or its owner was deleted), so a lost probe never wedges the breaker.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(120);

/// Probe Jobs are named `sluice-probe-OBJECT-SECONDS`.
pub const PROBE_JOB_PREFIX: &str = "sluice-probe";

/// How often the breaker probes a repository it finds unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbePolicy {
    /// The wait before the first probe; it doubles after each probe that fails.
    pub first: Duration,
    /// The longest wait between probes.
    pub max: Duration,
}

impl Default for ProbePolicy {
    /// 30 s, doubling to 10 minutes: an outage that ends is noticed within 10 minutes, and a
    /// long one costs six probe Jobs an hour.
    fn default() -> Self {
        Self {
            first: Duration::from_secs(30),
            max: Duration::from_secs(600),
        }
    }
}

impl ProbePolicy {
    /// The wait after `failed` probes in a row (0 before the first).
    pub fn delay(&self, failed: u32) -> Duration {
        self.first
            .saturating_mul(1u32 << failed.min(16))
            .min(self.max)
    }
}

/// Whether a sync that failed with `class` says its repository's backend is unreachable.
pub fn trips(class: ErrorClass) -> bool {
    matches!(class, ErrorClass::Network)
}

/// A probe Job in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The object whose namespace, Secret and owner reference the probe Job has.
    pub owner: Syncer,
    /// The probe Job's name.
    pub job_name: String,
    /// When it was created.
    pub started: Timestamp,
}

/// An open breaker: the repository has been unreachable since `since`.
#[derive(Clone, Debug)]
struct Outage {
    since: Timestamp,
    cause: String,
    failed_probes: u32,
    last_probe: Option<String>,
    next_probe: Timestamp,
    probe: Option<Probe>,
    /// The parked syncs, with when each was first parked.
    parked: BTreeMap<Syncer, Timestamp>,
}

/// Where a parked sync stands, for its condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parked {
    /// Unreachable since.
    pub since: Timestamp,
    /// The failure that opened the breaker, one line.
    pub cause: String,
    /// When the next probe may start; a probe in flight is named instead.
    pub next_probe: Timestamp,
    /// The probe Job in flight, if any.
    pub probing: Option<String>,
    /// Probes that failed so far.
    pub failed_probes: u32,
    /// What the last probe that failed reported.
    pub last_probe: Option<String>,
    /// Syncs parked, this one included.
    pub parked: usize,
}

impl Parked {
    /// The condition message of a sync parked for `repository`.
    pub fn describe(&self, repository: &str) -> String {
        let next = match &self.probing {
            Some(job) => format!("probe Job {job} is checking it now"),
            None => format!("next probe at {}", self.next_probe),
        };
        let last = match &self.last_probe {
            Some(message) => format!(" (last: {message})"),
            None => String::new(),
        };
        format!(
            "repository {repository} unreachable since {}: {}; {} syncs parked without a Job, \
             {} probes failed{last}, {next}",
            self.since, self.cause, self.parked, self.failed_probes
        )
    }
}

/// What the breaker says of a sync due into a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// The repository is not known to be down: go on to its queue.
    Pass,
    /// A probe is due and this sync's object runs it: create the probe Job named so.
    Probe {
        /// The probe Job's name.
        job_name: String,
        /// Where the parked sync stands meanwhile.
        parked: Parked,
    },
    /// Parked: no Job.
    Parked(Parked),
}

/// How a probe ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeEnd {
    /// The backend answered: the breaker closed, and these syncs, in the order they were
    /// parked, are woken.
    Healed {
        /// Unreachable since.
        since: Timestamp,
        /// The parked syncs to wake.
        woken: Vec<Syncer>,
    },
    /// Still unreachable; the next probe may start at this time.
    StillDown {
        /// When the next probe may start.
        next_probe: Timestamp,
        /// Probes that failed so far, this one included.
        failed_probes: u32,
    },
}

/// Every open breaker, by repository key ([`crate::repository::key`]).
#[derive(Debug)]
pub struct Breakers {
    policy: ProbePolicy,
    open: HashMap<String, Outage>,
}

impl Breakers {
    /// No breaker open; probes by `policy`.
    pub fn new(policy: ProbePolicy) -> Self {
        Self {
            policy,
            open: HashMap::new(),
        }
    }

    /// A sync into `repository` failed at `now` because its backend is unreachable (`cause`,
    /// one line). Returns whether this opened the breaker (false when it was open already).
    pub fn trip(&mut self, repository: &str, cause: &str, now: Timestamp) -> bool {
        if self.open.contains_key(repository) {
            return false;
        }
        self.open.insert(
            repository.to_string(),
            Outage {
                since: now,
                cause: cause.to_string(),
                failed_probes: 0,
                last_probe: None,
                next_probe: now + signed(self.policy.delay(0)),
                probe: None,
                parked: BTreeMap::new(),
            },
        );
        true
    }

    /// A sync into `repository` succeeded: whatever the breaker thought, the backend answers.
    /// Returns the parked syncs to wake, in order, when it was open.
    pub fn close(&mut self, repository: &str) -> Option<Vec<Syncer>> {
        self.open
            .remove(repository)
            .map(|outage| woken(outage.parked))
    }

    /// The sync of `syncer` is due into `repository` at `now`: whether it goes on, runs the
    /// probe, or is parked. A probe in flight past [`PROBE_DEADLINE`] counts as failed here.
    pub fn gate(&mut self, repository: &str, syncer: &Syncer, now: Timestamp) -> Gate {
        let Some(outage) = self.open.get_mut(repository) else {
            return Gate::Pass;
        };
        if outage
            .probe
            .as_ref()
            .is_some_and(|probe| now.duration_since(probe.started) >= signed(PROBE_DEADLINE))
        {
            outage.probe = None;
            outage.failed_probes = outage.failed_probes.saturating_add(1);
            outage.last_probe = Some(format!(
                "probe Job did not report within {} s",
                PROBE_DEADLINE.as_secs()
            ));
            outage.next_probe = now + signed(self.policy.delay(outage.failed_probes));
        }
        outage.parked.entry(syncer.clone()).or_insert(now);
        if outage.probe.is_none() && now >= outage.next_probe {
            let job_name = plan::job_name(PROBE_JOB_PREFIX, &syncer.name, now);
            outage.probe = Some(Probe {
                owner: syncer.clone(),
                job_name: job_name.clone(),
                started: now,
            });
            return Gate::Probe {
                job_name,
                parked: parked(outage),
            };
        }
        Gate::Parked(parked(outage))
    }

    /// The probe `syncer` runs for a repository, if it runs one.
    pub fn probe_of(&self, syncer: &Syncer) -> Option<(String, Probe)> {
        self.open.iter().find_map(|(repository, outage)| {
            outage
                .probe
                .as_ref()
                .filter(|probe| probe.owner == *syncer)
                .map(|probe| (repository.clone(), probe.clone()))
        })
    }

    /// The probe Job `job_name` into `repository` ended at `now`; `reached` says whether the
    /// backend answered, `message` what the probe reported. A report of a probe the breaker no
    /// longer waits for (it closed, or gave the probe up) changes nothing and returns `None`.
    pub fn probe_ended(
        &mut self,
        repository: &str,
        job_name: &str,
        reached: bool,
        message: &str,
        now: Timestamp,
    ) -> Option<ProbeEnd> {
        let outage = self.open.get_mut(repository)?;
        if outage.probe.as_ref().map(|p| p.job_name.as_str()) != Some(job_name) {
            return None;
        }
        outage.probe = None;
        if reached {
            let outage = self.open.remove(repository)?;
            return Some(ProbeEnd::Healed {
                since: outage.since,
                woken: woken(outage.parked),
            });
        }
        outage.failed_probes = outage.failed_probes.saturating_add(1);
        outage.last_probe = Some(message.to_string());
        outage.next_probe = now + signed(self.policy.delay(outage.failed_probes));
        Some(ProbeEnd::StillDown {
            next_probe: outage.next_probe,
            failed_probes: outage.failed_probes,
        })
    }

    /// Whether `repository`'s breaker is open.
    pub fn is_open(&self, repository: &str) -> bool {
        self.open.contains_key(repository)
    }

    /// The repositories with an open breaker, for the metrics.
    pub fn open_repositories(&self) -> Vec<String> {
        self.open.keys().cloned().collect()
    }
}

fn parked(outage: &Outage) -> Parked {
    Parked {
        since: outage.since,
        cause: outage.cause.clone(),
        next_probe: outage.next_probe,
        probing: outage.probe.as_ref().map(|probe| probe.job_name.clone()),
        failed_probes: outage.failed_probes,
        last_probe: outage.last_probe.clone(),
        parked: outage.parked.len(),
    }
}

/// The parked syncs in the order they were parked (then by name).
fn woken(parked: BTreeMap<Syncer, Timestamp>) -> Vec<Syncer> {
    let mut parked: Vec<_> = parked.into_iter().collect();
    parked.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    parked.into_iter().map(|(syncer, _)| syncer).collect()
}

fn signed(duration: Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

#[cfg(test)]
mod tests;

//! Who may start a sync into one repository now: at most `maxConcurrentJobs` syncs run into a
//! repository at once; a sync that prunes or checks runs alone, and once it waits, no sync
//! behind it starts before it; the others wait their turn, first come first served.
//!
//! [`admit`] is the decision, pure: the syncs running and the line of those waiting, in the
//! order they came, and which of them start. [`Queues`] holds that state for every repository
//! in the operator's memory; the reconciles of both kinds ask it before a sync starts and tell it
//! when one ends. It does not replace restic's locks, which the mover still takes: restic
//! itself, or another cluster, may use the same repository.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};

/// The default of `--max-concurrent-jobs`: mover Jobs running into one repository at once.
pub const DEFAULT_MAX_CONCURRENT_JOBS: u16 = 4;

/// How long a waiting sync stays in line without its object being reconciled again; longer
/// means the object was deleted or no longer wants to start, and its place is given up.
pub const WAITER_EXPIRY: SignedDuration = SignedDuration::from_mins(15);

/// One object that syncs: kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Syncer {
    /// `ReplicationSource` or `ReplicationDestination`.
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A sync that runs into the repository, or wants to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sync {
    /// Whose.
    pub syncer: Syncer,
    /// It prunes or checks, so it runs alone.
    pub exclusive: bool,
}

/// What [`admit`] says of one waiting sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// It starts now.
    Start,
    /// It waits.
    Queued(Place),
}

/// Where a waiting sync stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// Its place in line, from 1 (next).
    pub position: usize,
    /// How many wait.
    pub waiting: usize,
    /// What it waits for.
    pub blocked_by: Blocker,
}

impl Place {
    /// The condition message of a sync waiting here for `repository`, where at most `max`
    /// run at once.
    pub fn describe(&self, repository: &str, max: usize) -> String {
        let Self {
            position, waiting, ..
        } = self;
        let why = match &self.blocked_by {
            Blocker::Full { running } => {
                format!("{running} syncs run there, the most --max-concurrent-jobs={max} allows")
            }
            Blocker::Exclusive(syncer) => {
                format!("the prune or check of {syncer} runs there alone")
            }
            Blocker::Draining { running } => format!(
                "this sync prunes or checks, so it waits for the {running} running there to end \
                 and new syncs wait behind it"
            ),
        };
        format!("waiting for repository {repository}: {position} of {waiting} in line; {why}")
    }
}

/// Why the head of the line cannot start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// `running` syncs run, the most allowed.
    Full {
        /// Syncs running.
        running: usize,
    },
    /// The prune or check of this syncer runs, or waits ahead in line, and runs alone.
    Exclusive(Syncer),
    /// It prunes or checks, and waits for the `running` syncs to end.
    Draining {
        /// Syncs running.
        running: usize,
    },
}

/// Which of `waiting` (in line order) start, given `running` and the limit `max`: from the head
/// of the line, each sync that fits starts; the first that does not fit stops the line, so
/// syncs start in order and a waiting prune is not overtaken.
pub fn admit(running: &[Sync], waiting: &[Sync], max: usize) -> Vec<Admission> {
    let max = max.max(1);
    let mut count = running.len();
    let mut exclusive = running.iter().find(|s| s.exclusive).map(|s| &s.syncer);
    // What stopped the line, and who stands at its head.
    let mut stopped: Option<(Blocker, &Syncer)> = None;
    let mut admissions = Vec::with_capacity(waiting.len());
    let mut started = 0;
    for sync in waiting {
        if stopped.is_none() {
            let blocker = match exclusive {
                Some(holder) => Some(Blocker::Exclusive(holder.clone())),
                None if sync.exclusive && count > 0 => Some(Blocker::Draining { running: count }),
                None if count >= max => Some(Blocker::Full { running: count }),
                None => None,
            };
            let Some(blocker) = blocker else {
                count += 1;
                if sync.exclusive {
                    exclusive = Some(&sync.syncer);
                }
                admissions.push(Admission::Start);
                started += 1;
                continue;
            };
            stopped = Some((blocker, &sync.syncer));
        }
        let Some((blocker, head)) = &stopped else {
            unreachable!("a sync that does not start stops the line");
        };
        let position = admissions.len() + 1 - started;
        let blocked_by = match blocker {
            // Behind a prune that waits for the repository to drain, that prune is the reason.
            Blocker::Draining { .. } if position > 1 => Blocker::Exclusive((*head).clone()),
            blocker => blocker.clone(),
        };
        admissions.push(Admission::Queued(Place {
            position,
            waiting: 0,
            blocked_by,
        }));
    }
    let queued = admissions.len() - started;
    for admission in &mut admissions {
        if let Admission::Queued(place) = admission {
            place.waiting = queued;
        }
    }
    admissions
}

/// A sync in line: its ticket, for order, and when its object was last reconciled.
///
/// The ticket counts arrivals into line rather than holding a time: a reconcile takes its
/// `now` when it starts, and one that started earlier but reached the queue later would
/// otherwise step in front of a sync already told it was next.
#[derive(Clone, Debug)]
struct Waiter {
    exclusive: bool,
    ticket: u64,
    seen: Timestamp,
}

/// One repository's syncs.
#[derive(Clone, Debug, Default)]
struct Lane {
    running: BTreeMap<Syncer, bool>,
    waiting: BTreeMap<Syncer, Waiter>,
}

impl Lane {
    fn line(&self) -> Vec<(Syncer, bool)> {
        let mut line: Vec<_> = self.waiting.iter().collect();
        line.sort_by_key(|(_, waiter)| waiter.ticket);
        line.into_iter()
            .map(|(syncer, waiter)| (syncer.clone(), waiter.exclusive))
            .collect()
    }

    fn admissions(&self, max: usize) -> Vec<(Syncer, Admission)> {
        let running: Vec<Sync> = self
            .running
            .iter()
            .map(|(syncer, exclusive)| Sync {
                syncer: syncer.clone(),
                exclusive: *exclusive,
            })
            .collect();
        let line = self.line();
        let waiting: Vec<Sync> = line
            .iter()
            .map(|(syncer, exclusive)| Sync {
                syncer: syncer.clone(),
                exclusive: *exclusive,
            })
            .collect();
        let admissions = admit(&running, &waiting, max);
        line.into_iter()
            .map(|(syncer, _)| syncer)
            .zip(admissions)
            .collect()
    }
}

/// Every repository's running and waiting syncs, as this operator process knows them. Its
/// running syncs are rebuilt after a restart from the plans in the objects' status
/// ([`Queues::hold`]); order in line is the order syncs came in this process.
#[derive(Debug)]
pub struct Queues {
    max: usize,
    lanes: HashMap<String, Lane>,
    /// The ticket of the next sync to come into line.
    next_ticket: u64,
}

impl Queues {
    /// No syncs yet; at most `max` at once into one repository.
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            lanes: HashMap::new(),
            next_ticket: 0,
        }
    }

    /// The limit of syncs running into one repository at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// `sync` is due into `repository` at `now`: whether it starts now (then it counts as
    /// running) or waits, and where.
    pub fn request(&mut self, repository: &str, sync: &Sync, now: Timestamp) -> Admission {
        self.forget_elsewhere(&sync.syncer, repository);
        let lane = self.lanes.entry(repository.to_string()).or_default();
        if lane.running.contains_key(&sync.syncer) {
            // Admitted before, and its start was not recorded yet (a refused status write).
            return Admission::Start;
        }
        lane.waiting
            .retain(|_, w| now.duration_since(w.seen) < WAITER_EXPIRY);
        let ticket = match lane.waiting.get(&sync.syncer) {
            Some(waiter) => waiter.ticket,
            None => {
                self.next_ticket += 1;
                self.next_ticket
            }
        };
        lane.waiting.insert(
            sync.syncer.clone(),
            Waiter {
                exclusive: sync.exclusive,
                ticket,
                seen: now,
            },
        );
        let admission = lane
            .admissions(self.max)
            .into_iter()
            .find(|(syncer, _)| *syncer == sync.syncer)
            .map(|(_, admission)| admission)
            .unwrap_or(Admission::Start);
        if admission == Admission::Start {
            lane.waiting.remove(&sync.syncer);
            lane.running.insert(sync.syncer.clone(), sync.exclusive);
        }
        admission
    }

    /// `sync` runs into `repository` (its plan says so): it counts, whether this process
    /// started it or an earlier one did.
    /// Returns whether it was not counted yet.
    pub fn hold(&mut self, repository: &str, sync: &Sync) -> bool {
        self.forget_elsewhere(&sync.syncer, repository);
        let lane = self.lanes.entry(repository.to_string()).or_default();
        lane.waiting.remove(&sync.syncer);
        lane.running
            .insert(sync.syncer.clone(), sync.exclusive)
            .is_none()
    }

    /// `syncer` neither runs nor waits (its sync ended, it is not due, it was deleted). Returns
    /// the syncs that may start now that it is gone, to be woken; `None` when it held no place.
    pub fn release(&mut self, syncer: &Syncer) -> Option<Vec<Syncer>> {
        let mut woken = None;
        let max = self.max;
        for lane in self.lanes.values_mut() {
            let was_running = lane.running.remove(syncer).is_some();
            let was_waiting = lane.waiting.remove(syncer).is_some();
            if was_running || was_waiting {
                woken.get_or_insert_with(Vec::new).extend(
                    lane.admissions(max)
                        .into_iter()
                        .filter(|(_, admission)| *admission == Admission::Start)
                        .map(|(syncer, _)| syncer),
                );
            }
        }
        self.lanes
            .retain(|_, lane| !lane.running.is_empty() || !lane.waiting.is_empty());
        woken
    }

    /// Syncs running and waiting into `repository`.
    pub fn load(&self, repository: &str) -> (usize, usize) {
        self.lanes
            .get(repository)
            .map_or((0, 0), |lane| (lane.running.len(), lane.waiting.len()))
    }

    /// Every repository with its syncs running and waiting, for the metrics.
    pub fn loads(&self) -> Vec<(String, usize, usize)> {
        self.lanes
            .iter()
            .map(|(key, lane)| (key.clone(), lane.running.len(), lane.waiting.len()))
            .collect()
    }

    /// A syncer's repository changed (its Secret now names another): it leaves the old line.
    fn forget_elsewhere(&mut self, syncer: &Syncer, repository: &str) {
        for (key, lane) in &mut self.lanes {
            if key != repository {
                lane.running.remove(syncer);
                lane.waiting.remove(syncer);
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! Bounded queues between pipeline stages that block without spinning.
//!
//! A crossbeam channel spins and calls `sched_yield` before it parks a thread that waits on
//! it. Backup and restore stages wait on each other all the time (every chunk's id is a
//! hand-off), and on a machine with two cores that spinning took the cores from the threads
//! that had work: tens of thousands of `sched_yield` calls and involuntary context switches
//! per backup. These queues are a mutex and two condition variables: a waiting thread
//! sleeps at once and is woken by the hand-off it waits for.
//!
//! The API is the subset of crossbeam's the pipelines use: [`bounded`] gives a sender and
//! a receiver, both cloneable; `send` fails once every receiver is gone, `recv` once every
//! sender is gone and the queue is empty, and iterating a receiver ends there.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

struct State<T> {
    queue: VecDeque<T>,
    senders: usize,
    receivers: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panicking stage poisons nothing here that a later hand-off could see half-done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending side of a [`bounded`] queue.
pub struct Sender<T>(Arc<Shared<T>>);

/// The receiving side of a [`bounded`] queue.
pub struct Receiver<T>(Arc<Shared<T>>);

/// The other side is gone.
#[derive(Debug, PartialEq, Eq)]
pub struct Disconnected;

/// A queue that holds at most `capacity` items (at least one): a sender waits while it is
/// full, a receiver while it is empty.
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(capacity.clamp(1, 1024)),
            senders: 1,
            receivers: 1,
        }),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
        capacity: capacity.max(1),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Queues `value`, waiting while the queue is full; gives it back when no receiver is
    /// left.
    pub fn send(&self, value: T) -> Result<(), T> {
        let mut st = self.0.lock();
        while st.receivers > 0 && st.queue.len() >= self.0.capacity {
            st = self.0.not_full.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.receivers == 0 {
            return Err(value);
        }
        st.queue.push_back(value);
        drop(st);
        self.0.not_empty.notify_one();
        Ok(())
    }
}

impl<T> Receiver<T> {
    /// The next item, waiting while the queue is empty; `Disconnected` when it is empty and
    /// no sender is left.
    pub fn recv(&self) -> Result<T, Disconnected> {
        let mut st = self.0.lock();
        loop {
            if let Some(value) = st.queue.pop_front() {
                drop(st);
                self.0.not_full.notify_one();
                return Ok(value);
            }
            if st.senders == 0 {
                return Err(Disconnected);
            }
            st = self.0.not_empty.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.0.lock().receivers += 1;
        Receiver(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.senders -= 1;
        if st.senders == 0 {
            drop(st);
            self.0.not_empty.notify_all();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.receivers -= 1;
        if st.receivers == 0 {
            // What is still queued goes now, not when the last sender goes.
            let left = std::mem::take(&mut st.queue);
            drop(st);
            self.0.not_full.notify_all();
            drop(left);
        }
    }
}

/// Items until every sender is gone and the queue is empty.
pub struct Iter<'a, T>(&'a Receiver<T>);

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.0.recv().ok()
    }
}

/// Owned items until every sender is gone and the queue is empty.
pub struct IntoIter<T>(Receiver<T>);

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.0.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        Iter(self)
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_arrive_in_order_and_iteration_ends_with_the_senders() {
        let (tx, rx) = bounded(2);
        let producers: Vec<_> = (0..3)
            .map(|p| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        tx.send((p, i)).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut last = [-1i64; 3];
        let mut n = 0;
        for (p, i) in rx {
            assert!(i > last[p], "producer {p} out of order");
            last[p] = i;
            n += 1;
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(n, 3000);
    }

    #[test]
    fn send_fails_once_receivers_are_gone_even_when_full() {
        let (tx, rx) = bounded(1);
        tx.send(1).unwrap();
        let blocked = std::thread::spawn(move || tx.send(2));
        // The sender waits on the full queue until the receiver goes.
        drop(rx);
        assert_eq!(blocked.join().unwrap(), Err(2));
    }

    #[test]
    fn recv_drains_before_reporting_disconnection() {
        let (tx, rx) = bounded(4);
        let rx2 = rx.clone();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        drop(tx);
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx2.recv(), Ok(2));
        assert_eq!(rx.recv(), Err(Disconnected));
        assert_eq!((&rx2).into_iter().next(), None);
    }
}

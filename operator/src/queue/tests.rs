//! The admission rule by scenario, then the per-repository state around it.

use super::*;

fn syncer(name: &str) -> Syncer {
    Syncer {
        kind: "ReplicationSource".into(),
        namespace: "apps".into(),
        name: name.into(),
    }
}

fn backup(name: &str) -> Sync {
    Sync {
        syncer: syncer(name),
        exclusive: false,
    }
}

fn prune(name: &str) -> Sync {
    Sync {
        syncer: syncer(name),
        exclusive: true,
    }
}

fn queued(position: usize, waiting: usize, blocked_by: Blocker) -> Admission {
    Admission::Queued(Place {
        position,
        waiting,
        blocked_by,
    })
}

fn full(running: usize) -> Blocker {
    Blocker::Full { running }
}

/// A scenario: running, waiting in line, the limit, and what each waiting sync gets.
type Case = (&'static str, Vec<Sync>, Vec<Sync>, usize, Vec<Admission>);

#[test]
fn who_starts() {
    use Admission::Start;
    let cases: Vec<Case> = vec![
        (
            "an idle repository starts what fits, in order",
            vec![],
            vec![backup("a"), backup("b"), backup("c")],
            2,
            vec![Start, Start, queued(1, 1, full(2))],
        ),
        (
            "a full repository queues everyone, in order",
            vec![backup("r1"), backup("r2")],
            vec![backup("a"), backup("b")],
            2,
            vec![queued(1, 2, full(2)), queued(2, 2, full(2))],
        ),
        (
            "a running prune runs alone",
            vec![prune("p")],
            vec![backup("a")],
            4,
            vec![queued(1, 1, Blocker::Exclusive(syncer("p")))],
        ),
        (
            "a prune waits for running backups to end, and no backup behind it starts",
            vec![backup("r1")],
            vec![prune("p"), backup("a"), backup("b")],
            4,
            vec![
                queued(1, 3, Blocker::Draining { running: 1 }),
                queued(2, 3, Blocker::Exclusive(syncer("p"))),
                queued(3, 3, Blocker::Exclusive(syncer("p"))),
            ],
        ),
        (
            "backups ahead of a prune start; the prune then waits for them",
            vec![],
            vec![backup("a"), prune("p"), backup("b")],
            4,
            vec![
                Start,
                queued(1, 2, Blocker::Draining { running: 1 }),
                queued(2, 2, Blocker::Exclusive(syncer("p"))),
            ],
        ),
        (
            "a prune at the head of an idle repository starts, alone",
            vec![],
            vec![prune("p"), backup("a")],
            4,
            vec![Start, queued(1, 1, Blocker::Exclusive(syncer("p")))],
        ),
        (
            "a full line is not overtaken: nothing starts behind a sync that waits",
            vec![backup("r1")],
            vec![backup("a"), backup("b")],
            1,
            vec![queued(1, 2, full(1)), queued(2, 2, full(1))],
        ),
        (
            "a limit of 0 counts as 1",
            vec![],
            vec![backup("a"), backup("b")],
            0,
            vec![Start, queued(1, 1, full(1))],
        ),
        ("nothing waits", vec![backup("r1")], vec![], 1, vec![]),
    ];
    for (name, running, waiting, max, expected) in cases {
        assert_eq!(admit(&running, &waiting, max), expected, "{name}");
    }
}

fn at(minute: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + minute * 60).unwrap()
}

#[test]
fn syncs_start_in_the_order_they_came_and_a_release_wakes_the_next() {
    let mut queues = Queues::new(1);
    let repo = "s3:http://minio:9000/backups";
    assert_eq!(queues.request(repo, &backup("b"), at(0)), Admission::Start);
    assert_eq!(
        queues.request(repo, &backup("c"), at(1)),
        queued(1, 1, full(1))
    );
    // "a" sorts first by name but came later: it waits behind "c".
    assert_eq!(
        queues.request(repo, &backup("a"), at(2)),
        queued(2, 2, full(1))
    );
    // Asking again keeps the place.
    assert_eq!(
        queues.request(repo, &backup("c"), at(3)),
        queued(1, 2, full(1))
    );
    assert_eq!(queues.load(repo), (1, 2));
    assert_eq!(queues.release(&syncer("b")), Some(vec![syncer("c")]));
    assert_eq!(queues.request(repo, &backup("c"), at(4)), Admission::Start);
    assert_eq!(
        queues.request(repo, &backup("a"), at(4)),
        queued(1, 1, full(1))
    );
    assert_eq!(queues.release(&syncer("c")), Some(vec![syncer("a")]));
    assert_eq!(queues.request(repo, &backup("a"), at(5)), Admission::Start);
    assert_eq!(queues.release(&syncer("a")), Some(vec![]));
    assert_eq!(queues.release(&syncer("a")), None, "no place held");
    assert_eq!(queues.load(repo), (0, 0));
    assert!(queues.loads().is_empty(), "an empty lane is dropped");
}

/// A reconcile takes its time when it starts; one that started earlier but asks later still
/// waits behind the sync already in line (seen in CI: "b" was told 1 of 1, then "a" came
/// in front of it).
#[test]
fn the_line_is_the_order_of_asking_not_of_the_reconciles_clocks() {
    let mut queues = Queues::new(1);
    let repo = "s3:a";
    queues.hold(repo, &prune("c"));
    assert_eq!(
        queues.request(repo, &prune("b"), at(2)),
        queued(1, 1, Blocker::Exclusive(syncer("c")))
    );
    assert_eq!(
        queues.request(repo, &prune("a"), at(1)),
        queued(2, 2, Blocker::Exclusive(syncer("c")))
    );
    assert_eq!(queues.release(&syncer("c")), Some(vec![syncer("b")]));
}

#[test]
fn repositories_are_independent() {
    let mut queues = Queues::new(1);
    assert_eq!(
        queues.request("s3:a", &backup("x"), at(0)),
        Admission::Start
    );
    assert_eq!(
        queues.request("s3:b", &backup("y"), at(0)),
        Admission::Start
    );
}

#[test]
fn a_held_sync_counts_after_a_restart() {
    let mut queues = Queues::new(2);
    let repo = "s3:a";
    assert!(queues.hold(repo, &prune("p")));
    assert!(!queues.hold(repo, &prune("p")), "counted once");
    assert_eq!(
        queues.request(repo, &backup("x"), at(0)),
        queued(1, 1, Blocker::Exclusive(syncer("p")))
    );
    assert_eq!(queues.release(&syncer("p")), Some(vec![syncer("x")]));
}

#[test]
fn a_waiter_not_seen_again_gives_up_its_place() {
    let mut queues = Queues::new(1);
    let repo = "s3:a";
    queues.hold(repo, &backup("r"));
    queues.request(repo, &backup("gone"), at(0));
    let later = at(0) + WAITER_EXPIRY + SignedDuration::from_secs(1);
    assert_eq!(
        queues.request(repo, &backup("x"), later),
        queued(1, 1, full(1))
    );
}

#[test]
fn a_syncer_moved_to_another_repository_leaves_the_old_line() {
    let mut queues = Queues::new(1);
    queues.hold("s3:old", &backup("x"));
    assert_eq!(
        queues.request("s3:new", &backup("x"), at(0)),
        Admission::Start
    );
    assert_eq!(queues.load("s3:old"), (0, 0));
}

#[test]
fn a_waiting_sync_says_where_it_stands_and_why() {
    let repo = "s3:http://minio:9000/backups";
    let cases = [
        (
            queued(2, 5, full(4)),
            "waiting for repository s3:http://minio:9000/backups: 2 of 5 in line; 4 syncs run \
             there, the most --max-concurrent-jobs=4 allows",
        ),
        (
            queued(1, 1, Blocker::Exclusive(syncer("db"))),
            "waiting for repository s3:http://minio:9000/backups: 1 of 1 in line; the prune or \
             check of ReplicationSource apps/db runs there alone",
        ),
        (
            queued(1, 3, Blocker::Draining { running: 2 }),
            "waiting for repository s3:http://minio:9000/backups: 1 of 3 in line; this sync \
             prunes or checks, so it waits for the 2 running there to end and new syncs wait \
             behind it",
        ),
    ];
    for (admission, expected) in cases {
        let Admission::Queued(place) = admission else {
            unreachable!()
        };
        assert_eq!(place.describe(repo, 4), expected);
    }
}

#[test]
fn asking_again_after_being_admitted_still_starts() {
    let mut queues = Queues::new(1);
    assert_eq!(
        queues.request("s3:a", &backup("x"), at(0)),
        Admission::Start
    );
    assert_eq!(
        queues.request("s3:a", &backup("x"), at(0)),
        Admission::Start
    );
    assert_eq!(queues.load("s3:a"), (1, 0));
}

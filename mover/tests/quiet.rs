//! `-q/--quiet` behaves like restic's: no progress and no summaries, but
//! what a command is asked for (a snapshot list) is still printed.

mod support;

use std::fs;

use support::*;

#[test]
fn quiet_prints_only_what_was_asked_for() {
    let w = workdir();
    let repo = Repo::local(&w.path().join("repo"));
    let data = w.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a.txt"), "quiet please\n").unwrap();

    for args in [
        vec!["init", "-q"],
        vec!["backup", "--quiet", "."],
        vec!["backup", "-q", "."],
    ] {
        let out = ok(repo.sluice().args(&args).current_dir(&data));
        assert_eq!(stdout(&out), "", "sluice-mover {args:?} printed to stdout");
        assert_eq!(stderr(&out), "", "sluice-mover {args:?} printed to stderr");
    }
    let listed = stdout(&ok(repo.sluice().args(["snapshots", "-q"])));
    assert_eq!(
        listed.matches(" /").count(),
        2,
        "two snapshots listed:\n{listed}"
    );

    let target = w.path().join("restored");
    let target_arg = target.display().to_string();
    for args in [
        vec!["restore", "-q", "latest", "--target", target_arg.as_str()],
        vec!["forget", "-q", "--keep-last", "1", "--prune"],
        vec!["check", "-q", "--read-data"],
    ] {
        let out = ok(repo.sluice().args(&args));
        assert_eq!(stdout(&out), "", "sluice-mover {args:?} printed to stdout");
    }
    assert_eq!(
        fs::read_to_string(target.join("a.txt")).unwrap(),
        "quiet please\n"
    );
    ok(repo.restic().args(["check", "--read-data"]));
}

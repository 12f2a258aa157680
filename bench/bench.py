#!/usr/bin/env python3
"""Sluice vs restic benchmark (issue 4): same datasets, same operations, same run.

Generates deterministic datasets outside the tree, runs sluice-mover and restic
alternately on each (first backup, no-change backup, backup after 1% changed,
restore, forget+prune), records wall time, child CPU time, peak RSS and
repository size, and writes the tables to bench/results.md.

Stdlib only. Usage: python3 bench/bench.py [--scale 0.02] [--dir DIR]
                    [--datasets a,b] [--note TEXT]
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time

MiB = 1 << 20
GiB = 1 << 30
# Bump when a generator changes so stale datasets are regenerated.
GENERATOR_VERSION = 1
PASSWORD = "sluice-bench"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OPS = ["first backup", "no-change backup", "1% changed backup", "restore", "forget+prune"]


# ---------------------------------------------------------------- datasets


def scaled(n, scale, minimum):
    return max(minimum, int(n * scale))


def write_random(path, size, seed, piece=8 * MiB):
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(piece, left)
            f.write(rng.randbytes(n))
            left -= n


def vocabulary(seed=7, words=5000):
    rng = random.Random(seed)
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    weights = [12, 9, 8, 8, 7, 7, 6, 6, 6, 4, 4, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    return ["".join(rng.choices(letters, weights, k=rng.randint(2, 10))) for _ in range(words)]


def text_bytes(rng, vocab, size):
    """Log-like text: compresses well with zstd but does not deduplicate."""
    out = []
    total = 0
    while total < size:
        lines = []
        for _ in range(2000):
            words = " ".join(rng.choices(vocab, k=rng.randint(4, 14)))
            lines.append(f"{rng.randint(0, 10**9):09d} level={rng.choice('IWED')} {words}\n")
        chunk = "".join(lines).encode()
        out.append(chunk)
        total += len(chunk)
    return b"".join(out)[:size]


def gen_incompressible(d, scale):
    for i in range(8):
        write_random(os.path.join(d, f"random-{i:02d}.bin"), scaled(256 * MiB, scale, 64 * 1024), 1000 + i)


def gen_text(d, scale):
    vocab = vocabulary()
    size = scaled(32 * MiB, scale, 64 * 1024)
    for i in range(16):
        rng = random.Random(2000 + i)
        with open(os.path.join(d, f"log-{i:02d}.txt"), "wb") as f:
            left = size
            while left > 0:
                n = min(4 * MiB, left)
                f.write(text_bytes(rng, vocab, n))
                left -= n


def gen_small_files(d, scale):
    rng = random.Random(3000)
    vocab = vocabulary()
    pool = text_bytes(random.Random(3001), vocab, 4 * MiB)
    count = scaled(100_000, scale, 100)
    sizes = [0, 100, 512, 1024, 2048, 4096, 8192, 16384, 65536]
    weights = [2, 10, 15, 20, 20, 15, 10, 6, 2]
    for i in range(count):
        depth = 3 + rng.randrange(6)
        parts = [f"d{rng.randrange(4)}" for _ in range(depth)]
        sub = os.path.join(d, *parts)
        os.makedirs(sub, exist_ok=True)
        size = rng.choices(sizes, weights)[0]
        size = rng.randint(size // 2, size) if size else 0
        if rng.random() < 0.7:
            off = rng.randrange(len(pool) - size)
            data = pool[off:off + size]
        else:
            data = rng.randbytes(size)
        with open(os.path.join(sub, f"f{i:06d}.dat"), "wb") as f:
            f.write(data)


def gen_single_large(d, scale):
    write_random(os.path.join(d, "large.bin"), scaled(4 * GiB, scale, MiB), 4000)


def gen_sparse(d, scale):
    size = scaled(GiB, scale, 16 * MiB)
    extent = max(4096, scaled(MiB, scale, 4096) // 4096 * 4096)
    for i in range(4):
        rng = random.Random(5000 + i)
        with open(os.path.join(d, f"sparse-{i}.img"), "wb") as f:
            f.truncate(size)
            for k in range(16):
                off = (k * size // 16) // 4096 * 4096
                f.seek(off)
                f.write(rng.randbytes(extent))


DATASETS = {
    "incompressible": gen_incompressible,
    "text": gen_text,
    "small-files": gen_small_files,
    "single-4g": gen_single_large,
    "sparse": gen_sparse,
}


def ensure_dataset(work, name, scale):
    d = os.path.join(work, "data", name)
    marker = os.path.join(work, "data", name + ".json")
    want = {"version": GENERATOR_VERSION, "scale": scale}
    try:
        with open(marker) as f:
            if json.load(f) == want and os.path.isdir(d):
                return d
    except (OSError, ValueError):
        pass
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    t = time.monotonic()
    print(f"[{name}] generating at scale {scale} ...", flush=True)
    DATASETS[name](d, scale)
    print(f"[{name}] generated in {time.monotonic() - t:.1f}s", flush=True)
    with open(marker, "w") as f:
        json.dump(want, f)
    return d


def files_of(d):
    out = []
    for dirpath, dirnames, filenames in os.walk(d):
        dirnames.sort()
        for fn in sorted(filenames):
            out.append(os.path.join(dirpath, fn))
    return out


def dataset_sizes(d):
    """(apparent bytes, allocated bytes, file count)."""
    apparent = allocated = 0
    files = files_of(d)
    for p in files:
        st = os.stat(p)
        apparent += st.st_size
        allocated += min(st.st_size, st.st_blocks * 512)
    return apparent, allocated, len(files)


def modify_one_percent(d, seed=6000):
    """Overwrite ~1% of the data bytes in place, only inside data extents so
    sparse files keep their holes. Returns what is needed to undo it."""
    files = files_of(d)
    _, allocated, _ = dataset_sizes(d)
    budget = max(1, allocated // 100)
    rng = random.Random(seed)
    undo = []
    tries = 0
    while budget > 0 and files and tries < 100 * len(files):
        tries += 1
        path = files[rng.randrange(len(files))]
        size = os.path.getsize(path)
        if size == 0:
            continue
        fd = os.open(path, os.O_RDWR)
        try:
            try:
                start = os.lseek(fd, rng.randrange(size), os.SEEK_DATA)
                end = os.lseek(fd, start, os.SEEK_HOLE)
            except OSError:  # offset in a trailing hole
                continue
            n = min(budget, end - start, 1 * MiB)
            old = os.pread(fd, n, start)
            os.pwrite(fd, rng.randbytes(n), start)
            undo.append((path, start, old))
            budget -= n
        finally:
            os.close(fd)
    return undo


def undo_modification(undo):
    for path, start, old in reversed(undo):
        fd = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd, old, start)
        finally:
            os.close(fd)


# ---------------------------------------------------------------- measuring


def run_measured(argv, cwd, env, log_path):
    """Run argv; return dict(ok, wall, cpu, rss, err). Peak RSS is the child's
    VmHWM polled from /proc (wait4's ru_maxrss counts the forking parent)."""
    comm = os.path.basename(argv[0])[:15]
    with open(log_path, "ab") as log:
        log.write(("\n$ " + " ".join(argv) + "\n").encode())
        log.flush()
        t0 = time.monotonic()
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        hwm = 0
        status_path = f"/proc/{p.pid}/status"
        interval = 0.002
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            try:
                with open(status_path) as f:
                    txt = f.read()
                fields = dict(line.split(":", 1) for line in txt.splitlines() if ":" in line)
                # Before exec the child is a copy of this Python process.
                if fields.get("Name", "").strip() == comm and "VmHWM" in fields:
                    hwm = max(hwm, int(fields["VmHWM"].split()[0]) * 1024)
            except (OSError, ValueError):
                pass
            time.sleep(interval)
            interval = min(0.02, interval * 1.5)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    res = {"ok": p.returncode == 0, "wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss": hwm or None, "err": ""}
    if not res["ok"]:
        with open(log_path, "rb") as f:
            tail = f.read().decode(errors="replace").split("\n$ ")[-1].splitlines()[1:]
        first = next((line.strip() for line in tail if line.strip()), "")
        res["err"] = f"exit {p.returncode}: {first}"[:160]
    return res


def combine(a, b):
    """Sequential commands counted as one operation (forget then prune)."""
    if not a["ok"]:
        return a
    if not b["ok"]:
        return b
    rss = max(x for x in (a["rss"], b["rss"], 0) if x is not None) or None
    return {"ok": True, "wall": a["wall"] + b["wall"], "cpu": a["cpu"] + b["cpu"], "rss": rss, "err": ""}


def du_bytes(path):
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for fn in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, fn)).st_size
            except OSError:
                pass
    return total


class Tool:
    def __init__(self, name, binary, work, dataset):
        self.name = name
        self.binary = binary
        self.repo = os.path.join(work, "repos", f"{dataset}-{name}")
        self.restore_dir = os.path.join(work, "restore", f"{dataset}-{name}")
        self.log = os.path.join(work, "logs", f"{dataset}-{name}.log")
        self.env = dict(os.environ)
        self.env.update({
            "RESTIC_REPOSITORY": self.repo,
            "RESTIC_PASSWORD": PASSWORD,
            "RESTIC_COMPRESSION": "auto",
            "RESTIC_CACHE_DIR": os.path.join(work, "cache", f"{dataset}-{name}"),
        })
        for var in ("RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD_COMMAND", "RESTIC_PACK_SIZE"):
            self.env.pop(var, None)

    def reset(self):
        for p in (self.repo, self.restore_dir, self.env["RESTIC_CACHE_DIR"]):
            shutil.rmtree(p, ignore_errors=True)
        os.makedirs(os.path.dirname(self.repo), exist_ok=True)
        os.makedirs(os.path.dirname(self.log), exist_ok=True)
        if os.path.exists(self.log):
            os.remove(self.log)

    def run(self, args, cwd):
        return run_measured([self.binary] + args, cwd, self.env, self.log)

    def op(self, name, data_dir):
        if name in ("first backup", "no-change backup", "1% changed backup"):
            r = self.run(["backup", "."], data_dir)
        elif name == "restore":
            shutil.rmtree(self.restore_dir, ignore_errors=True)
            r = self.run(["restore", "latest", "--target", self.restore_dir], data_dir)
            shutil.rmtree(self.restore_dir, ignore_errors=True)
        else:
            f = self.run(["forget", "--keep-last", "1"], data_dir)
            r = combine(f, self.run(["prune"], data_dir)) if f["ok"] else f
        r["repo"] = du_bytes(self.repo)
        return r


def version_of(binary):
    try:
        out = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30)
        line = (out.stdout or out.stderr).strip().splitlines()
        if out.returncode == 0 and line:
            return line[0]
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"


# ---------------------------------------------------------------- machine limits


def sample_file(d, work, limit):
    """Up to `limit` bytes of the dataset (holes read as zeros, as a backup
    reads them) in one file for the throughput probes. Small datasets are
    repeated so process start-up does not dominate the probe."""
    path = os.path.join(work, "sample.bin")
    files = files_of(d)
    left = limit
    with open(path, "wb") as out:
        while left > 0:
            before = left
            for p in files:
                if left <= 0:
                    break
                with open(p, "rb") as f:
                    while left > 0:
                        buf = f.read(min(8 * MiB, left))
                        if not buf:
                            break
                        out.write(buf)
                        left -= len(buf)
            if left == before:  # empty dataset
                break
    return path, limit - left


def timed_cli(argv, repeat=3):
    """Best-of-a-few wall time of a CLI run (limits the noise of a loaded box)."""
    best = None
    for _ in range(repeat):
        t = time.monotonic()
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode != 0:
            lines = r.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(lines[0] if lines else f"exit {r.returncode}")
        el = time.monotonic() - t
        best = el if best is None else min(best, el)
    return best


def cli_throughput(argv_for, path, n):
    """Bytes/s of a CLI on `path`, minus its start-up time on an empty input."""
    empty = path + ".empty"
    open(empty, "wb").close()
    try:
        startup = timed_cli(argv_for(empty))
        el = timed_cli(argv_for(path))
    finally:
        os.remove(empty)
    return n / max(el - startup, 1e-3)


def openssl_speed_aes():
    """Bytes/s of one core doing AES-256-CTR, from `openssl speed`."""
    r = subprocess.run(["openssl", "speed", "-evp", "aes-256-ctr", "-seconds", "2", "-bytes", "16384"],
                       capture_output=True, text=True, timeout=120)
    for line in r.stdout.splitlines():
        if line.lower().startswith("aes-256-ctr"):
            return float(line.split()[-1].rstrip("k")) * 1000
    raise RuntimeError(f"no aes-256-ctr line in `openssl speed` output (exit {r.returncode})")


def machine_limits(d, work, scale):
    limit = scaled(256 * MiB, scale, 32 * MiB)
    path, n = sample_file(d, work, limit)
    repeated = n > dataset_sizes(d)[0]
    stages = {}
    notes = []
    with open(path, "rb") as f:
        data = f.read()
    best = None
    for _ in range(3):
        t = time.monotonic()
        hashlib.sha256(data).digest()
        el = time.monotonic() - t
        best = el if best is None else min(best, el)
    stages["SHA-256 (hashlib)"] = n / best
    del data
    if shutil.which("zstd"):
        try:
            stages["zstd -3 (CLI, 1 thread)"] = cli_throughput(lambda p: ["zstd", "-3", "-T1", "-q", "-c", p], path, n)
            csize = len(subprocess.run(["zstd", "-3", "-T1", "-q", "-c", path], capture_output=True).stdout)
            notes.append(f"zstd -3 ratio on the sample: {n / max(1, csize):.2f}")
        except RuntimeError as e:
            notes.append(f"zstd failed: {e}")
    else:
        notes.append("zstd: skipped, `zstd` CLI not found (apt-get install zstd)")
    if shutil.which("openssl"):
        try:
            stages["AES-256-CTR (openssl speed, 16 KiB blocks)"] = openssl_speed_aes()
            notes.append("AES is data-independent: `openssl speed -evp aes-256-ctr` measures the cipher, not file I/O")
        except (RuntimeError, ValueError, IndexError, subprocess.SubprocessError) as e:
            notes.append(f"openssl speed failed ({e}); using openssl enc on the sample")
            try:
                stages["AES-256-CTR (openssl enc)"] = cli_throughput(
                    lambda p: ["openssl", "enc", "-aes-256-ctr", "-K", "00" * 32, "-iv", "00" * 16, "-in", p, "-out", "/dev/null"], path, n)
            except RuntimeError as e2:
                notes.append(f"openssl enc failed: {e2}")
    else:
        notes.append("AES: skipped, `openssl` not found (apt-get install openssl)")
    if repeated:
        notes.append("the dataset is smaller than the sample, so it was repeated: the zstd ratio is inflated")
    notes.append("chunking (Rabin CDC): not measured, the stdlib has no native chunker")
    os.remove(path)
    return stages, notes, n


# ---------------------------------------------------------------- report


def fmt_s(x):
    return f"{x:.2f}" if x is not None else "n/a"


def fmt_mib(x):
    return f"{x / MiB:.1f}" if x else "n/a"


def ratio(a, b, fmt="{:.2f}×"):
    if a is None or b is None or not b:
        return "n/a"
    return fmt.format(a / b)


def table(rows):
    head = ["operation", "sluice wall s", "restic wall s", "speedup (restic/sluice)",
            "sluice CPU s", "restic CPU s", "sluice RSS MiB", "restic RSS MiB", "RSS sluice/restic",
            "sluice repo MiB", "restic repo MiB", "size sluice/restic"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    errors = []
    for op, s, r in rows:
        def cell(res, key, f):
            if not res["ok"]:
                return "n/a"
            return f(res[key])
        sw = s["wall"] if s["ok"] else None
        rw = r["wall"] if r["ok"] else None
        srss = s["rss"] if s["ok"] else None
        rrss = r["rss"] if r["ok"] else None
        out.append("| " + " | ".join([
            op, cell(s, "wall", fmt_s), cell(r, "wall", fmt_s), ratio(rw, sw),
            cell(s, "cpu", fmt_s), cell(r, "cpu", fmt_s),
            cell(s, "rss", fmt_mib), cell(r, "rss", fmt_mib), ratio(srss, rrss),
            fmt_mib(s["repo"]), fmt_mib(r["repo"]), ratio(s["repo"], r["repo"], "{:.3f}"),
        ]) + " |")
        for tool, res in (("sluice", s), ("restic", r)):
            if not res["ok"]:
                errors.append(f"- {op}, {tool}: {res['err']}")
    return "\n".join(out + ([""] + errors if errors else []))


def limits_table(apparent, stages, notes, sample, cores):
    out = [f"Sample: {sample / MiB:.1f} MiB of the dataset; bytes to process: {apparent / MiB:.1f} MiB (apparent size).", "",
           "| stage | MB/s per core (start-up excluded) | seconds for the dataset on 1 core |", "|---|---|---|"]
    for k, v in stages.items():
        out.append(f"| {k} | {v / 1e6:.0f} | {apparent / v:.2f} |")
    if stages:
        slowest = min(stages, key=stages.get)
        perfect = apparent / (stages[slowest] * cores)
        out.append(f"| **perfect pipeline on {cores} cores** (limited by {slowest}) | {stages[slowest] * cores / 1e6:.0f} total | **{perfect:.2f}** |")
    out += [""] + [f"- {n}" for n in notes]
    return "\n".join(out)


def mem_total():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def find_restic():
    cand = os.path.expanduser("~/.cache/sluice/bin/restic")
    if os.access(cand, os.X_OK):
        return cand
    return shutil.which("restic")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", "1.0")),
                    help="shrink every size and count (env BENCH_SCALE, default 1.0)")
    ap.add_argument("--dir", default=os.environ.get("BENCH_DIR", os.path.expanduser("~/.cache/sluice/bench-work")),
                    help="work dir for datasets and repositories (env BENCH_DIR)")
    ap.add_argument("--datasets", default=os.environ.get("BENCH_DATASETS", ",".join(DATASETS)),
                    help="comma-separated subset of: " + ", ".join(DATASETS))
    ap.add_argument("--note", default=os.environ.get("BENCH_NOTE", ""), help="free text added to the results header")
    ap.add_argument("--out", default=os.path.join(HERE, "results.md"))
    args = ap.parse_args()

    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/sluice/target"))
    sluice = os.path.join(target, "release", "sluice-mover")
    if not os.access(sluice, os.X_OK):
        sys.exit(f"sluice-mover not found at {sluice}: run `cargo build --release -p sluice-mover` (CARGO_TARGET_DIR={target})")
    restic = find_restic()
    if not restic:
        sys.exit("restic not found: run e2e/tools.sh restic (installs ~/.cache/sluice/bin/restic) or apt-get install restic")
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    for n in names:
        if n not in DATASETS:
            sys.exit(f"unknown dataset {n!r}: choose from {', '.join(DATASETS)}")

    work = os.path.abspath(args.dir)
    os.makedirs(work, exist_ok=True)
    cores = os.cpu_count() or 1
    load = os.getloadavg()
    header = [
        "# Sluice vs restic benchmark",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- machine: {platform.node()}, {cores} cores (nproc), {mem_total()} RAM, {platform.machine()}, kernel {platform.release()}",
        f"- load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        f"- sluice-mover: {version_of(sluice)} ({sluice})",
        f"- restic: {version_of(restic)} ({restic})",
        f"- scale: {args.scale} (1.0 = full-size datasets)",
        "- compression: auto for both; fresh local repository per tool and dataset; operations alternate sluice, restic",
        "- RSS: peak VmHWM of the child polled from /proc; CPU: user+sys of the child; repo: apparent bytes after the operation",
        "- forget+prune: `forget --keep-last 1` then `prune`, summed (RSS: max)",
    ]
    if args.note:
        header.append(f"- note: {args.note}")
    sections = []
    for name in names:
        d = ensure_dataset(work, name, args.scale)
        apparent, allocated, nfiles = dataset_sizes(d)
        tools = [Tool("sluice", sluice, work, name), Tool("restic", restic, work, name)]
        for t in tools:
            t.reset()
            r = t.run(["init"], d)
            if not r["ok"]:
                print(f"[{name}] {t.name} init failed: {r['err']}", flush=True)
        rows = []
        undo = None
        marker = os.path.join(work, "data", name + ".json")
        try:
            for op in OPS:
                if op == "1% changed backup":
                    os.remove(marker)  # the dataset is dirty until undone
                    undo = modify_one_percent(d)
                results = []
                for t in tools:
                    r = t.op(op, d)
                    msg = f"wall {r['wall']:.2f}s cpu {r['cpu']:.2f}s rss {fmt_mib(r['rss'])} MiB repo {fmt_mib(r['repo'])} MiB" if r["ok"] else r["err"]
                    print(f"[{name}] {op:18s} {t.name:7s} {msg}", flush=True)
                    results.append(r)
                rows.append((op, results[0], results[1]))
        finally:
            if undo is not None:
                undo_modification(undo)
                with open(marker, "w") as f:
                    json.dump({"version": GENERATOR_VERSION, "scale": args.scale}, f)
        print(f"[{name}] measuring machine limits ...", flush=True)
        stages, notes, sample = machine_limits(d, work, args.scale)
        for t in tools:
            t.reset()
        sec = "\n".join([
            f"## {name}",
            "",
            f"{nfiles} files, {apparent / MiB:.1f} MiB apparent, {allocated / MiB:.1f} MiB allocated.",
            "",
            table(rows),
            "",
            f"### {name}: this machine's limits",
            "",
            limits_table(apparent, stages, notes, sample, cores),
        ])
        print("\n" + sec + "\n", flush=True)
        sections.append(sec)
    doc = "\n".join(header) + "\n\n" + "\n\n".join(sections) + "\n"
    with open(args.out, "w") as f:
        f.write(doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

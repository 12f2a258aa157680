#!/usr/bin/env python3
"""Sluice vs restic benchmark (issues 4 and 15): same datasets, same operations, same run.

Generates deterministic datasets outside the tree (plus a copy of a real tree
nobody designed: this machine's toolchain and module caches), and for every
file system under test (the root file system, and on loop devices ext4 with
and without a journal and XFS, when run as root with the mkfs tools) runs
sluice-mover and restic alternately on each dataset (first backup, no-change
backup, backup after 1% changed, restore after a large delete, forget+prune).
It records wall time, child CPU time, peak RSS and repository size, measures
this machine's single-core rates of the stages (SHA-256, AES-256-CTR,
Poly1305, zstd and the chunker, with Sluice's own code: the `rates` example)
and of the file system (creates, writes), prints each operation's floor on
this machine and both tools' times as a share of it, backs up a Block volume
(an ext4 image read as its loop device, against restic backing up the image
file, then again after 1 MiB changed), runs a scale section (2 million 100-byte files at
10% and 100%, a 100 GiB sparse file with 1 GiB of data: time per million files, peak
RSS, how both grow), and writes the tables to bench/results.md.

Stdlib only. Usage: python3 bench/bench.py [--scale 1.0] [--dir DIR]
                    [--datasets a,b] [--fs root,ext4,...] [--note TEXT] [--block 0]
                    [--scale-section 0]
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
import threading
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


def real_tree_roots():
    """This machine's toolchain and module caches: hundreds of thousands of real files."""
    home = os.path.expanduser("~")
    cands = [os.path.join(home, ".rustup", "toolchains"), os.path.join(home, ".cargo", "registry"),
             os.path.join(home, ".cache", "sluice", "go", "pkg", "mod"), "/usr/lib/go", "/usr/share/doc"]
    return [c for c in cands if os.path.isdir(c)]


def gen_real_tree(d, scale):
    """A copy of the real tree's regular files, symlinks and directories in walk order,
    up to `scale` of its bytes (file metadata kept, as `cp -a` would)."""
    roots = real_tree_roots()
    if not roots:
        raise RuntimeError("no toolchain or module cache found to copy")
    entries = []
    total = 0
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for fn in sorted(filenames):
                p = os.path.join(dirpath, fn)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                entries.append((root, p, st.st_size))
                total += st.st_size
    budget = total * min(1.0, scale)
    copied = 0
    for root, p, size in entries:
        if copied >= budget:
            break
        rel = os.path.join(os.path.basename(os.path.dirname(root)) + "-" + os.path.basename(root),
                           os.path.relpath(p, root))
        dst = os.path.join(d, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            if os.path.islink(p):
                os.symlink(os.readlink(p), dst)
            elif os.path.isfile(p):
                shutil.copy2(p, dst)
            else:
                continue
        except OSError:
            continue
        copied += size


# Datasets of the scale section only: too large to repeat on every file system.
MANY_FILES = 2_000_000
SPARSE_BIG = 100 * GiB
SPARSE_BIG_DATA = GiB


def gen_many_files(d, scale):
    """MANY_FILES x 100-byte files of distinct content, 1,000 to a directory (Velero's
    Kopia path runs out of memory at 1 GiB on 2M x 100 B files)."""
    vocab = vocabulary()
    pool = text_bytes(random.Random(8001), vocab, MiB)
    count = scaled(MANY_FILES, scale, 1000)
    for i in range(count):
        if i % 1000 == 0:
            sub = os.path.join(d, f"{i // 100_000:03d}", f"{(i // 1000) % 100:02d}")
            os.makedirs(sub, exist_ok=True)
        off = (i * 91) % (len(pool) - 91)
        fd = os.open(os.path.join(sub, f"f{i:07d}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"%08d " % i + pool[off:off + 91])
        finally:
            os.close(fd)


def gen_sparse_big(d, scale):
    """One SPARSE_BIG file holding SPARSE_BIG_DATA of random data in 64 extents."""
    size = scaled(SPARSE_BIG, scale, 64 * MiB)
    extent = max(4096, scaled(SPARSE_BIG_DATA, scale, 256 * 1024) // 64 // 4096 * 4096)
    rng = random.Random(8100)
    with open(os.path.join(d, "sparse-100g.img"), "wb") as f:
        f.truncate(size)
        for k in range(64):
            f.seek((k * size // 64) // 4096 * 4096)
            f.write(rng.randbytes(extent))


DATASETS = {
    "incompressible": gen_incompressible,
    "text": gen_text,
    "small-files": gen_small_files,
    "single-4g": gen_single_large,
    "sparse": gen_sparse,
    "real-tree": gen_real_tree,
}


def ensure_dataset(work, name, scale, gen=None):
    """The dataset `name` at `scale` under the work dir, generated by `gen` (default: the
    generator of DATASETS) unless a marker says it is already there."""
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
    (gen or DATASETS[name])(d, scale)
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
    def __init__(self, name, binary, work, fs_root, dataset, churn_files, restore_flags=()):
        self.name = name
        self.restore_flags = list(restore_flags)
        self.binary = binary
        self.fs_root = fs_root
        self.churn_files = churn_files
        self.repo = os.path.join(fs_root, "repos", f"{dataset}-{name}")
        self.restore_dir = os.path.join(fs_root, "restore", f"{dataset}-{name}")
        self.log = os.path.join(work, "logs", f"{os.path.basename(fs_root)}-{dataset}-{name}.log")
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
            churn(self.fs_root, self.churn_files)
            r = self.run(["restore", "latest", "--target", self.restore_dir] + self.restore_flags, data_dir)
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
    """Up to `limit` bytes of the dataset's data (holes skipped, as a backup skips
    them) in one file for the rate probes. Small datasets are repeated so the
    probe runs long enough to mean something."""
    path = os.path.join(work, "sample.bin")
    files = [p for p in files_of(d) if not os.path.islink(p)]
    left = limit
    with open(path, "wb") as out:
        while left > 0:
            before = left
            for p in files:
                if left <= 0:
                    break
                try:
                    fd = os.open(p, os.O_RDONLY)
                except OSError:
                    continue
                try:
                    size = os.fstat(fd).st_size
                    pos = 0
                    while left > 0 and pos < size:
                        try:
                            pos = os.lseek(fd, pos, os.SEEK_DATA)
                            end = os.lseek(fd, pos, os.SEEK_HOLE)
                        except OSError:  # only a hole is left
                            break
                        while left > 0 and pos < end:
                            buf = os.pread(fd, min(8 * MiB, left, end - pos), pos)
                            if not buf:
                                break
                            out.write(buf)
                            left -= len(buf)
                            pos += len(buf)
                finally:
                    os.close(fd)
            if left == before:  # empty dataset
                break
    return path, limit - left


def stage_rates(rates_bin, d, work, scale):
    """Single-core rates of Sluice's own stages on a sample of the dataset (the `rates`
    example, best of 3), as {stage: {...}}."""
    path, n = sample_file(d, work, scaled(256 * MiB, scale, 32 * MiB))
    try:
        r = subprocess.run([rates_bin, path, "3"], capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError((r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1])
        out = {}
        for line in r.stdout.splitlines():
            row = json.loads(line)
            out[row["stage"]] = row
        return out, n
    finally:
        os.remove(path)


def lstat_rate(d):
    """Files per second one thread lstat()s (Python's own overhead included: a lower bound)."""
    paths = files_of(d)[:200_000]
    if not paths:
        return None
    best = None
    for _ in range(3):
        t = time.monotonic()
        for p in paths:
            os.lstat(p)
        el = time.monotonic() - t
        best = el if best is None else min(best, el)
    return len(paths) / max(best, 1e-6)


def fs_rates(root, cores, scale):
    """This file system's rates as a restore sees them, each best of 3: files created (and
    closed) per second with one thread per core, and bytes per second of buffered writes
    from one thread. Measured after a large delete, as a restore over a volume meets it."""
    n = scaled(20_000, scale, 2_000)
    create = None
    for rep in range(3):
        base = os.path.join(root, f"fs-probe-{rep}")
        churn(root, n)
        dirs = [os.path.join(base, f"t{i}") for i in range(cores)]
        for x in dirs:
            os.makedirs(x)

        def make(x, k):
            for i in range(k):
                os.close(os.open(os.path.join(x, f"f{i}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

        threads = [threading.Thread(target=make, args=(x, n // cores)) for x in dirs]
        t = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        el = time.monotonic() - t
        shutil.rmtree(base)
        rate = (n // cores * cores) / max(el, 1e-6)
        create = rate if create is None else max(create, rate)
    size = scaled(512 * MiB, scale, 64 * MiB)
    buf = os.urandom(MiB)
    write = None
    for rep in range(3):
        p = os.path.join(root, "fs-probe.bin")
        t = time.monotonic()
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for i in range(size // MiB):
            os.pwrite(fd, buf, i * MiB)
        os.close(fd)
        el = time.monotonic() - t
        os.remove(p)
        rate = size / max(el, 1e-6)
        write = rate if write is None else max(write, rate)
    subprocess.run(["sync"], check=False)
    return {"create_files_per_s": create, "write_bytes_per_s": write}


def floors(rates, fsr, allocated, nfiles, stat_rate, cores, level):
    """Each operation's floor on this machine, in seconds: the CPU its stages need at the
    measured single-core rates, spread over every core, and for restore also the file
    system's create and write time (whichever is longer). `allocated` bytes are read (holes
    are not); a dataset whose sample does not compress is not compressed, as Sluice does."""
    z = rates.get(f"zstd{level}", {})
    ratio = z.get("ratio", 1.0)
    compressible = ratio > 1.03
    stored = allocated / ratio if compressible else allocated
    per = lambda stage: 1.0 / rates[stage]["bytes_per_s"] if stage in rates else 0.0
    backup_cpu = (allocated * (per("chunker") + per("sha256"))
                  + (allocated * per(f"zstd{level}") if compressible else 0.0)
                  + stored * (per("seal") + per("sha256")))  # seal, then the pack's id
    unzstd = 1.0 / z["decompress_bytes_per_s"] if compressible and z.get("decompress_bytes_per_s") else 0.0
    restore_cpu = stored * per("seal") + allocated * (unzstd + per("sha256"))
    out = {"first backup": backup_cpu / cores}
    if stat_rate:
        out["no-change backup"] = nfiles / stat_rate / cores
        out["1% changed backup"] = out["no-change backup"] + out["first backup"] / 100
    fs_time = 0.0
    if fsr:
        fs_time = nfiles / fsr["create_files_per_s"] + allocated / fsr["write_bytes_per_s"]
    out["restore"] = max(restore_cpu / cores, fs_time)
    return out, {"ratio": ratio, "compressible": compressible, "stored": stored,
                 "backup_cpu": backup_cpu, "restore_cpu": restore_cpu, "fs_time": fs_time}


# ---------------------------------------------------------------- file systems


FILESYSTEMS = {
    "root": None,
    "ext4": ["mkfs.ext4", "-q", "-F"],
    "ext4-nojournal": ["mkfs.ext4", "-q", "-F", "-O", "^has_journal"],
    "xfs": ["mkfs.xfs", "-q", "-f"],
}


class BenchFs:
    """Where repositories and restores go: a directory on the root file system, or a fresh
    file system on a loop device over a sparse image on it (root only)."""

    def __init__(self, name, work, size):
        self.name = name
        self.mount = os.path.join(work, "fs", name)
        self.image = os.path.join(work, "fs", name + ".img")
        self.loop = None
        self.size = size
        self.skipped = None

    def __enter__(self):
        mkfs = FILESYSTEMS[self.name]
        if mkfs is None:
            os.makedirs(self.mount, exist_ok=True)
            return self
        if os.geteuid() != 0:
            self.skipped = "needs root (loop devices and mount)"
            return self
        if not shutil.which(mkfs[0]):
            pkg = "xfsprogs" if self.name == "xfs" else "e2fsprogs"
            self.skipped = f"`{mkfs[0]}` not found (apt-get install {pkg})"
            return self
        self.cleanup()
        os.makedirs(self.mount, exist_ok=True)
        with open(self.image, "wb") as f:
            f.truncate(self.size)
        try:
            self.loop = subprocess.run(["losetup", "--find", "--show", self.image], check=True,
                                       capture_output=True, text=True).stdout.strip()
            subprocess.run(mkfs + [self.loop], check=True, capture_output=True)
            subprocess.run(["mount", self.loop, self.mount], check=True, capture_output=True)
        except subprocess.CalledProcessError as e:
            self.skipped = f"{' '.join(e.cmd)} failed: {e.stderr.decode(errors='replace').strip()[:120]}"
            self.cleanup()
        return self

    def cleanup(self):
        if os.path.ismount(self.mount):
            subprocess.run(["umount", self.mount], check=False)
        if self.loop:
            subprocess.run(["losetup", "-d", self.loop], check=False)
            self.loop = None
        if os.path.exists(self.image):
            os.remove(self.image)

    def __exit__(self, *exc):
        if FILESYSTEMS[self.name] is not None:
            self.cleanup()
        else:
            shutil.rmtree(self.mount, ignore_errors=True)


def churn(root, n):
    """A large delete on the file system: `n` files created in 100 directories, synced and
    removed, as when a volume is restored over. Not timed."""
    if n == 0:
        return
    base = os.path.join(root, "churn")
    for i in range(n):
        sub = os.path.join(base, f"d{i % 100:02d}")
        if i < 100:
            os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i}"), "wb") as f:
            f.write(b"x" * 100)
    subprocess.run(["sync"], check=False)
    shutil.rmtree(base)
    subprocess.run(["sync"], check=False)


# ---------------------------------------------------------------- report


def fmt_s(x):
    return f"{x:.2f}" if x is not None else "n/a"


def fmt_mib(x):
    return f"{x / MiB:.1f}" if x else "n/a"


def ratio(a, b, fmt="{:.2f}×"):
    if a is None or b is None or not b:
        return "n/a"
    return fmt.format(a / b)


def table(rows, floor):
    head = ["operation", "sluice wall s", "restic wall s", "speedup (restic/sluice)",
            "floor s", "sluice share of floor", "restic share of floor",
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
        fl = floor.get(op)
        out.append("| " + " | ".join([
            op, cell(s, "wall", fmt_s), cell(r, "wall", fmt_s), ratio(rw, sw),
            fmt_s(fl), ratio(fl, sw, "{:.0%}"), ratio(fl, rw, "{:.0%}"),
            cell(s, "cpu", fmt_s), cell(r, "cpu", fmt_s),
            cell(s, "rss", fmt_mib), cell(r, "rss", fmt_mib), ratio(srss, rrss),
            fmt_mib(s["repo"]), fmt_mib(r["repo"]), ratio(s["repo"], r["repo"], "{:.3f}"),
        ]) + " |")
        for tool, res in (("sluice", s), ("restic", r)):
            if not res["ok"]:
                errors.append(f"- {op}, {tool}: {res['err']}")
    return "\n".join(out + ([""] + errors if errors else []))


def limits_table(rates, sample, fsr, stat_rate, detail, cores, level):
    out = [f"Single-core rates of Sluice's own code on {sample / MiB:.1f} MiB of the dataset (best of 3):", "",
           "| stage | MB/s per core | note |", "|---|---|---|"]
    for stage, row in rates.items():
        note = row.get("note", "")
        if "ratio" in row:
            note = f"ratio {row['ratio']:.3f}; decompress {row['decompress_bytes_per_s'] / 1e6:.0f} MB/s"
        if "chunks" in row:
            note = f"{row['chunks']} chunks"
        out.append(f"| {stage} | {row['bytes_per_s'] / 1e6:.0f} | {note} |")
    out.append("")
    if fsr:
        out.append(f"- file system (after a large delete): {fsr['create_files_per_s']:.0f} files created/s "
                   f"({cores} threads), {fsr['write_bytes_per_s'] / 1e6:.0f} MB/s buffered writes (1 thread)")
    if stat_rate:
        out.append(f"- lstat: {stat_rate:.0f} files/s on one thread (Python; a lower bound)")
    out.append(f"- floor model: first backup = (chunker + SHA-256 of the data{', zstd ' + str(level) if detail['compressible'] else ''}"
               f" + seal and pack SHA-256 of the {detail['stored'] / MiB:.1f} MiB stored) / {cores} cores"
               f" = {detail['backup_cpu']:.2f} CPU-s / {cores}; restore = max(open {detail['restore_cpu']:.2f} CPU-s / {cores},"
               f" creates + writes {detail['fs_time']:.2f} s); no-change = lstat of every file / {cores}")
    out.append("- share of floor: floor / wall time; 100% is the machine's limit")
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


def load_note():
    load = os.getloadavg()
    return f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


# ---------------------------------------------------------------- block volumes


def block_section(work, scale, sluice, restic, sources):
    """A Block volume's backup (issue 14.3): an ext4 image holding `sources` (dataset
    directories), read by sluice-mover's Job as the loop device over it, as a mover Pod reads
    its `volumeDevices` entry, against restic backing up the same image file. Then 1 MiB of
    the image changes and both back up again: wall time, MB/s of the device, repository growth."""
    if os.geteuid() != 0:
        return "skipped: needs root (loop devices and mount)"
    if not shutil.which("mkfs.ext4"):
        return "skipped: `mkfs.ext4` not found (apt-get install e2fsprogs)"
    size = max(256 * MiB, int(4 * GiB * scale)) // MiB * MiB
    base = os.path.join(work, "block")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    image = os.path.join(base, "volume.img")
    mnt = os.path.join(base, "mnt")
    os.makedirs(mnt)
    with open(image, "wb") as f:
        f.truncate(size)
    subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
    subprocess.run(["mount", "-o", "loop", image, mnt], check=True)
    try:
        budget = size * 6 // 10
        for src in sources:
            for path in files_of(src):
                n = os.lstat(path).st_size
                if n > budget:
                    continue
                dst = os.path.join(mnt, os.path.basename(src), os.path.relpath(path, src))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copyfile(path, dst, follow_symlinks=False)
                budget -= n
    finally:
        subprocess.run(["umount", mnt], check=True)
    used = os.stat(image).st_blocks * 512
    loop = subprocess.run(["losetup", "--find", "--show", "--read-only", image], check=True,
                          capture_output=True, text=True).stdout.strip()
    rows = []
    try:
        sl = Tool("sluice", sluice, work, base, "block", 0)
        rs = Tool("restic", restic, work, base, "block", 0)
        for t in (sl, rs):
            t.reset()
            init = t.run(["init"], base)
            if not init["ok"]:
                return f"skipped: {t.name} init failed: {init['err']}"
        sl.env.update({"SLUICE_JOB_ACTIONS": "backup", "SLUICE_BLOCK_DEVICE": loop,
                       "SLUICE_HOSTNAME": "bench-block",
                       "SLUICE_RESULT_FILE": os.path.join(base, "result.json")})
        for op in ("first backup", "after 1 MiB changed"):
            if op == "after 1 MiB changed":
                with open(image, "r+b") as f:
                    f.seek(size // 2 // MiB * MiB)
                    f.write(random.Random(15).randbytes(MiB))
                    f.flush()
                    os.fsync(f.fileno())
                # The loop device reads through the page cache of the image file.
                subprocess.run(["blockdev", "--flushbufs", loop], check=False)
            before = (du_bytes(sl.repo), du_bytes(rs.repo))
            a = sl.run(["job"], base)
            b = rs.run(["backup", "--host", "bench-block", "volume.img"], base)
            grew = (du_bytes(sl.repo) - before[0], du_bytes(rs.repo) - before[1])
            rows.append((op, a, b, grew))
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
    out = [f"{size / MiB:.0f} MiB ext4 image, {used / MiB:.0f} MiB allocated (the rest reads as zeros); "
           f"Sluice reads the loop device as a Block mover does, restic the image file; load average {load_note()}.",
           "",
           "| operation | sluice wall s | restic wall s | speedup (restic/sluice) | sluice MB/s | restic MB/s | sluice CPU s | restic CPU s | sluice RSS MiB | restic RSS MiB | sluice repo growth MiB | restic repo growth MiB |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for op, a, b, grew in rows:
        if not (a["ok"] and b["ok"]):
            out.append(f"| {op} | {a['err'] or 'ok'} | {b['err'] or 'ok'} | | | | | | | | | |")
            continue
        out.append(f"| {op} | {fmt_s(a['wall'])} | {fmt_s(b['wall'])} | {ratio(b['wall'], a['wall'])} | "
                   f"{size / a['wall'] / 1e6:.0f} | {size / b['wall'] / 1e6:.0f} | {fmt_s(a['cpu'])} | {fmt_s(b['cpu'])} | "
                   f"{fmt_mib(a['rss'])} | {fmt_mib(b['rss'])} | {grew[0] / MiB:.1f} | {grew[1] / MiB:.1f} |")
    shutil.rmtree(base, ignore_errors=True)
    return "\n".join(out)


def scale_section(work, scale, sluice, restic):
    """Issue 15.4: 2 million small files and a 100 GiB sparse file, on the root file system,
    with how time and memory grow from 10% to 100% of the file count."""
    root = os.path.join(work, "scale")
    cases = []  # (dataset label, files, [(op, sluice, restic)])
    for fraction in (0.1, 1.0):
        name = f"many-files-{fraction:g}"
        d = ensure_dataset(work, name, scale * fraction, gen_many_files)
        cases.append((name, d, ["first backup", "no-change backup", "restore"], ()))
    d = ensure_dataset(work, "sparse-100g", scale, gen_sparse_big)
    # restic writes the zeros of a sparse file unless told not to.
    cases.append(("sparse-100g", d, ["first backup", "no-change backup", "restore"], ("--sparse",)))
    load_before = load_note()
    measured = []
    for name, d, ops, restic_flags in cases:
        apparent, allocated, nfiles = dataset_sizes(d)
        tools = [Tool("sluice", sluice, work, root, name, 0),
                 Tool("restic", restic, work, root, name, 0, restic_flags)]
        rows = []
        for t in tools:
            t.reset()
            t.run(["init"], d)
        for op in ops:
            results = []
            for t in tools:
                r = t.op(op, d)
                msg = f"wall {r['wall']:.2f}s cpu {r['cpu']:.2f}s rss {fmt_mib(r['rss'])} MiB" if r["ok"] else r["err"]
                print(f"[scale/{name}] {op:18s} {t.name:7s} {msg}", flush=True)
                results.append(r)
            rows.append((op, results[0], results[1]))
        for t in tools:
            t.reset()
        measured.append((name, apparent, allocated, nfiles, rows))
    return scale_tables(measured, load_before)


def scale_tables(measured, load_before):
    head = ["dataset", "files", "operation", "sluice wall s", "restic wall s", "speedup (restic/sluice)",
            "sluice s per million files", "restic s per million files", "sluice CPU s", "restic CPU s",
            "sluice RSS MiB", "restic RSS MiB", "sluice repo MiB", "restic repo MiB"]
    out = [f"Root file system, no delete before the restore; load average {load_before} before, {load_note()} after.", ""]
    out += [f"- {name}: {nfiles} files, {apparent / GiB:.2f} GiB apparent, {allocated / GiB:.2f} GiB allocated"
            for name, apparent, allocated, nfiles, _ in measured]
    out += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    errors = []
    for name, apparent, allocated, nfiles, rows in measured:
        for op, s, r in rows:
            def cell(res, key, f):
                return f(res[key]) if res["ok"] else "n/a"

            def per_million(res):
                return fmt_s(res["wall"] * 1e6 / nfiles) if res["ok"] and nfiles >= 1000 else "n/a"
            out.append("| " + " | ".join([
                name, str(nfiles), op, cell(s, "wall", fmt_s), cell(r, "wall", fmt_s),
                ratio(r["wall"] if r["ok"] else None, s["wall"] if s["ok"] else None),
                per_million(s), per_million(r), cell(s, "cpu", fmt_s), cell(r, "cpu", fmt_s),
                cell(s, "rss", fmt_mib), cell(r, "rss", fmt_mib), fmt_mib(s["repo"]), fmt_mib(r["repo"]),
            ]) + " |")
            for tool, res in (("sluice", s), ("restic", r)):
                if not res["ok"]:
                    errors.append(f"- {name}, {op}, {tool}: {res['err']}")
    growth = growth_table(measured)
    return "\n".join(out + ([""] + errors if errors else []) + ([""] + growth if growth else []))


def growth_table(measured):
    """Sluice's and restic's time and peak RSS at 10% and at 100% of the file count, and the factor
    each grew by (10x the files: 10.0 is linear)."""
    small = next((m for m in measured if m[0] == "many-files-0.1"), None)
    full = next((m for m in measured if m[0] == "many-files-1"), None)
    if not small or not full:
        return []
    out = [f"Growth from {small[3]} to {full[3]} files ({full[3] / small[3]:.1f}x the files):", "",
           "| operation | tool | wall s at 10% | wall s at 100% | wall grew | RSS MiB at 10% | RSS MiB at 100% | RSS grew |",
           "|---|---|---|---|---|---|---|---|"]
    for (op, s0, r0), (_, s1, r1) in zip(small[4], full[4]):
        for tool, a, b in (("sluice", s0, s1), ("restic", r0, r1)):
            if not (a["ok"] and b["ok"]):
                continue
            out.append(f"| {op} | {tool} | {fmt_s(a['wall'])} | {fmt_s(b['wall'])} | {ratio(b['wall'], a['wall'], '{:.1f}x')} "
                       f"| {fmt_mib(a['rss'])} | {fmt_mib(b['rss'])} | {ratio(b['rss'], a['rss'], '{:.1f}x')} |")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=float(os.environ.get("BENCH_SCALE", "1.0")),
                    help="shrink every size and count (env BENCH_SCALE, default 1.0)")
    ap.add_argument("--dir", default=os.environ.get("BENCH_DIR", os.path.expanduser("~/.cache/sluice/bench-work")),
                    help="work dir for datasets and repositories, on the root file system (env BENCH_DIR)")
    ap.add_argument("--datasets", default=os.environ.get("BENCH_DATASETS", ",".join(DATASETS)),
                    help="comma-separated subset of: " + ", ".join(DATASETS))
    ap.add_argument("--fs", default=os.environ.get("BENCH_FS", ",".join(FILESYSTEMS)),
                    help="comma-separated subset of: " + ", ".join(FILESYSTEMS))
    ap.add_argument("--note", default=os.environ.get("BENCH_NOTE", ""), help="free text added to the results header")
    ap.add_argument("--block", default=os.environ.get("BENCH_BLOCK", "1"),
                    help="0 skips the Block volume section (env BENCH_BLOCK)")
    ap.add_argument("--scale-section", default=os.environ.get("BENCH_SCALE_SECTION", "1"),
                    help="0 skips the 2M files and 100 GiB sparse section (env BENCH_SCALE_SECTION)")
    ap.add_argument("--out", default=os.path.join(HERE, "results.md"))
    args = ap.parse_args()

    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/sluice/target"))
    sluice = os.path.join(target, "release", "sluice-mover")
    rates_bin = os.path.join(target, "release", "examples", "rates")
    for b, how in ((sluice, "cargo build --release -p sluice-mover"),
                   (rates_bin, "cargo build --release -p sluice-repo --example rates")):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} not found: run `{how}` (CARGO_TARGET_DIR={target}), or `make bench`")
    restic = find_restic()
    if not restic:
        sys.exit("restic not found: run e2e/tools.sh restic (installs ~/.cache/sluice/bin/restic) or apt-get install restic")
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    for n in names:
        if n not in DATASETS:
            sys.exit(f"unknown dataset {n!r}: choose from {', '.join(DATASETS)}")
    fss = [n.strip() for n in args.fs.split(",") if n.strip()]
    for n in fss:
        if n not in FILESYSTEMS:
            sys.exit(f"unknown file system {n!r}: choose from {', '.join(FILESYSTEMS)}")

    work = os.path.abspath(args.dir)
    os.makedirs(work, exist_ok=True)
    cores = os.cpu_count() or 1
    level = 3  # Sluice's zstd level for `auto` (repository.rs)
    header = [
        "# Sluice vs restic benchmark",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- machine: {platform.node()}, {cores} cores (nproc), {mem_total()} RAM, {platform.machine()}, kernel {platform.release()}",
        f"- load average at start: {load_note()} (each section notes it again)",
        f"- sluice-mover: {version_of(sluice)} ({sluice})",
        f"- restic: {version_of(restic)} ({restic})",
        f"- scale: {args.scale} (1.0 = full-size datasets)",
        "- compression: auto for both; fresh repository per tool, dataset and file system; operations alternate sluice, restic",
        "- datasets are read from the root file system; repositories and restores are on the file system of the section",
        "- restore runs after a large delete on its file system (files created, synced and removed; not timed)",
        "- RSS: peak VmHWM of the child polled from /proc; CPU: user+sys of the child; repo: apparent bytes after the operation",
        "- forget+prune: `forget --keep-last 1` then `prune`, summed (RSS: max)",
    ]
    if args.note:
        header.append(f"- note: {args.note}")
    sections = []
    for name in names:
        d = ensure_dataset(work, name, args.scale)
        apparent, allocated, nfiles = dataset_sizes(d)
        print(f"[{name}] measuring stage rates ...", flush=True)
        rates, sample = stage_rates(rates_bin, d, work, args.scale)
        stat_rate = lstat_rate(d)
        for fs_name in fss:
            size = max(8 * GiB, 4 * allocated)
            with BenchFs(fs_name, work, size) as fs:
                title = f"## {name} on {fs_name}"
                if fs.skipped:
                    print(f"[{name}/{fs_name}] skipped: {fs.skipped}", flush=True)
                    sections.append(f"{title}\n\nskipped: {fs.skipped}")
                    continue
                sec = run_section(name, fs_name, fs.mount, d, work, args.scale, sluice, restic,
                                  (apparent, allocated, nfiles), rates, sample, stat_rate, cores, level)
                sections.append(f"{title}\n\n{sec}")
                print(f"\n{title}\n\n{sec}\n", flush=True)
    if args.block != "0":
        print("[block] Block volume backup ...", flush=True)
        sources = [ensure_dataset(work, n, args.scale) for n in ("text", "incompressible")]
        sec = block_section(work, args.scale, sluice, restic, sources)
        sections.append(f"## Block volume backup\n\n{sec}")
        print(f"\n## Block volume backup\n\n{sec}\n", flush=True)
    if args.scale_section != "0":
        print("[scale] 2M files and a 100 GiB sparse file ...", flush=True)
        sec = scale_section(work, args.scale, sluice, restic)
        sections.append(f"## Scale: 2 million files, a 100 GiB sparse file\n\n{sec}")
        print(f"\n## Scale\n\n{sec}\n", flush=True)
    doc = "\n".join(header) + "\n\n" + "\n\n".join(sections) + "\n"
    with open(args.out, "w") as f:
        f.write(doc)
    print(f"wrote {args.out}")


def run_section(name, fs_name, root, d, work, scale, sluice, restic, sizes, rates, sample, stat_rate, cores, level):
    apparent, allocated, nfiles = sizes
    load_before = load_note()
    churn_files = scaled(100_000, scale, 10_000)
    tools = [Tool("sluice", sluice, work, root, name, churn_files),
             Tool("restic", restic, work, root, name, churn_files)]
    for t in tools:
        t.reset()
        r = t.run(["init"], d)
        if not r["ok"]:
            print(f"[{name}/{fs_name}] {t.name} init failed: {r['err']}", flush=True)
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
                print(f"[{name}/{fs_name}] {op:18s} {t.name:7s} {msg}", flush=True)
                results.append(r)
            rows.append((op, results[0], results[1]))
    finally:
        if undo is not None:
            undo_modification(undo)
            with open(marker, "w") as f:
                json.dump({"version": GENERATOR_VERSION, "scale": scale}, f)
    for t in tools:
        t.reset()
    print(f"[{name}/{fs_name}] measuring the file system ...", flush=True)
    fsr = fs_rates(root, cores, scale)
    floor, detail = floors(rates, fsr, allocated, nfiles, stat_rate, cores, level)
    return "\n".join([
        f"{nfiles} files, {apparent / MiB:.1f} MiB apparent, {allocated / MiB:.1f} MiB allocated; "
        f"load average {load_before} before, {load_note()} after.",
        "",
        table(rows, floor),
        "",
        limits_table(rates, sample, fsr, stat_rate, detail, cores, level),
    ])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""b2m's figures, each beside what a user would otherwise run, in one run.

    python3 bench/bench.py [--sizes 64,1024] [--runs N] [--no-build] [--smoke]
                           [--pages [--pages-size MiB] [--storage-size MiB]]
                           [--memory-sizes 1024,2048] [--only SECTIONS]

For each database size (MiB): upload and download against one local S3 server (s3s-fs on
127.0.0.1) beside `sqlite3 .backup` + `aws s3 cp` and `rclone copyto`, with every tool's peak
memory and b2m's lease wait; on a local-folder bucket, hashing with b2m's hash cache cold beside
`sha256sum` (and status with it warm), and an upload beside `sqlite3 .backup` + `cp`; a no-op
preflight with 3 databases of that size beside 3 of 1 MiB; bucket requests per command. Then a
no-op preflight and a download through a proxy adding 40 ms of round trip (bench/delay_proxy.py),
and a journal replay beside the sqlite3 shell.

With --pages (and in --smoke, at 4 MiB), the figures of issue 20 (versions stored as pages) on a
text-heavy database of --pages-size MiB (default 1024): its full upload fresh, beside full copies
by `aws s3 cp` and `rclone copyto`; versions where 1% of the pages changed in separate places
(rows updated across the file until a page diff of the file before and after says so), each
published by a dev project and fetched by a server on the previous version; the same fetch
through a link of 100 Mbit/s and 40 ms of round trip beside a full `aws s3 cp` through it; a
server three versions behind; a DROP TABLE + VACUUM; a cold fetch; `sqlite3_rsync` on local
paths where it is installed (the bound a bucket cannot beat); and the bucket's storage after 30
versions of a --storage-size MiB database (default 64). `--only pages-memory` runs the same
commands (fresh upload, cold fetch, a 1% version published and fetched, a DROP TABLE + VACUUM
published and fetched, a cold fetch after it) at each of --memory-sizes (default 1024,2048)
straight to the server, for the peak memory of each at each size: flat means no more at the
largest than at the smallest, within run-to-run noise. Every command of that section runs
through bench/shape_proxy.py, which counts bytes each way and requests by method (and shapes the
link when asked), so each row has them beside the wall time and peak memory; the loopback wall
times a target compares are measured again straight to the server (the fresh upload beside
rclone's in 5 alternating rounds, compared by medians). The commands are
the plain `b2m upload DB` and `b2m download DB`, so the section measures today's b2m (whole
files) and a b2m that stores pages alike. `--only pages` runs that section alone.

Each figure is the median (min–max) of several runs, the tools taking turns (b2m, anchor 1,
anchor 2, b2m, …), timed as the wall clock of the whole process; no-op preflights, which take
milliseconds, run NOOP_RUNS times as often; the pages section measures each figure once (its
versions follow one another). The report is printed and written to bench/results/. awscli (into
target/bench-venv), rclone, sqlite3 and zstd install themselves when missing; an anchor that
cannot run is shown as n/a. The exit status is 1 only when a b2m command fails (or the pages
section's harness does); missed targets are reported, not failed. B2M_BIN measures another b2m
binary (the examples are taken from beside it when target/release has none).
"""

import argparse
import contextlib
import datetime
import hashlib
import itertools
import json
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RELEASE = ROOT / "target" / "release"
VENV = ROOT / "target" / "bench-venv"
MiB = 1024 * 1024
KEY_ID, SECRET, REGION = "benchkey", "benchsecret", "us-east-1"
BUCKET = "bench"
DB_KEY, DB_STEM = "bigdb", "big-db"
DB_DIR = Path("db") / "all_dbs"
PROXY_DELAY_MS = 20
COMMAND_TIMEOUT_SECS = 1800
APT_TIMEOUT_SECS = 600  # a CI machine without a package mirror must not hang the smoke run
NOOP_RUNS = 5  # a no-op preflight takes milliseconds, where noise is large: 5× the runs
STRAIGHT_ROUNDS = 5  # a fresh upload beside rclone's: one pair varies by ±20% on 2 busy cores
WORDS = ["red", "blue", "bolt", "nut", "gear", "wheel", "axle", "pin", "spring", "plate",
         "north", "south", "alpha", "delta"]


def log(message):
    """Progress, on stderr (the report goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


# -- running commands -------------------------------------------------------------------------

@dataclass
class Run:
    """One finished command: wall-clock seconds, peak memory (KiB), stdout and stderr."""
    seconds: float
    rss_kib: int
    output: str

    def then(self, other):
        """Two commands timed as one: times add up, the peak is the larger."""
        return Run(self.seconds + other.seconds, max(self.rss_kib, other.rss_kib),
                   self.output + other.output)


class Unmeasurable(Exception):
    """An anchor that cannot run or failed: its figure is n/a, with this as the reason."""


class CommandFailed(Unmeasurable):
    """A command exited non-zero."""

    def __init__(self, argv, code, output):
        last = output.strip().splitlines()[-1:] or ["no output"]
        words = [Path(argv[0]).name] + [a for a in argv[1:] if "/" not in a and a != "-C"]
        super().__init__(f"`{shlex.join(words)}` exit {code}: {last[0][:200]}")


class B2mFailed(Exception):
    """A b2m command failed: the harness reports it and exits 1."""


def run(argv, env, gnu_time):
    """Runs argv to completion with its output captured; raises CommandFailed on a non-zero exit.

    Peak RSS comes from GNU time (`gnu_time`) when there is one: os.wait4's figure is never below
    this harness's own RSS, which a forked child carries until its exec."""
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        measured = [gnu_time, "-f", "%M", "-o", rss.name, *argv] if gnu_time else argv
        start = time.perf_counter()
        proc = subprocess.Popen(measured, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, process_group=0)
        usage = wait(proc)
        seconds = time.perf_counter() - start
        out.seek(0)
        output = out.read().decode(errors="replace")
        words = rss.read().split()
        rss_kib = int(words[-1]) if words and words[-1].isdigit() else usage.ru_maxrss
    if proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, output)
    return Run(seconds, rss_kib, output)


def wait(proc):
    """Waits for proc (killing its process group after COMMAND_TIMEOUT_SECS, or when the
    harness is interrupted); returns its resource usage."""
    timer = threading.Timer(COMMAND_TIMEOUT_SECS, os.killpg, (proc.pid, signal.SIGKILL))
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage


def clean_env(**extra):
    """The environment without the caller's B2M_* settings (a B2M_REMOTE would redirect b2m),
    except B2M_PAGES: `B2M_PAGES=1 bench.py …` measures versions stored as pages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("B2M_") or k == "B2M_PAGES"}
    env.update(extra)
    return env


class B2m:
    """The b2m binary measured and the replay example, run with -v to log bucket requests."""

    def __init__(self, binary, replay_binary, gnu_time):
        self.binary = binary
        self.replay_binary = replay_binary
        self.gnu_time = gnu_time
        self.env = clean_env(B2M_ACCESS_KEY_ID=KEY_ID, B2M_SECRET_ACCESS_KEY=SECRET)

    def __call__(self, project, *args, verbosity="-v"):
        """`b2m -C project -v args…`, timed."""
        return self.run([str(self.binary), "-C", str(project), verbosity, *args])

    def replay(self, db, journal):
        """`examples/replay DB JOURNAL`, timed."""
        return self.run([str(self.replay_binary), str(db), str(journal)])

    def run(self, argv):
        """Any b2m program; its failure is b2m's."""
        try:
            return run(argv, self.env, self.gnu_time)
        except CommandFailed as e:
            raise B2mFailed(str(e)) from None

    @staticmethod
    def requests(result):
        """The bucket requests a `-v` run logged (`bucket requests made requests=N`)."""
        counts = re.findall(r"\brequests=(\d+)", result.output)
        return int(counts[-1]) if counts else None


class Background:
    """Servers the harness starts, each stopped by its pid on exit."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.procs = []

    def start(self, name, argv, port):
        """Starts argv and waits until it accepts connections on 127.0.0.1:port."""
        log_path = self.logdir / f"{name}.log"
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {log_path.read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{name} does not listen on port {port}")

    def stop(self):
        """Terminates every process started (killing those that linger)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def free_port():
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- anchor tools -----------------------------------------------------------------------------

@dataclass
class Tool:
    """A program the harness runs beside b2m: its path, or why it is unavailable."""
    name: str
    path: str = ""
    why: str = ""
    version: str = ""

    def argv(self, *args):
        """The command line, or Unmeasurable when the tool is missing."""
        if not self.path:
            raise Unmeasurable(self.why)
        return [self.path, *args]


def last_line(text):
    """The last non-empty line of text (why a step failed)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else "no output"


def apt_install(package):
    """Installs a Debian package (apt-get update after a first failure); None or why it failed."""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    why = ""
    for update_first in (False, True):
        try:
            if update_first:
                subprocess.run([*sudo, "apt-get", "update", "-qq"], capture_output=True, env=env,
                               timeout=APT_TIMEOUT_SECS)
            done = subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", package],
                                  capture_output=True, text=True, env=env, timeout=APT_TIMEOUT_SECS)
        except OSError as e:
            return f"{e.filename}: {e.strerror}"
        except subprocess.TimeoutExpired:
            return f"apt-get took over {APT_TIMEOUT_SECS} s"
        if done.returncode == 0:
            return None
        why = last_line(done.stderr)
    return why


def system_tool(command, package):
    """A tool from PATH, installed from Debian when missing."""
    path = shutil.which(command)
    why = ""
    if not path:
        log(f"installing {package} (apt-get)…")
        why = apt_install(package)
        path = shutil.which(command)
    return Tool(command, path or "", "" if path else f"apt-get install {package} failed: {why}")


def awscli():
    """awscli from PyPI in target/bench-venv (never the one on PATH)."""
    aws = VENV / "bin" / "aws"
    if not aws.exists():
        log("installing awscli into target/bench-venv (pip)…")
        for step in ([sys.executable, "-m", "venv", str(VENV)],
                     [str(VENV / "bin" / "pip"), "install", "--quiet", "awscli"]):
            try:
                done = subprocess.run(step, capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as e:
                return Tool("aws", why=f"{Path(step[0]).name}: {e}")
            if done.returncode != 0:
                return Tool("aws", why=f"pip install awscli failed: {last_line(done.stderr)}")
    return Tool("aws", str(aws))


def version_of(tool, *args, pick=lambda out: out.split("\n")[0]):
    """Sets tool.version from `tool args` (its first line unless pick says otherwise)."""
    if tool.path:
        done = subprocess.run([tool.path, *args], capture_output=True, text=True)
        try:
            tool.version = pick(done.stdout or done.stderr).strip()
        except IndexError:
            tool.version = tool.name
    return tool


def ensure_tools():
    """Every anchor and GNU time (for peak RSS), installed when missing; unavailable ones carry
    why."""
    return {
        "time": version_of(system_tool("time", "time"), "--version"),
        "aws": version_of(awscli(), "--version", pick=lambda out: out.split()[0]),
        "rclone": version_of(system_tool("rclone", "rclone"), "version"),
        "sqlite3": version_of(system_tool("sqlite3", "sqlite3"), "--version",
                              pick=lambda out: "sqlite3 " + out.split()[0]),
        "sha256sum": version_of(system_tool("sha256sum", "coreutils"), "--version"),
        "zstd": version_of(system_tool("zstd", "zstd"), "--version",
                           pick=lambda out: "zstd " + re.search(r"v[\d.]+", out).group()),
        "sqlite3_rsync": version_of(sqlite3_rsync(), "--version",
                                    pick=lambda out: "sqlite3_rsync " + out.split()[0]),
    }


def sqlite3_rsync():
    """sqlite3_rsync from PATH (Debian ships it in its sqlite3 package from SQLite 3.47 on; the
    tool itself is SQLite's), or why there is none."""
    path = shutil.which("sqlite3_rsync")
    if path:
        return Tool("sqlite3_rsync", path)
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "sqlite3"],
                          capture_output=True, text=True)
    package = (f"Debian's sqlite3 {done.stdout.strip()} does not ship it"
               if done.returncode == 0 and done.stdout.strip() else "not on PATH")
    return Tool("sqlite3_rsync", why=f"{package} (it came with SQLite 3.47)")


class Anchors:
    """The commands b2m is measured against, all talking to the same S3 server."""

    def __init__(self, tools, endpoint, gnu_time):
        self.tools = tools
        self.gnu_time = gnu_time
        self.endpoint = endpoint
        self.aws_env = clean_env(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET,
                                 AWS_DEFAULT_REGION=REGION, AWS_EC2_METADATA_DISABLED="true")
        self.rclone_env = clean_env(
            RCLONE_CONFIG="/dev/null", RCLONE_CONFIG_BENCH_TYPE="s3",
            RCLONE_CONFIG_BENCH_PROVIDER="Other", RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=KEY_ID,
            RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=SECRET, RCLONE_CONFIG_BENCH_ENDPOINT=endpoint,
            RCLONE_CONFIG_BENCH_REGION=REGION)
        # rclone refuses a custom CA bundle with its own HTTP transport, even for http://.
        self.rclone_env.pop("AWS_CA_BUNDLE", None)

    def aws_cp(self, src, dst):
        """`aws s3 cp SRC DST` (either may be s3://…)."""
        argv = self.tools["aws"].argv("--endpoint-url", self.endpoint, "s3", "cp",
                                      "--only-show-errors", str(src), str(dst))
        return run(argv, self.aws_env, self.gnu_time)

    def rclone_copy(self, src, dst):
        """`rclone copyto --s3-no-head SRC DST` (remote paths as bench:bucket/key)."""
        argv = self.tools["rclone"].argv("copyto", "--s3-no-head", str(src), str(dst))
        return run(argv, self.rclone_env, self.gnu_time)

    def sqlite3(self, *args):
        """The sqlite3 shell."""
        return run(self.tools["sqlite3"].argv(*map(str, args)), clean_env(), self.gnu_time)

    def sha256sum(self, path):
        """sha256sum of one file."""
        return run(self.tools["sha256sum"].argv(str(path)), clean_env(), self.gnu_time)


# -- databases and projects -------------------------------------------------------------------

def document_rows(rnd, first, count):
    """Rows of the bench table: an id, short texts (one indexed), a blob of 0.5–3.5 KB."""
    for i in range(first, first + count):
        name = f"{rnd.choice(WORDS)}-{rnd.choice(WORDS)}-{i}"
        yield (i, name, f"{name}@example.com", " ".join(rnd.sample(WORDS, 3)),
               f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} 12:00:00",
               os.urandom(rnd.randint(500, 3500)))


def make_database(path, size_mib):
    """A database of about size_mib: a table with an INTEGER PRIMARY KEY, TEXT columns, an index
    and blobs, filled in batches until the file reaches the size."""
    rnd = random.Random(size_mib)
    conn = sqlite3.connect(path)
    conn.executescript("""
        PRAGMA journal_mode = OFF;
        PRAGMA synchronous = OFF;
        CREATE TABLE docs (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, tags TEXT,
                           created_at TEXT, body BLOB);
        CREATE INDEX docs_name ON docs (name);
    """)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    next_id = 1
    while conn.execute("PRAGMA page_count").fetchone()[0] * page_size < size_mib * MiB:
        conn.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?)",
                         document_rows(rnd, next_id, 250))
        next_id += 250
    conn.commit()
    conn.close()


def add_row(path):
    """A local change, so that the next b2m upload has something to publish."""
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO docs (name, email, tags, created_at, body) VALUES "
                 "('bench', 'bench@example.com', 'bench', CURRENT_TIMESTAMP, randomblob(100))")
    conn.commit()
    conn.close()


def backdate(path, seconds):
    """Sets path's mtime `seconds` ago, as for a file written a while back: b2m does not trust
    its hash cache for a file modified in the last ~2 s, so it hashes a fresh file again on
    every command, which is not what a server's steady state measures."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def make_project(folder, url, endpoint=None, dbs=None):
    """A b2m project: b2m.toml, and db.toml listing dbs ({key: file}) unless dbs is None."""
    (folder / DB_DIR).mkdir(parents=True)
    remote = f'[remote]\nurl = "{url}"\n'
    if endpoint:
        remote += f'endpoint = "{endpoint}"\nregion = "{REGION}"\n'
    (folder / "b2m.toml").write_text(remote)
    if dbs is not None:
        entries = "".join(f'{key} = "{file}"\n' for key, file in dbs.items())
        (folder / DB_DIR / "db.toml").write_text(f'[db]\n{entries}path = "{folder / DB_DIR}/"\n')
    return folder


def manifest(project):
    """The project's db.toml."""
    return tomllib.loads((project / DB_DIR / "db.toml").read_text())


def current_db(project, key=DB_KEY):
    """The local file db.toml names for key (b2m renames it on every publish)."""
    dbs = manifest(project)["db"]
    return Path(dbs["path"]) / dbs[key]


def pinned_object(project, prefix, key=DB_KEY, stem=DB_STEM):
    """The bucket key of the version db.toml pins: `<prefix>/dbs/<stem>/<stem>-vN.<sha256>.db`."""
    doc = manifest(project)
    version = re.search(r"-v(\d+)\.db$", doc["db"][key]).group(1)
    return f"{prefix}/dbs/{stem}/{stem}-v{version}.{doc['b2m']['sha256'][key]}.db"


def live_rows(path, where=""):
    """What a replay leaves visible: count and totals of the live items."""
    conn = sqlite3.connect(path)
    try:
        query = f"SELECT count(*), total(qty), total(price) FROM items {where}"
        return conn.execute(query).fetchone()
    finally:
        conn.close()


def write_replay_inputs(folder, rows, statements):
    """A table of `rows` items and a journal of `statements`: 45% inserts, 35% updates by id, 5%
    multi-line range updates with comments, 12% deletes by id, 3% deletes through a subquery."""
    rnd = random.Random(42)
    base, journal = folder / "base.db", folder / "journal.sql"
    conn = sqlite3.connect(base)
    conn.executescript("""
        CREATE TABLE items (id INTEGER PRIMARY KEY, sku TEXT NOT NULL UNIQUE, name TEXT,
                            qty INTEGER, price REAL, updated_at TEXT, deleted_at TEXT);
        CREATE INDEX items_name ON items (name);
    """)
    conn.executemany(
        "INSERT INTO items VALUES (?, ?, ?, ?, ?, '2024-01-01 00:00:00', NULL)",
        ((i, f"SKU-{i:08d}", f"{rnd.choice(WORDS)} {rnd.choice(WORDS)} {i}",
          rnd.randint(0, 500), round(rnd.uniform(1, 100), 2)) for i in range(1, rows + 1)))
    conn.commit()
    conn.close()
    next_id = rows + 1
    with open(journal, "w") as j:
        for _ in range(statements):
            r = rnd.random()
            if r < 0.45:
                name = f"{rnd.choice(WORDS)}; {rnd.choice(WORDS)} -- {next_id}"
                j.write(f"INSERT INTO items (id, sku, name, qty, price, updated_at) VALUES "
                        f"({next_id}, 'SKU-{next_id:08d}', '{name}', {rnd.randint(0, 500)}, "
                        f"{rnd.uniform(1, 100):.2f}, CURRENT_TIMESTAMP);\n")
                next_id += 1
            elif r < 0.80:
                j.write(f"UPDATE items SET qty = qty - {rnd.randint(1, 5)}, updated_at = "
                        f"CURRENT_TIMESTAMP WHERE id = {rnd.randint(1, next_id - 1)};\n")
            elif r < 0.85:
                lo = rnd.randint(1, next_id - 1)
                j.write(f"-- restock\nUPDATE items\n   SET qty = qty + 10,\n"
                        f"       updated_at = CURRENT_TIMESTAMP\n"
                        f" WHERE id BETWEEN {lo} AND {lo + 20} /* a range */;\n")
            elif r < 0.97:
                j.write(f"DELETE FROM items WHERE id = {rnd.randint(1, next_id - 1)};\n")
            else:
                i = rnd.randint(1, rows)
                j.write(f"DELETE FROM items WHERE id IN (SELECT id FROM items "
                        f"WHERE sku = 'SKU-{i:08d}' OR sku = 'SKU-{i + 1:08d}');\n")
    return base, journal


# -- figures ----------------------------------------------------------------------------------

@dataclass
class Series:
    """One contender's runs of one figure, or why it has none."""
    label: str
    runs: list = field(default_factory=list)
    why: str = ""

    @property
    def seconds(self):
        return [r.seconds for r in self.runs]

    def median(self):
        return statistics.median(self.seconds)

    def peak_rss_mib(self):
        return max(r.rss_kib for r in self.runs) / 1024

    def requests(self):
        """The bucket requests its runs logged: `1`, or `17–19` when they differ."""
        counts = sorted({B2m.requests(r) for r in self.runs} - {None})
        if not counts:
            return "?"
        return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"

    def requests_text(self):
        """`1 request`, `2 requests`, `17–19 requests`."""
        counts = self.requests()
        return f"{counts} request" + ("" if counts == "1" else "s")


def alternate(runs, contenders, what):
    """Runs each contender (label → measure()) `runs` times, taking turns. An anchor that cannot
    run is n/a from then on; a b2m failure propagates."""
    series = {label: Series(label) for label in contenders}
    for i in range(1, runs + 1):
        for label, measure in contenders.items():
            s = series[label]
            if s.why:
                continue
            try:
                s.runs.append(measure())
                log(f"  {what} {i}/{runs}  {label}: {fmt_time(s.runs[-1].seconds)}")
            except (Unmeasurable, OSError) as e:
                s.why = str(e)
                log(f"  {what}  {label}: n/a ({s.why})")
    return series


def fmt_time(seconds):
    """`850 ms` below a second, `2.31 s` above."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def fmt_rate(mib_per_s):
    return f"{mib_per_s:.0f} MiB/s"


def spread(values, fmt):
    """`median (min–max)` of values (`507 ms (470–520)`), or the value alone for one run."""
    median, low, high = (fmt(v) for v in (statistics.median(values), min(values), max(values)))
    if len(values) == 1:
        return median
    unit = " " + median.split()[-1]
    if low.endswith(unit) and high.endswith(unit):
        low, high = low.removesuffix(unit), high.removesuffix(unit)
    return f"{median} ({low}–{high})"


def cell(series, values=None, fmt=fmt_time):
    """A series' figure for a table: its spread, or n/a and why."""
    if not series.runs:
        return f"n/a ({series.why})"
    return spread(series.seconds if values is None else values(series), fmt)


def met(ok):
    return "yes" if ok else "**no**"


def time_row(figure, b2m, anchors, limit):
    """A timed figure: b2m beside its anchors, the ratio to the fastest anchor, the target
    (`limit`: at most that ratio; None for no target)."""
    anchors_cell = "; ".join(f"{a.label} {cell(a)}" for a in anchors)
    target = f"≤ {limit}× the faster" if limit else "—"
    ran = [a for a in anchors if a.runs]
    if not (b2m.runs and ran):
        return [figure, cell(b2m), anchors_cell, "—", target, "n/a" if limit else "—"]
    best = min(ran, key=Series.median)
    ratio = b2m.median() / best.median()
    return [figure, cell(b2m), anchors_cell, f"{ratio:.2f}× {best.label}", target,
            met(ratio <= limit) if limit else "—"]


def lease_row(figure, series, lease=DB_STEM):
    """How long b2m took to acquire a database's lease, as its -v output says
    (`lease acquired lease="…" attempts=N ms=X`), over a series of uploads."""
    pattern = re.compile(rf'lease acquired lease="{re.escape(lease)}".*?\bms=([\d.]+)')
    waits = [float(m.group(1)) for r in series.runs for m in pattern.finditer(r.output)]
    figure_cell = spread(waits, lambda ms: f"{ms:.1f} ms") if waits else "not logged"
    return [figure, figure_cell, "", "", "—", "—"]


def md_table(header, rows):
    """A markdown table (cells with `|` escaped)."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    padded = (row + [""] * (len(header) - len(row)) for row in rows)
    return [line(header), "|" + "---|" * len(header), *map(line, padded)]


class Report:
    """The markdown report: printed as it grows, written to bench/results/ at the end."""

    def __init__(self):
        self.lines = []

    def add(self, *lines):
        for line in lines:
            print(line, flush=True)
        self.lines.extend(lines)

    def write(self, smoke, suffix=""):
        RESULTS.mkdir(exist_ok=True)
        name = (datetime.datetime.now().strftime("%Y-%m-%d-%H%M") + suffix
                + ("-smoke" if smoke else ""))
        path = RESULTS / f"{name}.md"
        path.write_text("\n".join(self.lines) + "\n")
        return path


@dataclass
class SizeTables:
    """What one database size's figures fill in."""
    figures: list = field(default_factory=list)
    rss: list = field(default_factory=list)
    requests: dict = field(default_factory=dict)
    b2m_rss: dict = field(default_factory=dict)


class Bench:
    """One run of the harness: the work folder, the S3 server, b2m, the anchors."""

    def __init__(self, work, b2m, tools, background, port):
        self.work = work
        self.b2m = b2m
        self.background = background
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.anchors = Anchors(tools, self.endpoint, b2m.gnu_time)
        self.failures = []
        self._databases = {}

    def database(self, size_mib):
        """The test database of size_mib, made once per run of the harness (copy it to use it)."""
        if size_mib not in self._databases:
            path = self.work / "databases" / f"{size_mib}.db"
            path.parent.mkdir(exist_ok=True)
            log(f"making a {size_mib} MiB database…")
            make_database(path, size_mib)
            self._databases[size_mib] = path
        return self._databases[size_mib]

    def folder(self, name):
        """A figure's fresh work folder; `name` is also its prefix in the bucket."""
        folder = self.work / name
        folder.mkdir(parents=True)
        return folder

    def discard(self, name):
        """Removes a figure's work folder and its objects in the bucket."""
        shutil.rmtree(self.work / name, ignore_errors=True)
        shutil.rmtree(self.work / "s3" / BUCKET / name, ignore_errors=True)

    def figure(self, name, rows, measure, *args):
        """Runs one figure; a b2m failure becomes a row saying so (and the exit status 1)."""
        try:
            measure(self, name, *args)
        except B2mFailed as e:
            self.failures.append(f"{name}: {e}")
            rows.append([name, f"**b2m failed**: {e}"])
        finally:
            self.discard(name)

    def published(self, folder, prefix, sources):
        """A project at folder with each source database ({stem: path}, stems ending in `-db`)
        published a while ago, then a first preflight (which records the fleet entry and the
        hashes, so the next one is a no-op)."""
        project = make_project(folder, f"s3://{BUCKET}/{prefix}", self.endpoint,
                               {stem.replace("-", ""): f"{stem}-v1.db" for stem in sources})
        for stem, source in sources.items():
            shutil.copyfile(source, project / DB_DIR / f"{stem}-v1.db")
            self.b2m(project, "upload", stem)
            backdate(project / DB_DIR / f"{stem}-v1.db", 60)
        self.b2m(project, "preflight")
        return project

    def server(self, folder, prefix, endpoint=None):
        """A server's project with no database yet: b2m.toml and the bucket's db.toml."""
        project = make_project(folder, f"s3://{BUCKET}/{prefix}", endpoint or self.endpoint)
        self.b2m(project, "fetch-db-toml")
        return project


def transfers(bench, name, size_mib, runs, tables):
    """Upload and download: b2m beside sqlite3 .backup + aws s3 cp and rclone copyto, on the same
    S3 server; peak memory of each; bucket requests of status, upload, download, a changeset."""
    folder, prefix = bench.folder(name), name
    b2m, anchors = bench.b2m, bench.anchors
    up = bench.published(folder / "up", prefix, {DB_STEM: bench.database(size_mib)})
    out = folder / "out.db"

    def b2m_upload():
        add_row(current_db(up))
        return b2m(up, "upload", DB_STEM)

    def backup_then_aws():
        try:
            backup = anchors.sqlite3(current_db(up), f'.backup "{out}"')
            return backup.then(anchors.aws_cp(out, f"s3://{BUCKET}/{prefix}/anchors/aws.db"))
        finally:
            out.unlink(missing_ok=True)

    def rclone_upload():
        return anchors.rclone_copy(current_db(up), f"bench:{BUCKET}/{prefix}/anchors/rclone.db")

    uploads = alternate(runs, {"b2m upload": b2m_upload,
                               "sqlite3 .backup + aws s3 cp": backup_then_aws,
                               "rclone copyto": rclone_upload}, "upload")
    key = pinned_object(up, prefix)

    def b2m_download():
        server = bench.server(folder / "server", prefix)
        try:
            return b2m(server, "download", DB_STEM)
        finally:
            shutil.rmtree(server)

    def fetch(copy, src):
        try:
            return copy(src, out)
        finally:
            out.unlink(missing_ok=True)

    downloads = alternate(runs, {
        "b2m download": b2m_download,
        "aws s3 cp": lambda: fetch(anchors.aws_cp, f"s3://{BUCKET}/{key}"),
        "rclone copyto": lambda: fetch(anchors.rclone_copy, f"bench:{BUCKET}/{key}"),
    }, "download")

    tables.figures.append(time_row("upload (with integrity check)",
                                   *split_b2m(uploads), limit=1.0))
    tables.figures.append(time_row("download (verified, durable)",
                                   *split_b2m(downloads), limit=1.1))
    tables.figures.append(lease_row("lease acquisition, S3", uploads["b2m upload"]))
    for what, series in (("upload", uploads), ("download", downloads)):
        tables.rss.append(rss_row(what, *split_b2m(series)))
        own = series[f"b2m {what}"]
        if own.runs:
            tables.b2m_rss[what] = own.peak_rss_mib()
            tables.requests[what] = own.requests()
    tables.requests["status"] = str(B2m.requests(b2m(up, "status")))
    tables.requests["execute-changeset"] = str(changeset_requests(b2m, up))


def split_b2m(series):
    """(b2m's series, the anchors' series) from alternate()'s result, b2m first."""
    first, *rest = series.values()
    return first, rest


def rss_row(what, b2m, anchors):
    """Peak memory over the runs of a transfer, every tool."""
    def mib(s):
        return f"{s.peak_rss_mib():.0f} MiB" if s.runs else "n/a"
    ok = "n/a" if not b2m.runs else met(b2m.peak_rss_mib() <= 64)
    return [what, mib(b2m), "; ".join(f"{a.label} {mib(a)}" for a in anchors), "b2m ≤ 64 MiB", ok]


def changeset_requests(b2m, project):
    """Bucket requests of `execute-changeset` for a one-line SQL changeset on one database."""
    b2m(project, "create-changeset", "bench-touch", "--kind", "sql")
    script = next((project / "changeset" / "scripts").glob("*_bench-touch.sql"))
    script.write_text(f"-- b2m: db = {DB_STEM}\nUPDATE docs SET tags = 'changed' WHERE id = 1;\n")
    return B2m.requests(b2m(project, "execute-changeset", script.stem))


def local_folder(bench, name, size_mib, runs, tables):
    """The figures where a local-folder bucket keeps S3 out of the way: hashing and the cost of
    a publish's local work."""
    folder = bench.folder(name)
    (folder / "bucket").mkdir()
    project = make_project(folder / "project", f"file://{folder}/bucket",
                           dbs={DB_KEY: f"{DB_STEM}-v1.db"})
    shutil.copyfile(bench.database(size_mib), project / DB_DIR / f"{DB_STEM}-v1.db")
    bench.b2m(project, "upload", DB_STEM)
    hashing(bench, project, runs, tables)
    local_upload(bench, project, folder / "out.db", runs, tables)


def hashing(bench, project, runs, tables):
    """`b2m status` with the hash cache cold (the file touched to a new mtime before each run)
    beside sha256sum of the same file, as throughput; and `b2m status` again, the cache warm."""
    db = current_db(project)
    size = db.stat().st_size
    ages = itertools.count(60)

    def status(cache):
        result = bench.b2m(project, "status", verbosity="-vvv")
        if ("hash cache hit" in result.output) != (cache == "warm"):
            raise Unmeasurable(f"the hash cache was not {cache}")
        return result

    def cold_status():
        backdate(db, next(ages))
        return status("cold")

    own, sha, warm = alternate(runs, {"b2m status": cold_status,
                                      "sha256sum": lambda: bench.anchors.sha256sum(db),
                                      "b2m status, cache warm": lambda: status("warm")},
                               "hash").values()

    def rates(s):
        return [size / MiB / t for t in s.seconds]
    row = ["hash, cache cold", cell(own, rates, fmt_rate),
           f"sha256sum {cell(sha, rates, fmt_rate)}", "—", "≥ 1.0× sha256sum", "n/a"]
    if own.runs and sha.runs:
        ratio = sha.median() / own.median()
        row[3:] = [f"{ratio:.2f}× sha256sum", "≥ 1.0× sha256sum", met(ratio >= 1.0)]
    tables.figures.append(row)
    tables.figures.append(["status, hash cache warm", cell(warm), "", "", "—", "—"])


def local_upload(bench, project, out, runs, tables):
    """`b2m upload` to a local-folder bucket beside `sqlite3 .backup` + `cp`: the local work of a
    publish (consistent copy, integrity check, hash, store), without the network."""
    bucket_copy = out.with_name("copy.db")

    def b2m_upload():
        add_row(current_db(project))
        return bench.b2m(project, "upload", DB_STEM)

    def backup_then_cp():
        try:
            backup = bench.anchors.sqlite3(current_db(project), f'.backup "{out}"')
            return backup.then(run(["cp", str(out), str(bucket_copy)], clean_env(),
                                   bench.b2m.gnu_time))
        finally:
            out.unlink(missing_ok=True)
            bucket_copy.unlink(missing_ok=True)

    series = alternate(runs, {"b2m upload": b2m_upload, "sqlite3 .backup + cp": backup_then_cp},
                       "local upload")
    own, anchors = split_b2m(series)
    tables.figures.append(time_row("upload to a local folder", own, anchors, limit=None))
    tables.figures.append(lease_row("lease acquisition, local folder", own))


def noop_preflight(bench, name, size_mib, runs, tables):
    """A no-op preflight (all 3 databases up to date) with 3 × size_mib beside 3 × 1 MiB: it must
    take the same time and make exactly one bucket request."""
    folder, prefix = bench.folder(name), name

    def trio(label, size):
        source = bench.database(size)
        return bench.published(folder / label, f"{prefix}/{label}",
                               {f"{n}-db": source for n in ("one", "two", "three")})
    big, small = trio("big", size_mib), trio("small", 1)
    series = alternate(NOOP_RUNS * runs,
                       {f"3 × {size_mib} MiB": lambda: bench.b2m(big, "preflight"),
                              "3 × 1 MiB": lambda: bench.b2m(small, "preflight")},
                       "no-op preflight")
    big_s, small_s = series.values()
    ratio = big_s.median() / small_s.median()
    requests = big_s.requests()
    tables.requests["no-op preflight"] = requests
    tables.figures.append([
        f"no-op preflight, 3 × {size_mib} MiB", f"{cell(big_s)}, {big_s.requests_text()}",
        f"3 × 1 MiB: {cell(small_s)}, {small_s.requests_text()}", f"{ratio:.2f}",
        "ratio ≤ 1.2, 1 request", met(ratio <= 1.2 and requests == "1")])


def bench_size(bench, report, size_mib, runs):
    """Every per-size figure, reported as three tables."""
    tables = SizeTables()
    tag = f"{size_mib}mib"
    for figure, measure in (("transfers", transfers), ("local", local_folder),
                            ("preflight", noop_preflight)):
        bench.figure(f"{tag}-{figure}", tables.figures, measure, size_mib, runs, tables)
    actual = bench.database(size_mib).stat().st_size / MiB
    report.add(f"## {size_mib} MiB database ({actual:.1f} MiB file; "
               f"{plural(runs, 'run')} per tool, {NOOP_RUNS * runs} of each no-op preflight)", "",
               *md_table(["figure", "b2m", "anchors", "ratio", "target", "met?"], tables.figures),
               "", "Peak memory (max RSS over the runs):", "",
               *md_table(["transfer", "b2m", "anchors", "target", "met?"], tables.rss),
               "", "Bucket requests per command:", "",
               *md_table(["command", "requests", "note"], [
                   [cmd, tables.requests.get(cmd, "—"), note]
                   for cmd, note in REQUEST_NOTES.items()]),
               "")
    return tables.b2m_rss


REQUEST_NOTES = {
    "status": "the original b2m listed the whole bucket per status",
    "no-op preflight": "target: exactly 1",
    "upload": "",
    "download": "",
    "execute-changeset": "one-line SQL changeset on one database: download, run, publish, ledger",
}


# The smallest database whose transfer fills the window: 4 upload parts of 32 MiB, 8 download
# stretches of 16 MiB in flight (src/store/s3.rs). Below it, fewer requests are in flight, and
# memory is smaller for that reason, not because the file is.
WINDOW_MIB = 128


def transfer_rss(bench, name, size_mib, tables):
    """b2m's peak memory for one upload and one download of a size_mib database (no anchors): a
    size between the window and the largest, so flatness is judged where the window is full."""
    folder, prefix = bench.folder(name), name
    up = bench.published(folder / "up", prefix, {DB_STEM: bench.database(size_mib)})
    add_row(current_db(up))
    tables.b2m_rss["upload"] = bench.b2m(up, "upload", DB_STEM).rss_kib / 1024
    server = bench.server(folder / "server", prefix)
    tables.b2m_rss["download"] = bench.b2m(server, "download", DB_STEM).rss_kib / 1024


def rss_across_sizes(report, by_size):
    """b2m's peak memory per transfer at each size: flat means the largest within 1.25× of the
    smallest of the sizes that fill the window (all sizes, if none is below it)."""
    sizes = sorted(by_size)
    judged = [s for s in sizes if s >= WINDOW_MIB] or sizes
    rows = []
    for what in ("upload", "download"):
        peaks = {s: by_size[s].get(what) for s in sizes}
        if None in peaks.values():
            continue
        flat = max(peaks[s] for s in judged) <= 1.25 * min(peaks[s] for s in judged)
        rows.append([what, *(f"{peaks[s]:.0f} MiB" for s in sizes), met(flat)])
    header = ["transfer", *(f"{s} MiB" for s in sizes),
              f"flat (≤ 1.25× the smallest of {', '.join(f'{s} MiB' for s in judged)})?"]
    report.add("## b2m peak memory across sizes", "",
               f"Memory is bounded by the requests in flight, not by the file: the window (4 × 32 MiB "
               f"upload parts, 8 × 16 MiB download stretches) is full from {WINDOW_MIB} MiB, so "
               f"flatness is judged on the sizes from there; smaller files have fewer requests in "
               f"flight.", "", *md_table(header, rows), "")


def proxied(bench, name, size_mib, runs, rows):
    """A no-op preflight and a download through a proxy adding PROXY_DELAY_MS each way, beside
    the same commands straight to the server."""
    folder, prefix = bench.folder(name), name
    port = free_port()
    proxy = ROOT / "bench" / "delay_proxy.py"
    bench.background.start("delay-proxy", [sys.executable, str(proxy), str(port), str(bench.port),
                                           str(PROXY_DELAY_MS)], port)
    slow = f"http://127.0.0.1:{port}"
    bench.published(folder / "publisher", prefix, {DB_STEM: bench.database(size_mib)})
    noop = {"proxy": bench.server(folder / "noop-proxy", prefix, slow),
            "direct": bench.server(folder / "noop-direct", prefix)}
    for project in noop.values():
        bench.b2m(project, "preflight")

    def download(endpoint):
        server = bench.server(folder / "server", prefix, endpoint)
        try:
            return bench.b2m(server, "download", DB_STEM)
        finally:
            shutil.rmtree(server)

    pre_slow, pre_direct = alternate(NOOP_RUNS * runs, {
        "no-op preflight (proxy)": lambda: bench.b2m(noop["proxy"], "preflight"),
        "no-op preflight (direct)": lambda: bench.b2m(noop["direct"], "preflight"),
    }, "proxy").values()
    down_slow, down_direct = alternate(runs, {
        "download (proxy)": lambda: download(slow),
        "download (direct)": lambda: download(bench.endpoint),
    }, "proxy").values()
    size = bench.database(size_mib).stat().st_size / MiB

    def rates(s):
        return [size / t for t in s.seconds]
    rows.append(["no-op preflight", f"{cell(pre_slow)}, {pre_slow.requests_text()}",
                 cell(pre_direct), "≤ 0.1 s", met(pre_slow.median() <= 0.1)])
    rows.append([f"download {size_mib} MiB",
                 f"{cell(down_slow)}; {cell(down_slow, rates, fmt_rate)}",
                 f"{cell(down_direct)}; {cell(down_direct, rates, fmt_rate)}", "—", "—"])


def replay(bench, name, rows, statements, runs, table):
    """The replay example (one transaction, soft deletes) beside `sqlite3 -bail BEGIN; .read;
    COMMIT;` on fresh copies of one database; both must leave the same live rows."""
    folder = bench.folder(name)
    log(f"making a {rows}-row database and a {statements}-statement journal…")
    base, journal = write_replay_inputs(folder, rows, statements)
    ours, theirs = folder / "replay.db", folder / "sqlite3.db"

    def b2m_replay():
        shutil.copyfile(base, ours)
        return bench.b2m.replay(ours, journal)

    def sqlite3_replay():
        shutil.copyfile(base, theirs)
        return bench.anchors.sqlite3("-bail", theirs, "BEGIN;", f'.read "{journal}"', "COMMIT;")

    own, shell = alternate(runs, {"examples/replay": b2m_replay, "sqlite3 shell": sqlite3_replay},
                           "replay").values()
    table.append(time_row(f"replay {statements:,} statements on {rows:,} rows", own, [shell],
                          limit=1.2))
    if own.runs and shell.runs:
        same = live_rows(theirs) == live_rows(ours, "WHERE deleted_at IS NULL")
        table.append(["same live rows as sqlite3", "yes" if same else "no", "", "", "identical",
                      met(same)])
        table.append(["replay peak memory", f"{own.peak_rss_mib():.0f} MiB",
                      f"sqlite3 {shell.peak_rss_mib():.0f} MiB", "", "", ""])


# -- versions stored as pages (issue 20) ------------------------------------------------------

# The issue's figures: a 1 GiB db, 1% of its pages changed in at least 1,000 separate places. Its
# byte targets are for 1 GiB; at another size they are scaled by size / 1 GiB.
ISSUE_MIB = 1024
CHANGE_SHARE = 0.01
CHANGE_PLACES = 1000
SHAPED_MBIT, SHAPED_DELAY_MS = 100, 20  # the shaped link: 100 Mbit/s, 40 ms of round trip
STORAGE_VERSIONS = 30
PAGE_RSS_LIMIT_MIB = 64
ANCHOR_PREFIX = "anchors"  # the anchors' objects: beside b2m's prefix, never in its storage sum
SHAPE_PROXY = ROOT / "bench" / "shape_proxy.py"
REQUEST_CLASSES = ("GET", "HEAD", "PUT", "POST", "DELETE", "LIST")


def pseudo_words(count, seed=7):
    """A fixed vocabulary of pronounceable words (text that compresses like prose)."""
    rnd = random.Random(seed)
    consonants, vowels = "bcdfghklmnprstvz", "aeiou"
    words = set()
    while len(words) < count:
        words.add("".join(rnd.choice(consonants) + rnd.choice(vowels)
                          for _ in range(rnd.randint(1, 4))))
    return sorted(words)


VOCABULARY = pseudo_words(4096)
CITIES = pseudo_words(300, seed=11)
STATUSES = ["new", "paid", "packed", "shipped", "delivered", "returned", "cancelled"]


def prose(rnd, low, high):
    """Text of low..high words from the vocabulary, in sentences."""
    words = rnd.choices(VOCABULARY, k=rnd.randint(low, high))
    for i in range(0, len(words), 12):
        words[i] = words[i].capitalize()
    return " ".join(words) + "."


def stamp(rnd, year=2024):
    return (f"{year}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d} "
            f"{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}")


PAGES_SCHEMA = """
    PRAGMA journal_mode = DELETE;
    CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
                            city TEXT, about TEXT, created_at TEXT);
    CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, status TEXT,
                         total REAL, lines TEXT, created_at TEXT, updated_at TEXT);
    CREATE TABLE notes (id INTEGER PRIMARY KEY, customer_id INTEGER, title TEXT, body TEXT,
                        updated_at TEXT);
    CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, at TEXT, payload TEXT);
    CREATE UNIQUE INDEX customers_email ON customers (email);
    CREATE INDEX orders_customer ON orders (customer_id);
    CREATE INDEX notes_updated ON notes (updated_at);
"""
# Rows per round of inserts: the tables grow together, as an application writes them, so every
# table's pages are spread over the whole file. `events` (about 8% of the file) is the table the
# VACUUM step drops.
ROUND = {"customers": 20, "orders": 80, "notes": 40, "events": 40}


def make_pages_database(path, size_mib, seed):
    """A text-heavy database of about size_mib: customers, orders, notes and events, 3 indexes,
    filled in rounds until the file reaches the size."""
    rnd = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.executescript(PAGES_SCHEMA)
    conn.execute("PRAGMA synchronous = OFF")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    ids = dict.fromkeys(ROUND, 0)

    def next_ids(table):
        first = ids[table] + 1
        ids[table] += ROUND[table]
        return range(first, ids[table] + 1)

    rounds = 0
    while conn.execute("PRAGMA page_count").fetchone()[0] * page_size < size_mib * MiB:
        rounds += 1
        if rounds % 25 == 0:
            conn.commit()
        conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)", (
            (i, f"{rnd.choice(VOCABULARY).title()} {rnd.choice(VOCABULARY).title()}",
             f"c{i}.{rnd.choice(VOCABULARY)}@example.com", rnd.choice(CITIES),
             prose(rnd, 5, 25), stamp(rnd, 2023)) for i in next_ids("customers")))
        last_customer = ids["customers"]
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)", (
            (i, rnd.randint(1, last_customer), rnd.choice(STATUSES),
             round(rnd.uniform(5, 900), 2),
             "; ".join(f"{rnd.randint(1, 9)} x {rnd.choice(VOCABULARY)}"
                       for _ in range(rnd.randint(1, 8))), stamp(rnd), stamp(rnd))
            for i in next_ids("orders")))
        conn.executemany("INSERT INTO notes VALUES (?, ?, ?, ?, ?)", (
            (i, rnd.randint(1, last_customer), prose(rnd, 3, 8), prose(rnd, 60, 400),
             stamp(rnd)) for i in next_ids("notes")))
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", (
            (i, rnd.choice(STATUSES), stamp(rnd),
             f'{{"order": {rnd.randint(1, ids["orders"])}, "note": "{prose(rnd, 4, 20)}"}}')
            for i in next_ids("events")))
    conn.commit()
    conn.close()


# -- page diffs --

def page_size_of(path):
    """The page size in a database file's header."""
    with open(path, "rb") as f:
        header = f.read(100)
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


def page_hashes(path):
    """The sha1 of every page of a database file, in page order."""
    size = page_size_of(path)
    hashes = []
    with open(path, "rb") as f:
        while block := f.read(1024 * size):
            view = memoryview(block)
            hashes.extend(hashlib.sha1(view[i:i + size]).digest()
                          for i in range(0, len(block), size))
    return hashes


@dataclass
class PageDiff:
    """How one version's file differs from the one before, page by page."""
    pages: int  # pages in the new file
    page_size: int
    changed: list  # page numbers (0-based) whose bytes differ at the same place, or new at the end
    runs: int  # separate places: maximal runs of consecutive changed pages
    new_content: list  # page numbers whose content appears nowhere in the old file
    pack_bytes: int = None  # zstd -3 of the pages with new content: one version's pack

    @classmethod
    def of(cls, before, after, page_size):
        changed = [i for i, h in enumerate(after) if i >= len(before) or before[i] != h]
        runs = sum(1 for n, i in enumerate(changed) if n == 0 or changed[n - 1] != i - 1)
        old = set(before)
        seen, fresh = set(), []
        for i, h in enumerate(after):
            if h not in old and h not in seen:
                seen.add(h)
                fresh.append(i)
        return cls(len(after), page_size, changed, runs, fresh)

    def share(self, pages):
        return f"{len(pages):,} ({100 * len(pages) / max(self.pages, 1):.2f}%)"


def zstd_size(zstd, chunks):
    """Bytes of `zstd -3` of the concatenated chunks (an iterable of bytes), or None."""
    if not zstd.path:
        return None
    proc = subprocess.Popen([zstd.path, "-3", "-q", "-c", "-T2"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    total = 0

    def count():
        nonlocal total
        while block := proc.stdout.read(1 << 20):
            total += len(block)
    reader = threading.Thread(target=count)
    reader.start()
    try:
        for chunk in chunks:
            proc.stdin.write(chunk)
    finally:
        proc.stdin.close()
        reader.join()
        proc.wait()
    return total if proc.returncode == 0 else None


def file_blocks(path):
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            yield block


def pages_of(path, numbers, page_size):
    with open(path, "rb") as f:
        for i in numbers:
            f.seek(i * page_size)
            yield f.read(page_size)


def change_pages(path, rnd, zstd, share=CHANGE_SHARE):
    """Updates rows spread over the file (note bodies, order statuses, customer cities, with
    their indexes) in rounds until at least `share` of the pages changed; the page diff."""
    page_size = page_size_of(path)
    before = page_hashes(path)
    goal = max(1, int(share * len(before) + 0.999))
    conn = sqlite3.connect(path)
    top = {t: conn.execute(f"SELECT max(id) FROM {t}").fetchone()[0] or 0
           for t in ("customers", "orders", "notes")}
    updates, batch = 0, max(4, goal // 4)
    while True:
        for _ in range(batch):
            table = rnd.choices(("notes", "orders", "customers"), weights=(5, 3, 1))[0]
            row = rnd.randint(1, top[table])
            if table == "notes":
                conn.execute("UPDATE notes SET body = ?, updated_at = ? WHERE id = ?",
                             (prose(rnd, 60, 400), stamp(rnd, 2025), row))
            elif table == "orders":
                conn.execute("UPDATE orders SET status = ?, updated_at = ? WHERE id = ?",
                             (rnd.choice(STATUSES), stamp(rnd, 2025), row))
            else:
                conn.execute("UPDATE customers SET city = ? WHERE id = ?",
                             (rnd.choice(CITIES), row))
        conn.commit()
        updates += batch
        after = page_hashes(path)
        changed = sum(1 for i, h in enumerate(after) if i >= len(before) or before[i] != h)
        if changed >= goal:
            break
        per_update = max(changed, 1) / updates
        batch = max(1, int((goal - changed) / per_update / 2 + 1))
    conn.close()
    diff = PageDiff.of(before, after, page_size)
    diff.pack_bytes = zstd_size(zstd, pages_of(path, diff.new_content, page_size))
    log(f"  changed {diff.share(diff.changed)} pages in {diff.runs:,} places "
        f"({updates:,} row updates); new content {len(diff.new_content):,} pages")
    return diff


def drop_and_vacuum(path, zstd, table="events"):
    """DROP TABLE + VACUUM (pages move, most content stays); the page diff."""
    before = page_hashes(path)
    conn = sqlite3.connect(path)
    conn.execute(f"DROP TABLE {table}")
    conn.commit()
    conn.execute("VACUUM")
    conn.close()
    after = page_hashes(path)
    diff = PageDiff.of(before, after, page_size_of(path))
    diff.pack_bytes = zstd_size(zstd, pages_of(path, diff.new_content, diff.page_size))
    log(f"  drop {table} + VACUUM: {len(before):,} → {len(after):,} pages, "
        f"{diff.share(diff.changed)} changed in {diff.runs:,} places, "
        f"new content {diff.share(diff.new_content)}")
    return diff


# -- the counting proxy --

@dataclass
class Traffic:
    """What crossed the counting proxy during one command."""
    up: int = 0
    down: int = 0
    connections: int = 0
    unparsed: int = 0
    requests: list = field(default_factory=list)

    def count(self, cls):
        return sum(1 for r in self.requests if r["class"] == cls)

    def requests_text(self):
        """`3 (GET 2, HEAD 1)`; a `?` when a connection could not be followed."""
        parts = [f"{c} {self.count(c)}" for c in REQUEST_CLASSES if self.count(c)]
        text = f"{len(self.requests)} ({', '.join(parts)})" if parts else "0"
        return text + (f"; {self.unparsed} connection(s) not followed" if self.unparsed else "")

    def data_writes(self):
        """PUTs and POSTs of version data: any key under dbs/ but a version's .json metadata
        (the rest — metadata, db.toml, leases, fleet, ledger — is what a publish writes today
        beside the file)."""
        return sum(1 for r in self.requests if r["method"] in ("PUT", "POST")
                   and is_data_key(r["key"]))


    def other_lists(self):
        """LISTs of anything but a lease folder (`locks/`): the lease protocol lists the one it
        takes (DESIGN.md, Locking: B2 has no conditional writes); any other LIST is a cost."""
        def prefix(r):
            return dict(urllib.parse.parse_qsl(r["query"], keep_blank_values=True)).get("prefix", "")
        return sum(1 for r in self.requests
                   if r["class"] == "LIST" and "/locks/" not in "/" + prefix(r))


def is_data_key(key):
    parts = key.split("/")
    return "dbs" in parts[:-1] and not key.endswith(".json")


class CountingProxy:
    """bench/shape_proxy.py in front of the S3 server, driven through its control port."""

    def __init__(self, background, target_port):
        self.port, self.control = free_port(), free_port()
        background.start("shape-proxy", [sys.executable, str(SHAPE_PROXY), str(self.port),
                                         str(target_port), str(self.control)], self.port)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def _call(self, method, path):
        request = urllib.request.Request(f"http://127.0.0.1:{self.control}{path}", method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)

    def shape(self, mbit=0, delay_ms=0):
        self._call("POST", f"/shape?mbit={mbit}&delay_ms={delay_ms}")

    def measure(self, command, shaped=False):
        """(Run, Traffic) of command(), counted alone (and shaped, when asked)."""
        self._call("POST", "/reset")
        if shaped:
            self.shape(SHAPED_MBIT, SHAPED_DELAY_MS)
        try:
            result = command()
        finally:
            if shaped:
                self.shape()
        counts = self._call("GET", "/counts")
        return result, Traffic(**counts)


# -- the section --

def fmt_bytes(n):
    """`512 B`, `3.4 KiB`, `5.21 MiB`, `1.00 GiB`."""
    if n is None:
        return "n/a"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


@dataclass
class PageRow:
    """One row of the pages table: a figure, the command measured, and what it cost."""
    figure: str
    command: str
    measured: str = "—"
    target: str = "—"
    ok: str = "—"
    run: Run = None
    traffic: Traffic = None
    why: str = ""

    def cells(self):
        if self.run is None:
            return [self.figure, self.command, self.measured if not self.why
                    else f"n/a ({self.why})", self.target, self.ok, "", "", "", "", ""]
        t = self.traffic
        return [self.figure, self.command, self.measured, self.target, self.ok,
                fmt_bytes(t.up) if t else "—", fmt_bytes(t.down) if t else "—",
                t.requests_text() if t else "—", fmt_time(self.run.seconds),
                f"{self.run.rss_kib / 1024:.0f} MiB"]


PAGE_HEADER = ["figure", "command", "measured", "target", "met?", "sent", "received",
               "requests (by method)", "wall", "peak RSS"]


class PagesRun:
    """The figures of issue 20 against one S3 server, every command through the counting
    proxy: a dev project publishing, servers fetching, anchors copying whole files."""

    def __init__(self, bench, proxy, folder, prefix, size_mib, smoke):
        self.bench, self.proxy, self.folder, self.prefix = bench, proxy, folder, prefix
        self.size_mib, self.smoke = size_mib, smoke
        self.scale = size_mib / ISSUE_MIB
        self.rows, self.diffs, self.b2m_rss = [], [], []
        self.zstd = bench.anchors.tools["zstd"]
        self.rnd = random.Random(20)
        # The anchors talk to the same server through the same proxy, so they are counted too.
        self.anchors = Anchors(bench.anchors.tools, proxy.endpoint, bench.b2m.gnu_time)

    # -- helpers --

    def b2m(self, project, *args, shaped=False):
        """A b2m command through the proxy: (Run, Traffic)."""
        result, traffic = self.proxy.measure(lambda: self.bench.b2m(project, *args), shaped)
        self.b2m_rss.append(result.rss_kib / 1024)
        logged = B2m.requests(result)
        if logged is not None and logged != len(traffic.requests):
            log(f"  note: b2m logged {logged} requests, the proxy saw {len(traffic.requests)}")
        return result, traffic

    def anchor(self, figure, label, command, shaped=False, counted=True):
        """An anchor's row; n/a with why when it cannot run."""
        try:
            result, traffic = self.proxy.measure(command, shaped)
        except (Unmeasurable, OSError) as e:
            self.rows.append(PageRow(figure, label, why=str(e)))
            return None
        self.rows.append(PageRow(figure, label, run=result, traffic=traffic if counted else None))
        return result

    def limit(self, issue_mib_bytes):
        return issue_mib_bytes * self.scale

    def bucket_objects(self, prefix=None):
        """{key: size} of every object under the prefix (s3s-fs keeps objects as files)."""
        root = self.bench.work / "s3" / BUCKET / (prefix or self.prefix)
        return {str(p.relative_to(root)): p.stat().st_size
                for p in root.rglob("*") if p.is_file()} if root.exists() else {}

    def settle(self, project):
        """A server's file as a server's is: written a while ago, its hash cached (b2m trusts
        its cache only for files older than a few seconds)."""
        backdate(current_db(project), 60)
        self.bench.b2m(project, "status")

    # -- figures --

    def run(self):
        bench, folder, anchors = self.bench, self.folder, self.anchors
        source = folder / "source.db"
        log(f"pages: making a {self.size_mib} MiB text-heavy database…")
        make_pages_database(source, self.size_mib, seed=self.size_mib)
        self.db_bytes = source.stat().st_size
        self.compressed = zstd_size(self.zstd, file_blocks(source))
        url = f"s3://{BUCKET}/{self.prefix}"
        dev = make_project(folder / "dev", url, self.proxy.endpoint,
                           {DB_KEY: f"{DB_STEM}-v1.db"})
        shutil.copyfile(source, dev / DB_DIR / f"{DB_STEM}-v1.db")
        source.unlink()

        # A fresh db's full upload, beside full copies by aws s3 cp and rclone copyto; then b2m
        # and rclone again straight to the server, for the wall times the target compares (the
        # proxy, one Python thread per connection each way, slows one stream more than several).
        log("pages: full upload of a fresh db")
        fresh = folder / "fresh.db"
        shutil.copyfile(current_db(dev), fresh)
        result, traffic = self.b2m(dev, "upload", DB_STEM)
        self.rows.append(PageRow("full upload of a fresh db", "b2m upload",
                                 fmt_time(result.seconds), run=result, traffic=traffic))
        out = folder / "anchor-out.db"
        anchor_keys = {"aws": f"{ANCHOR_PREFIX}/{self.prefix}/aws.db",
                       "rclone": f"{ANCHOR_PREFIX}/{self.prefix}/rclone.db"}
        self.anchor("full upload of a fresh db", "aws s3 cp (full copy)",
                    lambda: anchors.aws_cp(current_db(dev), f"s3://{BUCKET}/{anchor_keys['aws']}"))
        self.anchor(
            "full upload of a fresh db", "rclone copyto (full copy)",
            lambda: anchors.rclone_copy(current_db(dev), f"bench:{BUCKET}/{anchor_keys['rclone']}"))
        self.straight_upload(fresh, anchor_keys)
        self.straight_cold(fresh)

        def full_download(copy, src):
            def command():
                try:
                    return copy(src, out)
                finally:
                    out.unlink(missing_ok=True)
            return command

        # Two servers on v1: one follows every version, one stays behind.
        servers = {}
        for name in ("server", "behind"):
            servers[name] = bench.server(folder / name, self.prefix, self.proxy.endpoint)
        result, traffic = self.b2m(servers["server"], "download", DB_STEM)
        self.rows.append(PageRow("cold fetch of v1 (no local file)", "b2m download",
                                 fmt_bytes(traffic.down), run=result, traffic=traffic))
        self.anchor("cold fetch of v1 (no local file)", "aws s3 cp (full copy)",
                    full_download(anchors.aws_cp, f"s3://{BUCKET}/{anchor_keys['aws']}"))
        self.anchor("cold fetch of v1 (no local file)", "rclone copyto (full copy)",
                    full_download(anchors.rclone_copy, f"bench:{BUCKET}/{anchor_keys['rclone']}"))
        # What the proxy costs one stream: the same copy straight to the server.
        self.anchor("cold fetch of v1 (no local file)",
                    "rclone copyto, straight to the server (not counted)",
                    full_download(bench.anchors.rclone_copy,
                                  f"bench:{BUCKET}/{anchor_keys['rclone']}"), counted=False)
        bench.b2m(servers["behind"], "download", DB_STEM)
        for project in servers.values():
            self.settle(project)

        # Versions of 1% change: published, fetched by the server on the previous version.
        steps = ["loopback", "loopback"] if self.smoke else ["loopback", "shaped", "loopback"]
        for n, link in enumerate(steps, start=2):
            self.one_percent(dev, servers["server"], n, link, with_rsync=(n == 2))
        behind = len(steps)
        result, traffic = self.b2m(servers["behind"], "download", DB_STEM)
        packs = sum(d.pack_bytes or 0 for _, _, d in self.diffs[-behind:])
        one_fetch = next(r for r in self.rows if "previous version" in r.figure)
        gets_limit = one_fetch.traffic.count("GET") + 4
        ok = traffic.down <= packs and traffic.count("GET") <= gets_limit
        self.rows.append(PageRow(
            f"a server {behind} versions behind (v1 → v{behind + 1})", "b2m download",
            fmt_bytes(traffic.down),
            f"≤ {behind} × one version's pack (Σ {fmt_bytes(packs)}), GETs ≤ {gets_limit} "
            f"(a 1-behind fetch's + 4)", met(ok), run=result, traffic=traffic))
        self.settle(servers["behind"])

        # DROP TABLE + VACUUM: pages move, their content stays.
        version = behind + 2
        log(f"pages: v{version}, drop a table + VACUUM")
        diff = drop_and_vacuum(current_db(dev), self.zstd)
        self.diffs.append(("drop events + VACUUM", version, diff))
        before = self.bucket_objects()
        result, traffic = self.b2m(dev, "upload", DB_STEM)
        stored = self.stored_since(before)
        limit = 0.10 * self.db_bytes
        self.rows.append(PageRow("publish after DROP TABLE + VACUUM", "b2m upload",
                                 f"{fmt_bytes(traffic.up)}; stored {fmt_bytes(stored)}",
                                 f"≤ 10% of the db ({fmt_bytes(limit)})",
                                 met(traffic.up <= limit), run=result, traffic=traffic))
        result, traffic = self.b2m(servers["server"], "download", DB_STEM)
        self.rows.append(PageRow("fetch after DROP TABLE + VACUUM", "b2m download",
                                 fmt_bytes(traffic.down), f"≤ 10% of the db ({fmt_bytes(limit)})",
                                 met(traffic.down <= limit), run=result, traffic=traffic))

        # A cold fetch of the newest version: no local file, no state (a new server project);
        # then again straight to the server, for the wall time.
        cold = bench.server(folder / "cold", self.prefix, self.proxy.endpoint)
        result, traffic = self.b2m(cold, "download", DB_STEM)
        size = current_db(cold).stat().st_size
        compressed = zstd_size(self.zstd, file_blocks(current_db(cold)))
        figure = f"cold fetch of v{version} (no local file)"
        # Not the issue's figure (that is v1's, a base): a version on a chain is its base plus
        # the packs since, bounded by the base policy; shown beside the file's compressed size.
        against = f" ({traffic.down / compressed:.2f}× its compressed size, {fmt_bytes(compressed)})" \
            if compressed else ""
        self.rows.append(PageRow(
            figure, "b2m download",
            f"{fmt_bytes(traffic.down)} of a {fmt_bytes(size)} file{against}",
            "— (the base and the packs since: docs/decisions.md)", run=result, traffic=traffic))
        shutil.rmtree(cold)
        cold = bench.server(folder / "cold-straight", self.prefix)
        result = bench.b2m(cold, "download", DB_STEM)
        self.b2m_rss.append(result.rss_kib / 1024)
        self.rows.append(PageRow(figure, "b2m download, straight to the server (not counted)",
                                 fmt_time(result.seconds), run=result))
        shutil.rmtree(cold)
        self.bucket_after = self.bucket_objects()

    def straight_upload(self, fresh, anchor_keys):
        """The fresh db's full upload by b2m (to a prefix of its own) and by rclone copyto,
        straight to the server, in alternating rounds (one in a smoke run): the wall times the
        target compares, as medians (one pair varies by ±20% on a busy 2-core machine)."""
        bench, figure = self.bench, "full upload of a fresh db"
        rounds = 1 if self.smoke else STRAIGHT_ROUNDS
        b2m_runs, rclone_runs = [], []
        for i in range(rounds):
            prefix = f"{self.prefix}-straight{i}"
            project = make_project(self.folder / f"straight{i}", f"s3://{BUCKET}/{prefix}",
                                   bench.endpoint, {DB_KEY: f"{DB_STEM}-v1.db"})
            shutil.copyfile(fresh, project / DB_DIR / f"{DB_STEM}-v1.db")
            try:
                # Each tool starts with nothing left to write back: the copy just made (as a
                # user's file is not) or the other tool's writes would slow whichever runs next.
                os.sync()
                result = bench.b2m(project, "upload", DB_STEM)
                self.b2m_rss.append(result.rss_kib / 1024)
                b2m_runs.append(result)
                try:
                    os.sync()
                    rclone_runs.append(bench.anchors.rclone_copy(
                        current_db(project), f"bench:{BUCKET}/{anchor_keys['rclone']}.straight{i}"))
                except (Unmeasurable, OSError) as e:
                    self.rows.append(PageRow(figure, "rclone copyto, straight to the server", why=str(e)))
            finally:
                shutil.rmtree(project, ignore_errors=True)
                shutil.rmtree(bench.work / "s3" / BUCKET / prefix, ignore_errors=True)
        median = lambda runs: statistics.median(r.seconds for r in runs)
        middle = lambda runs: sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
        rounds_text = plural(rounds, "round") + (", alternating" if rounds > 1 else "")
        row = PageRow(figure, f"b2m upload, straight to the server (not counted; {rounds_text})",
                      spread([r.seconds for r in b2m_runs], fmt_time), "≤ 1.0× rclone copyto",
                      run=middle(b2m_runs))
        self.rows.append(row)
        if rclone_runs:
            self.rows.append(PageRow(figure, f"rclone copyto, straight to the server ({rounds_text})",
                                     spread([r.seconds for r in rclone_runs], fmt_time),
                                     run=middle(rclone_runs)))
            ratio = median(b2m_runs) / median(rclone_runs)
            row.measured += f" ({ratio:.2f}× rclone's median)"
            row.ok = met(ratio <= 1.0)

    def straight_cold(self, fresh):
        """The cold fetch of v1 (stored as pages) beside today's: the same file published whole
        (`pages = false`, to a prefix of its own) and downloaded, straight to the server, in
        alternating rounds (one in a smoke run), each after a sync; compared by medians."""
        bench, figure = self.bench, "cold fetch of v1 (no local file)"
        prefix = f"{self.prefix}-whole"
        whole = make_project(self.folder / "whole", f"s3://{BUCKET}/{prefix}", bench.endpoint,
                             {DB_KEY: f"{DB_STEM}-v1.db"})
        with open(whole / "b2m.toml", "a") as toml:
            toml.write("pages = false\n")
        shutil.move(fresh, whole / DB_DIR / f"{DB_STEM}-v1.db")
        bench.b2m(whole, "upload", DB_STEM)
        shutil.rmtree(whole)

        def cold(from_prefix):
            def command():
                server = bench.server(self.folder / "cold-round", from_prefix)
                try:
                    os.sync()
                    result = bench.b2m(server, "download", DB_STEM)
                    self.b2m_rss.append(result.rss_kib / 1024)
                    return result
                finally:
                    shutil.rmtree(server)
            return command

        rounds = 1 if self.smoke else STRAIGHT_ROUNDS
        series = alternate(rounds, {"pages": cold(self.prefix), "whole": cold(prefix)}, "cold fetch")
        shutil.rmtree(bench.work / "s3" / BUCKET / prefix, ignore_errors=True)
        pages, today = series["pages"].runs, series["whole"].runs
        median = lambda runs: statistics.median(r.seconds for r in runs)
        middle = lambda runs: sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
        rounds_text = plural(rounds, "round") + (", alternating" if rounds > 1 else "")
        ratio = median(pages) / median(today)
        self.rows.append(PageRow(
            figure, f"b2m download, straight to the server (not counted; {rounds_text})",
            f"{spread([r.seconds for r in pages], fmt_time)} ({ratio:.2f}× today's median)",
            "wall ≤ 1.0× today's", met(ratio <= 1.0), run=middle(pages)))
        self.rows.append(PageRow(
            figure, f"today's: b2m download of the version stored whole, straight ({rounds_text})",
            spread([r.seconds for r in today], fmt_time), run=middle(today)))

    def stored_since(self, before):
        """Bytes of the objects a publish added under the prefix (leases excluded)."""
        return sum(size for key, size in self.bucket_objects().items()
                   if key not in before and not key.startswith("locks/"))

    def one_percent(self, dev, server, version, link, with_rsync):
        """v<version>: 1% of the pages changed, published, and fetched by the server on the
        previous version (through the shaped link when link == "shaped")."""
        anchors = self.anchors
        log(f"pages: v{version}, 1% of the pages ({link})")
        diff = change_pages(current_db(dev), self.rnd, self.zstd)
        self.diffs.append(("1% of the pages", version, diff))
        before = self.bucket_objects()
        result, traffic = self.b2m(dev, "upload", DB_STEM)
        stored = self.stored_since(before)
        limit = self.limit(6 * MiB)
        ok = traffic.up <= limit and traffic.other_lists() == 0 and traffic.data_writes() <= 3
        lease_lists = traffic.count("LIST") - traffic.other_lists()
        self.rows.append(PageRow(
            f"publish, 1% changed (v{version})", "b2m upload",
            f"{fmt_bytes(traffic.up)}; {traffic.other_lists()} LIST ({lease_lists} of lease "
            f"folders), {traffic.data_writes()} data PUT/POST; stored {fmt_bytes(stored)}",
            f"≤ {fmt_bytes(limit)}, no LIST but the lease protocol's, ≤ 3 data PUTs beyond "
            f"metadata + commit", met(ok), run=result, traffic=traffic))
        if with_rsync:
            self.rsync(dev, server, version)
        if link == "shaped":
            result, traffic = self.b2m(server, "download", DB_STEM, shaped=True)
            row = PageRow(f"fetch, 1% changed, through {SHAPED_MBIT} Mbit/s + "
                          f"{2 * SHAPED_DELAY_MS} ms (v{version})", "b2m download",
                          fmt_time(result.seconds), "≤ 1/10 of a full transfer", run=result,
                          traffic=traffic)
            self.rows.append(row)
            out = self.folder / "anchor-out.db"
            same = f"s3://{BUCKET}/{ANCHOR_PREFIX}/{self.prefix}/v{version}.db"

            def full():
                try:
                    return anchors.aws_cp(same, out)
                finally:
                    out.unlink(missing_ok=True)
            try:  # the same file as a whole object, put there on loopback, unmeasured
                self.anchors.aws_cp(current_db(dev), same)
            except Unmeasurable:
                pass  # the download below then says why
            full_run = self.anchor(row.figure, "aws s3 cp of the same version (full transfer, "
                                   "same link)", full, shaped=True)
            if full_run:
                ratio = result.seconds / full_run.seconds
                row.measured += f" ({ratio:.2f}× the full transfer)"
                row.ok = met(ratio <= 0.1)
        else:
            result, traffic = self.b2m(server, "download", DB_STEM)
            limit = self.limit(6 * MiB)
            ok = traffic.down <= limit and traffic.count("GET") <= 4
            self.rows.append(PageRow(
                f"fetch, 1% changed, previous version on the server (v{version})",
                "b2m download", f"{fmt_bytes(traffic.down)}; {traffic.count('GET')} GET",
                f"≤ {fmt_bytes(limit)}, ≤ 4 GETs including db.toml", met(ok), run=result,
                traffic=traffic))
        self.settle(server)

    def rsync(self, dev, server, version):
        """sqlite3_rsync ORIGIN REPLICA on local paths: the bound a bucket cannot beat (it runs
        a process on both ends), where Debian's sqlite3 ships it."""
        figure = f"fetch, 1% changed (v{version}): rsync bound"
        tool = self.bench.anchors.tools["sqlite3_rsync"]
        if not tool.path:
            self.rows.append(PageRow(figure, "sqlite3_rsync ORIGIN REPLICA", why=tool.why))
            return
        replica = self.folder / "rsync-replica.db"
        shutil.copyfile(current_db(server), replica)
        try:
            result = run(tool.argv("-v", str(current_db(dev)), str(replica)), clean_env(),
                         self.bench.b2m.gnu_time)
            self.rows.append(PageRow(figure, "sqlite3_rsync ORIGIN REPLICA (local paths)",
                                     last_line(result.output), run=result))
        except Unmeasurable as e:
            self.rows.append(PageRow(figure, "sqlite3_rsync ORIGIN REPLICA", why=str(e)))
        finally:
            replica.unlink(missing_ok=True)

    def memory_row(self, storage_rss=None):
        peak = max(self.b2m_rss)
        text = f"{peak:.0f} MiB (max over {len(self.b2m_rss)} b2m commands)"
        if storage_rss:
            text += f"; {max(storage_rss):.0f} MiB at the storage run's size"
        return [PageRow("peak memory", "every b2m command above", text,
                        f"≤ {PAGE_RSS_LIMIT_MIB} MiB (checked here), flat in db size (checked by "
                        f"the section pages-memory)",
                        met(peak <= PAGE_RSS_LIMIT_MIB)).cells()]


# A paged command's peak at the largest size may exceed its peak at the smallest by this much and
# still be flat: the spread of one command's peak from run to run here.
FLAT_SLACK_MIB = 4


def memory_steps(bench, folder, size_mib):
    """The paged commands at one size, straight to the server: [(step, peak MiB)]."""
    source = folder / "source.db"
    log(f"pages-memory: making a {size_mib} MiB text-heavy database…")
    make_pages_database(source, size_mib, seed=size_mib)
    dev = make_project(folder / "dev", f"s3://{BUCKET}/{folder.name}", bench.endpoint,
                       {DB_KEY: f"{DB_STEM}-v1.db"})
    shutil.move(source, dev / DB_DIR / f"{DB_STEM}-v1.db")
    zstd, rnd, peaks = bench.anchors.tools["zstd"], random.Random(21), []

    def step(what, project, *args):
        log(f"pages-memory {size_mib} MiB: {what}")
        result = bench.b2m(project, *args)
        peaks.append((what, result.rss_kib / 1024))

    def cold(what):
        cold_server = bench.server(folder / "cold", folder.name)
        step(what, cold_server, "download", DB_STEM)
        shutil.rmtree(cold_server)

    step("fresh upload", dev, "upload", DB_STEM)
    server = bench.server(folder / "server", folder.name)
    step("fetch (no local file)", server, "download", DB_STEM)
    backdate(current_db(server), 60)
    change_pages(current_db(dev), rnd, zstd)
    step("publish of 1%", dev, "upload", DB_STEM)
    step("its fetch, on the previous version", server, "download", DB_STEM)
    backdate(current_db(server), 60)
    drop_and_vacuum(current_db(dev), zstd)
    step("publish after DROP TABLE + VACUUM", dev, "upload", DB_STEM)
    step("its fetch, on the previous version", server, "download", DB_STEM)
    cold("a cold fetch of that version")
    return peaks


def pages_memory_section(bench, report, sizes):
    """Peak memory of the paged commands at each size, side by side."""
    by_size = {}
    for size in sizes:
        name = f"pages-memory-{size}mib"
        try:
            by_size[size] = memory_steps(bench, bench.folder(name), size)
        except B2mFailed as e:
            bench.failures.append(f"{name}: {e}")
        finally:
            bench.discard(name)
    report.add(f"## Versions stored as pages: peak memory by database size", "",
               "The pages section's commands on its text-heavy database, straight to the "
               "server, peak RSS of each (GNU time %M). Flat: the largest "
               f"size's peak at most {FLAT_SLACK_MIB} MiB (run-to-run spread here) over the "
               f"smallest's, and every peak ≤ {PAGE_RSS_LIMIT_MIB} MiB.", "")
    done = [size for size in sizes if size in by_size]
    if not done:
        report.add("**b2m failed** at every size.", "")
        return
    rows = []
    for i, (what, _) in enumerate(by_size[done[0]]):
        peaks = [by_size[size][i][1] for size in done]
        flat = peaks[-1] <= peaks[0] + FLAT_SLACK_MIB and max(peaks) <= PAGE_RSS_LIMIT_MIB
        rows.append([what, *[f"{p:.0f} MiB" for p in peaks],
                     f"{peaks[-1] - peaks[0]:+.1f} MiB" if len(done) > 1 else "—", met(flat)])
    report.add(*md_table(["command", *[f"{fmt_bytes(size * MiB)}" for size in done],
                          "largest − smallest", "flat?"], rows), "")


def storage_run(bench, proxy, folder, prefix, size_mib, versions):
    """`versions` daily versions of 1% change published to one prefix: the bucket's stored bytes
    beside versions × the db size and the target (2 compressed bases + the packs)."""
    zstd = bench.anchors.tools["zstd"]
    source = folder / "source.db"
    log(f"storage: {versions} versions of a {size_mib} MiB db…")
    make_pages_database(source, size_mib, seed=30 + size_mib)
    project = make_project(folder / "dev", f"s3://{BUCKET}/{prefix}", proxy.endpoint,
                           {DB_KEY: f"{DB_STEM}-v1.db"})
    shutil.copyfile(source, project / DB_DIR / f"{DB_STEM}-v1.db")
    source.unlink()
    base = zstd_size(zstd, file_blocks(current_db(project)))
    rnd = random.Random(30)
    sent, rss, seconds, packs, sizes = 0, [], 0.0, 0, 0
    for version in range(1, versions + 1):
        if version > 1:
            diff = change_pages(current_db(project), rnd, zstd)
            packs += diff.pack_bytes or 0
        sizes += current_db(project).stat().st_size
        result, traffic = proxy.measure(lambda: bench.b2m(project, "upload", DB_STEM))
        sent += traffic.up
        seconds += result.seconds
        rss.append(result.rss_kib / 1024)
    root = bench.work / "s3" / BUCKET / prefix
    objects = [p for p in root.rglob("*") if p.is_file() and "locks" not in p.parts]
    stored = sum(p.stat().st_size for p in objects)
    target = 2 * base + packs if base is not None else None
    row = ["bucket storage", f"{versions} versions, 1% change each", fmt_bytes(stored),
           f"≤ 2 compressed bases + the packs ({fmt_bytes(target)})",
           met(target is not None and stored <= target), fmt_bytes(sent), "",
           f"{versions} uploads", fmt_time(seconds), f"{max(rss):.0f} MiB"]
    facts = (f"{len(objects)} objects ({object_kinds(objects)}); {versions} × the db = "
             f"{fmt_bytes(sizes)}; one compressed base (zstd -3) {fmt_bytes(base)}, "
             f"Σ {versions - 1} packs (zstd -3 of each version's new pages) {fmt_bytes(packs)}")
    return row, facts, rss


def object_kinds(paths):
    """`.db × 2, .json × 30, …`: the bucket's objects by what their names end with."""
    kinds = {}
    for p in paths:
        name = p.name if isinstance(p, Path) else p
        kind = "db.toml" if name == "db.toml" else (Path(name).suffix or name)
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{k} × {n}" for k, n in sorted(kinds.items()))


def pages_section(bench, report, size_mib, smoke, storage_mib):
    """Issue 20's figures: publish and fetch of a few versions of a size_mib db, every command
    counted through bench/shape_proxy.py; then the 30-version storage run at storage_mib."""
    proxy = CountingProxy(bench.background, bench.port)
    name = f"pages-{size_mib}mib"
    folder = bench.folder(name)
    pages = PagesRun(bench, proxy, folder, name, size_mib, smoke)
    failed = None
    try:
        pages.run()
    except B2mFailed as e:
        failed = str(e)
        bench.failures.append(f"{name}: {e}")
    except Exception as e:  # a harness bug: the rows measured so far are still reported
        import traceback
        traceback.print_exc()
        failed = f"the harness failed: {e!r}"
        bench.failures.append(f"{name}: {failed}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    storage, facts, storage_rss = None, "", None
    if not smoke and storage_mib and not failed:
        storage_name = f"pages-storage-{storage_mib}mib"
        try:
            storage, facts, storage_rss = storage_run(bench, proxy, bench.folder(storage_name),
                                                      storage_name, storage_mib, STORAGE_VERSIONS)
        except B2mFailed as e:
            bench.failures.append(f"{storage_name}: {e}")
            facts = f"**b2m failed**: {e}"
        finally:
            bench.discard(storage_name)
    bench.discard(name)
    shutil.rmtree(bench.work / "s3" / BUCKET / ANCHOR_PREFIX / name, ignore_errors=True)

    db = getattr(pages, "db_bytes", None)
    report.add(f"## Versions stored as pages (issue 20): a {size_mib} MiB database", "",
               f"A text-heavy database ({fmt_bytes(db)}; 4 tables, 3 indexes; "
               f"{fmt_bytes(getattr(pages, 'compressed', None))} compressed by zstd -3), "
               f"published by a dev project and fetched by servers, every command through "
               f"bench/shape_proxy.py (counting bytes and requests; loopback unless the row says "
               f"a shaped link: {SHAPED_MBIT} Mbit/s each way and {SHAPED_DELAY_MS} ms each way). "
               f"One run per figure. Byte targets are the issue's for 1 GiB"
               + ("" if size_mib == ISSUE_MIB else f", scaled to {size_mib} MiB") + ". "
               "\"sent\" is client → server (requests), \"received\" server → client, HTTP "
               "headers included; LIST is a GET listing the bucket; \"data PUT/POST\" write a key "
               "under dbs/ that is not a version's .json metadata; \"stored\" is what the "
               "publish added to the bucket.", "")
    if failed:
        report.add(f"**b2m failed**: {failed}", "")
    rows = [r.cells() for r in pages.rows]
    if pages.b2m_rss:
        rows += pages.memory_row(storage_rss)
    if storage:
        rows.append(storage)
    report.add(*md_table(PAGE_HEADER, rows), "")
    if facts:
        report.add(f"Storage run ({STORAGE_VERSIONS} versions of a {storage_mib} MiB db, "
                   f"a smaller size than the figures above so that it stays minutes): {facts}.", "")
    if getattr(pages, "bucket_after", None):
        objects = pages.bucket_after
        report.add(f"The bucket after the figures: {len(objects)} objects under the prefix, "
                   f"{fmt_bytes(sum(objects.values()))} "
                   f"({object_kinds([k.split('/')[-1] for k in objects])}).", "")
    diff_rows = [[f"v{version}: {what}", f"{d.pages:,}", d.share(d.changed), f"{d.runs:,}",
                  d.share(d.new_content), fmt_bytes(d.pack_bytes)]
                 for what, version, d in pages.diffs]
    report.add("Page diffs (the page-by-page comparison of each version's file with the one "
               "before; a page's content is new when no page of the old file had it; the pack "
               "estimate is zstd -3 of the new pages):", "",
               *md_table(["version", "pages", "changed pages", "separate places",
                          "pages with new content", "pack estimate"], diff_rows), "")


# -- the run ----------------------------------------------------------------------------------

def machine_facts(b2m_bin, measured, tools):
    """Where the figures come from (`measured`: the copy of b2m_bin the harness runs)."""
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.machine())

    def git(*args):
        done = subprocess.run(["git", "--no-optional-locks", "-C", str(ROOT), *args],
                              capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " + uncommitted changes"
    version = subprocess.run([str(measured), "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256(measured.read_bytes()).hexdigest()[:12]
    versions = ", ".join(t.version or f"{t.name} n/a ({t.why})" for t in tools.values())
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss = ("GNU time %M" if tools["time"].path
           else f"os.wait4 (a floor: this harness's {own_rss:.0f} MiB)")
    return [
        f"- machine: {os.cpu_count()} × {cpu}; Linux {platform.release()}; "
        f"Python {platform.python_version()}",
        f"- b2m: `{b2m_bin}` ({measured.stat().st_size / MiB:.1f} MiB, sha256 {digest}…), "
        f"{version.strip()}, commit {commit}",
        f"- tools: {versions}; peak RSS from {rss}",
        "- S3: one s3s-fs server on 127.0.0.1 (examples/s3-server) for every tool",
        "- each figure: median (min–max) over the runs, tools taking turns; "
        "wall clock of the whole process",
    ]


def example(name, b2m_bin):
    """An example binary: target/release/examples/, else the one beside B2M_BIN's (a binary
    measured from another work tree)."""
    own = RELEASE / "examples" / name
    beside = b2m_bin.parent / "examples" / name
    return beside if not own.exists() and beside.exists() else own


def snapshot(binary, copy):
    """A copy of binary to run, so that a rebuild during the run changes nothing measured."""
    return Path(shutil.copy2(binary, copy))


def build():
    """The release binaries the harness runs."""
    log("cargo build --release (b2m, s3-server, replay)…")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "b2m",
                    "--example", "s3-server", "--example", "replay"], cwd=ROOT, check=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,1024",
                        help="database sizes in MiB, comma-separated (default 64,1024)")
    parser.add_argument("--runs", type=int,
                        help="runs per tool and figure (default 5 up to 256 MiB, 3 above)")
    parser.add_argument("--no-build", action="store_true",
                        help="use the release binaries as they are")
    parser.add_argument("--smoke", action="store_true",
                        help="4 MiB, 1 run, a 10k-statement replay, the pages section at 4 MiB "
                             "without shaped link or storage run: checks the harness in minutes")
    parser.add_argument("--pages", action="store_true",
                        help="add the section of issue 20 (versions stored as pages)")
    parser.add_argument("--pages-size", type=int, default=1024, metavar="MiB",
                        help="its database size (default 1024)")
    parser.add_argument("--storage-size", type=int, default=64, metavar="MiB",
                        help=f"its {STORAGE_VERSIONS}-version storage run's database size "
                             "(default 64; 0 skips the run)")
    parser.add_argument("--memory-sizes", default="1024,2048", metavar="MiB,MiB",
                        help="the pages-memory section's database sizes (default 1024,2048)")
    parser.add_argument("--only", metavar="SECTIONS",
                        help=f"run only these sections, comma-separated: {', '.join(SECTIONS)}")
    args = parser.parse_args()
    args.sizes = [4] if args.smoke else [int(s) for s in args.sizes.split(",") if s.strip()]
    args.memory_sizes = [4, 8] if args.smoke else [int(s) for s in args.memory_sizes.split(",") if s.strip()]
    if args.smoke:
        args.runs = 1
        args.pages_size = 4
    if args.only:
        args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
        if unknown := set(args.sections) - set(SECTIONS):
            parser.error(f"unknown section {', '.join(sorted(unknown))}: "
                         f"choose from {', '.join(SECTIONS)}")
    else:
        args.sections = [s for s in SECTIONS if s not in ("pages", "pages-memory") or args.pages or args.smoke]
    return args


# The report's sections, in order.
SECTIONS = ("sizes", "proxy", "replay", "pages", "pages-memory")


def runs_for(args, size_mib):
    return args.runs or (5 if size_mib <= 256 else 3)


def measure_all(bench, report, args):
    """Every section of the report that args select."""
    if "sizes" in args.sections:
        measure_sizes(bench, report, args)
    if "proxy" in args.sections:
        measure_proxy(bench, report, args)
    if "replay" in args.sections:
        measure_replay(bench, report, args)
    if "pages" in args.sections:
        pages_section(bench, report, args.pages_size, args.smoke, args.storage_size)
    if "pages-memory" in args.sections:
        pages_memory_section(bench, report, args.memory_sizes)


def measure_sizes(bench, report, args):
    """The per-size tables and peak memory across sizes."""
    rss_by_size = {}
    for size in args.sizes:
        rss_by_size[size] = bench_size(bench, report, size, runs_for(args, size))
    largest = max(args.sizes)
    if not args.smoke and largest > 2 * WINDOW_MIB:
        # One size between the window and the largest, for the memory figures alone.
        probe = 2 * WINDOW_MIB
        if probe not in rss_by_size:
            tables = SizeTables()
            bench.figure(f"{probe}mib-memory", tables.figures, transfer_rss, probe, tables)
            rss_by_size[probe] = tables.b2m_rss
    if len(rss_by_size) > 1:
        rss_across_sizes(report, rss_by_size)


def measure_proxy(bench, report, args):
    """A no-op preflight and a download through the delay proxy."""
    proxy_size = 4 if args.smoke else 64
    rows = []
    bench.figure("proxy", rows, proxied, proxy_size, runs_for(args, proxy_size), rows)
    report.add(f"## Through a proxy adding {2 * PROXY_DELAY_MS} ms of round trip "
               f"({PROXY_DELAY_MS} ms each way, connection handshakes included)", "",
               f"bench/delay_proxy.py in front of the same server; {proxy_size} MiB database, "
               f"{plural(runs_for(args, proxy_size), 'run')} per download, "
               f"{NOOP_RUNS * runs_for(args, proxy_size)} per no-op preflight.", "",
               *md_table(["figure", "b2m through the proxy", "b2m direct", "target", "met?"], rows),
               "")


def measure_replay(bench, report, args):
    """The journal replay beside the sqlite3 shell."""
    rows = []
    statements, items = (10_000, 10_000) if args.smoke else (1_000_000, 100_000)
    bench.figure("replay", rows, replay, items, statements, args.runs or 3, rows)
    report.add("## Journal replay", "",
               "`examples/replay DB JOURNAL` (one transaction, deletes made soft) beside "
               "`sqlite3 -bail DB \"BEGIN;\" \".read JOURNAL\" \"COMMIT;\"`, each on a fresh copy.",
               "",
               *md_table(["figure", "b2m", "anchor", "ratio", "target", "met?"], rows), "")


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not args.no_build:
        build()
    b2m_bin = Path(os.environ.get("B2M_BIN") or RELEASE / "b2m").resolve()
    s3_server, replay_bin = example("s3-server", b2m_bin), example("replay", b2m_bin)
    needed = [b2m_bin, s3_server] + ([replay_bin] if "replay" in args.sections else [])
    if missing := [str(p) for p in needed if not p.exists()]:
        sys.exit(f"missing {', '.join(missing)}: run without --no-build")
    tools = ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="b2m-bench.", dir="/tmp"))
    background = Background(work)
    report = Report()
    started = time.monotonic()
    try:
        (work / "s3" / BUCKET).mkdir(parents=True)
        port = free_port()
        background.start("s3-server", [str(s3_server), str(work / "s3"), str(port), KEY_ID,
                                       SECRET], port)
        (work / "bin").mkdir()
        b2m = B2m(snapshot(b2m_bin, work / "bin" / "b2m"),
                  snapshot(replay_bin, work / "bin" / "replay") if replay_bin.exists() else None,
                  tools["time"].path)
        bench = Bench(work, b2m, tools, background, port)
        report.add(f"# b2m bench, {datetime.datetime.now():%Y-%m-%d %H:%M}"
                   f"{' (smoke)' if args.smoke else ''}", "",
                   f"`python3 bench/bench.py {shlex.join(sys.argv[1:])}`", "",
                   *machine_facts(b2m_bin, b2m.binary, tools), "")
        measure_all(bench, report, args)
        report.add(f"Took {time.monotonic() - started:.0f} s." + "".join(
            f"\n\nb2m failed: {f}" for f in bench.failures))
        suffix = "" if args.only is None else "-" + "-".join(args.sections)
        log(f"written to {report.write(args.smoke, suffix).relative_to(ROOT)}")
    finally:
        background.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())

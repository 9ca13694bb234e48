#!/usr/bin/env python3
"""b2m's figures, each beside what a user would otherwise run, in one run.

    python3 bench/bench.py [--sizes 64,1024] [--runs N] [--no-build] [--smoke]

For each database size (MiB): upload and download against one local S3 server (s3s-fs on
127.0.0.1) beside `sqlite3 .backup` + `aws s3 cp` and `rclone copyto`, with every tool's peak
memory and b2m's lease wait; on a local-folder bucket, hashing with b2m's hash cache cold beside
`sha256sum` (and status with it warm), and an upload beside `sqlite3 .backup` + `cp`; a no-op
preflight with 3 databases of that size beside 3 of 1 MiB; bucket requests per command. Then a
no-op preflight and a download through a proxy adding 40 ms of round trip (bench/delay_proxy.py),
and a journal replay beside the sqlite3 shell.

Each figure is the median (min–max) of several runs, the tools taking turns (b2m, anchor 1,
anchor 2, b2m, …), timed as the wall clock of the whole process; no-op preflights, which take
milliseconds, run NOOP_RUNS times as often. The report is printed and written to
bench/results/. awscli (into target/bench-venv), rclone and sqlite3 install themselves when
missing; an anchor that cannot run is shown as n/a. The exit status is 1 only when a b2m command
fails; missed targets are reported, not failed. B2M_BIN measures another b2m binary.
"""

import argparse
import contextlib
import datetime
import hashlib
import itertools
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
    """The environment without the caller's B2M_* settings (a B2M_REMOTE would redirect b2m)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("B2M_")}
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
    }


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

    def write(self, smoke):
        RESULTS.mkdir(exist_ok=True)
        name = datetime.datetime.now().strftime("%Y-%m-%d-%H%M") + ("-smoke" if smoke else "")
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
                        help="4 MiB, 1 run, a 10k-statement replay: checks the harness in < 2 min")
    args = parser.parse_args()
    args.sizes = [4] if args.smoke else [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.smoke:
        args.runs = 1
    return args


def runs_for(args, size_mib):
    return args.runs or (5 if size_mib <= 256 else 3)


def measure_all(bench, report, args):
    """Every section of the report."""
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
    needed = [b2m_bin, RELEASE / "examples" / "s3-server", RELEASE / "examples" / "replay"]
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
        background.start("s3-server", [str(RELEASE / "examples" / "s3-server"), str(work / "s3"),
                                       str(port), KEY_ID, SECRET], port)
        (work / "bin").mkdir()
        b2m = B2m(snapshot(b2m_bin, work / "bin" / "b2m"),
                  snapshot(RELEASE / "examples" / "replay", work / "bin" / "replay"),
                  tools["time"].path)
        bench = Bench(work, b2m, tools, background, port)
        report.add(f"# b2m bench, {datetime.datetime.now():%Y-%m-%d %H:%M}"
                   f"{' (smoke)' if args.smoke else ''}", "",
                   f"`python3 bench/bench.py {shlex.join(sys.argv[1:])}`", "",
                   *machine_facts(b2m_bin, b2m.binary, tools), "")
        measure_all(bench, report, args)
        report.add(f"Took {time.monotonic() - started:.0f} s." + "".join(
            f"\n\nb2m failed: {f}" for f in bench.failures))
        log(f"written to {report.write(args.smoke).relative_to(ROOT)}")
    finally:
        background.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())

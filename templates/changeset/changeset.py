"""Helpers for b2m changesets written in Python.

Each call runs `b2m --json ...` (the binary named by $B2M, else `b2m` on PATH), returns the parsed
result, and raises B2MError when b2m fails: a changeset never carries on after a failed step.
"""
import json
import os
import subprocess
import sys
import tempfile

__all__ = ["B2MError", "db_status", "db_path", "db_download", "db_upload", "merge", "fetch_db_toml",
           "stop_server", "start_server", "log"]


class B2MError(Exception):
    """A b2m command failed: its arguments, exit code, error kind, message and hint."""

    def __init__(self, args, code, kind, message, hint):
        self.args_ = list(args)
        self.code = code
        self.kind = kind
        self.message = message
        self.hint = hint
        super().__init__(f"b2m {' '.join(self.args_)} failed ({kind or code}): {message}" + (f"; {hint}" if hint else ""))


def _b2m(*args):
    exe = os.environ.get("B2M", "b2m")
    # The result comes back through a file, not a pipe: a server that `start_server()` starts
    # inherits the command's output, and a pipe would keep this call waiting until it exits.
    # b2m's messages go straight to this script's stderr (the changeset's log).
    with tempfile.TemporaryFile() as result:
        sys.stderr.flush()
        code = subprocess.run([exe, "--json", *args], stdout=result, stdin=subprocess.DEVNULL).returncode
        result.seek(0)
        text = result.read().decode("utf-8", "replace")
    try:
        out = json.loads(text) if text.strip() else {}
    except ValueError:
        out = {}
    if code != 0:
        err = out.get("error", {}) if isinstance(out, dict) else {}
        message = err.get("message") or f"exit code {code}"
        raise B2MError(args, code, err.get("kind"), message, err.get("hint"))
    return out


def _row(db):
    rows = _b2m("status", db)["dbs"]
    if not rows:
        raise B2MError(["status", db], 1, "unknown", f"b2m status says nothing about {db}", None)
    return rows[0]


def db_status(db):
    """The status of one database, as a string: up_to_date, outdated_db, ready_to_upload, ..."""
    return _row(db)["status"]


def db_path(db):
    """The path of the local file of a database."""
    return _row(db)["path"]


def db_download(db, force=False):
    """`b2m download DB` (force: drop local changes, a backup is kept)."""
    return _b2m("download", db, *(["--force"] if force else []))


def db_upload(db):
    """`b2m upload DB`: publish the local file as the next version."""
    return _b2m("upload", db)


def merge(db):
    """`b2m merge DB`: carry the server's journaled rows onto the bucket's newer version."""
    return _b2m("merge", db)


def fetch_db_toml():
    """`b2m fetch-db-toml`."""
    return _b2m("fetch-db-toml")


def stop_server():
    """Runs `[server] stop` from b2m.toml."""
    return _b2m("server", "stop")


def start_server():
    """Runs `[server] start` from b2m.toml."""
    return _b2m("server", "start")


def log(message):
    """A line for the terminal and the changeset's log."""
    print(message, file=sys.stderr, flush=True)


def notify(message):
    """A line to the team (`notify.webhook` / `notify.command` in b2m.toml): `b2m notify MESSAGE`.
    A notification that fails is only a warning; it never fails the changeset."""
    return _b2m("notify", message)

"""A small server as b2m's users run them: it reads db/all_dbs/db.toml at start, holds the database
its `ipmdb` key names open in WAL mode, and for each `POST /row/<value>` inserts a row, appends the
statement to its journal `<file-stem>.sql` beside the database, and only then answers 200.

    python3 journal_app.py start PORT    daemonise the server; return once it answers
    python3 journal_app.py stop          stop it (SIGTERM) and wait until it is gone
    python3 journal_app.py running       exit 0 if it runs, 1 if not
    python3 journal_app.py serve PORT    the server itself (what `start` runs)
"""
import http.server
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
DB_DIR = os.path.join(HERE, "db", "all_dbs")
PID = os.path.join(HERE, "app.pid")
LOG = os.path.join(HERE, "app.log")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def read_pid():
    try:
        with open(PID) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def serve(port):
    with open(os.path.join(DB_DIR, "db.toml"), "rb") as f:
        name = tomllib.load(f)["db"]["ipmdb"]
    path = os.path.join(DB_DIR, name)
    journal = open(os.path.splitext(path)[0] + ".sql", "a")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=10000")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            # A stop waits for the request in hand: commit, journal line and answer go together.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            try:
                self.write_row()
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})

        def write_row(self):
            value = self.path.rsplit("/", 1)[-1]
            statement = f"INSERT INTO t(v) VALUES ('{value}');"
            try:
                conn.execute(statement)
                journal.write(statement + "\n")
                journal.flush()
            except Exception as e:  # noqa: BLE001 - the client must see the failure
                self.send_response(500)
                self.end_headers()
                self.wfile.write(str(e).encode())
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(name.encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Handler)

    def stop(*_):
        # Finish the request in hand, then close the database (its WAL checkpointed) and exit.
        server.server_close()
        conn.close()
        journal.close()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    with open(PID, "w") as f:
        f.write(str(os.getpid()))
    server.serve_forever()


def start(port):
    if alive(read_pid()):
        return 0  # already running: starting twice is safe
    with open(LOG, "a") as log:
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "serve", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return 0
        except OSError:
            time.sleep(0.05)
    print("the app did not start", file=sys.stderr)
    return 1


def stop():
    pid = read_pid()
    if not alive(pid):
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 20
    while alive(pid):
        if time.time() > deadline:
            print(f"pid {pid} did not stop", file=sys.stderr)
            return 1
        time.sleep(0.02)
    return 0


if __name__ == "__main__":
    action = sys.argv[1]
    if action == "serve":
        serve(int(sys.argv[2]))
    elif action == "start":
        sys.exit(start(int(sys.argv[2])))
    elif action == "stop":
        sys.exit(stop())
    elif action == "running":
        sys.exit(0 if alive(read_pid()) else 1)

#!/usr/bin/env python3
"""An HTTP/1.1-aware TCP proxy on 127.0.0.1 that counts and, when asked, shapes a link.

Usage: shape_proxy.py LISTEN_PORT TARGET_PORT CONTROL_PORT [--mbit N] [--delay-ms MS]

Every byte each way and every HTTP request is counted: the proxy follows the request and response
framing of each keep-alive connection (Content-Length, chunked, HEAD, 1xx interim answers such as
`100 Continue`), so it logs each request's method, class, key, status and bytes each way. The
class is the method, except LIST: a GET on the bucket alone, or with `list-type`, `versions` or
`uploads` in its query. A stream it cannot follow is still relayed and counted in bytes; its
requests are then missing from the log and `unparsed` says how many connections did that.

Shaping models one link shared by every connection, each way: a token bucket of `--mbit`
(chunks leave in the order they were read, each after the link has carried the ones before it)
and a fixed delay of `--delay-ms` each way (20 ms each way = 40 ms of round trip). A new
connection's first bytes leave no earlier than one round trip after it was accepted, as a TCP
handshake costs on a real link. What one direction holds in flight is bounded (the reader waits
for the link), so a 1 GiB transfer does not sit in the proxy's memory. TCP's own window growth
is not modelled: the proxy reads at the link's rate from the first byte. The shape applies to
connections accepted after it was set.

The control port answers plain HTTP on 127.0.0.1:
  GET  /counts            {"up": bytes client→server, "down": bytes server→client,
                           "connections": N, "unparsed": N, "requests": [{"method", "class",
                           "key", "query", "status", "up", "down"}, …]}
  POST /reset             zeroes the counts (between two commands)
  POST /shape?mbit=100&delay_ms=20   shapes new connections; POST /shape alone: no shaping
"""

import argparse
import http.server
import json
import queue
import socket
import sys
import threading
import time
import urllib.parse

CHUNK = 256 * 1024  # read size without shaping
SHAPED_CHUNK = 16 * 1024  # read size when shaped: 1.3 ms of a 100 Mbit/s link
SLACK_SECS = 0.02  # how far ahead of the link a reader may run (bounds what is in flight)
MAX_HEAD = 64 * 1024  # a request or status line plus headers longer than this is not HTTP


class Counts:
    """What went through since the last reset."""

    def __init__(self):
        self.lock = threading.Lock()
        self.up = self.down = self.connections = self.unparsed = 0
        self.requests = []

    def reset(self):
        with self.lock:
            self.up = self.down = self.connections = self.unparsed = 0
            self.requests = []

    def add_bytes(self, direction, n):
        with self.lock:
            if direction == "up":
                self.up += n
            else:
                self.down += n

    def snapshot(self):
        with self.lock:
            return {"up": self.up, "down": self.down, "connections": self.connections,
                    "unparsed": self.unparsed, "requests": [dict(r) for r in self.requests]}


COUNTS = Counts()


def classify(method, target):
    """(class, key, query) of a path-style request target: `/bucket/key?query`."""
    parsed = urllib.parse.urlsplit(target)
    path = urllib.parse.unquote(parsed.path)
    _, _, key = path.lstrip("/").partition("/")
    query = parsed.query
    names = {name for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}
    cls = method
    if method == "GET":
        bucket_level = not key and not names & {"location", "acl", "policy", "versioning",
                                                 "cors", "lifecycle", "tagging"}
        if bucket_level or names & {"list-type", "versions", "uploads"}:
            cls = "LIST"
    return cls, key, query


class Framing:
    """Follows one direction of an HTTP/1.1 connection: where each message's head and body end.

    For requests, `on_head(first_line, headers)` is called per request; for responses, per
    response, and the body rules depend on the request answered (`pending`, shared with the
    request side: the methods of requests not yet answered, oldest first)."""

    def __init__(self, is_request, pending, on_head, on_bytes):
        self.is_request = is_request
        self.pending = pending
        self.on_head = on_head
        self.on_bytes = on_bytes  # (n): body or head bytes of the current message
        self.head = bytearray()
        self.state = "head"  # head | body | chunk-size | chunk-data | chunk-crlf | trailer | eof
        self.remaining = 0
        self.line = bytearray()
        self.broken = False

    def feed(self, data):
        """Consumes data (a bytes-like object); sets `broken` on a stream it cannot follow."""
        view = memoryview(data)
        while view and not self.broken:
            if self.state == "head":
                view = self._head(view)
            elif self.state in ("body", "chunk-data"):
                n = min(self.remaining, len(view))
                self.on_bytes(n)
                self.remaining -= n
                view = view[n:]
                if self.remaining == 0:
                    self.state = "head" if self.state == "body" else "chunk-crlf"
                    self.line.clear()
            elif self.state == "eof":
                self.on_bytes(len(view))
                return
            else:
                view = self._chunk_line(view)

    def _head(self, view):
        """Accumulates a head until its blank line, then decides how its body ends."""
        start = len(self.head)
        self.head += view
        end = self.head.find(b"\r\n\r\n", max(0, start - 3))
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self.broken = True
            return view[len(view):]
        used = end + 4 - start
        head_bytes = end + 4
        head = bytes(self.head[:end])
        self.head.clear()
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            self._body_rule(lines[0], headers)
        except (ValueError, IndexError):
            self.broken = True
            return view[len(view):]
        self.on_head(lines[0], headers)
        self.on_bytes(head_bytes)
        return view[used:]

    def _body_rule(self, first_line, headers):
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = int(headers["content-length"]) if "content-length" in headers else None
        if self.is_request:
            method, _, _ = first_line.split(" ", 2)
            self.pending.append(method)
            no_body = False
            until_close = False
        else:
            status = int(first_line.split(" ", 2)[1])
            if 100 <= status < 200:
                self.state = "head"  # an interim answer: the final one follows
                return
            method = self.pending.pop(0) if self.pending else "GET"
            no_body = method == "HEAD" or status in (204, 304)
            until_close = not chunked and length is None
        if no_body:
            self.state = "head"
        elif chunked:
            self.state = "chunk-size"
            self.line.clear()
        elif length:
            self.state, self.remaining = "body", length
        elif until_close:
            self.state = "eof"
        else:
            self.state = "head"

    def _chunk_line(self, view):
        """A chunk-size line, the CRLF after a chunk's data, or a trailer line."""
        nl = bytes(view[:MAX_HEAD]).find(b"\n")
        if nl < 0:
            self.line += view
            self.on_bytes(len(view))
            if len(self.line) > MAX_HEAD:
                self.broken = True
            return view[len(view):]
        self.line += view[:nl + 1]
        self.on_bytes(nl + 1)
        line = bytes(self.line).strip()
        self.line.clear()
        if self.state == "chunk-crlf":
            self.state = "chunk-size"
        elif self.state == "chunk-size":
            size = int(line.split(b";")[0], 16)
            self.state, self.remaining = ("trailer", 0) if size == 0 else ("chunk-data", size)
        elif not line:  # the blank line closing the trailers
            self.state = "head"
        return view[nl + 1:]


class Link:
    """One direction of the shaped link, shared by every shaped connection."""

    def __init__(self):
        self.lock = threading.Lock()
        self.free_at = 0.0

    def carry(self, n, bytes_per_sec, not_before):
        """When n bytes read now will have crossed the link (before the delay)."""
        with self.lock:
            start = max(time.monotonic(), self.free_at, not_before)
            self.free_at = start + n / bytes_per_sec
            return self.free_at


LINKS = {"up": Link(), "down": Link()}
SHAPE = {"bytes_per_sec": None, "delay": 0.0}


class Connection:
    """One client connection relayed to the server, counted, and shaped as SHAPE was when it was
    accepted."""

    def __init__(self, client, target_port):
        self.client = client
        self.server = socket.create_connection(("127.0.0.1", target_port))
        for s in (self.client, self.server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rate = SHAPE["bytes_per_sec"]
        self.delay = SHAPE["delay"]
        self.accepted = time.monotonic()
        self.shaped = bool(self.rate or self.delay)
        self.pending = []  # methods of requests not yet answered
        self.current = []  # log entries of requests not yet answered, oldest first
        self.active_up = None  # the entry whose request bytes are being read
        with COUNTS.lock:
            COUNTS.connections += 1
        self.broken_counted = False

    # -- counting --

    def request_head(self, first_line, headers):
        method, target, _ = first_line.split(" ", 2)
        cls, key, query = classify(method, target)
        entry = {"method": method, "class": cls, "key": key, "query": query, "status": None,
                 "up": 0, "down": 0}
        with COUNTS.lock:
            COUNTS.requests.append(entry)
        self.active_up = entry
        self.current.append(entry)

    def response_head(self, first_line, headers):
        status = int(first_line.split(" ", 2)[1])
        entry = self.current[0] if self.current else None
        if entry is not None:
            entry["status"] = status
            if status >= 200:
                self.active_down = self.current.pop(0)
                return
        self.active_down = entry

    def bytes_up(self, n):
        if self.active_up is not None:
            self.active_up["up"] += n

    def bytes_down(self, n):
        entry = getattr(self, "active_down", None)
        if entry is not None:
            entry["down"] += n

    def mark_broken(self):
        if not self.broken_counted:
            self.broken_counted = True
            with COUNTS.lock:
                COUNTS.unparsed += 1

    # -- relaying --

    def run(self):
        up = Framing(True, self.pending, self.request_head, self.bytes_up)
        down = Framing(False, self.pending, self.response_head, self.bytes_down)
        threads = [threading.Thread(target=self.pump, args=(self.client, self.server, "up", up),
                                    daemon=True),
                   threading.Thread(target=self.pump, args=(self.server, self.client, "down", down),
                                    daemon=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in (self.client, self.server):
            s.close()

    def pump(self, src, dst, direction, framing):
        """Copies src to dst (through a delay line when shaped), counting; half-closes dst at
        the end."""
        writer = None
        if self.shaped:
            line = queue.Queue()
            writer = threading.Thread(target=self.deliver, args=(line, dst), daemon=True)
            writer.start()
        buf = bytearray(SHAPED_CHUNK if self.shaped else CHUNK)
        view = memoryview(buf)
        handshake = self.accepted + 2 * self.delay if direction == "up" else 0.0
        try:
            while True:
                try:
                    n = src.recv_into(buf)
                except OSError:
                    n = 0
                if not n:
                    break
                COUNTS.add_bytes(direction, n)
                if not framing.broken:
                    framing.feed(view[:n])
                    if framing.broken:
                        self.mark_broken()
                if writer is None:
                    dst.sendall(view[:n])
                    continue
                done = time.monotonic()
                if self.rate:
                    done = LINKS[direction].carry(n, self.rate, handshake)
                else:
                    done = max(done, handshake)
                line.put((done + self.delay, bytes(view[:n])))
                ahead = done - time.monotonic() - SLACK_SECS
                if ahead > 0:
                    time.sleep(ahead)
        except OSError:
            pass
        finally:
            if writer is not None:
                line.put((0.0, None))
                writer.join()
            else:
                shut(dst)

    @staticmethod
    def deliver(line, dst):
        """Writes each chunk of the delay line at its due time; half-closes dst at the end."""
        failed = False
        while True:
            due, data = line.get()
            if data is None:
                break
            if failed:
                continue
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                dst.sendall(data)
            except OSError:
                failed = True
        shut(dst)


def shut(sock):
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def set_shape(mbit, delay_ms):
    SHAPE["bytes_per_sec"] = mbit * 1e6 / 8 if mbit else None
    SHAPE["delay"] = (delay_ms or 0) / 1000


class Control(http.server.BaseHTTPRequestHandler):
    """The control port: counts, reset, shape."""

    def answer(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/counts"):
            return self.answer(COUNTS.snapshot())
        self.send_error(404)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/reset":
            COUNTS.reset()
            return self.answer({"ok": True})
        if url.path == "/shape":
            args = dict(urllib.parse.parse_qsl(url.query))
            set_shape(float(args.get("mbit", 0)), float(args.get("delay_ms", 0)))
            return self.answer({"bytes_per_sec": SHAPE["bytes_per_sec"],
                                "delay": SHAPE["delay"]})
        self.send_error(404)

    def log_message(self, *args):
        pass


def serve(listen_port, target_port, control_port):
    control = http.server.ThreadingHTTPServer(("127.0.0.1", control_port), Control)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    listener = socket.create_server(("127.0.0.1", listen_port), backlog=128)
    shape = (f"{SHAPE['bytes_per_sec'] * 8 / 1e6:g} Mbit/s, " if SHAPE["bytes_per_sec"]
             else "no rate limit, ") + f"{SHAPE['delay'] * 1000:g} ms each way"
    print(f"shape_proxy: 127.0.0.1:{listen_port} → 127.0.0.1:{target_port} ({shape}); "
          f"control on 127.0.0.1:{control_port}", file=sys.stderr, flush=True)
    while True:
        client, _ = listener.accept()
        try:
            conn = Connection(client, target_port)
        except OSError:
            client.close()
            continue
        threading.Thread(target=conn.run, daemon=True).start()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("listen_port", type=int)
    parser.add_argument("target_port", type=int)
    parser.add_argument("control_port", type=int)
    parser.add_argument("--mbit", type=float, default=0, help="link rate each way (0: none)")
    parser.add_argument("--delay-ms", type=float, default=0, help="delay each way")
    args = parser.parse_args()
    set_shape(args.mbit, args.delay_ms)
    try:
        serve(args.listen_port, args.target_port, args.control_port)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

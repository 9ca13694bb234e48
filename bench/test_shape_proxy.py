"""shape_proxy's HTTP framing, fed streams cut at random places:
`python3 -m unittest bench/test_shape_proxy.py`."""

import random
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shape_proxy as sp  # noqa: E402

REQUESTS = (
    b"PUT /b/k1 HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70000
    + b"PUT /b/dbs/s/k2?partNumber=1&uploadId=u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"10000\r\n" + b"y" * 65536 + b"\r\n5;ext=1\r\nhello\r\n0\r\nx-amz-checksum: abc\r\n\r\n"
    + b"HEAD /b/k1 HTTP/1.1\r\n\r\n"
    + b"GET /b?list-type=2&prefix=p HTTP/1.1\r\n\r\n"
    + b"GET /b/k1 HTTP/1.1\r\nRange: bytes=0-4\r\n\r\n")
RESPONSES = (
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    + b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n"  # HEAD: no body follows
    + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    + b"HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\n\r\n12345")


def feed(framing, data, rnd):
    i = 0
    while i < len(data):
        n = rnd.randint(1, 9000)
        framing.feed(memoryview(data[i:i + n]))
        i += n


class FramingTest(unittest.TestCase):
    def test_requests_and_responses_are_followed_wherever_the_stream_is_cut(self):
        rnd = random.Random(1)
        for _ in range(100):
            sp.COUNTS.reset()
            conn = sp.Connection.__new__(sp.Connection)
            conn.pending, conn.current, conn.active_up, conn.broken_counted = [], [], None, False
            up = sp.Framing(True, conn.pending, conn.request_head, conn.bytes_up)
            down = sp.Framing(False, conn.pending, conn.response_head, conn.bytes_down)
            feed(up, REQUESTS, rnd)
            feed(down, RESPONSES, rnd)
            log = sp.COUNTS.snapshot()["requests"]
            self.assertFalse(up.broken or down.broken)
            self.assertEqual([r["class"] for r in log], ["PUT", "PUT", "HEAD", "LIST", "GET"])
            self.assertEqual([r["status"] for r in log], [200, 200, 200, 200, 206])
            self.assertEqual(log[1]["key"], "dbs/s/k2")
            self.assertEqual(sum(r["up"] for r in log), len(REQUESTS))
            self.assertEqual(sum(r["down"] for r in log), len(RESPONSES))

    def test_list_is_a_get_that_lists_the_bucket(self):
        self.assertEqual(sp.classify("GET", "/b?list-type=2")[0], "LIST")
        self.assertEqual(sp.classify("GET", "/b/")[0], "LIST")
        self.assertEqual(sp.classify("GET", "/b?uploads")[0], "LIST")
        self.assertEqual(sp.classify("GET", "/b/k?versionId=3")[0], "GET")
        self.assertEqual(sp.classify("GET", "/b?location")[0], "GET")
        self.assertEqual(sp.classify("GET", "/b/a%20b/c"), ("GET", "a b/c", ""))


if __name__ == "__main__":
    unittest.main()

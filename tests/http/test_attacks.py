#!/usr/bin/env python3
"""tilekit-service under the attacks of issue 23, over raw sockets on loopback.

Usage: test_attacks.py SERVICE_BINARY TILEKIT_CLI_BINARY [TEST_NAME ...]

Each attack is sent byte for byte (a client library would normalise it), and each must be
answered at once with a bounded cost. For every attack the test resets the service's peak
resident memory (/proc/PID/clear_refs, "5"), then reports the answer, the time it took and the
peak (VmHWM) in a table at the end: README's limits table and the issue's note quote it. Run it
against another build of the service to get the "before" figures: the assertions fail there, the
table is still printed.

The memory bound per attack is generous (64 MiB over the idle service, where the failures it
catches cost hundreds of MiB); the time bounds are seconds, where the failures are stalls.
"""

import http.client
import json
import os
import socket
import struct
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_service as base  # noqa: E402  (parses the same argv: SERVICE CLI [TEST ...])
from test_service import Service, sample  # noqa: E402

MIB = 1 << 20
MEMORY_BOUND = 64 * MIB  # over the service's resident memory before the attack
FIGURES = []             # (attack, answer, seconds, peak MiB, growth MiB)


def resident(pid, field):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no %s for %d" % (field, pid))


class measured:
    """Resets the service's peak RSS on entry; on exit records (attack, answer, time, peak)."""

    def __init__(self, s, attack):
        self.s, self.attack, self.answer = s, attack, None

    def __enter__(self):
        pid = self.s.process.pid
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")  # VmHWM := VmRSS
        self.before = resident(pid, "VmRSS")
        self.started = time.time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.time() - self.started
        self.peak = resident(self.s.process.pid, "VmHWM")
        FIGURES.append((self.attack, str(self.answer), self.seconds, self.peak / MIB, (self.peak - self.before) / MIB))
        return False

    def bounded(self, seconds):
        assert self.peak - self.before < MEMORY_BOUND, "%s: peak %.0f MiB over %.0f MiB before" % (
            self.attack, self.peak / MIB, self.before / MIB)
        assert self.seconds < seconds, "%s: took %.1f s" % (self.attack, self.seconds)


def connect(s, timeout=20, source="127.0.0.1"):
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=timeout, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock, timeout=20):
    """Everything the service sends until it closes (or `timeout`)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def statuses(data):
    """The status codes of the responses in `data`, in order."""
    out = []
    for line in data.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 "):
            out.append(int(line.split()[1]))
    return out


def exchange(s, data, timeout=20):
    """Sends `data` as it is, then reads until the service closes: the statuses it answered."""
    sock = connect(s, timeout)
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return statuses(read_all(sock, timeout))
    finally:
        sock.close()


def flood_then_read(s, start, piece, count, timeout=30):
    """Sends `start`, then `piece` up to `count` times from a thread (stopping when the service
    stops reading), and reads the answer meanwhile: its first status."""
    sock = connect(s, timeout)

    def send():
        try:
            sock.sendall(start)
            for _ in range(count):
                sock.sendall(piece)
        except OSError:
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        found = statuses(read_all(sock, timeout))
    finally:
        sock.close()
        sender.join(10)
    return found[0] if found else None


def user_with_tile(s, slug="attack"):
    """A user with a completed pyramid: (token, the path of one tile)."""
    token = s.add_user("mallory")
    s.project(token, slug)
    s.version(token, slug)
    asset = s.asset(token, slug, sample("600x400"))
    code, started = s.generate(token, slug, 1, asset["id"])
    assert code == 202, (code, started)
    job = s.wait_job(token, started["job_id"])
    assert job["status"] == "completed", job
    return token, job["result"]["tiles_url"] + "image_files/0/0_0.png"


def png_header(width, height, extra=0):
    """A PNG signature and IHDR that claim width x height, then `extra` bytes of a stored IDAT."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff)
    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return head + (chunk(b"IDAT", b"\0" * extra) if extra else b"")


# ---------------------------------------------------------------------------------------------
# Before any token is checked

def test_unbounded_request_line_and_headers():
    s = Service().start()
    try:
        with measured(s, "request line: 256 MiB without a newline") as m:
            m.answer = flood_then_read(s, b"GET /", b"A" * 65536, 4096)
        m.bounded(5)
        assert m.answer in (414, 431), m.answer
        with measured(s, "32,768 header lines of 8 KB") as m:
            m.answer = flood_then_read(s, b"GET /health HTTP/1.1\r\nHost: x\r\n", b"X-A: " + b"b" * 8000 + b"\r\n", 32768)
        m.bounded(5)
        assert m.answer == 431, m.answer
        with measured(s, "101 header lines of 10 bytes") as m:
            m.answer = exchange(s, b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 101 + b"\r\n")
        m.bounded(5)
        assert m.answer == [431], m.answer
    finally:
        s.stop()


def test_strict_framing():
    s = Service().start()
    try:
        token = s.add_user("alice")
        auth = ("Authorization: Bearer %s\r\n" % token).encode()
        cases = [
            # (attack, request bytes, the only acceptable statuses, in order)
            ("Content-Length: %32", b"POST /projects HTTP/1.1\r\nHost: x\r\n" + auth +
             b"Content-Type: application/json\r\nContent-Length: %32\r\n\r\n{}", [400]),
            ("Authorization: %42earer", b"GET /projects HTTP/1.1\r\nHost: x\r\nAuthorization: %42earer " +
             token.encode() + b"\r\nConnection: close\r\n\r\n", [401]),
            ("chunk 2 with 4 bytes, then a second request", b"POST /projects HTTP/1.1\r\nHost: x\r\n" + auth +
             b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}ZZ\r\n0\r\n\r\n"
             b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", [400]),
            ("chunk size 0x2", b"POST /projects HTTP/1.1\r\nHost: x\r\n" + auth +
             b"Transfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n", [400]),
            ("bare LF header lines", b"GET /health HTTP/1.1\nHost: x\n\n", [400]),
            ("a bare LF inside the header", b"GET /health HTTP/1.1\r\nHost: x\nX-B: y\r\n\r\n", [400]),
            ("Content-Length and Transfer-Encoding", b"POST /projects HTTP/1.1\r\nHost: x\r\n" + auth +
             b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", [400]),
            ("two Content-Lengths", b"POST /projects HTTP/1.1\r\nHost: x\r\n" + auth +
             b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", [400]),
            ("Transfer-Encoding: gzip", b"POST /projects HTTP/1.1\r\nHost: x\r\n" + auth +
             b"Transfer-Encoding: gzip\r\n\r\n", [501]),
            ("no Host", b"GET /health HTTP/1.1\r\n\r\n", [400]),
        ]
        for attack, data, expected in cases:
            with measured(s, attack) as m:
                m.answer = exchange(s, data)
            m.bounded(5)
            assert m.answer == expected, (attack, m.answer)
        # Nothing of the refused requests was created.
        code, projects = s.request("GET", "/projects", token)
        assert code == 200 and projects == [], (code, projects)
    finally:
        s.stop()


def test_log_injection():
    s = Service().start()
    try:
        with measured(s, "GET /x%0aGET%20/projects%20200%0a (log injection)") as m:
            m.answer = exchange(s, b"GET /x%0aGET%20/projects%20200%0a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        m.bounded(5)
        assert m.answer in ([400], [404]), m.answer
        time.sleep(0.3)
        with open(os.path.join(s.data_dir, s.log_name), "rb") as log:
            lines = log.read().split(b"\n")
        assert not [line for line in lines if line.startswith(b"GET /projects")], lines[-5:]
        assert any(b" /x%0aGET%20/projects%20200%0a 400 " in line for line in lines), lines[-5:]  # as sent
    finally:
        s.stop()


def test_slow_clients_cost_no_thread():
    # 130 connections from one address send a header line a second; /health from another
    # loopback address answers within 1 s throughout. Beyond the per-address cap, 503 at once.
    s = Service().start()
    slow, stop = [], threading.Event()
    try:
        with measured(s, "130 slow clients, a header line a second") as m:
            refused = 0
            for _ in range(130):
                sock = connect(s, 30)
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                slow.append(sock)

            def dribble():
                n = 0
                while not stop.is_set():
                    for sock in slow:
                        try:
                            sock.sendall(b"X-%d: y\r\n" % n)
                        except OSError:
                            pass
                    n += 1
                    stop.wait(1)

            threading.Thread(target=dribble, daemon=True).start()
            worst, answers = 0.0, set()
            for _ in range(25):
                started = time.time()
                sock = connect(s, 10, source="127.0.0.2")
                try:
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    answers.update(statuses(read_all(sock, 10)))
                finally:
                    sock.close()
                worst = max(worst, time.time() - started)
                time.sleep(0.2)
            threads = int(open("/proc/%d/status" % s.process.pid).read().split("Threads:")[1].split()[0])
            for sock in slow:
                sock.settimeout(0.05)
                try:
                    if b" 503 " in sock.recv(4096):
                        refused += 1
                except OSError:
                    pass
            m.answer = "/health %s, worst %.0f ms; %d of 130 refused 503; %d threads" % (
                sorted(answers), worst * 1000, refused, threads)
        m.bounded(30)
        assert answers == {200} and worst < 1.0, m.answer
        assert refused >= 130 - 64, m.answer
    finally:
        stop.set()
        for sock in slow:
            sock.close()
        s.stop()


# ---------------------------------------------------------------------------------------------
# With a token

def test_one_range():
    s = Service().start()
    try:
        token, tile = user_with_tile(s)
        for path in (tile, "/static/viewer.js"):
            head = ("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\nRange: bytes=" %
                    (path, token)).encode()
            with measured(s, "Range: 4,000 ranges on %s" % path.split("/")[1]) as m:
                m.answer = exchange(s, head + b",".join([b"-"] * 4000) + b"\r\n\r\n")
            m.bounded(5)
            assert m.answer == [416], m.answer
            # Two ranges: refused too; one range: served (PMTiles viewers depend on it).
            assert exchange(s, head + b"0-1,3-4\r\n\r\n") == [416]
            connection = http.client.HTTPConnection("127.0.0.1", s.port, timeout=20)
            connection.request("GET", path, headers={"Authorization": "Bearer " + token, "Range": "bytes=1-3"})
            answer = connection.getresponse()
            body = answer.read()
            assert answer.status == 206 and len(body) == 3, (answer.status, body)
            assert answer.getheader("content-range").startswith("bytes 1-3/"), answer.getheader("content-range")
            connection.close()
    finally:
        s.stop()


def test_encoded_slash_is_no_separator():
    # "%2F" is a character of its segment: it never adds a level to a tile key or a static path.
    s = Service().start()
    try:
        token, tile = user_with_tile(s, "slashes")
        code, _, _ = s.request("GET", tile, token, raw=True)
        assert code == 200, code
        head, rest = tile.rsplit("/", 1)
        for path in (head + "%2F" + rest, "/static%2Fviewer.js", "/static/x%2F..%2Fviewer.js"):
            code, _, body = s.request("GET", path, token, raw=True)
            assert code == 404, (path, code, body)
    finally:
        s.stop()


def test_crafted_png_is_refused_at_upload():
    s = Service().start()
    try:
        token = s.add_user("alice")
        s.project(token, "crafted")
        with measured(s, "PNG claiming 32768x32768, 1 MiB") as m:
            code, body = s.request("POST", "/projects/crafted/assets?type=base_map", token, png_header(32768, 32768, MIB),
                                   {"Content-Type": "image/png"})
            m.answer = code
        m.bounded(5)
        assert code == 422 and "32768x32768" in body["detail"], (code, body)
    finally:
        s.stop()


def test_uploads_are_streamed():
    s = Service(args=["--max-upload-bytes", str(128 * MIB)]).start()
    try:
        token = s.add_user("alice")
        s.project(token, "big")
        payload = png_header(10000, 10000, 100 * MIB)
        with measured(s, "upload of 100 MiB") as m:
            code, body = s.request("POST", "/projects/big/assets?type=base_map", token, payload, {"Content-Type": "image/png"})
            m.answer = code
        assert code == 201 and body["size"] == len(payload), (code, body)
        m.bounded(60)
        # Another type than base_map is not stored at all.
        code, body = s.request("POST", "/projects/big/assets?type=notes", token, b"anything", {"Content-Type": "text/plain"})
        assert code == 422, (code, body)
    finally:
        s.stop()


def test_refused_bodies_are_read_before_closing():
    # A client that sends its whole body before reading (http.client does) sees the 413.
    s = Service(args=["--max-upload-bytes", str(32 * MIB)]).start()
    try:
        token = s.add_user("alice")
        s.project(token, "refused")
        for attack, path, body, kind in (
                ("upload of 40 MiB over a 32 MiB limit", "/projects/refused/assets?type=base_map",
                 png_header(100, 100, 40 * MIB), "image/png"),
                ("JSON body of 1 MiB", "/projects", b"{" + b" " * MIB + b"}", "application/json")):
            with measured(s, attack) as m:
                code, reply = s.request("POST", path, token, body, {"Content-Type": kind})
                m.answer = code
            m.bounded(15)
            assert code == 413 and reply["detail"], (code, reply)
    finally:
        s.stop()


TESTS = [test_unbounded_request_line_and_headers, test_strict_framing, test_log_injection,
         test_slow_clients_cost_no_thread, test_one_range, test_encoded_slash_is_no_separator,
         test_crafted_png_is_refused_at_upload,
         test_uploads_are_streamed, test_refused_bodies_are_read_before_closing]


def main():
    failed = base.run_tests(TESTS)
    print("\n| attack | answer | time | peak RSS | over idle |\n|---|---|---|---|---|")
    for attack, answer, seconds, peak, growth in FIGURES:
        print("| %s | %s | %.2f s | %.0f MiB | %+.0f MiB |" % (attack, answer, seconds, peak, growth))
    if failed:
        print("%d test(s) failed; service logs kept under %s" % (failed, base.WORK))
        return 1
    base.shutil.rmtree(base.WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

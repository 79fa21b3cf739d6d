#!/usr/bin/env python3
"""tilekit-service under slow and hostile clients, over real HTTP on loopback (issue 11, part 3).

Usage: test_hostile_clients.py SERVICE_BINARY TILEKIT_CLI_BINARY [TEST_NAME ...]
Python 3 standard library only; the Service harness is test_service.py's. Slow clients are raw
sockets. Every bound here is generous (seconds, where the failure it catches is a 30 s stall or
a wrong answer), so that a busy 2-core machine does not make them flake.
"""

import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_service as base  # noqa: E402  (parses the same argv: SERVICE CLI [TEST ...])
from test_service import Service, expect, sample  # noqa: E402

# The service's default --client-timeout; the tests below use the defaults where they can, so
# that they ran unchanged against the service before the fix.
CLIENT_TIMEOUT = 5


def raw_connection(s, timeout=10):
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock, timeout):
    """(status, headers, body bytes) of one response, or raises socket.timeout after `timeout`
    seconds without one. The body is read as Content-Length says."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response: %r" % data)
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def raw_request(s, head, body=b"", timeout=10):
    """Sends `head` (the request line and headers, without the blank line) and `body` exactly;
    returns (status, headers, body, seconds until the answer)."""
    sock = raw_connection(s, timeout)
    try:
        started = time.time()
        sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        status, headers, payload = read_response(sock, timeout)
        return status, headers, payload, time.time() - started
    finally:
        sock.close()


def timed_get(s, path, timeout=10):
    """GET over a fresh connection: (status, seconds), or (None, seconds) when no answer came."""
    started = time.time()
    try:
        status, _, _, _ = raw_request(s, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close" % path, timeout=timeout)
    except (socket.timeout, ConnectionError, OSError):
        status = None
    return status, time.time() - started


def flow(s, slug):
    """A user, a project, draft version 1 and a base-map asset: (token, asset)."""
    token = s.add_user("alice")
    s.project(token, slug)
    s.version(token, slug)
    return token, s.asset(token, slug, sample("300x200"))


# ---------------------------------------------------------------------------------------------

def test_post_without_content_length():
    # curl -X POST .../generate-tiles?asset_id=... sends neither a body nor Content-Length: HTTP/1.1
    # says that request has no body, so it is answered at once (it used to wait 30 s, then 400).
    s = Service().start()
    try:
        token, a = flow(s, "nobody")
        path = "/projects/nobody/versions/1/generate-tiles?asset_id=" + a["id"]
        status, _, body, took = raw_request(s, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s" % (path, token),
                                            timeout=20)
        assert status == 202 and took < 3, (status, body, took)
        assert json.loads(body)["status"] == "queued", body
        status, headers, body, took = raw_request(s, "POST %s HTTP/1.1\r\nHost: x" % path, timeout=20)
        assert status == 401 and took < 3, (status, body, took)
        assert headers.get("www-authenticate") == "Bearer", headers
        # Any POST: a JSON route, an unknown route.
        status, _, body, took = raw_request(s, "POST /projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token,
                                            timeout=20)
        assert status == 422 and took < 3, (status, body, took)  # {} has no slug
        status, _, body, took = raw_request(s, "POST /nope HTTP/1.1\r\nHost: x", timeout=20)
        assert status == 404 and took < 3, (status, body, took)
    finally:
        s.stop()


def test_unread_bodies_are_refused_at_once():
    # The token (and the size) are checked before a body is read: a 100 MB upload without a token
    # is refused after its headers, not after its 100 MB.
    s = Service(args=["--max-upload-bytes", "2000000"]).start()
    try:
        token, _ = flow(s, "big")
        upload = "POST /projects/big/assets?type=base_map HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        for head, status_wanted in ((upload + "Content-Length: 100000000", 401),
                                    (upload + "Content-Length: 100000000\r\nAuthorization: Bearer wrong", 401),
                                    (upload + "Content-Length: 100000000\r\nAuthorization: Bearer " + token, 413),
                                    ("POST /projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                     "Content-Length: 100000000\r\nAuthorization: Bearer " + token, 413)):
            sock = raw_connection(s, 20)
            try:
                started = time.time()
                sock.sendall(head.encode() + b"\r\n\r\n" + b"\x89PNG\r\n\x1a\n" + b"0" * 1000)  # the body's start only
                status, headers, body = read_response(sock, 20)
                took = time.time() - started
                assert status == status_wanted and took < 3, (head, status, body, took)
                # The unread body is not taken for the next request: the connection is closed.
                assert headers.get("connection") == "close", headers
                sock.settimeout(5)
                rest = b""
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    rest += chunk
                assert rest == b"", rest  # no second response made of body bytes
            finally:
                sock.close()
        expect(s.request("GET", "/health"), 200)
    finally:
        s.stop()


def test_stalled_bodies_do_not_stall_the_service():
    # 40 connections announce a large body and send nothing. The unauthenticated ones are refused
    # at once; the authenticated ones wait for at most the client timeout, then get 408. /health
    # answers throughout (it used to stop for 30 s at 17 such connections).
    s = Service().start()
    try:
        token, _ = flow(s, "stall")
        socks = []
        try:
            for i in range(40):
                auth = "Authorization: Bearer %s\r\n" % token if i % 2 else ""
                sock = raw_connection(s, 30)
                sock.sendall(("POST /projects/stall/assets?type=base_map HTTP/1.1\r\nHost: x\r\n%s"
                              "Content-Type: image/png\r\nContent-Length: 50000000\r\n\r\n" % auth).encode())
                socks.append((sock, bool(auth)))
            time.sleep(0.5)
            for _ in range(5):
                status, took = timed_get(s, "/health", timeout=10)
                assert status == 200 and took < 2, (status, took)
            started = time.time()
            for sock, authenticated in socks:
                status, _, body = read_response(sock, 30)
                if authenticated:
                    assert status == 408, (status, body)
                else:
                    assert status == 401, (status, body)
            took = time.time() - started
            assert took < CLIENT_TIMEOUT + 10, took
        finally:
            for sock, _ in socks:
                sock.close()
        expect(s.request("GET", "/health"), 200)
    finally:
        s.stop()


def test_slow_headers_and_connection_limit():
    # Headers that never finish are cut off after the client timeout (408); connections beyond
    # --max-connections are answered 503 at once instead of waiting for a free thread.
    s = Service(args=["--max-connections", "8", "--client-timeout", "2"]).start()
    try:
        slow = []
        try:
            for _ in range(8):
                sock = raw_connection(s, 30)
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and no blank line
                slow.append(sock)
            time.sleep(0.5)
            status, _, body, took = raw_request(s, "GET /health HTTP/1.1\r\nHost: x", timeout=10)
            assert status == 503 and took < 2, (status, body, took)
            assert json.loads(body)["detail"].startswith("Too many connections"), body
            for sock in slow:
                status, _, body = read_response(sock, 15)
                assert status == 408, (status, body)
        finally:
            for sock in slow:
                sock.close()
        # Once they are gone, the service answers again.
        status, took = timed_get(s, "/health")
        assert status == 200, status
    finally:
        s.stop()


def test_sigterm_with_slow_clients():
    # Clients that keep a connection by sending a byte a second do not keep the service from
    # stopping: SIGTERM ends it within a few seconds (the old pool waited for every connection).
    s = Service().start()
    stop = threading.Event()

    def dribble(sock):
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            while not stop.wait(1.0):
                sock.sendall(b"X")
        except OSError:
            pass

    socks = [raw_connection(s, 30) for _ in range(3)]
    threads = [threading.Thread(target=dribble, args=(sock,), daemon=True) for sock in socks]
    try:
        for t in threads:
            t.start()
        time.sleep(1.5)
        started = time.time()
        s.process.send_signal(signal.SIGTERM)
        try:
            s.process.wait(timeout=CLIENT_TIMEOUT + 15)
        except base.subprocess.TimeoutExpired:
            raise AssertionError("still running %.0f s after SIGTERM with 3 slow clients" % (time.time() - started))
        assert s.process.returncode == 0, s.process.returncode
    finally:
        stop.set()
        for sock in socks:
            sock.close()
        s.stop(signal.SIGKILL)


def test_oversized_header():
    # A header line over the limit is 431, on a GET as on a POST, and says so (it used to be
    # "400 a POST needs Content-Length").
    s = Service().start()
    try:
        for method in ("GET", "POST"):
            status, headers, body, took = raw_request(s, "%s /health HTTP/1.1\r\nHost: x\r\nX-Big: %s" % (method, "a" * 10000),
                                                      timeout=20)
            assert status == 431 and took < 3, (method, status, body, took)
            detail = json.loads(body)["detail"]
            assert "header" in detail.lower() and "Content-Length" not in detail, detail
    finally:
        s.stop()


def test_get_with_a_body():
    # httplib reads no body on a GET: the connection ends after the answer, so that the body is
    # not taken for a second request.
    s = Service().start()
    try:
        sock = raw_connection(s, 10)
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\nGET /nope HTTP/1.1\r\n\r\n")
            status, headers, _ = read_response(sock, 10)
            assert status == 200 and headers.get("connection") == "close", (status, headers)
            assert sock.recv(65536) == b""  # no answer to the "request" in the body
        finally:
            sock.close()
    finally:
        s.stop()


def test_health_tells_no_paths():
    s = Service().start()
    try:
        status, headers, payload = s.request("GET", "/health", raw=True)
        assert status == 200, status
        health = json.loads(payload)
        text = payload.decode()
        for secret in (s.data_dir, os.path.basename(s.data_dir), "storage", "jobs.db"):
            assert secret not in text, (secret, text)
        assert health["status"] == "ok", health
    finally:
        s.stop()


def test_tiles_serve_only_tiles():
    # /tiles/ serves a version's published tile prefix, never the source uploads next to it.
    s = Service().start()
    try:
        token, a = flow(s, "only-tiles")
        job = s.wait_job(token, expect(s.generate(token, "only-tiles", 1, a["id"]), 202)["job_id"])
        assert job["status"] == "completed", job
        code, _, _ = s.request("GET", job["result"]["tiles_url"] + "pyramid.json", token, raw=True)
        assert code == 200, code
        assert a["storage_key"].startswith("mp/only-tiles/uploads/assets/"), a
        expect(s.request("GET", "/tiles/" + a["storage_key"], token), 404)
        # Outside any version's prefix, or a version that does not exist: not found either.
        expect(s.request("GET", "/tiles/mp/only-tiles/uploads/tiles/2/pyramid.json", token), 404)
        expect(s.request("GET", "/tiles/mp/only-tiles/uploads/tiles/x/pyramid.json", token), 404)
        expect(s.request("GET", "/tiles/mp/only-tiles/uploads/tiles/pyramid.json", token), 404)
    finally:
        s.stop()


def test_version_numbers_stay_addressable():
    # The URL rules take 1..999999999; the service creates no version it could not address.
    s = Service().start()
    try:
        token = s.add_user("alice")
        s.project(token, "last")
        s.version(token, "last", number=999999999)
        expect(s.request("GET", "/projects/last/versions/999999999", token), 200)
        code, body = s.request("POST", "/projects/last/versions", token, {})
        assert code == 409, (code, body)
        assert "999999999" in body["detail"], body
        assert [v["number"] for v in expect(s.request("GET", "/projects/last", token), 200)["versions"]] == [999999999]
    finally:
        s.stop()


def test_scratch_of_a_killed_run_is_swept():
    # A run killed mid-job leaves its scratch directory; the next start removes the scratch
    # entries of jobs that are not running (here: an API-only restart, so nothing reruns the job).
    s = Service(args=["--workers", "1", "--tiler-threads", "1"]).start()
    token = s.add_user("alice")
    try:
        job_id = base.start_slow_job(s, token, "scratch")
        scratch = os.path.join(s.data_dir, "scratch", "tilekit-job-" + job_id + ".1")  # per attempt
        assert os.path.isdir(scratch), os.listdir(os.path.join(s.data_dir, "scratch"))
    finally:
        s.stop(signal.SIGKILL)
    assert os.path.isdir(scratch)
    other = os.path.join(s.data_dir, "scratch", "not-a-job-dir")
    os.makedirs(other)
    s.args = ["--role", "serve"]
    s.start()
    try:
        assert not os.path.exists(scratch), os.listdir(os.path.join(s.data_dir, "scratch"))
        assert os.path.isdir(other)  # only entries the service names are its own
        status, job = s.request("GET", "/jobs/" + job_id, token)
        assert status == 200 and job["status"] == "queued", job
    finally:
        s.stop()


TESTS = [test_post_without_content_length, test_unread_bodies_are_refused_at_once,
         test_stalled_bodies_do_not_stall_the_service, test_slow_headers_and_connection_limit,
         test_sigterm_with_slow_clients, test_oversized_header, test_get_with_a_body, test_health_tells_no_paths,
         test_tiles_serve_only_tiles, test_version_numbers_stay_addressable, test_scratch_of_a_killed_run_is_swept]


def main():
    failed = base.run_tests(TESTS)
    if failed:
        print("%d test(s) failed; service logs kept under %s" % (failed, base.WORK))
        return 1
    base.shutil.rmtree(base.WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

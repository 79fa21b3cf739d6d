#!/usr/bin/env python3
"""End-to-end tests of examples/http_service (tilekit-service) over real HTTP on loopback.

Usage: test_service.py SERVICE_BINARY TILEKIT_CLI_BINARY [TEST_NAME ...]
Python 3 standard library only. Each test starts its own service on a free port with a
temporary data directory and stops it afterwards.

The JSON documents users read (every error body, a job record) are pinned byte for byte by the
golden files in tests/golden/service/ (see the README there); a missing golden fails the test,
and a full run fails when a golden file is no longer compared by any test.
"""

import http.client
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

SERVICE = os.path.abspath(sys.argv[1])
CLI = os.path.abspath(sys.argv[2])
SELECTED = sys.argv[3:]
WORK = tempfile.mkdtemp(prefix="tilekit-http-test-")
SAMPLES = {}
GOLDEN_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "service"))
GOLDENS_USED = set()


def sample(size):
    """A generated PNG (tilekit sample), cached per size."""
    if size not in SAMPLES:
        path = os.path.join(WORK, "sample-%s.png" % size)
        subprocess.run([CLI, "sample", path, "--size", size], check=True, stderr=subprocess.DEVNULL)
        with open(path, "rb") as f:
            SAMPLES[size] = f.read()
    return SAMPLES[size]


class Reply(tuple):
    """(status, the body parsed as JSON or the raw bytes), as tests unpack it; plus .headers
    (lower-case names) and .payload (the body's bytes as sent)."""

    def __new__(cls, status, parsed, headers, payload):
        reply = super().__new__(cls, (status, parsed))
        reply.headers = headers
        reply.payload = payload
        return reply


def reply_of(response):
    payload = response.read()
    headers = dict((k.lower(), v) for k, v in response.getheaders())
    try:
        parsed = json.loads(payload) if payload else None
    except ValueError:
        parsed = payload
    return Reply(response.status, parsed, headers, payload)


class Service:
    def __init__(self, data_dir=None, args=(), env=None, log_name="service.log"):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="data-", dir=WORK)
        self.args = list(args)
        self.log_name = log_name
        self.env = dict(os.environ, **(env or {}))
        self.process = None
        self.port = None

    def add_user(self, name):
        out = subprocess.run([SERVICE, "add-user", name, "--data-dir", self.data_dir], check=True,
                             capture_output=True, text=True, env=self.env)
        return out.stdout.strip()

    def start(self):
        self.log = open(os.path.join(self.data_dir, self.log_name), "ab")
        self.process = subprocess.Popen([SERVICE, "--data-dir", self.data_dir, "--port", "0", *self.args],
                                        stdout=subprocess.PIPE, stderr=self.log, env=self.env)
        line = self.process.stdout.readline().decode()
        if "work" in self.args and self.args[self.args.index("work") - 1] == "--role":
            assert line.strip() == "working", "worker did not start: %r (see %s)" % (line, self.log.name)
            return self
        assert line.startswith("listening "), "service did not start: %r (see %s)" % (line, self.log.name)
        self.port = int(line.split()[1])
        return self

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=timeout)
        if self.process:
            self.process.stdout.close()
            self.log.close()
        self.process = None

    def request(self, method, path, token=None, body=None, headers=None, raw=False):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        data = body
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if data is None and method == "POST":
            data = b""
        connection.request(method, path, body=data, headers=h)
        reply = reply_of(connection.getresponse())
        connection.close()
        if raw:
            return reply[0], reply.headers, reply.payload
        return reply

    def get_verbatim(self, path, token):
        """GET with the path sent exactly as given (no Accept-Encoding either)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.putheader("Authorization", "Bearer " + token)
        connection.endheaders()
        reply = reply_of(connection.getresponse())
        connection.close()
        return reply

    def request_early_answer(self, path, token, headers, body_start, length):
        """POST announcing `length` bytes of body but sending only `body_start`, then the answer,
        as a client that reads while it sends sees it (curl does): a body refused from its
        headers is not read, and the service closes the connection after answering."""
        import socket
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        try:
            head = "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n" % (
                path, token, length)
            head += "".join("%s: %s\r\n" % item for item in headers.items())
            sock.sendall(head.encode() + b"\r\n" + body_start)
            response = http.client.HTTPResponse(sock)
            response.begin()
            return reply_of(response)
        finally:
            sock.close()

    # The whole flow's building blocks.
    def project(self, token, slug):
        status, body = self.request("POST", "/projects", token, {"slug": slug, "name": slug.title()})
        assert status == 201, (status, body)
        return body

    def version(self, token, slug, status="draft", number=None):
        payload = {"status": status}
        if number is not None:
            payload["number"] = number
        code, body = self.request("POST", "/projects/%s/versions" % slug, token, payload)
        assert code == 201, (code, body)
        return body

    def asset(self, token, slug, image, type_="base_map"):
        code, body = self.request("POST", "/projects/%s/assets?type=%s" % (slug, type_), token, image,
                                  {"Content-Type": "image/png"})
        assert code == 201, (code, body)
        return body

    def project_with_versions(self, token, slug, count, image):
        """A project with draft versions 1..count and `image` as its base map (the asset)."""
        self.project(token, slug)
        asset = self.asset(token, slug, image)
        for n in range(1, count + 1):
            self.version(token, slug, number=n)
        return asset

    def generate(self, token, slug, number, asset_id):
        return self.request("POST", "/projects/%s/versions/%s/generate-tiles?asset_id=%s" % (slug, number, asset_id), token)

    def wait_job(self, token, job_id, timeout=120, until=("completed", "failed", "cancelled")):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, job = self.request("GET", "/jobs/" + job_id, token)
            assert status == 200, (status, job)
            if job["status"] in until:
                return job
            time.sleep(0.05)
        raise AssertionError("job %s not done after %ss: %r" % (job_id, timeout, job))


def expect(actual, status):
    code, body = actual
    assert code == status, "expected %s, got %s %r" % (status, code, body)
    return body


# Golden files. NAME.json holds the exact body (one trailing newline, if any, is not part of
# it). A {{placeholder}} stands for a part the test knows only at run time: the caller gives
# each one a value, a str (compared exactly, as JSON writes it inside a string) or an int, or
# one of the patterns below for a value no test can predict (a time, a byte count).
TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
COUNT = re.compile(r"0|[1-9][0-9]*")
PLACEHOLDER = re.compile(r"\{\{([a-z0-9_]+)\}\}")


def golden_pattern(name, values):
    """The golden's text, and the bytes pattern the body must match in full: that text
    literally, each placeholder replaced by its value (escaped) or its pattern."""
    path = os.path.join(GOLDEN_DIR, name + ".json")
    assert os.path.isfile(path), "missing golden file %s" % path
    GOLDENS_USED.add(name)
    with open(path, "rb") as f:
        template = f.read().decode("utf-8")
    if template.endswith("\n"):
        template = template[:-1]
    used = set(PLACEHOLDER.findall(template))
    assert used == set(values), "golden %s has placeholders %s, the test gives %s" % (name, sorted(used), sorted(values))
    parts = []
    at = 0
    for m in PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[at:m.start()]))
        value = values[m.group(1)]
        if isinstance(value, re.Pattern):
            parts.append("(?:%s)" % value.pattern)
        elif isinstance(value, bool) or not isinstance(value, (str, int)):
            raise AssertionError("placeholder {{%s}}: give a str, an int or a pattern, not %r" % (m.group(1), value))
        else:
            parts.append(re.escape(json.dumps(value, ensure_ascii=False)[1:-1] if isinstance(value, str) else str(value)))
        at = m.end()
    parts.append(re.escape(template[at:]))
    return template, re.compile("".join(parts).encode("utf-8"), re.DOTALL)


def expect_golden(reply, status, name, headers=None, **values):
    """`reply` has `status`, Content-Type application/json (and the given headers, exactly),
    and a body that is byte for byte tests/golden/service/NAME.json with `values` put in."""
    template, pattern = golden_pattern(name, values)
    body = reply.payload
    assert reply[0] == status, "expected %s %s, got %s %r" % (status, name, reply[0], body)
    assert reply.headers.get("content-type") == "application/json", (name, reply.headers)
    if status == 401:  # auth.hpp: every 401 says which scheme it wants
        assert reply.headers.get("www-authenticate") == "Bearer", (name, reply.headers)
    for header, value in (headers or {}).items():
        assert reply.headers.get(header.lower()) == value, (name, header, reply.headers)
    assert pattern.fullmatch(body), "body differs from golden %s.json\n expected: %s\n   actual: %s" % (
        name, template, body.decode("utf-8", "replace"))
    return reply[1]


def check_all_goldens_used():
    """After a full run: every golden file is compared by some test (none is left stale)."""
    present = set(f[:-len(".json")] for f in os.listdir(GOLDEN_DIR) if f.endswith(".json"))
    stale = sorted(present - GOLDENS_USED)
    assert not stale, "golden files no test compares: %s" % ", ".join(n + ".json" for n in stale)


# ---------------------------------------------------------------------------------------------

def test_full_flow():
    s = Service().start()
    try:
        token = s.add_user("alice")
        expect(s.request("GET", "/health"), 200)
        proj = s.project(token, "flow-map")
        v = s.version(token, "flow-map")
        assert v["number"] == 1 and v["status"] == "draft"
        a = s.asset(token, "flow-map", sample("900x700"))
        body = expect(s.generate(token, "flow-map", 1, a["id"]), 202)
        assert body["status"] == "queued" and body["message"] == "Tile generation started", body
        job = s.wait_job(token, body["job_id"])
        assert job["status"] == "completed", job
        # The record as GET /jobs/{id} sends it: every key, its type and the values a test can know.
        expect_golden(s.request("GET", "/jobs/" + body["job_id"], token), 200, "job_completed",
                      job_id=body["job_id"], project_id=proj["id"], version_id=v["id"], user_id=proj["owner_id"],
                      created_at=TIMESTAMP, started_at=TIMESTAMP, completed_at=TIMESTAMP, run_at=TIMESTAMP,
                      total_bytes=COUNT)
        result = job["result"]
        # The job's own run below the version's prefix (the publish protocol), named by the pointer.
        assert result["tiles_path"] == "mp/flow-map/uploads/tiles/1/runs/%s.1/" % job["id"], result
        assert result["tiles_url"] == "/tiles/" + result["tiles_path"], result
        assert result["width"] == 900 and result["height"] == 700
        # The version view the viewer reads.
        view = expect(s.request("GET", "/projects/flow-map/versions/1", token), 200)
        assert view["job_id"] == job["id"] and view["job_status"] == "completed", view
        assert view["tiles"]["tiles_url"] == result["tiles_url"], view
        code, headers, payload = s.request("GET", "/tiles/mp/flow-map/uploads/tiles/1/current.json", token, raw=True)
        assert code == 200 and json.loads(payload)["run"] == result["run"], (code, payload)
        assert headers["cache-control"] == "public, max-age=5, must-revalidate", headers
        # Tiles back, with content types and cache headers.
        code, headers, payload = s.request("GET", result["tiles_url"] + "pyramid.json", token, raw=True)
        assert code == 200 and headers["content-type"] == "application/json", (code, headers)
        assert headers["cache-control"] == "public, max-age=31536000, immutable", headers  # a run never changes
        meta = json.loads(payload)
        assert meta["width"] == 900, meta
        code, headers, payload = s.request("GET", result["tiles_url"] + "image.dzi", token, raw=True)
        assert code == 200 and headers["content-type"] == "application/xml" and b"<Image" in payload, (code, headers)
        code, headers, payload = s.request("GET", result["tiles_url"] + "image_files/0/0_0.png", token, raw=True)
        assert code == 200 and headers["content-type"] == "image/png" and payload[:4] == b"\x89PNG", (code, headers)
        assert headers["cache-control"] == "public, max-age=31536000, immutable", headers
        # A token in the query is refused: tokens travel in the Authorization header only.
        expect_golden(s.request("GET", result["tiles_url"] + "pyramid.json?token=" + token), 401, "not_authenticated")
        # A browser signs in with a viewer link: a one-time code exchanged for the session cookie,
        # then redirected to the page without the code.
        link = expect(s.request("POST", "/projects/flow-map/versions/1/viewer-link", token), 201)
        assert link["viewer_url"] == "/projects/flow-map/versions/1/viewer?code=" + link["code"], link
        code, headers, _ = s.request("GET", link["viewer_url"], raw=True)
        assert code == 303 and headers["location"] == "/projects/flow-map/versions/1/viewer", (code, headers)
        cookie = headers["set-cookie"].split(";")[0]
        assert cookie.startswith("tilekit_session=") and token not in headers["set-cookie"], headers
        code, headers, page = s.request("GET", "/projects/flow-map/versions/1/viewer", headers={"Cookie": cookie}, raw=True)
        if code == 200:
            assert headers["content-type"].startswith("text/html"), headers
            code, headers, _ = s.request("GET", "/static/viewer.js", headers={"Cookie": cookie}, raw=True)
            assert code == 200 and "javascript" in headers["content-type"], (code, headers)
        else:
            assert code == 404, code  # no viewer/index.html in this checkout
        # The cookie carries the viewer's reads: tiles and the API's GETs.
        code, _, _ = s.request("GET", result["tiles_url"] + "image.dzi", headers={"Cookie": cookie}, raw=True)
        assert code == 200, code
        expect(s.request("GET", "/projects/flow-map/versions/1", headers={"Cookie": cookie}), 200)
        # Jobs of the project.
        jobs = expect(s.request("GET", "/projects/flow-map/jobs", token), 200)
        assert [j["id"] for j in jobs] == [job["id"]]
        # Publish, then the draft guard refuses.
        published = expect(s.request("POST", "/projects/flow-map/versions/1/publish", token), 200)
        assert published["status"] == "published"
        # Promotion: the project's live pointer names the version's committed run.
        assert published["live"]["run"] == result["run"] and published["live"]["version"] == 1, published
        live = expect(s.request("GET", "/projects/flow-map/live", token), 200)
        assert live["tiles_url"] == result["tiles_url"], live
        expect_golden(s.generate(token, "flow-map", 1, a["id"]), 400, "not_a_draft")
        expect_golden(s.request("POST", "/projects/flow-map/versions/1/publish", token), 409, "already_published")
    finally:
        s.stop()


def tiff_bytes(width, height):
    """A little-endian, uncompressed, one-strip RGB TIFF (written here so the test needs no tool)."""
    pixels = bytearray()
    for y in range(height):
        for x in range(width):
            pixels += bytes(((x * 7 + y * 3) & 255, (x * 2) & 255, (y * 5) & 255))
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, None), (277, 3, 1, 3), (278, 3, 1, height), (279, 4, 1, len(pixels))]
    ifd_offset = 8
    ifd_size = 2 + 12 * len(entries) + 4
    bits_offset = ifd_offset + ifd_size
    data_offset = bits_offset + 6
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 258:
            value = bits_offset
        elif tag == 273:
            value = data_offset
        ifd += struct.pack("<HHII", tag, kind, count, value) if kind == 4 or tag == 258 else struct.pack("<HHIHH", tag, kind, count, value, 0)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + struct.pack("<HHH", 8, 8, 8) + bytes(pixels)


def test_formats_per_job():
    """A TIFF base map, tiled per job as IIIF with WebP tiles; bad choices are 422."""
    s = Service().start()
    try:
        token = s.add_user("alice")
        s.project(token, "scan")
        s.version(token, "scan", number=1)
        s.version(token, "scan", number=2)
        code, a = s.request("POST", "/projects/scan/assets?type=base_map", token, tiff_bytes(700, 300),
                            {"Content-Type": "image/tiff"})
        assert code == 201, (code, a)
        assert a["storage_key"].endswith(".tif"), a
        base = "/projects/scan/versions/1/generate-tiles?asset_id=" + a["id"]
        code, body = s.request("POST", base + "&layout=nope", token)
        assert code == 422 and "layout" in body["detail"], (code, body)
        code, body = s.request("POST", base + "&format=gif", token)
        assert code == 422 and "format" in body["detail"], (code, body)
        body = expect(s.request("POST", base + "&layout=iiif&format=webp", token), 202)
        job = s.wait_job(token, body["job_id"])
        assert job["status"] == "completed", job
        result = job["result"]
        assert result["layout"] == "iiif" and result["format"] == "webp", result
        assert result["source_format"] == "tiff" and result["encoding"]["lossless"] is False, result
        assert result["width"] == 700 and result["height"] == 300, result
        code, headers, payload = s.request("GET", result["tiles_url"] + "info.json", token, raw=True)
        assert code == 200, code
        info = json.loads(payload)
        assert info["type"] == "ImageService3" and info["profile"] == "level0", info
        assert info["width"] == 700 and info["preferredFormats"] == ["webp"], info
        code, headers, payload = s.request("GET", result["tiles_url"] + "0,0,512,300/512,300/0/default.webp", token, raw=True)
        assert code == 200 and headers["content-type"] == "image/webp", (code, headers)
        assert payload[:4] == b"RIFF" and payload[8:12] == b"WEBP", payload[:16]
        meta = json.loads(s.request("GET", result["tiles_url"] + "pyramid.json", token, raw=True)[2])
        assert meta["layout"] == "iiif" and meta["source_format"] == "tiff", meta
        # The next job without choices uses the service's defaults (Deep Zoom, PNG).
        body = expect(s.generate(token, "scan", 2, a["id"]), 202)
        job = s.wait_job(token, body["job_id"])
        assert job["status"] == "completed" and job["result"]["layout"] == "dz", job
        assert job["result"]["format"] == "png" and job["result"]["encoding"] == {}, job
    finally:
        s.stop()


def test_error_paths():
    s = Service(args=["--max-upload-bytes", "2000000"]).start()
    try:
        token = s.add_user("alice")
        s.project(token, "errs")
        s.project(token, "other-proj")
        s.version(token, "errs")                       # 1 draft
        s.version(token, "errs", status="published")   # 2 published
        a = s.asset(token, "errs", sample("300x200"))
        foreign = s.asset(token, "other-proj", sample("300x200"))
        # Only base maps are taken (each checked as an image): any other type would store
        # arbitrary bytes.
        code, notmap = s.request("POST", "/projects/errs/assets?type=overlay", token, b"hello",
                                 {"Content-Type": "application/octet-stream"})
        assert code == 422 and "base_map" in notmap["detail"], (code, notmap)
        missing = "00000000-0000-4000-8000-000000000000"
        gen = lambda slug, number, asset, tok=token: s.generate(tok, slug, number, asset)
        # 401 first, even for malformed input.
        expect_golden(gen("errs", 1, a["id"], None), 401, "not_authenticated")
        expect_golden(gen("BAD_slug", "x", "nope", None), 401, "not_authenticated")
        expect_golden(gen("errs", 1, a["id"], "wrong-token-wrong-token"), 401, "invalid_token")
        # 422 for malformed slug / version / UUID.
        expect_golden(gen("Bad_Slug", 1, a["id"]), 422, "invalid_project_slug")
        expect_golden(gen("a" * 65, 1, a["id"]), 422, "invalid_project_slug")
        expect_golden(gen("errs", "abc", a["id"]), 422, "invalid_version_number")
        expect_golden(gen("errs", 0, a["id"]), 422, "invalid_version_number")
        expect_golden(gen("errs", -1, a["id"]), 422, "invalid_version_number")
        expect_golden(gen("errs", 1, "not-a-uuid"), 422, "invalid_asset_id")
        expect_golden(s.request("POST", "/projects/errs/versions/1/generate-tiles", token), 422, "invalid_asset_id")
        # 404s.
        expect_golden(gen("no-such-project", 1, a["id"]), 404, "project_not_found")
        expect_golden(gen("errs", 99, a["id"]), 404, "version_not_found")
        # The same preamble on the other version routes (the viewer's too).
        for method, route in (("GET", ""), ("POST", "/publish"), ("GET", "/viewer")):
            for slug, number, status, name in (("Bad_Slug", 1, 422, "invalid_project_slug"),
                                               ("errs", "abc", 422, "invalid_version_number"),
                                               ("no-such-project", 1, 404, "project_not_found"),
                                               ("errs", 99, 404, "version_not_found")):
                reply = s.request(method, "/projects/%s/versions/%s%s" % (slug, number, route), token)
                expect_golden(reply, status, name)
        # 400s.
        expect_golden(gen("errs", 2, a["id"]), 400, "not_a_draft")
        expect_golden(gen("errs", 1, missing), 400, "invalid_base_map_asset")
        expect_golden(gen("errs", 1, foreign["id"]), 400, "invalid_base_map_asset")
        # Jobs.
        expect_golden(s.request("GET", "/jobs/" + missing), 401, "not_authenticated")
        expect_golden(s.request("GET", "/jobs/" + missing, token), 404, "job_not_found")
        expect_golden(s.request("GET", "/jobs/not-a-uuid", token), 422, "invalid_job_id")
        # Malformed JSON and bodies.
        expect_golden(s.request("POST", "/projects", token, b"{not json", {"Content-Type": "application/json"}), 400,
                      "malformed_json")
        expect_golden(s.request("POST", "/projects", token, b"[1,2]", {"Content-Type": "application/json"}), 422,
                      "body_not_an_object")
        expect_golden(s.request("POST", "/projects", token, {"slug": 5}), 422, "slug_required")
        expect_golden(s.request("POST", "/projects", token, {"slug": "Has Spaces"}), 422, "invalid_project_slug")
        expect_golden(s.request("POST", "/projects", token, {"slug": "errs"}), 409, "project_exists")
        expect_golden(s.request("POST", "/projects/errs/versions", token, {"number": "one"}), 422, "invalid_number_field")
        expect_golden(s.request("POST", "/projects/errs/versions", token, {"status": "weird"}), 422, "invalid_status_field")
        expect_golden(s.request("POST", "/projects/errs/versions", token, {"number": 1}), 409, "version_exists")
        expect_golden(s.request("POST", "/projects", token, b"{" + b" " * 70000 + b"}", {"Content-Type": "application/json"}),
                      413, "json_body_too_large", max_json_bytes=64 << 10)  # the default --max-json-bytes
        # Uploads: type required, images only for base maps, size limit.
        expect_golden(s.request("POST", "/projects/errs/assets", token, sample("300x200"), {"Content-Type": "image/png"}),
                      422, "asset_type_required")
        expect_golden(s.request("POST", "/projects/errs/assets?type=base_map", token, b"GIF89a....",
                                {"Content-Type": "image/gif"}), 415, "base_map_not_an_image")
        expect_golden(s.request("POST", "/projects/errs/assets?type=base_map", token, b"", {"Content-Type": "image/png"}),
                      422, "empty_image")
        expect_golden(s.request_early_answer("/projects/errs/assets?type=base_map", token, {"Content-Type": "image/png"},
                                             b"\x89PNG\r\n\x1a\n", 2100000), 413, "upload_too_large",
                      max_upload_bytes=2000000)
        # Unknown routes are JSON too; /health needs no token.
        expect_golden(s.request("GET", "/nope", token), 404, "not_found")
        expect_golden(s.request("POST", "/nope", token), 404, "not_found")
        # A header line over 8192 bytes (cpp-httplib's limit), on a GET too.
        expect_golden(s.request("GET", "/health", headers={"X-Big": "a" * 9000}), 431, "header_too_large")
        # No version number past what the URLs take (1..999999999).
        s.project(token, "last-number")
        s.version(token, "last-number", number=999999999)
        expect_golden(s.request("POST", "/projects/last-number/versions", token, {}), 409, "no_version_number_left")
        expect(s.request("GET", "/health"), 200)
        # Path traversal on /tiles and /static: refused before any file is read.
        for path, status, name in (("/tiles/mp/errs/../../catalog.db", 400, "invalid_tile_key"),
                                   ("/tiles/mp/errs/%2e%2e/%2e%2e/catalog.db", 400, "invalid_tile_key"),
                                   ("/tiles/../catalog.db", 400, "invalid_tile_key"),
                                   ("/static/../../catalog.db", 404, "not_found"),
                                   ("/static/%2e%2e/%2e%2e/README.md", 404, "not_found"),
                                   ("/tiles//etc/passwd", 400, "invalid_tile_key")):
            reply = s.get_verbatim(path, token)
            assert b"CREATE TABLE" not in reply.payload and b"SQLite" not in reply.payload, path
            expect_golden(reply, status, name)
    finally:
        s.stop()


def test_auth():
    s = Service().start()
    try:
        alice = s.add_user("alice")
        bob = s.add_user("bob")
        s.project(alice, "alice-map")
        s.version(alice, "alice-map")
        a = s.asset(alice, "alice-map", sample("300x200"))
        job = expect(s.generate(alice, "alice-map", 1, a["id"]), 202)
        s.wait_job(alice, job["job_id"])
        for method, path in (("GET", "/projects"), ("POST", "/projects"), ("GET", "/jobs/" + job["job_id"]),
                             ("GET", "/projects/alice-map/jobs"), ("GET", "/projects/alice-map/versions/1"),
                             ("POST", "/projects/alice-map/versions"), ("POST", "/projects/alice-map/versions/1/publish"),
                             ("POST", "/projects/alice-map/assets?type=base_map"),
                             ("GET", "/tiles/mp/alice-map/uploads/tiles/1/pyramid.json"),
                             ("GET", "/projects/alice-map/versions/1/viewer")):
            expect_golden(s.request(method, path), 401, "not_authenticated")  # missing
            expect_golden(s.request(method, path, "x" * 64), 401, "invalid_token")  # wrong
            # Another scheme counts as no token at all (never mixed with the cookie fallback).
            expect_golden(s.request(method, path, headers={"Authorization": "Basic " + alice}), 401, "not_authenticated")
        # Bob's token: alice's things are "not found".
        expect_golden(s.request("GET", "/jobs/" + job["job_id"], bob), 404, "job_not_found")
        expect_golden(s.request("GET", "/projects/alice-map/jobs", bob), 404, "project_not_found")
        expect_golden(s.generate(bob, "alice-map", 1, a["id"]), 404, "project_not_found")
        expect_golden(s.request("GET", "/projects/alice-map/versions/1", bob), 404, "project_not_found")
        expect_golden(s.request("POST", "/projects/alice-map/versions/1/publish", bob), 404, "project_not_found")
        expect_golden(s.request("GET", "/projects/alice-map/versions/1/viewer", bob), 404, "project_not_found")
        expect_golden(s.request("GET", "/tiles/mp/alice-map/uploads/tiles/1/pyramid.json", bob), 404, "not_found")
        # Bob cannot use alice's asset from his own project either.
        s.project(bob, "bob-map")
        s.version(bob, "bob-map")
        expect_golden(s.generate(bob, "bob-map", 1, a["id"]), 400, "invalid_base_map_asset")
        assert [p["slug"] for p in expect(s.request("GET", "/projects", bob), 200)] == ["bob-map"]
        # No method takes the token from the query string.
        expect_golden(s.request("POST", "/projects?token=" + alice, None, {"slug": "via-query"}), 401, "not_authenticated")
        # Tokens are stored hashed: the raw token is not in the catalog file.
        with open(os.path.join(s.data_dir, "catalog.db"), "rb") as f:
            assert alice.encode() not in f.read()
    finally:
        s.stop()


def test_viewer_links():
    """Issue 23: tokens only in the Authorization header; a browser signs in with a one-time
    viewer code exchanged for an HttpOnly session cookie; the smaller hardening items."""
    s = Service().start()
    try:
        alice = s.add_user("alice")
        bob = s.add_user("bob")
        s.project(alice, "alice-map")
        s.version(alice, "alice-map")
        s.project(bob, "b-map")
        s.version(bob, "b-map")
        # ?token= is no credential anywhere (as if absent), on pages, tiles and the API.
        for path in ("/projects/alice-map/versions/1/viewer", "/projects/alice-map/viewer", "/projects",
                     "/projects/alice-map/versions/1", "/tiles/mp/alice-map/uploads/tiles/1/pyramid.json",
                     "/static/viewer.js"):
            reply = s.request("GET", path + "?token=" + alice)
            expect_golden(reply, 401, "not_authenticated")
            assert "set-cookie" not in reply.headers, (path, reply.headers)
        # A code: minted with the header, exchanged once for a session cookie (not the token),
        # answered with a redirect to the same page without the code.
        link = expect(s.request("POST", "/projects/alice-map/versions/1/viewer-link", alice), 201)
        assert len(link["code"]) == 64 and link["expires_in"] == 60, link
        code, headers, _ = s.request("GET", link["viewer_url"], raw=True)
        assert code == 303 and headers["location"] == "/projects/alice-map/versions/1/viewer", (code, headers)
        attributes = [a.strip() for a in headers["set-cookie"].split(";")]
        name, _, session = attributes[0].partition("=")
        assert name == "tilekit_session" and len(session) == 64 and session != alice, headers
        assert {"HttpOnly", "Path=/", "SameSite=Lax"} <= set(attributes) and "Secure" not in attributes, attributes
        assert headers["cache-control"] == "no-store" and headers["x-content-type-options"] == "nosniff", headers
        cookie = {"Cookie": "tilekit_session=" + session}
        # The page, with its policy: nothing inline, nothing from elsewhere, no framing.
        code, headers, page = s.request("GET", "/projects/alice-map/versions/1/viewer", headers=cookie, raw=True)
        assert code == 200 and headers["content-type"].startswith("text/html"), (code, headers)
        csp = [d.strip() for d in headers["content-security-policy"].split(";")]
        for directive in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "img-src 'self' data: blob:"):
            assert directive in csp, (directive, csp)
        assert headers["x-content-type-options"] == "nosniff" and headers["x-tilekit-user"] == "alice", headers
        # Once only: a second use is refused and sets no cookie.
        reply = s.request("GET", link["viewer_url"])
        assert reply[0] == 401 and "invalid, expired or already used" in reply[1]["detail"], reply
        assert "set-cookie" not in reply.headers, reply.headers
        # Bound to the page it was minted for: elsewhere it is refused (and spent).
        link = expect(s.request("POST", "/projects/alice-map/versions/1/viewer-link", alice), 201)
        assert expect(s.request("GET", "/projects/alice-map/viewer?code=" + link["code"]), 401)
        assert expect(s.request("GET", link["viewer_url"]), 401)
        expect(s.request("GET", "/projects/alice-map/versions/1/viewer?code=" + "0" * 64), 401)
        # The live map's link.
        link = expect(s.request("POST", "/projects/alice-map/viewer-link", alice), 201)
        assert link["viewer_url"].startswith("/projects/alice-map/viewer?code="), link
        code, headers, _ = s.request("GET", link["viewer_url"], raw=True)
        assert code == 303 and headers["location"] == "/projects/alice-map/viewer", (code, headers)
        # A code opens a session of whoever minted it, for that user's projects only: bob's
        # link (the fixation attempt of the issue) signs a browser in as bob, who sees no
        # project of alice's, and the page says whose session it is (X-Tilekit-User).
        expect_golden(s.request("POST", "/projects/alice-map/versions/1/viewer-link", bob), 404, "project_not_found")
        link = expect(s.request("POST", "/projects/b-map/versions/1/viewer-link", bob), 201)
        code, headers, _ = s.request("GET", link["viewer_url"], raw=True)
        bob_cookie = {"Cookie": headers["set-cookie"].split(";")[0]}
        expect_golden(s.request("GET", "/projects/alice-map/versions/1", headers=bob_cookie), 404, "project_not_found")
        reply = s.request("GET", "/projects/b-map/versions/1", headers=bob_cookie)
        assert reply[0] == 200 and reply.headers["x-tilekit-user"] == "bob", reply.headers
        # Codes and sessions are kept in the catalog: a restart (a redeploy) signs nobody out, and
        # a code minted before it is redeemed after it.
        link = expect(s.request("POST", "/projects/alice-map/versions/1/viewer-link", alice), 201)
        s.stop()
        s.start()
        reply = s.request("GET", "/projects/b-map/versions/1", headers=bob_cookie)
        assert reply[0] == 200 and reply.headers["x-tilekit-user"] == "bob", reply.headers
        code, headers, _ = s.request("GET", link["viewer_url"], raw=True)
        assert code == 303 and headers["set-cookie"].startswith("tilekit_session="), (code, headers)
        # The cookie never authenticates a write (CSRF): POST takes the header only.
        expect_golden(s.request("POST", "/projects", None, {"slug": "by-cookie"}, headers=cookie), 401, "not_authenticated")
        expect_golden(s.request("POST", "/projects/alice-map/versions/1/viewer-link", headers=cookie), 401, "not_authenticated")
        # A session id that was never opened is nothing.
        expect_golden(s.request("GET", "/projects", headers={"Cookie": "tilekit_session=" + "a" * 64}), 401, "invalid_token")
        # nosniff on every answer the routes give: JSON, the router's own 404, errors.
        for method, path, tok in (("GET", "/health", None), ("GET", "/nope", None), ("POST", "/nope", alice),
                                  ("GET", "/projects", alice), ("GET", "/projects", None),
                                  ("POST", "/projects", alice)):
            reply = s.request(method, path, tok)
            assert reply.headers.get("x-content-type-options") == "nosniff", (method, path, reply.headers)
        # One answer for a taken slug, whoever took it: it says nothing about the owner.
        mine = s.request("POST", "/projects", alice, {"slug": "alice-map"})
        theirs = s.request("POST", "/projects", bob, {"slug": "alice-map"})
        expect_golden(mine, 409, "project_exists")
        expect_golden(theirs, 409, "project_exists")
        assert mine.payload == theirs.payload
        # Tile reads follow no symbolic link (the sink never writes one): a link to a file
        # outside the store, and a linked directory, are "not found".
        secret = os.path.join(s.data_dir, "secret.png")
        with open(secret, "wb") as f:
            f.write(b"\x89PNG secret")
        os.makedirs(os.path.join(s.data_dir, "elsewhere"), exist_ok=True)
        shutil.copy(secret, os.path.join(s.data_dir, "elsewhere", "0.png"))
        prefix = os.path.join(s.data_dir, "storage", "mp", "alice-map", "uploads", "tiles", "1")
        os.makedirs(prefix, exist_ok=True)
        with open(os.path.join(prefix, "real.png"), "wb") as f:
            f.write(b"\x89PNG real")
        os.symlink(secret, os.path.join(prefix, "link.png"))
        os.symlink(os.path.join(s.data_dir, "elsewhere"), os.path.join(prefix, "linkdir"))
        code, _, payload = s.request("GET", "/tiles/mp/alice-map/uploads/tiles/1/real.png", alice, raw=True)
        assert code == 200 and payload == b"\x89PNG real", (code, payload)
        for key in ("mp/alice-map/uploads/tiles/1/link.png", "mp/alice-map/uploads/tiles/1/linkdir/0.png"):
            reply = s.request("GET", "/tiles/" + key, alice)
            assert b"secret" not in reply.payload, key
            expect_golden(reply, 404, "not_found")
    finally:
        s.stop()
    # Short-lived codes (--viewer-code-seconds), Secure cookies (served at an https address:
    # --public-base-url https://..., no --cookie-secure needed), and a missing viewer that does
    # not tell where it was looked for.
    s = Service(args=["--viewer-code-seconds", "1", "--public-base-url", "https://maps.example",
                      "--viewer-dir", os.path.join(WORK, "no-viewer")]).start()
    try:
        alice = s.add_user("alice")
        s.project(alice, "alice-map")
        s.version(alice, "alice-map")
        link = expect(s.request("POST", "/projects/alice-map/versions/1/viewer-link", alice), 201)
        assert link["expires_in"] == 1, link
        time.sleep(1.5)
        reply = s.request("GET", link["viewer_url"])
        assert reply[0] == 401 and "set-cookie" not in reply.headers, reply
        link = expect(s.request("POST", "/projects/alice-map/versions/1/viewer-link", alice), 201)
        code, headers, _ = s.request("GET", link["viewer_url"], raw=True)
        assert code == 303 and "Secure" in [a.strip() for a in headers["set-cookie"].split(";")], headers
        cookie = {"Cookie": headers["set-cookie"].split(";")[0]}
        reply = s.request("GET", "/projects/alice-map/versions/1/viewer", headers=cookie)
        assert reply[0] == 404 and reply[1] == {"detail": "Viewer not installed"}, reply
        assert b"no-viewer" not in reply.payload
    finally:
        s.stop()
    with open(os.path.join(s.data_dir, "service.log"), "rb") as f:
        assert b"no-viewer" in f.read()  # the operator learns where


def test_prefix_template_checked():
    """A tile prefix template that would let versions share a prefix (one job's sweep deleting
    another's pyramid) or leave the store is refused at start, exit status 2."""
    for template in ("tiles/{version}/", "mp/{slug}/", "mp/{slug}/{version}", "mp/{slug}/../{version}/",
                     "/mp/{slug}/{version}/", "mp//{slug}/{version}/"):
        out = subprocess.run([SERVICE, "--data-dir", os.path.join(WORK, "never"), "--port", "0", "--prefix-template", template],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2, (template, out.returncode, out.stderr)
        assert "--prefix-template must" in out.stderr, (template, out.stderr)
    s = Service(args=["--prefix-template", "p/{slug}/v{version}/"]).start()
    s.stop()


def test_twenty_jobs():
    # One user's 20 jobs at once: the per-user share (test_per_user_job_queue) is lifted here.
    s = Service(args=["--workers", "4", "--queue", "32", "--tiler-threads", "2", "--max-queued-jobs", "0"]).start()
    try:
        token = s.add_user("alice")
        a = s.project_with_versions(token, "many", 20, sample("400x300"))
        results = [None] * 20

        def submit(i):
            results[i] = s.generate(token, "many", i + 1, a["id"])

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ids = [expect(r, 202)["job_id"] for r in results]
        assert len(set(ids)) == 20
        for i, job_id in enumerate(ids):
            job = s.wait_job(token, job_id)
            assert job["status"] == "completed", job
            assert job["result"]["tiles_path"].startswith("mp/many/uploads/tiles/%d/runs/" % (i + 1)), job["result"]
            code, _, _ = s.request("GET", "/tiles/" + job["result"]["tiles_path"] + "pyramid.json", token, raw=True)
            assert code == 200
        assert len(expect(s.request("GET", "/projects/many/jobs", token), 200)) == 20
    finally:
        s.stop()


def test_queue_full():
    s = Service(args=["--workers", "1", "--queue", "1", "--tiler-threads", "1"]).start()
    try:
        token = s.add_user("alice")
        a = s.project_with_versions(token, "busy", 5, sample("3000x3000"))
        responses = []
        for n in range(1, 6):
            reply = s.generate(token, "busy", n, a["id"])
            responses.append((reply[0], reply.headers, reply[1]))
            if reply[0] == 503:
                expect_golden(reply, 503, "queue_full", headers={"Retry-After": "5"})
        codes = [r[0] for r in responses]
        assert codes.count(202) >= 2 and codes.count(503) >= 1, codes
        # No job was left behind for the refused requests.
        jobs = expect(s.request("GET", "/projects/busy/jobs", token), 200)
        assert len(jobs) == codes.count(202), (codes, len(jobs))
        for code, _, body in responses:
            if code == 202:
                assert s.wait_job(token, body["job_id"], timeout=300)["status"] == "completed"
        # Once drained, the service accepts again.
        refused = [i + 1 for i, r in enumerate(responses) if r[0] == 503]
        expect(s.generate(token, "busy", refused[0], a["id"]), 202)
    finally:
        s.stop()


def start_slow_job(s, token, slug):
    s.project(token, slug)
    s.version(token, slug)
    a = s.asset(token, slug, sample("6000x6000"))
    job_id = expect(s.generate(token, slug, 1, a["id"]), 202)["job_id"]
    s.wait_job(token, job_id, until=("running", "completed", "failed"))
    job = s.request("GET", "/jobs/" + job_id, token)[1]
    assert job["status"] == "running", job
    # One job per version at a time: a second one is refused while the first runs.
    expect_golden(s.generate(token, slug, 1, a["id"]), 409, "job_already_active")
    return job_id


def stored_jobs(s):
    """The job rows as the SQLite job store holds them, read while the service is stopped."""
    import sqlite3
    with sqlite3.connect(os.path.join(s.data_dir, "jobs.db")) as db:
        db.row_factory = sqlite3.Row
        return {row["id"]: dict(row) for row in db.execute("SELECT id, status, attempt, message, error FROM jobs")}


def expect_complete_pyramid(s, token, job):
    """Every tile the manifest implies is served: no half-made pyramid presented as complete."""
    result = job["result"]
    code, _, meta = s.request("GET", result["metadata_url"], token, raw=True)
    assert code == 200, (code, result)
    meta = json.loads(meta)
    assert meta["tile_count"] == result["tile_count"] and result["tile_count"] > 0, (meta, result)
    code, _, _ = s.request("GET", result["tiles_url"] + "image_files/0/0_0.png", token, raw=True)
    assert code == 200, code


def test_restart_mid_job():
    # A process killed mid-job: its job is not lost. The next start rescues it (its owner is dead),
    # and a worker runs it again as attempt 2, to a complete pyramid.
    s = Service(args=["--workers", "1", "--tiler-threads", "1"]).start()
    token = s.add_user("alice")
    try:
        job_id = start_slow_job(s, token, "crash")
        # Publishing while the job runs is refused, naming the job: it could still change the pyramid.
        expect_golden(s.request("POST", "/projects/crash/versions/1/publish", token), 409, "publish_while_job_active",
                      job_status="running", job_id=job_id)
        time.sleep(0.3)
    finally:
        s.stop(signal.SIGKILL)
    assert stored_jobs(s)[job_id]["status"] == "running"  # as the killed process left it
    s.start()
    try:
        job = s.wait_job(token, job_id, timeout=300)
        assert job["status"] == "completed" and job["attempt"] == 2, job
        expect_complete_pyramid(s, token, job)
        view = expect(s.request("GET", "/projects/crash/versions/1", token), 200)
        assert view["job_status"] == "completed", view
        # The killed attempt's run is not the version's pyramid; the pointer names attempt 2's.
        assert job["result"]["run"] == "runs/%s.2/" % job_id, job["result"]
        assert view["tiles"]["tiles_url"] == job["result"]["tiles_url"], view
    finally:
        s.stop()


def test_sigterm_grace():
    # SIGTERM with no grace: the running job is handed back (its attempt does not count), the
    # queued one stays queued; both run after the restart.
    s = Service(args=["--workers", "1", "--queue", "4", "--tiler-threads", "1", "--grace-seconds", "0"]).start()
    token = s.add_user("alice")
    job_id = start_slow_job(s, token, "term")
    s.version(token, "term")
    a2 = s.asset(token, "term", sample("300x200"))
    queued = expect(s.generate(token, "term", 2, a2["id"]), 202)["job_id"]
    expect_golden(s.generate(token, "term", 2, a2["id"]), 409, "job_already_active")  # queued counts too
    s.stop(signal.SIGTERM, timeout=60)
    rows = stored_jobs(s)
    assert rows[job_id]["status"] == "queued" and rows[job_id]["attempt"] == 1, rows[job_id]  # the next is attempt 2
    assert rows[job_id]["message"].startswith("Queued again"), rows[job_id]
    assert rows[queued]["status"] == "queued" and rows[queued]["attempt"] == 0, rows[queued]
    s.start()
    try:
        for jid, attempt in ((job_id, 2), (queued, 1)):
            job = s.wait_job(token, jid, timeout=300)
            assert job["status"] == "completed" and job["attempt"] == attempt, job
            expect_complete_pyramid(s, token, job)
    finally:
        s.stop()


def completed_in_log(service):
    with open(os.path.join(service.data_dir, service.log_name), "rb") as f:
        return re.findall(r"job ([0-9a-f-]{36}) completed", f.read().decode(errors="replace"))


def check_roles(jobs_db):
    """An API that only enqueues (--role serve) and two worker processes (--role work) on one job
    store: queued jobs wait for workers, and the two share the work, each job done once."""
    common = ["--jobs-db", jobs_db] if jobs_db else []
    api = Service(args=["--role", "serve", *common]).start()
    workers = []
    try:
        token = api.add_user("alice")
        count = 8
        a = api.project_with_versions(token, "fleet", count, sample("1500x1500"))
        ids = [expect(api.generate(token, "fleet", n, a["id"]), 202)["job_id"] for n in range(1, count + 1)]
        time.sleep(1.0)
        states = {expect(api.request("GET", "/jobs/" + i, token), 200)["status"] for i in ids}
        assert states == {"queued"}, "an API-only service ran jobs: %s" % states
        for n in (1, 2):
            workers.append(Service(data_dir=api.data_dir, log_name="worker-%d.log" % n,
                                   args=["--role", "work", "--workers", "1", "--tiler-threads", "1", *common]).start())
        for i in ids:
            job = api.wait_job(token, i, timeout=300)
            assert job["status"] == "completed" and job["attempt"] == 1, job
        for w in workers:
            w.stop()
        done = [completed_in_log(w) for w in workers]
        assert sorted(done[0] + done[1]) == sorted(ids), done
        assert done[0] and done[1], "one worker did all the work: %s" % [len(d) for d in done]
        print("  roles (%s): worker jobs %d + %d" % ("postgresql" if jobs_db else "sqlite", len(done[0]), len(done[1])))
    finally:
        for w in workers:
            w.stop()
        api.stop()


def test_roles():
    check_roles(None)


def test_roles_postgresql():
    url = os.environ.get("TILEKIT_TEST_POSTGRES_URL")
    if not url:
        # Run by ctest's http_service_e2e_postgresql under scripts/postgres-server.sh; selected by
        # name there, where a missing server is a failure.
        assert "test_roles_postgresql" not in SELECTED, "TILEKIT_TEST_POSTGRES_URL is not set"
        print("SKIP test_roles_postgresql: no TILEKIT_TEST_POSTGRES_URL (run under scripts/postgres-server.sh run)")
        return
    check_roles(url)


def test_s3_flow():
    """The whole flow with S3 storage against the test peer (skipped without S3PEER_ENDPOINT)."""
    if not os.environ.get("S3PEER_ENDPOINT"):
        print("SKIP test_s3_flow: no S3PEER_ENDPOINT (run under tests/s3peer/run-with-peer.sh)")
        return
    env = {"AWS_ACCESS_KEY_ID": os.environ["S3PEER_ACCESS_KEY"], "AWS_SECRET_ACCESS_KEY": os.environ["S3PEER_SECRET_KEY"],
           "AWS_REGION": os.environ.get("S3PEER_REGION", "auto"), "AWS_ENDPOINT_URL_S3": os.environ["S3PEER_ENDPOINT"],
           "TILEKIT_S3_BUCKET": os.environ.get("S3PEER_BUCKET", "tiles")}
    s = Service(env=env).start()
    try:
        token = s.add_user("alice")
        code, _, health = s.request("GET", "/health", raw=True)
        assert code == 200, code
        # No bucket, endpoint or path to anyone who asks (/health needs no token).
        for secret in (env["TILEKIT_S3_BUCKET"], env["AWS_ENDPOINT_URL_S3"], s.data_dir):
            assert secret.encode() not in health, (secret, health)
        slug = "s3-flow-%d" % os.getpid()
        s.project(token, slug)
        s.version(token, slug)
        a = s.asset(token, slug, sample("900x700"))
        job = s.wait_job(token, expect(s.generate(token, slug, 1, a["id"]), 202)["job_id"])
        assert job["status"] == "completed", job
        code, headers, payload = s.request("GET", job["result"]["tiles_url"] + "image_files/0/0_0.png", token, raw=True)
        assert code == 200 and headers["content-type"] == "image/png" and payload[:4] == b"\x89PNG", (code, headers)
        code, _, payload = s.request("GET", job["result"]["tiles_url"] + "pyramid.json", token, raw=True)
        assert code == 200 and json.loads(payload)["width"] == 900
        expect_golden(s.request("GET", job["result"]["tiles_url"] + "nope.png", token), 404, "not_found")
    finally:
        s.stop()


def test_project_and_version_quotas():
    """Hard quotas are 403 with a detail naming the limit; they are per user and per project."""
    s = Service(args=["--max-projects", "2", "--max-versions", "2"]).start()
    try:
        alice, bob = s.add_user("alice"), s.add_user("bob")
        s.project(alice, "one")
        s.project(alice, "two")
        expect_golden(s.request("POST", "/projects", alice, {"slug": "three"}), 403, "project_quota", count=2, limit=2)
        assert [p["slug"] for p in expect(s.request("GET", "/projects", alice), 200)] == ["one", "two"]
        s.project(bob, "bobs")  # another user's count
        s.version(alice, "one")
        s.version(alice, "one", number=7)
        expect_golden(s.request("POST", "/projects/one/versions", alice, {"status": "draft"}), 403, "version_quota",
                      count=2, limit=2)
        s.version(alice, "two")  # per project
    finally:
        s.stop()


def multipart(image, filename="map.png"):
    boundary = "quota-test-boundary"
    body = ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\nContent-Type: image/png\r\n\r\n"
            % (boundary, filename)).encode() + image + ("\r\n--%s--\r\n" % boundary).encode()
    return body, {"Content-Type": "multipart/form-data; boundary=" + boundary}


def test_stored_bytes_quota():
    """A user's uploads, summed, against --max-stored-bytes: a raw body is refused from its
    Content-Length before it is read; a multipart one once its file's size is known."""
    small = sample("300x200")
    limit = 2 * len(small)
    s = Service(args=["--max-stored-bytes", str(limit)]).start()
    try:
        alice, bob = s.add_user("alice"), s.add_user("bob")
        s.project(alice, "full")
        s.asset(alice, "full", small)
        s.asset(alice, "full", small)  # exactly at the limit
        raw = s.request("POST", "/projects/full/assets?type=base_map", alice, small, {"Content-Type": "image/png"})
        expect_golden(raw, 403, "stored_bytes_quota", stored=limit, adding=len(small), limit=limit)
        body, headers = multipart(small)
        form = s.request("POST", "/projects/full/assets?type=base_map", alice, body, headers)
        expect_golden(form, 403, "stored_bytes_full", stored=limit, limit=limit)
        # Bob has room for one more small image, not for a larger one; the refused file is not kept.
        s.project(bob, "roomy")
        s.asset(bob, "roomy", small)
        large = sample("600x400")
        assert len(large) > len(small), (len(large), len(small))
        body, headers = multipart(large)
        form = s.request("POST", "/projects/roomy/assets?type=base_map", bob, body, headers)
        expect_golden(form, 403, "stored_bytes_quota", stored=len(small), adding=len(large), limit=limit)
        assets = os.listdir(os.path.join(s.data_dir, "storage", "mp", "roomy", "uploads", "assets"))
        assert len(assets) == 1, assets
    finally:
        s.stop()
    # A committed pyramid counts too: once a job's tiles take carol over the limit, her next job
    # is refused (a crafted image cannot make one user store without bound).
    s = Service(args=["--max-stored-bytes", str(len(small) + 100)]).start()
    try:
        carol = s.add_user("carol")
        a = s.project_with_versions(carol, "tiles", 2, small)
        job = s.wait_job(carol, expect(s.generate(carol, "tiles", 1, a["id"]), 202)["job_id"])
        assert job["status"] == "completed" and job["result"]["total_bytes"] > 100, job
        stored = len(small) + job["result"]["total_bytes"]
        expect_golden(s.generate(carol, "tiles", 2, a["id"]), 403, "stored_bytes_full", stored=stored, limit=len(small) + 100)
    finally:
        s.stop()


def test_per_user_job_queue():
    """One user's queued jobs are capped (429, Retry-After) while another user still gets in:
    one tenant cannot fill the queue for everyone."""
    s = Service(args=["--workers", "1", "--tiler-threads", "1", "--grace-seconds", "0", "--queue", "64",
                      "--max-queued-jobs", "2", "--max-running-jobs", "1"]).start()
    try:
        alice, bob = s.add_user("alice"), s.add_user("bob")
        running = start_slow_job(s, alice, "hog")  # holds the only worker
        a = s.project_with_versions(alice, "hog-2", 3, sample("300x200"))
        queued = [expect(s.generate(alice, "hog-2", n, a["id"]), 202)["job_id"] for n in (1, 2)]
        expect_golden(s.generate(alice, "hog-2", 3, a["id"]), 429, "queued_jobs_quota", headers={"Retry-After": "10"},
                      count=2, limit=2)
        b = s.project_with_versions(bob, "fair", 1, sample("300x200"))
        bobs = expect(s.generate(bob, "fair", 1, b["id"]), 202)["job_id"]
        # Once one of alice's jobs has left the queue, she may queue again.
        expect(s.request("POST", "/jobs/%s/cancel" % queued[0], alice), 200)
        expect(s.generate(alice, "hog-2", 3, a["id"]), 202)
        for job_id in (running, bobs):
            token = alice if job_id == running else bob
            s.request("POST", "/jobs/%s/cancel" % job_id, token)
    finally:
        s.stop()


def test_job_output_caps():
    """A job whose output passes --max-job-tiles fails for good with the reason, and nothing is
    committed; a job whose image passes --max-pixels (a TIFF, not checked at upload) fails too."""
    s = Service(args=["--max-job-tiles", "5", "--max-pixels", "100000"]).start()
    try:
        token = s.add_user("alice")
        a = s.project_with_versions(token, "capped", 2, sample("300x200"))
        job = s.wait_job(token, expect(s.generate(token, "capped", 1, a["id"]), 202)["job_id"])
        assert job["status"] == "failed" and job["attempt"] == 1, job
        assert "passed this service's limit of 5 tiles (--max-job-tiles)" in job["error"], job
        print("  over --max-job-tiles: " + job["error"])
        view = expect(s.request("GET", "/projects/capped/versions/1", token), 200)
        assert view["tiles"] is None and view["job_status"] == "failed", view
        code, _, _ = s.request("GET", "/tiles/mp/capped/uploads/tiles/1/current.json", token, raw=True)
        assert code == 404, code
        runs = os.path.join(s.data_dir, "storage", "mp", "capped", "uploads", "tiles", "1", "runs")
        assert not os.path.isdir(runs) or not any(files for _, _, files in os.walk(runs)), list(os.walk(runs))
        code, tiff = s.request("POST", "/projects/capped/assets?type=base_map", token, tiff_bytes(700, 300),
                               {"Content-Type": "image/tiff"})
        assert code == 201, (code, tiff)
        job = s.wait_job(token, expect(s.generate(token, "capped", 2, tiff["id"]), 202)["job_id"])
        assert job["status"] == "failed" and job["attempt"] == 1, job
        assert "210000" in job["error"] and "100000" in job["error"], job
        print("  over --max-pixels: " + job["error"])
    finally:
        s.stop()


TESTS = [test_full_flow, test_formats_per_job, test_error_paths, test_auth, test_viewer_links, test_prefix_template_checked,
         test_twenty_jobs, test_queue_full, test_restart_mid_job,
         test_sigterm_grace, test_roles, test_roles_postgresql, test_s3_flow, test_project_and_version_quotas,
         test_stored_bytes_quota, test_per_user_job_queue, test_job_output_caps]


def run_tests(tests):
    """Runs the selected tests (all when none was named); returns how many failed."""
    failed = 0
    for test in tests:
        if SELECTED and test.__name__ not in SELECTED:
            continue
        started = time.time()
        try:
            test()
            print("PASS %s (%.1fs)" % (test.__name__, time.time() - started), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.1fs)" % (test.__name__, time.time() - started), flush=True)
            traceback.print_exc()
    return failed


def main():
    failed = run_tests(TESTS)
    if not SELECTED:
        try:
            check_all_goldens_used()
            print("PASS check_all_goldens_used", flush=True)
        except Exception:
            failed += 1
            print("FAIL check_all_goldens_used", flush=True)
            traceback.print_exc()
    if failed:
        print("%d test(s) failed; service logs kept under %s" % (failed, WORK))
        return 1
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

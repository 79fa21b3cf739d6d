#!/usr/bin/env python3
"""SigV4-verifying reverse proxy in front of s3rver: tilekit's S3 / Cloudflare R2 test peer.

s3rver stores objects but accepts any well-formed SigV4 signature (its source says V4 signature
calculation is unimplemented). This proxy recomputes every signature with botocore from the exact
bytes received and answers S3-style errors the way S3 / R2 would, so the C++ client's tests catch
signing and encoding bugs. Good requests are forwarded to s3rver with their authentication removed
(s3rver only knows its own access key) and s3rver's answer is relayed. See README.md beside this
file for the list of checks and the options; start.sh is the usual way to run it.

Listens on loopback addresses only. Needs python3 with botocore (Debian 12: python3-botocore).
"""

import argparse
import base64
import binascii
import datetime
import email.utils
import hashlib
import hmac
import http.client
import http.server
import ipaddress
import itertools
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from xml.sax.saxutils import escape as xml_escape

try:
    import botocore
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.compat import HTTPHeaders
    from botocore.credentials import Credentials
except ImportError:  # pragma: no cover - depends on the machine
    sys.stderr.write(
        "sigv4_verifier.py: %s cannot import botocore.\n"
        "  Debian 12: apt-get install python3-botocore, then run /usr/bin/python3.\n"
        "  Elsewhere: pip install botocore. tests/s3peer/start.sh picks a python3 that has it\n"
        "  (set S3PEER_PYTHON to choose one).\n" % sys.executable)
    sys.exit(3)

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_PRESIGN_EXPIRES = 604800          # 7 days (S3 and R2)
DEFAULT_MAX_BODY = 5 * 1024 ** 3 - 5 * 1024 ** 2   # R2's single-PUT limit: 5 GiB - 5 MiB
DRAIN_LIMIT = 64 * 1024 * 1024        # bodies up to this size are read and dropped after an error
CHUNK = 64 * 1024
CONTROL_PREFIX = "/_s3peer/"          # '_' is not allowed in bucket names, so no clash with S3
PRESIGN_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                  "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
              "proxy-connection", "te", "trailer", "trailers", "transfer-encoding", "upgrade"}
NOT_FORWARDED = HOP_BY_HOP | {"host", "authorization", "expect", "content-length"}
NOT_RELAYED = HOP_BY_HOP | {"date", "server", "content-length"}
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
AUTH_HEADER = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential\s*=\s*([^,\s]+)\s*,\s*SignedHeaders\s*=\s*([^,\s]+)\s*,"
    r"\s*Signature\s*=\s*([^,\s]+)\s*$")
# Headers R2 refuses on object writes ("Header 'x' with value 'v' not implemented", 501).
# A test peer refuses them all, even values R2 tolerates (x-amz-acl: private,
# x-amz-storage-class: STANDARD, x-amz-checksum-crc64nvme): the tile uploader must send none.
R2_REFUSED_EXACT = {"x-amz-acl", "x-amz-storage-class", "x-amz-sdk-checksum-algorithm",
                    "x-amz-checksum-algorithm", "x-amz-checksum-type", "x-amz-server-side-encryption",
                    "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-tagging",
                    "x-amz-website-redirect-location", "x-amz-request-payer",
                    "x-amz-expected-bucket-owner", "x-amz-trailer", "x-amz-decoded-content-length"}
R2_REFUSED_PREFIX = ("x-amz-checksum-", "x-amz-grant-", "x-amz-object-lock-")


# ----------------------------------------------------------------------------------------------
# Signature computation (botocore)
# ----------------------------------------------------------------------------------------------

class _RecomputingSigner(S3SigV4Auth):
    """botocore's S3 SigV4 signer, fed with what was received instead of what it would send.

    Two inputs are replaced; everything else (canonical URI taken verbatim from the URL path, as
    S3SigV4Auth does; query sorting; header value trimming and joining; string to sign; key
    derivation; HMAC) is botocore's own code:
    - the canonical headers are exactly the headers named in SignedHeaders, with the values as
      received (botocore would pick its own set and drop e.g. user-agent or expect);
    - the payload hash is the one the request declares (checked against the body separately).
    Stateless per request (inputs travel in request.context), so one object per (key, region) is
    shared by all threads.
    """

    def headers_to_sign(self, request):
        return request.context["s3peer_headers"]

    def payload(self, request):
        return request.context["s3peer_payload"]


def canonical_query(raw_query, exclude=()):
    """The S3 canonical query of a received query string, as a string botocore then sorts.

    S3 decodes each name and value and re-encodes them strictly (RFC 3986 unreserved kept, '%XX'
    upper case, space as %20, '/' as %2F), so a client that signs 'prefix=a/' while sending
    'prefix=a/' is told SignatureDoesNotMatch (the canonical form is 'prefix=a%2F'). A raw '+'
    is read as a space (form encoding), so '+' signed as %2B but sent raw does not verify.
    """
    pairs = []
    for piece in raw_query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        dname = urllib.parse.unquote_to_bytes(name.replace("+", " "))
        if dname.decode("latin-1") in exclude:
            continue
        dvalue = urllib.parse.unquote_to_bytes(value.replace("+", " "))
        pairs.append(urllib.parse.quote(dname, safe="-_.~") + "=" +
                     urllib.parse.quote(dvalue, safe="-_.~"))
    return "&".join(pairs)


def strict_path(raw_path):
    """The strictly encoded form of a path: what S3/R2 compute as canonical URI for these bytes."""
    return urllib.parse.quote(urllib.parse.unquote_to_bytes(raw_path), safe="/~")


def _header_text(value):
    # http.server decodes header bytes as latin-1; a client signs the raw bytes (UTF-8 text).
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


class SignerCache:
    """botocore Credentials and signer objects, one per (access key, region), built once."""

    def __init__(self, users):
        self._users = dict(users)
        self._signers = {}
        self._lock = threading.Lock()

    def secret(self, access_key):
        return self._users.get(access_key)

    def signer(self, access_key, region):
        key = (access_key, region)
        s = self._signers.get(key)
        if s is None:
            with self._lock:
                s = self._signers.get(key)
                if s is None:
                    creds = Credentials(access_key, self._users[access_key])
                    s = _RecomputingSigner(creds, "s3", region)
                    self._signers[key] = s
        return s


def compute_signature(signer, method, raw_path, raw_query, signed_headers, amz_date, payload_hash,
                      exclude_query=()):
    """Recompute a SigV4 signature with botocore.

    signer: a _RecomputingSigner (credentials, service 's3' and region inside).
    raw_path: the path exactly as received (no '#'; the caller refuses those).
    raw_query: the query exactly as received (canonicalised here, see canonical_query).
    signed_headers: list of (lower-case name, [values as received]).
    Returns (signature, canonical_request, string_to_sign).
    """
    header_map = HTTPHeaders()
    for name, values in signed_headers:
        for v in values:
            header_map[name] = _header_text(v)
    query = canonical_query(raw_query, exclude_query)
    url = "http://s3peer.invalid" + raw_path + ("?" + query if query else "")
    if urllib.parse.urlsplit(url).path != raw_path:   # never expected; guards the assumption
        raise ValueError("path %r does not survive urlsplit" % raw_path)
    request = AWSRequest(method=method, url=url)
    request.context["timestamp"] = amz_date
    request.context["s3peer_headers"] = header_map
    request.context["s3peer_payload"] = payload_hash
    creq = signer.canonical_request(request)
    sts = signer.string_to_sign(request, creq)
    sig = signer.signature(sts, request)
    return sig, creq, sts


# ----------------------------------------------------------------------------------------------
# Errors, faults, stats, log
# ----------------------------------------------------------------------------------------------

class S3Error(Exception):
    def __init__(self, status, code, message, extra=(), headers=(), close=False):
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message
        self.extra = list(extra)
        self.headers = list(headers)
        self.close = close


def error_xml(code, message, resource, request_id, extra=()):
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>', xml_escape(code),
             "</Code><Message>", xml_escape(message), "</Message>"]
    for tag, value in extra:
        parts += ["<", tag, ">", xml_escape(str(value)), "</", tag, ">"]
    parts += ["<Resource>", xml_escape(resource), "</Resource><RequestId>", request_id,
              "</RequestId></Error>"]
    return "".join(parts).encode("utf-8")


def _bytes_hex(text):
    return " ".join("%02x" % b for b in text.encode("utf-8"))


FAULT_KINDS = ("slowdown", "internal", "reset", "drop", "stall")


class Faults:
    """Seeded fault injection. One random draw per eligible request, in arrival order."""

    def __init__(self, rates, seed, always_fail, methods, retry_after, stall_seconds):
        self.lock = threading.Lock()
        self.configure(rates, seed, always_fail, methods, retry_after, stall_seconds)

    def configure(self, rates, seed, always_fail, methods, retry_after, stall_seconds):
        total = sum(rates.get(k, 0.0) for k in FAULT_KINDS)
        if any(rates.get(k, 0.0) < 0 for k in FAULT_KINDS) or total > 1.0 + 1e-9:
            raise ValueError("fault rates must be >= 0 and add up to at most 1 (got %r)" % rates)
        with self.lock:
            self.rates = {k: float(rates.get(k, 0.0)) for k in FAULT_KINDS}
            self.seed = seed
            self.rng = random.Random(seed)
            self.always_fail = bool(always_fail)
            self.methods = {m.upper() for m in methods} if methods else None
            self.retry_after = int(retry_after)
            self.stall_seconds = float(stall_seconds)

    def describe(self):
        with self.lock:
            return {"rates": dict(self.rates), "seed": self.seed, "always_fail": self.always_fail,
                    "methods": sorted(self.methods) if self.methods else None,
                    "retry_after": self.retry_after, "stall_seconds": self.stall_seconds}

    def decide(self, method):
        with self.lock:
            if self.methods is not None and method not in self.methods:
                return None
            if self.always_fail:
                return "always"
            if not any(self.rates.values()):
                return None
            r = self.rng.random()
            acc = 0.0
            for kind in FAULT_KINDS:
                acc += self.rates[kind]
                if r < acc:
                    return kind
            return None


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.requests = 0
        self.forwarded = 0
        self.by_status = {}
        self.by_outcome = {}

    def add(self, status, outcome, forwarded):
        with self.lock:
            self.requests += 1
            if forwarded:
                self.forwarded += 1
            key = str(status) if status is not None else "none"
            self.by_status[key] = self.by_status.get(key, 0) + 1
            self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1

    def snapshot(self):
        with self.lock:
            return {"requests": self.requests, "forwarded": self.forwarded,
                    "by_status": dict(self.by_status), "by_outcome": dict(self.by_outcome)}


class RequestLog:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8", buffering=1) if path else None

    def write(self, line):
        if self.file is None:
            return
        with self.lock:
            self.file.write(line + "\n")


# ----------------------------------------------------------------------------------------------
# HTTP handler
# ----------------------------------------------------------------------------------------------

class PeerServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, config):
        self.config = config
        self.signers = SignerCache(config.users)
        self.faults = Faults(config.rates, config.seed, config.always_fail, config.fault_methods,
                             config.retry_after, config.stall_seconds)
        self.stats = Stats()
        self.log = RequestLog(config.log)
        self.request_ids = itertools.count(1)
        self.request_id_prefix = "%08X" % (os.getpid() & 0xFFFFFFFF)
        self.key_locks = [threading.Lock() for _ in range(64)]
        self.local = threading.local()
        super().__init__(address, Handler)

    def now(self):
        return time.time() + self.config.clock_offset


def _parse_amz(text):
    try:
        dt = datetime.datetime.strptime(text, AMZ_DATE_FORMAT)
    except (TypeError, ValueError):
        return None
    if len(text) != 16:
        return None
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def _iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tilekit-s3peer"
    sys_version = ""
    timeout = 120                       # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True

    # -- plumbing --------------------------------------------------------------------------

    def handle_expect_100(self):
        # Do not answer '100 Continue' before the headers are verified (S3 does the same): a
        # rejected request gets its final status instead and the connection is closed.
        return True

    def log_message(self, fmt, *args):  # silence http.server's stderr log
        pass

    def do_GET(self):
        self._dispatch()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_PATCH = do_GET

    def _dispatch(self):
        srv = self.server
        self.t0 = time.monotonic()
        self.rid = "%s%08X" % (srv.request_id_prefix, next(srv.request_ids))
        self.bytes_in = 0
        self.bytes_out = 0
        self.relay_started = False
        self.recorded = False
        self.body_state = "unread"      # unread | read | closed
        self.continue_sent = False
        self.expect_100 = (self.headers.get("Expect", "").strip().lower() == "100-continue"
                           and self.request_version >= "HTTP/1.1")
        target = self.path
        if not target.startswith("/") or "#" in target:
            self._finish_error(S3Error(400, "InvalidURI", "Couldn't parse the specified URI.",
                                       close=True), "reject")
            return
        raw_path, _, raw_query = target.partition("?")
        self.raw_path, self.raw_query = raw_path, raw_query
        if raw_path.startswith(CONTROL_PREFIX):
            self._control(raw_path, raw_query)
            return
        fault = srv.faults.decide(self.command)
        if fault is not None:
            self._inject(fault)
            return
        try:
            auth = self._verify_headers()
            body = self._read_body(auth)
            self._check_body(auth, body)
            self._forward(body)
        except S3Error as e:
            self._finish_error(e, "reject")
        except _ClientGone:
            self.close_connection = True
            self._record(None, "client-gone", False)
        except Exception as e:   # a bug here must not look like an injected fault
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            if getattr(self, "relay_started", False):
                self.close_connection = True
                self._record(None, "peer-bug:%s" % type(e).__name__, False)
                return
            self._finish_error(S3Error(500, "InternalError", "s3peer bug: %s: %s (see the "
                                       "verifier's stderr)" % (type(e).__name__, e), close=True),
                               "peer-bug")

    def _record(self, status, outcome, forwarded):
        if self.recorded:
            return
        self.recorded = True
        srv = self.server
        srv.stats.add(status, outcome, forwarded)
        if srv.log.file is not None:
            ms = (time.monotonic() - self.t0) * 1000.0
            target = self.path if len(self.path) <= 300 else self.path[:300] + "..."
            srv.log.write("%s rid=%s peer=%s:%d %s %s -> %s %s in=%d out=%d %.1fms" % (
                _iso(time.time()), self.rid, self.client_address[0], self.client_address[1],
                self.command, target, status if status is not None else "-", outcome,
                self.bytes_in, self.bytes_out, ms))

    def _date_header(self):
        return email.utils.formatdate(self.server.now(), usegmt=True)

    def _send(self, status, headers, body, outcome, reason=None):
        """Send a complete response. Stats and log are updated before the last byte goes out,
        so a client that got the response also sees it counted in /_s3peer/stats."""
        if self.body_state == "unread" and not self._discard_body():
            self.close_connection = True
        self.send_response_only(status, reason)
        self.send_header("Date", self._date_header())
        self.send_header("Server", self.server_version)
        self.send_header("x-amz-request-id", self.rid)
        for k, v in headers:
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.bytes_out = len(body) if body and self.command != "HEAD" else 0
        self._record(status, outcome, False)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _finish_error(self, err, outcome_kind):
        if err.close:
            self.close_connection = True
        body = error_xml(err.code, err.message, urllib.parse.unquote(self.path.partition("?")[0]),
                         self.rid, err.extra)
        headers = [("Content-Type", "application/xml")] + err.headers
        outcome = err.code if outcome_kind == "reject" else "%s:%s" % (outcome_kind, err.code)
        try:
            self._send(err.status, headers, body, outcome)
        except OSError:
            self.close_connection = True

    # -- request body ----------------------------------------------------------------------

    def _content_length(self):
        if "Transfer-Encoding" in self.headers:
            return None
        cl = self.headers.get("Content-Length")
        if cl is None:
            return 0
        try:
            n = int(cl)
        except ValueError:
            return None
        return n if n >= 0 else None

    def _discard_body(self):
        """Read and drop an unread request body so the connection can be reused; False = close."""
        if self.body_state != "unread":
            return self.body_state == "read"
        if "Transfer-Encoding" in self.headers:
            self.body_state = "closed"
            return False
        n = self._content_length()
        if n is None or (n > 0 and self.expect_100 and not self.continue_sent) or n > DRAIN_LIMIT:
            self.body_state = "closed"
            return False
        try:
            while n > 0:
                data = self.rfile.read(min(CHUNK, n))
                if not data:
                    self.body_state = "closed"
                    return False
                n -= len(data)
                self.bytes_in += len(data)
        except OSError:
            self.body_state = "closed"
            return False
        self.body_state = "read"
        return True

    def _send_continue(self):
        if self.expect_100 and not self.continue_sent:
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.continue_sent = True

    # -- fault injection -------------------------------------------------------------------

    def _inject(self, kind):
        faults = self.server.faults
        if kind in ("always", "slowdown"):
            self._finish_error(S3Error(503, "SlowDown", "Please reduce your request rate.",
                                       headers=[("Retry-After", str(faults.retry_after))]),
                               "fault-always" if kind == "always" else "fault-slowdown")
            return
        if kind == "internal":
            self._finish_error(S3Error(500, "InternalError",
                                       "We encountered an internal error. Please try again."),
                               "fault-internal")
            return
        # reset / drop / stall: no response at all.
        self._discard_body()
        self.close_connection = True
        self._record(None, "fault-" + kind, False)
        if kind == "stall":
            time.sleep(faults.stall_seconds)
        if kind == "reset":
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.rfile.close()
                self.wfile.close()
                self.connection.close()   # linger 0: the kernel sends RST
            except OSError:
                pass

    # -- control endpoints (not S3; loopback only) -----------------------------------------

    def _control(self, raw_path, raw_query):
        srv = self.server
        what = raw_path[len(CONTROL_PREFIX):]
        q = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
        status, doc = 200, None
        if what == "health" and self.command in ("GET", "HEAD"):
            doc = {"ok": True, "upstream": self._upstream_health()}
            if not doc["upstream"]:
                status, doc["ok"] = 503, False
        elif what == "stats" and self.command == "GET":
            doc = srv.stats.snapshot()
            doc["faults"] = srv.faults.describe()
        elif what == "stats" and self.command in ("POST", "DELETE"):
            srv.stats.reset()
            doc = srv.stats.snapshot()
        elif what == "faults" and self.command == "GET":
            doc = srv.faults.describe()
        elif what == "faults" and self.command in ("POST", "PUT"):
            cur = srv.faults.describe()
            rates = dict(cur["rates"])
            try:
                if q.get("clear", "") not in ("", "0"):
                    rates = {k: 0.0 for k in FAULT_KINDS}
                for kind in FAULT_KINDS:
                    if kind in q:
                        rates[kind] = float(q[kind])
                seed = int(q["seed"]) if "seed" in q else cur["seed"]
                always = (q["always_fail"] not in ("0", "false", "")) if "always_fail" in q \
                    else cur["always_fail"]
                methods = ([m for m in q["methods"].split(",") if m] if "methods" in q
                           else cur["methods"])
                retry_after = int(q.get("retry_after", cur["retry_after"]))
                stall = float(q.get("stall_seconds", cur["stall_seconds"]))
                srv.faults.configure(rates, seed, always, methods, retry_after, stall)
                doc = srv.faults.describe()
            except (ValueError, TypeError) as e:
                status, doc = 400, {"error": str(e)}
        else:
            status, doc = 404, {"error": "unknown control endpoint", "endpoints": [
                "GET /_s3peer/health", "GET /_s3peer/stats", "POST /_s3peer/stats (reset)",
                "GET /_s3peer/faults", "POST /_s3peer/faults?slowdown=&internal=&reset=&drop=&"
                "stall=&seed=&always_fail=&methods=&retry_after=&stall_seconds=&clear=1"]}
        body = (json.dumps(doc, sort_keys=True) + "\n").encode()
        self._send(status, [("Content-Type", "application/json")], body, "control")

    # -- verification ----------------------------------------------------------------------

    def _verify_headers(self):
        """All checks that need no body. Returns a dict describing the authenticated request."""
        srv = self.server
        cfg = srv.config
        h = self.headers
        if "Transfer-Encoding" in h:
            raise S3Error(501, "NotImplemented",
                          "A header you provided implies functionality that is not implemented "
                          "(Transfer-Encoding: send a Content-Length body).",
                          extra=[("Header", "Transfer-Encoding")], close=True)
        authz = h.get_all("Authorization") or []
        qnames = {urllib.parse.unquote(p.partition("=")[0]) for p in self.raw_query.split("&") if p}
        presigned = "X-Amz-Algorithm" in qnames or "X-Amz-Signature" in qnames \
            or "X-Amz-Credential" in qnames
        if authz and presigned:
            raise S3Error(400, "InvalidArgument",
                          "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
                          "parameter, Signature query string parameter or the Authorization header "
                          "should be specified", extra=[("ArgumentName", "Authorization")])
        if not authz and not presigned:
            if cfg.anon_get and self.command in ("GET", "HEAD"):
                return {"mode": "anonymous", "payload": None}
            raise S3Error(403, "AccessDenied", "Access Denied")
        if authz:
            return self._verify_header_auth(authz)
        return self._verify_query_auth()

    def _check_scope(self, credential, amz_date, where):
        """Checks common to both mechanisms. Returns (access_key, region)."""
        cfg = self.server.config
        err_code = "AuthorizationHeaderMalformed" if where == "header" \
            else "AuthorizationQueryParametersError"
        parts = credential.split("/")
        if len(parts) != 5:
            raise S3Error(400, err_code, "Error parsing the Credential: expected "
                          "<access-key>/<yyyymmdd>/<region>/s3/aws4_request, got '%s'" % credential)
        access_key, date, region, service, terminator = parts
        secret = self.server.signers.secret(access_key)
        if secret is None:
            raise S3Error(403, "InvalidAccessKeyId",
                          "The AWS Access Key Id you provided does not exist in our records.",
                          extra=[("AWSAccessKeyId", access_key)])
        if terminator != "aws4_request":
            raise S3Error(400, err_code, "The credential scope terminator '%s' is wrong; expecting "
                          "'aws4_request'" % terminator)
        if service != "s3":
            raise S3Error(400, err_code, "The credential scope service '%s' is wrong; expecting "
                          "'s3'" % service)
        if region not in cfg.regions:
            what = "The authorization header is malformed" if where == "header" \
                else "Error parsing the X-Amz-Credential parameter"
            raise S3Error(400, err_code, "%s; the region '%s' is wrong; expecting '%s'" % (
                what, region, cfg.regions[0]), extra=[("Region", cfg.regions[0])])
        if amz_date is not None and date != amz_date[:8]:
            raise S3Error(400, err_code, "Invalid credential date \"%s\". This date is not the same "
                          "as X-Amz-Date: \"%s\"." % (date, amz_date[:8]))
        return access_key, region

    def _verify_header_auth(self, authz):
        srv = self.server
        cfg = srv.config
        h = self.headers
        if len(authz) != 1:
            raise S3Error(400, "InvalidArgument", "Only one Authorization header is allowed")
        value = authz[0].strip()
        if not value.startswith(ALGORITHM + " "):
            if value.startswith("AWS "):
                raise S3Error(400, "InvalidRequest", "The authorization mechanism you have provided "
                              "is not supported. Please use AWS4-HMAC-SHA256.")
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          "The authorization header is malformed; unsupported algorithm")
        m = AUTH_HEADER.match(value)
        if not m:
            raise S3Error(400, "AuthorizationHeaderMalformed",
                          "The authorization header is malformed; expected 'AWS4-HMAC-SHA256 "
                          "Credential=..., SignedHeaders=..., Signature=...'")
        credential, signed_list, signature = m.groups()
        amz_date = h.get("x-amz-date")
        access_key, region = self._check_scope(credential, amz_date, "header")
        if amz_date is None or _parse_amz(amz_date) is None:
            raise S3Error(403, "AccessDenied", "AWS authentication requires a valid Date or "
                          "x-amz-date header")
        payload = h.get("x-amz-content-sha256")
        if payload is None:
            raise S3Error(400, "InvalidRequest", "Missing required header for this request: "
                          "x-amz-content-sha256")
        if payload.startswith("STREAMING-"):
            raise S3Error(501, "NotImplemented", "Header 'x-amz-content-sha256' with value '%s' not "
                          "implemented (R2 has no aws-chunked uploads: send a plain body)" % payload,
                          extra=[("Header", "x-amz-content-sha256")])
        if payload != UNSIGNED_PAYLOAD and not HEX64.match(payload):
            raise S3Error(400, "InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                          "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, or a valid sha256 value.",
                          extra=[("ArgumentName", "x-amz-content-sha256"),
                                 ("ArgumentValue", payload)])
        names = signed_list.split(";")
        self._check_signed_names(names, "AuthorizationHeaderMalformed",
                                 ("host", "x-amz-content-sha256", "x-amz-date"))
        req_time = _parse_amz(amz_date)
        now = srv.now()
        if abs(now - req_time) > cfg.max_skew:
            raise S3Error(403, "RequestTimeTooSkewed", "The difference between the request time "
                          "and the current time is too large.",
                          extra=[("RequestTime", amz_date), ("ServerTime", _iso(now)),
                                 ("MaxAllowedSkewMilliseconds", int(cfg.max_skew * 1000))])
        self._check_signature(access_key, region, names, amz_date, payload, signature, ())
        return {"mode": "header", "payload": payload, "access_key": access_key}

    def _verify_query_auth(self):
        srv = self.server
        cfg = srv.config
        params = {}
        for piece in self.raw_query.split("&"):
            if piece:
                k, _, v = piece.partition("=")
                k = urllib.parse.unquote(k)
                if k in PRESIGN_PARAMS:
                    if k in params:
                        raise S3Error(400, "AuthorizationQueryParametersError",
                                      "Query parameter %s is given more than once" % k)
                    params[k] = urllib.parse.unquote(v)
        missing = [p for p in PRESIGN_PARAMS[:6] if p not in params]
        if missing:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          "Query-string authentication version 4 requires the X-Amz-Algorithm, "
                          "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
                          "X-Amz-Expires parameters (missing: %s)." % ", ".join(missing))
        if params["X-Amz-Algorithm"] != ALGORITHM:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
        amz_date = params["X-Amz-Date"]
        req_time = _parse_amz(amz_date)
        if req_time is None:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
        access_key, region = self._check_scope(params["X-Amz-Credential"], amz_date, "query")
        try:
            expires = int(params["X-Amz-Expires"])
        except ValueError:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          "X-Amz-Expires should be a number")
        if expires < 1:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          "X-Amz-Expires must be at least 1 second (R2: 1 to 604800)")
        if expires > MAX_PRESIGN_EXPIRES:
            raise S3Error(400, "AuthorizationQueryParametersError",
                          "X-Amz-Expires must be less than a week (in seconds) that is 604800")
        names = params["X-Amz-SignedHeaders"].split(";")
        self._check_signed_names(names, "AuthorizationQueryParametersError", ("host",))
        now = srv.now()
        if req_time - now > cfg.max_skew:
            raise S3Error(403, "AccessDenied", "Request is not valid yet",
                          extra=[("X-Amz-Date", amz_date), ("ServerTime", _iso(now))])
        if now > req_time + expires:
            raise S3Error(403, "AccessDenied", "Request has expired",
                          extra=[("X-Amz-Expires", expires), ("Expires", _iso(req_time + expires)),
                                 ("ServerTime", _iso(now))])
        payload = self.headers.get("x-amz-content-sha256") \
            if "x-amz-content-sha256" in names else UNSIGNED_PAYLOAD
        if payload is None:
            payload = UNSIGNED_PAYLOAD
        self._check_signature(access_key, region, names, amz_date, payload,
                              params["X-Amz-Signature"], ("X-Amz-Signature",))
        return {"mode": "query", "payload": payload, "access_key": access_key}

    def _check_signed_names(self, names, err_code, required):
        if any(n != n.lower() or not n for n in names) or names != sorted(set(names)):
            raise S3Error(400, err_code, "SignedHeaders must be lower-case, sorted, unique and "
                          "';'-separated; got '%s'" % ";".join(names))
        missing = [r for r in required if r not in names]
        if missing:
            raise S3Error(400, err_code, "SignedHeaders must include %s (missing: %s)" % (
                ", ".join(required), ", ".join(missing)))
        for n in names:
            if n not in self.headers:
                raise S3Error(403, "SignatureDoesNotMatch", "The request signature we calculated "
                              "does not match the signature you provided: signed header '%s' is "
                              "not in the request." % n)

    def _check_signature(self, access_key, region, names, amz_date, payload, provided, exclude):
        srv = self.server
        signer = srv.signers.signer(access_key, region)
        signed = [(n, self.headers.get_all(n) or []) for n in names]
        sig, creq, sts = compute_signature(signer, self.command, self.raw_path, self.raw_query,
                                           signed, amz_date, payload, exclude)
        if not hmac.compare_digest(sig.encode(), provided.encode("utf-8", "replace")):
            raise S3Error(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature you "
                          "provided. Check your key and signing method.",
                          extra=[("AWSAccessKeyId", access_key), ("StringToSign", sts),
                                 ("SignatureProvided", provided),
                                 ("StringToSignBytes", _bytes_hex(sts)),
                                 ("CanonicalRequest", creq),
                                 ("CanonicalRequestBytes", _bytes_hex(creq))])
        if srv.config.strict_path:
            want = strict_path(self.raw_path)
            if want != self.raw_path:
                raise S3Error(403, "SignatureDoesNotMatch",
                              "The signature matches the path as sent, but the path is not strictly "
                              "URI-encoded: S3/R2 compute the canonical URI '%s' for it. Encode "
                              "every byte outside A-Z a-z 0-9 - _ . ~ / as %%XX (upper-case hex; "
                              "space %%20, '+' %%2B), sign that, send exactly that." % want,
                              extra=[("AWSAccessKeyId", access_key), ("PathSent", self.raw_path),
                                     ("CanonicalURIExpected", want),
                                     ("CanonicalRequest", creq)])

    def _check_r2_headers(self):
        # Writes only: on reads these headers mean nothing, and x-amz-checksum-mode (sent by
        # botocore >= 1.36 on GetObject) asks for response checksums, not an upload feature.
        if not self.server.config.r2_header_checks or self.command not in ("PUT", "POST"):
            return
        for name, value in self.headers.items():
            ln = name.lower()
            if ln in R2_REFUSED_EXACT or ln.startswith(R2_REFUSED_PREFIX):
                if ln.startswith("x-amz-server-side-encryption-customer-"):
                    continue   # SSE-C is supported by R2
                raise S3Error(501, "NotImplemented",
                              "Header '%s' with value '%s' not implemented" % (ln, value),
                              extra=[("Header", ln)])

    def _read_body(self, auth):
        """The remaining header-only checks, then the body into a spool. Returns a dict: spool
        (or None), length (None without Content-Length), sha256 hex, md5 digest (or None)."""
        cfg = self.server.config
        self._check_r2_headers()
        inm = self.headers.get("If-None-Match")
        if self.command == "PUT" and inm is not None and inm.strip() != "*":
            raise S3Error(501, "NotImplemented", "A header you provided implies functionality that "
                          "is not implemented (If-None-Match on PUT supports only '*').",
                          extra=[("Header", "If-None-Match")])
        has_cl = "Content-Length" in self.headers
        if self.command in ("PUT", "POST") and not has_cl:
            raise S3Error(411, "MissingContentLength",
                          "You must provide the Content-Length HTTP header.")
        n = self._content_length()
        if n is None:
            raise S3Error(400, "InvalidArgument", "Invalid Content-Length", close=True)
        if n > cfg.max_body:
            raise S3Error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed "
                          "size", extra=[("ProposedSize", n), ("MaxSizeAllowed", cfg.max_body)],
                          close=True)
        sha = hashlib.sha256()
        md5 = hashlib.md5() if "Content-MD5" in self.headers else None
        spool = None
        if n > 0:
            self._send_continue()
            spool = tempfile.SpooledTemporaryFile(max_size=cfg.spool_memory)
            left = n
            while left > 0:
                try:
                    data = self.rfile.read(min(CHUNK, left))
                except OSError:
                    data = b""
                if not data:
                    spool.close()
                    self.body_state = "closed"
                    raise _ClientGone()
                sha.update(data)
                if md5 is not None:
                    md5.update(data)
                spool.write(data)
                left -= len(data)
                self.bytes_in += len(data)
        self.body_state = "read"
        return {"spool": spool, "length": n if has_cl else None, "sha256": sha.hexdigest(),
                "md5": md5.digest() if md5 is not None else None, "auth": auth}

    def _check_body(self, auth, body):
        payload = auth.get("payload")
        if auth["mode"] == "header" and payload != UNSIGNED_PAYLOAD and payload != body["sha256"]:
            raise S3Error(400, "XAmzContentSHA256Mismatch",
                          "The provided 'x-amz-content-sha256' header does not match what was "
                          "computed.", extra=[("ClientComputedContentSHA256", payload),
                                              ("S3ComputedContentSHA256", body["sha256"])])
        cmd5 = self.headers.get("Content-MD5")
        if cmd5 is not None:
            try:
                want = base64.b64decode(cmd5.strip(), validate=True)
            except (binascii.Error, ValueError):
                want = b""
            if len(want) != 16:
                raise S3Error(400, "InvalidDigest", "The Content-MD5 you specified was invalid.",
                              extra=[("Content-MD5", cmd5)])
            if want != body["md5"]:
                raise S3Error(400, "BadDigest", "The Content-MD5 you specified did not match what "
                              "we received.", extra=[
                                  ("ExpectedDigest", binascii.hexlify(want).decode()),
                                  ("CalculatedDigest", binascii.hexlify(body["md5"]).decode())])

    # -- forwarding ------------------------------------------------------------------------

    def _upstream(self, fresh=False):
        local = self.server.local
        conn = getattr(local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            cfg = self.server.config
            conn = http.client.HTTPConnection(cfg.upstream_host, cfg.upstream_port, timeout=300)
            local.conn = conn
        return conn

    def _upstream_health(self):
        try:
            status, _, _ = self._upstream_simple("GET", "/")
            return status == 200
        except (OSError, http.client.HTTPException):
            return False

    def _upstream_simple(self, method, target):
        for attempt in (0, 1):
            conn = self._upstream(fresh=attempt > 0)
            try:
                conn.request(method, target)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.getheaders(), data
            except (OSError, http.client.HTTPException):
                conn.close()
                if attempt:
                    raise

    def _forward_target(self):
        if not self.raw_query:
            return self.raw_path
        kept = [p for p in self.raw_query.split("&")
                if p and urllib.parse.unquote(p.partition("=")[0]) not in PRESIGN_PARAMS]
        return self.raw_path + ("?" + "&".join(kept) if kept else "")

    def _forward(self, body):
        srv = self.server
        target = self._forward_target()
        try:
            if self.command == "PUT" and "uploadId" not in self.raw_query and (
                    "If-None-Match" in self.headers or "If-Match" in self.headers):
                lock = srv.key_locks[hash(self.raw_path) % len(srv.key_locks)]
                with lock:
                    self._check_put_preconditions()
                    resp = self._upstream_request(target, body)
                    self._relay(resp)
            else:
                resp = self._upstream_request(target, body)
                self._relay(resp)
        except (OSError, http.client.HTTPException) as e:
            if getattr(self, "relay_started", False):
                self.close_connection = True
                self._record(None, "upstream-broken:%s" % type(e).__name__, True)
                return
            raise S3Error(500, "InternalError", "s3peer: the s3rver back end failed (%s: %s)" % (
                type(e).__name__, e))
        finally:
            if body["spool"] is not None:
                body["spool"].close()

    def _check_put_preconditions(self):
        status, headers, _ = self._upstream_simple("HEAD", self.raw_path)
        exists = status == 200
        if status not in (200, 404):
            raise S3Error(500, "InternalError", "s3peer: HEAD on s3rver for the precondition "
                          "answered %d" % status)
        inm = self.headers.get("If-None-Match")
        if inm is not None and exists:
            raise S3Error(412, "PreconditionFailed",
                          "At least one of the pre-conditions you specified did not hold",
                          extra=[("Condition", "If-None-Match")])
        im = self.headers.get("If-Match")
        if im is not None:
            if not exists:
                raise S3Error(404, "NoSuchKey", "The specified key does not exist.")
            etag = dict((k.lower(), v) for k, v in headers).get("etag", "")
            wanted = [t.strip() for t in im.split(",")]
            if "*" not in wanted and etag.strip('"') not in [w.strip('"') for w in wanted]:
                raise S3Error(412, "PreconditionFailed",
                              "At least one of the pre-conditions you specified did not hold",
                              extra=[("Condition", "If-Match")])

    def _upstream_request(self, target, body):
        cfg = self.server.config
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in NOT_FORWARDED]
        for attempt in (0, 1):
            conn = self._upstream(fresh=attempt > 0)
            try:
                conn.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", "%s:%d" % (cfg.upstream_host, cfg.upstream_port))
                for k, v in headers:
                    conn.putheader(k, v)
                if body["length"] is not None:
                    conn.putheader("Content-Length", str(body["length"]))
                conn.endheaders()
                spool = body["spool"]
                if spool is not None:
                    spool.seek(0)
                    while True:
                        data = spool.read(CHUNK)
                        if not data:
                            break
                        conn.send(data)
                return conn.getresponse()
            except (OSError, http.client.HTTPException):
                # Most likely s3rver closed an idle keep-alive connection (its timeout is 5 s):
                # reconnect once and resend.
                conn.close()
                if attempt:
                    raise

    def _relay(self, resp):
        status = resp.status
        self.send_response_only(status, resp.reason)
        self.relay_started = True
        self.send_header("Date", self._date_header())
        self.send_header("Server", self.server_version)
        have_rid = False
        for k, v in resp.getheaders():
            lk = k.lower()
            if lk in NOT_RELAYED:
                continue
            if lk == "x-amz-request-id":
                have_rid = True
            self.send_header(k, v)
        if not have_rid:
            self.send_header("x-amz-request-id", self.rid)
        clen = resp.getheader("Content-Length")
        outcome = "ok" if status < 400 else "upstream-%d" % status
        no_body = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        if no_body:
            resp.read()
            if clen is not None and status not in (204, 304):
                self.send_header("Content-Length", clen)
            self._record(status, outcome, True)
            self.end_headers()
        elif status >= 400 or clen is None or resp.getheader("Transfer-Encoding") is not None:
            data = resp.read()
            if status >= 400:
                # s3rver's errors lack <Resource> and <RequestId>; add them so every error the
                # client sees has the S3 shape.
                data = self._complete_error(data)
            self.send_header("Content-Length", str(len(data)))
            self.bytes_out = len(data)
            self._record(status, outcome, True)
            self.end_headers()
            self.wfile.write(data)
        else:
            self.send_header("Content-Length", clen)
            self.bytes_out = int(clen)
            self._record(status, outcome, True)
            self.end_headers()
            while True:
                data = resp.read(CHUNK)
                if not data:
                    break
                self.wfile.write(data)
        if resp.will_close:
            self.server.local.conn = None
        self.relay_started = False


    def _complete_error(self, data):
        end = data.rfind(b"</Error>")
        if end < 0 or b"<Error>" not in data:
            return data
        add = b""
        if b"<Resource>" not in data:
            add += b"<Resource>" + xml_escape(urllib.parse.unquote(self.raw_path)).encode() + \
                b"</Resource>"
        if b"<RequestId>" not in data:
            add += b"<RequestId>" + self.rid.encode() + b"</RequestId>"
        return data[:end] + add + data[end:]


class _ClientGone(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------

DEFAULT_USERS = [("tilekit-test-key", "tilekit-test-secret"),
                 ("tilekit-test-key2", "tilekit-test-secret2")]


def _hostport(text, what):
    host, sep, port = text.rpartition(":")
    if not sep:
        raise SystemExit("sigv4_verifier.py: %s must be HOST:PORT, got %r" % (what, text))
    host = host.strip("[]")
    try:
        loop = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loop = False
    if not loop:
        raise SystemExit("sigv4_verifier.py: %s must be a loopback address (127.0.0.0/8, ::1 or "
                         "localhost), got %r" % (what, host))
    return host, int(port)


def parse_args(argv):
    p = argparse.ArgumentParser(description="SigV4-verifying reverse proxy in front of s3rver "
                                "(tilekit S3/R2 test peer). See tests/s3peer/README.md.")
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (loopback; port 0 = free)")
    p.add_argument("--upstream", required=True, help="s3rver HOST:PORT (loopback)")
    p.add_argument("--port-file", help="write the bound port here once listening")
    p.add_argument("--user", action="append", metavar="ACCESS_KEY:SECRET",
                   help="credentials (repeatable); default: tilekit-test-key:tilekit-test-secret "
                   "and tilekit-test-key2:tilekit-test-secret2")
    p.add_argument("--regions", default="auto,us-east-1",
                   help="accepted credential-scope regions, first is the one named in errors "
                   "(default auto,us-east-1: R2 treats us-east-1 as an alias of auto)")
    p.add_argument("--max-skew", type=float, default=900.0, help="seconds (default 900 = 15 min)")
    p.add_argument("--clock-offset", type=float, default=0.0,
                   help="pretend the server clock is this many seconds ahead (skew-correction tests)")
    p.add_argument("--anon-get", action="store_true",
                   help="allow anonymous GET/HEAD (like a public bucket)")
    p.add_argument("--no-strict-path", dest="strict_path", action="store_false",
                   help="accept a path that is not strictly URI-encoded when the client signed it "
                   "verbatim (default: refuse with SignatureDoesNotMatch)")
    p.add_argument("--no-r2-header-checks", dest="r2_header_checks", action="store_false",
                   help="do not refuse x-amz-acl, x-amz-storage-class, x-amz-checksum-* etc.")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, help="bytes")
    p.add_argument("--spool-memory", type=int, default=8 * 1024 * 1024,
                   help="request bodies up to this size are kept in memory, larger ones in a "
                   "temporary file")
    g = p.add_argument_group("fault injection (before verification; rates are probabilities)")
    g.add_argument("--slowdown", type=float, default=0.0, help="rate of 503 SlowDown + Retry-After")
    g.add_argument("--internal-error", type=float, default=0.0, help="rate of 500 InternalError")
    g.add_argument("--reset", type=float, default=0.0, help="rate of connection reset (RST), "
                   "after reading the request, no response")
    g.add_argument("--drop", type=float, default=0.0, help="rate of clean close without response")
    g.add_argument("--stall", type=float, default=0.0, help="rate of stalls: no response for "
                   "--stall-seconds, then close")
    g.add_argument("--stall-seconds", type=float, default=30.0)
    g.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds on 503")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--always-fail", action="store_true", help="answer every request 503 SlowDown")
    g.add_argument("--fault-methods", default="",
                   help="comma-separated methods faults apply to (default: all)")
    p.add_argument("--log", help="append one line per request to this file")
    a = p.parse_args(argv)
    a.listen_host, a.listen_port = _hostport(a.listen, "--listen")
    a.upstream_host, a.upstream_port = _hostport(a.upstream, "--upstream")
    users = []
    for u in a.user or []:
        ak, sep, sk = u.partition(":")
        if not sep or not ak or not sk:
            raise SystemExit("sigv4_verifier.py: --user must be ACCESS_KEY:SECRET, got %r" % u)
        users.append((ak, sk))
    a.users = users or list(DEFAULT_USERS)
    a.regions = [r for r in a.regions.split(",")]
    a.rates = {"slowdown": a.slowdown, "internal": a.internal_error, "reset": a.reset,
               "drop": a.drop, "stall": a.stall}
    a.fault_methods = [m for m in a.fault_methods.split(",") if m]
    return a


def main(argv=None):
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    family = socket.AF_INET6 if ":" in cfg.listen_host else socket.AF_INET
    PeerServer.address_family = family
    try:
        server = PeerServer((cfg.listen_host, cfg.listen_port), cfg)
    except ValueError as e:
        raise SystemExit("sigv4_verifier.py: %s" % e)
    port = server.server_address[1]
    if cfg.port_file:
        tmp = cfg.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, cfg.port_file)
    sys.stderr.write("sigv4_verifier: listening on %s:%d -> s3rver %s:%d (python %s, botocore %s)\n"
                     % (cfg.listen_host, port, cfg.upstream_host, cfg.upstream_port,
                        sys.version.split()[0], botocore.__version__))
    sys.stderr.flush()

    def _stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

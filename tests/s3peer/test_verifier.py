#!/usr/bin/env python3
"""Proves the S3/R2 test peer (sigv4_verifier.py in front of s3rver) before anyone trusts it.

    python3 tests/s3peer/test_verifier.py          # starts its own peers with start.sh
    S3PEER_ENDPOINT=... python3 tests/s3peer/test_verifier.py   # main tests against a running peer

With S3PEER_ENDPOINT set, the main tests use that peer (S3PEER_BUCKET, S3PEER_ACCESS_KEY,
S3PEER_SECRET_KEY, S3PEER_ACCESS_KEY2/SECRET_KEY2 when present; it must run with the default
options: no faults, no clock offset, strict checks on). The fault-injection, always-fail and
clock-offset tests always start their own peers with start.sh (S3PEER_HOME is honoured).

Every rejection test asserts the HTTP status AND the S3 error code. Needs botocore: if this
python lacks it, the script re-runs itself with one that has it (S3PEER_PYTHON, python3,
/usr/bin/python3), or says how to get it (Debian 12: apt-get install python3-botocore).
"""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _ensure_botocore():
    try:
        import botocore  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("S3PEER_TEST_REEXEC"):
        sys.exit("test_verifier.py: %s cannot import botocore" % sys.executable)
    candidates = [os.environ.get("S3PEER_PYTHON"), shutil.which("python3"), "/usr/bin/python3"]
    for c in candidates:
        if not c or not os.path.exists(c) or os.path.realpath(c) == os.path.realpath(sys.executable):
            continue
        if subprocess.run([c, "-c", "import botocore"], stderr=subprocess.DEVNULL).returncode == 0:
            sys.stderr.write("test_verifier.py: %s has no botocore; re-running with %s\n"
                             % (sys.executable, c))
            os.environ["S3PEER_TEST_REEXEC"] = "1"
            os.execv(c, [c, os.path.abspath(__file__)] + sys.argv[1:])
    sys.exit("test_verifier.py: no python3 with botocore found. Debian 12: apt-get install "
             "python3-botocore (then /usr/bin/python3 has it); or pip install botocore; or set "
             "S3PEER_PYTHON.")


_ensure_botocore()

import datetime  # noqa: E402
import hashlib  # noqa: E402
import hmac  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
import unittest  # noqa: E402
import urllib.parse  # noqa: E402
import uuid  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402

import botocore  # noqa: E402
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

sys.path.insert(0, HERE)
sys.dont_write_bytecode = True      # no __pycache__ in the source tree
import sigv4_verifier  # noqa: E402

AMZ = "%Y%m%dT%H%M%SZ"
RUN = uuid.uuid4().hex[:8]          # keys of this run live under t-<RUN>/


# ----------------------------------------------------------------------------------------------
# Peer handling
# ----------------------------------------------------------------------------------------------

class Peer:
    def __init__(self, env):
        self.env = env
        self.endpoint = env["S3PEER_ENDPOINT"]
        u = urllib.parse.urlsplit(self.endpoint)
        self.host, self.port = u.hostname, u.port
        self.netloc = u.netloc
        self.bucket = env.get("S3PEER_BUCKET", "tiles")
        self.ak = env["S3PEER_ACCESS_KEY"]
        self.sk = env["S3PEER_SECRET_KEY"]
        self.ak2 = env.get("S3PEER_ACCESS_KEY2")
        self.sk2 = env.get("S3PEER_SECRET_KEY2")
        self.region = env.get("S3PEER_REGION", "auto")
        self.dir = env.get("S3PEER_DIR")
        self.started = False

    @classmethod
    def start(cls, *args):
        out = subprocess.run(["bash", os.path.join(HERE, "start.sh"), "--ttl", "900"] + list(args),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if out.returncode != 0:
            raise RuntimeError("start.sh %s failed:\n%s" % (" ".join(args), out.stderr))
        env = {}
        for line in out.stdout.splitlines():
            m = re.match(r"^export (S3PEER_[A-Z0-9_]+)=(.*)$", line)
            if m:
                env[m.group(1)] = shlex.split(m.group(2))[0] if m.group(2) else ""
        peer = cls(env)
        peer.started = True
        return peer

    def stop(self):
        if self.started:
            subprocess.run(["bash", os.path.join(HERE, "stop.sh"), "-d", self.dir],
                           stderr=subprocess.DEVNULL, check=False)
            self.started = False

    def control(self, method, what, query=""):
        c = http.client.HTTPConnection(self.host, self.port, timeout=10)
        c.request(method, "/_s3peer/" + what + ("?" + query if query else ""))
        r = c.getresponse()
        doc = json.loads(r.read() or b"null")
        c.close()
        return r.status, doc


PEER = None


def setUpModule():
    global PEER
    if os.environ.get("S3PEER_ENDPOINT"):
        PEER = Peer(dict(os.environ))
    else:
        PEER = Peer.start()


def tearDownModule():
    if PEER is not None:
        PEER.stop()


# ----------------------------------------------------------------------------------------------
# Request helpers: exact control over what goes on the wire
# ----------------------------------------------------------------------------------------------

class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def code(self):
        try:
            return ET.fromstring(self.body).findtext("Code")
        except ET.ParseError:
            return None

    def field(self, tag):
        try:
            return ET.fromstring(self.body).findtext(tag)
        except ET.ParseError:
            return None

    def __repr__(self):
        return "Resp(%d, %r)" % (self.status, self.body[:600])


def send(peer, method, target, headers=(), body=b"", conn=None):
    """Send exactly this request line and these headers (plus Host if absent)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(peer.host, peer.port, timeout=30)
    conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
    names = {k.lower() for k, _ in headers}
    if "host" not in names:
        conn.putheader("Host", peer.netloc)
    for k, v in headers:
        conn.putheader(k, v)
    if body or method in ("PUT", "POST"):
        if "content-length" not in names:
            conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    if body:
        conn.send(body)
    r = conn.getresponse()
    data = r.read()
    resp = Resp(r.status, r.getheaders(), data)
    if own:
        conn.close()
    return resp


def enc(key):
    """Strict S3 key encoding (what the C++ client must do)."""
    return urllib.parse.quote(key.encode("utf-8"), safe="/~")


class _UnsignedPayloadAuth(S3SigV4Auth):
    # botocore signs the payload on plain http; the C++ client may use UNSIGNED-PAYLOAD
    def _should_sha256_sign_payload(self, request):
        return False


def botocore_headers(peer, method, path, body=b"", headers=None, ak=None, sk=None, region=None,
                     query="", timestamp=None, unsigned=False):
    """Sign with botocore's S3SigV4Auth; returns (target, headers list).

    timestamp: sign as of this datetime (botocore's add_auth uses 'now'; for other times the same
    steps are run with a fixed timestamp)."""
    url = peer.endpoint + path + ("?" + query if query else "")
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    cls = _UnsignedPayloadAuth if unsigned else S3SigV4Auth
    signer = cls(Credentials(ak or peer.ak, sk or peer.sk), "s3", region or peer.region)
    if timestamp is None:
        signer.add_auth(req)
    else:
        req.context["timestamp"] = timestamp.strftime(AMZ)
        signer._modify_request_before_signing(req)
        creq = signer.canonical_request(req)
        sts = signer.string_to_sign(req, creq)
        signer._inject_signature_to_request(req, signer.signature(sts, req))
    hdrs = [(k, v) for k, v in req.headers.items()]
    return path + ("?" + query if query else ""), hdrs


def presign(peer, method, path, expires=300, ak=None, sk=None, timestamp=None, query=""):
    url = peer.endpoint + path + ("?" + query if query else "")
    req = AWSRequest(method=method, url=url)
    signer = S3SigV4QueryAuth(Credentials(ak or peer.ak, sk or peer.sk), "s3", peer.region,
                              expires=expires)
    if timestamp is None:
        signer.add_auth(req)
    else:
        req.context["timestamp"] = timestamp.strftime(AMZ)
        signer._modify_request_before_signing(req)
        creq = signer.canonical_request(req)
        sts = signer.string_to_sign(req, creq)
        signer._inject_signature_to_request(req, signer.signature(sts, req))
    u = urllib.parse.urlsplit(req.url)
    return u.path + "?" + u.query


def stdlib_authorization(method, path, canon_query, headers, payload_hash, ak, sk, region,
                         amz_date, service="s3"):
    """An independent (non-botocore) SigV4 signer, to cross-check the verifier."""
    names = sorted(headers)
    creq = "\n".join([method, path, canon_query,
                      "".join("%s:%s\n" % (n, " ".join(headers[n].split())) for n in names),
                      ";".join(names), payload_hash])
    scope = "%s/%s/%s/aws4_request" % (amz_date[:8], region, service)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + sk).encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    return "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        ak, scope, ";".join(names), sig)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class PeerCase(unittest.TestCase):
    peer = None

    @property
    def p(self):
        return self.peer or PEER

    def key(self, name):
        return "t-%s/%s/%s" % (RUN, self.id().rsplit(".", 1)[-1], name)

    def path(self, key):
        return "/%s/%s" % (self.p.bucket, enc(key))

    def put(self, key, body, headers=None, **kw):
        target, hdrs = botocore_headers(self.p, "PUT", self.path(key), body, headers, **kw)
        return send(self.p, "PUT", target, hdrs, body)

    def get(self, key, method="GET", **kw):
        target, hdrs = botocore_headers(self.p, method, self.path(key), **kw)
        return send(self.p, method, target, hdrs)

    def assertOk(self, r, status=200):
        self.assertEqual(r.status, status, r)

    def assertS3Error(self, r, status, code):
        self.assertEqual((r.status, r.code), (status, code), r)
        root = ET.fromstring(r.body)
        self.assertEqual(root.tag, "Error")
        for tag in ("Code", "Message", "Resource", "RequestId"):
            self.assertIsNotNone(root.find(tag), "missing <%s> in %r" % (tag, r.body))
        self.assertEqual(r.header("Content-Type"), "application/xml")

    def assertAbsent(self, key):
        r = self.get(key, "HEAD")
        self.assertEqual(r.status, 404, r)


# ----------------------------------------------------------------------------------------------
# The signature core against AWS's published S3 examples (no network)
# ----------------------------------------------------------------------------------------------

AWS_DOC_CREDS = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
EMPTY = hashlib.sha256(b"").hexdigest()
# From the AWS S3 API reference pages 'sig-v4-header-based-auth' and 'sigv4-query-string-auth'
# (examplebucket, 20130524T000000Z, us-east-1); the expected signatures are printed there.
AWS_DOC_EXAMPLES = [
    ("GET", "/test.txt", "", {"host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9",
                              "x-amz-content-sha256": EMPTY, "x-amz-date": "20130524T000000Z"},
     EMPTY, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
    ("PUT", "/test%24file.text", "", {
        "date": "Fri, 24 May 2013 00:00:00 GMT", "host": "examplebucket.s3.amazonaws.com",
        "x-amz-content-sha256": "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
        "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
     "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
     "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
    ("GET", "/", "lifecycle", {"host": "examplebucket.s3.amazonaws.com",
                               "x-amz-content-sha256": EMPTY, "x-amz-date": "20130524T000000Z"},
     EMPTY, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
    ("GET", "/", "max-keys=2&prefix=J", {"host": "examplebucket.s3.amazonaws.com",
                                         "x-amz-content-sha256": EMPTY,
                                         "x-amz-date": "20130524T000000Z"},
     EMPTY, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
    ("GET", "/test.txt",
     "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
     "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&"
     "X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957"
     "d157751f604d404", {"host": "examplebucket.s3.amazonaws.com"}, "UNSIGNED-PAYLOAD",
     "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"),
]


class SignatureCore(unittest.TestCase):
    def test_aws_documented_s3_examples(self):
        cache = sigv4_verifier.SignerCache([AWS_DOC_CREDS])
        signer = cache.signer(AWS_DOC_CREDS[0], "us-east-1")
        for method, path, query, headers, payload, expected in AWS_DOC_EXAMPLES:
            with self.subTest(method=method, path=path, query=query[:20]):
                sig, creq, sts = sigv4_verifier.compute_signature(
                    signer, method, path, query, [(n, [headers[n]]) for n in sorted(headers)],
                    "20130524T000000Z", payload, ("X-Amz-Signature",))
                self.assertEqual(sig, expected, creq)

    def test_canonical_query_is_strict(self):
        cq = sigv4_verifier.canonical_query
        self.assertEqual(cq("prefix=a/b"), "prefix=a%2Fb")
        self.assertEqual(cq("prefix=a%2fb"), "prefix=a%2Fb")
        self.assertEqual(cq("uploads"), "uploads=")
        self.assertEqual(cq("k=a+b"), "k=a%20b")          # raw '+' is a space
        self.assertEqual(cq("k=a%2Bb"), "k=a%2Bb")
        self.assertEqual(cq("k=%7E!"), "k=~%21")

    def test_strict_path(self):
        sp = sigv4_verifier.strict_path
        for good in ("/tiles/a%20b%2Bc%21%27%28%29%2A", "/tiles/%C3%BC/x.png", "/tiles/a~b-c_d.e"):
            self.assertEqual(sp(good), good)
        self.assertEqual(sp("/tiles/a+b"), "/tiles/a%2Bb")
        self.assertEqual(sp("/tiles/a!b"), "/tiles/a%21b")
        self.assertEqual(sp("/tiles/a%2bb"), "/tiles/a%2Bb")


# ----------------------------------------------------------------------------------------------
# Good requests
# ----------------------------------------------------------------------------------------------

class GoodRequests(PeerCase):
    def test_put_get_head_delete_round_trip(self):
        key = self.key("tile.png")
        body = b"\x89PNG\r\n\x1a\n" + os.urandom(20000)
        r = self.put(key, body, {"Content-Type": "image/png", "Cache-Control": "max-age=60"})
        self.assertOk(r)
        self.assertEqual(r.header("ETag"), '"%s"' % hashlib.md5(body).hexdigest())
        r = self.get(key)
        self.assertOk(r)
        self.assertEqual(r.body, body)
        self.assertEqual(r.header("Content-Type"), "image/png")
        r = self.get(key, "HEAD")
        self.assertOk(r)
        self.assertEqual(r.header("Content-Length"), str(len(body)))
        self.assertEqual(r.body, b"")
        r = self.get(key, "DELETE")
        self.assertOk(r, 204)
        r = self.get(key)
        self.assertS3Error(r, 404, "NoSuchKey")

    def test_unsigned_payload_put(self):
        key = self.key("u.bin")
        r = self.put(key, b"unsigned body", unsigned=True)
        self.assertOk(r)
        self.assertEqual(self.get(key).body, b"unsigned body")

    def test_empty_body_put(self):
        key = self.key("empty")
        self.assertOk(self.put(key, b""))
        r = self.get(key)
        self.assertOk(r)
        self.assertEqual(r.body, b"")

    def test_second_user(self):
        if not self.p.ak2:
            self.skipTest("peer has no second user")
        key = self.key("user2")
        self.assertOk(self.put(key, b"two", ak=self.p.ak2, sk=self.p.sk2))
        self.assertEqual(self.get(key, ak=self.p.ak2, sk=self.p.sk2).body, b"two")

    def test_region_us_east_1_is_an_alias_of_auto(self):
        key = self.key("alias")
        self.assertOk(self.put(key, b"x", region="us-east-1"))

    def test_independent_stdlib_signer_is_accepted(self):
        key = self.key("stdlib.bin")
        body = b"signed without botocore"
        amz = utcnow().strftime(AMZ)
        h = {"host": self.p.netloc, "x-amz-date": amz,
             "x-amz-content-sha256": hashlib.sha256(body).hexdigest(), "content-type": "a/b"}
        authz = stdlib_authorization("PUT", self.path(key), "", h, h["x-amz-content-sha256"],
                                     self.p.ak, self.p.sk, self.p.region, amz)
        r = send(self.p, "PUT", self.path(key), list(h.items()) + [("Authorization", authz)], body)
        self.assertOk(r)
        self.assertEqual(self.get(key).body, body)

    def test_content_md5(self):
        import base64
        key = self.key("md5")
        body = b"md5 checked"
        good = base64.b64encode(hashlib.md5(body).digest()).decode()
        self.assertOk(self.put(key, body, {"Content-MD5": good}))
        bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
        self.assertS3Error(self.put(self.key("md5-bad"), body, {"Content-MD5": bad}),
                           400, "BadDigest")
        self.assertS3Error(self.put(self.key("md5-inv"), body, {"Content-MD5": "nope"}),
                           400, "InvalidDigest")
        self.assertAbsent(self.key("md5-bad"))

    def test_special_keys_round_trip(self):
        keys = ["sp ace/a b.png", "plus/a+b+.png", "+lead", "marks/!'()*.png",
                "utf8/\u00fc\u00df\u6f22\u5b57/\U0001F5FA.png", "deep/" + "/".join("d%d" % i for i in range(40)) + "/t.png",
                "reserved/$&,:;=@[]#?%.png", "tilde~dash-under_dot./x"]
        for name in keys:
            with self.subTest(key=name):
                key = self.key(name)
                body = name.encode() + os.urandom(64)
                self.assertOk(self.put(key, body))
                r = self.get(key)
                self.assertOk(r)
                self.assertEqual(r.body, body)
                r = send(self.p, "GET", presign(self.p, "GET", self.path(key)))
                self.assertOk(r)
                self.assertEqual(r.body, body)
                # the stored name is the decoded key, as listed by the back end
                q = "list-type=2&prefix=" + urllib.parse.quote(key, safe="-_.~")
                target, hdrs = botocore_headers(self.p, "GET", "/" + self.p.bucket, query=q)
                r = send(self.p, "GET", target, hdrs)
                self.assertOk(r)
                listed = [e.text for e in ET.fromstring(r.body).iter()
                          if e.tag.endswith("Key") and e.text]
                self.assertEqual(listed, [key])

    def test_list_objects_v2_pagination(self):
        # s3rver's continuation tokens need DES: proves node runs with --openssl-legacy-provider
        prefix = self.key("page/")
        for i in range(5):
            self.assertOk(self.put(prefix + "k%d" % i, b"%d" % i))
        seen, token = [], None
        for _ in range(5):
            q = "list-type=2&max-keys=2&prefix=" + urllib.parse.quote(prefix, safe="-_.~")
            if token:
                q += "&continuation-token=" + urllib.parse.quote(token, safe="-_.~")
            target, hdrs = botocore_headers(self.p, "GET", "/" + self.p.bucket, query=q)
            r = send(self.p, "GET", target, hdrs)
            self.assertOk(r)
            root = ET.fromstring(r.body)
            ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            seen += [k.text for k in root.iter(ns + "Key")]
            token = root.findtext(ns + "NextContinuationToken")
            if root.findtext(ns + "IsTruncated") != "true":
                break
        self.assertEqual(seen, [prefix + "k%d" % i for i in range(5)])

    def test_presigned_put_then_get(self):
        key = self.key("presigned-put.png")
        body = os.urandom(3000)
        target = presign(self.p, "PUT", self.path(key))
        r = send(self.p, "PUT", target, [("Content-Type", "image/png")], body)
        self.assertOk(r)
        r = send(self.p, "GET", presign(self.p, "GET", self.path(key)))
        self.assertOk(r)
        self.assertEqual(r.body, body)
        r = send(self.p, "HEAD", presign(self.p, "HEAD", self.path(key)))
        self.assertOk(r)
        self.assertEqual(r.header("Content-Length"), str(len(body)))

    def test_keep_alive_across_good_and_rejected_requests(self):
        conn = http.client.HTTPConnection(self.p.host, self.p.port, timeout=30)
        key = self.key("ka")
        socks = []
        for i in range(3):
            target, hdrs = botocore_headers(self.p, "PUT", self.path(key), b"v%d" % i)
            self.assertOk(send(self.p, "PUT", target, hdrs, b"v%d" % i, conn=conn))
            socks.append(conn.sock)
            # rejected with a body: the body is drained, the connection stays usable
            target, hdrs = botocore_headers(self.p, "PUT", self.path(key), b"x" * 5000)
            hdrs = [(k, v[:-1] + ("0" if v[-1] != "0" else "1")) if k == "Authorization" else (k, v)
                    for k, v in hdrs]
            self.assertS3Error(send(self.p, "PUT", target, hdrs, b"x" * 5000, conn=conn),
                               403, "SignatureDoesNotMatch")
            socks.append(conn.sock)
            self.assertS3Error(send(self.p, "PUT", self.path(key), [], b"anon", conn=conn),
                               403, "AccessDenied")
            socks.append(conn.sock)
            target, hdrs = botocore_headers(self.p, "GET", self.path(key))
            r = send(self.p, "GET", target, hdrs, conn=conn)
            self.assertEqual(r.body, b"v%d" % i)
            socks.append(conn.sock)
        self.assertTrue(all(s is socks[0] for s in socks), "the connection was not reused")
        conn.close()

    def test_expect_100_continue(self):
        key = self.key("expect")
        body = os.urandom(100000)
        target, hdrs = botocore_headers(self.p, "PUT", self.path(key), body)
        key_ok = key

        def raw(hdrs, send_body):
            s = socket.create_connection((self.p.host, self.p.port), timeout=10)
            head = "PUT %s HTTP/1.1\r\nHost: %s\r\n" % (target, self.p.netloc)
            head += "".join("%s: %s\r\n" % kv for kv in hdrs)
            head += "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body)
            s.sendall(head.encode())
            got = s.recv(65536)
            if got.startswith(b"HTTP/1.1 100 Continue\r\n\r\n") and send_body:
                s.sendall(body)
                while got.count(b"\r\n\r\n") < 2:
                    more = s.recv(65536)
                    if not more:
                        break
                    got += more
            else:
                while True:            # a rejection closes the connection: read to EOF
                    more = s.recv(65536)
                    if not more:
                        break
                    got += more
            s.close()
            return got

        out = raw(hdrs, True)
        self.assertTrue(out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200"), out[:200])
        self.assertEqual(self.get(key_ok).body, body)
        self.assertOk(self.get(key_ok, "DELETE"), 204)
        out = raw(flip_signature(hdrs), False)
        self.assertTrue(out.startswith(b"HTTP/1.1 403"), out[:200])   # no 100 before the verdict
        self.assertIn(b"<Code>SignatureDoesNotMatch</Code>", out)
        self.assertIn(b"Connection: close", out)
        self.assertAbsent(key)

    def test_if_none_match_star(self):
        key = self.key("inm")
        self.assertOk(self.put(key, b"first", {"If-None-Match": "*"}))
        r = self.put(key, b"second", {"If-None-Match": "*"})
        self.assertS3Error(r, 412, "PreconditionFailed")
        self.assertEqual(self.get(key).body, b"first")
        self.assertOk(self.put(key, b"third"))        # without the condition: overwrite
        self.assertEqual(self.get(key).body, b"third")

    def test_if_match(self):
        key = self.key("im")
        r = self.put(key, b"one")
        etag = r.header("ETag")
        self.assertOk(self.put(key, b"two", {"If-Match": etag}))
        self.assertS3Error(self.put(key, b"three", {"If-Match": etag}), 412, "PreconditionFailed")
        self.assertS3Error(self.put(self.key("im-missing"), b"x", {"If-Match": etag}),
                           404, "NoSuchKey")
        self.assertEqual(self.get(key).body, b"two")

    def test_control_endpoints(self):
        st, doc = self.p.control("GET", "health")
        self.assertEqual((st, doc["ok"], doc["upstream"]), (200, True, True))
        st, doc = self.p.control("GET", "stats")
        self.assertEqual(st, 200)
        self.assertGreater(doc["requests"], 0)
        self.assertIn("faults", doc)


# ----------------------------------------------------------------------------------------------
# Rejections (each asserts status and code; nothing reaches s3rver)
# ----------------------------------------------------------------------------------------------

def flip_signature(hdrs):
    out = []
    for k, v in hdrs:
        if k == "Authorization":
            i = v.rindex("Signature=") + len("Signature=")
            c = v[i]
            v = v[:i] + ("1" if c != "1" else "2") + v[i + 1:]
        out.append((k, v))
    return out


class Rejections(PeerCase):
    def test_wrong_signature(self):
        key = self.key("wrongsig")
        target, hdrs = botocore_headers(self.p, "PUT", self.path(key), b"body")
        r = send(self.p, "PUT", target, flip_signature(hdrs), b"body")
        self.assertS3Error(r, 403, "SignatureDoesNotMatch")
        self.assertIn("PUT\n" + self.path(key), r.field("CanonicalRequest"))
        self.assertTrue(r.field("StringToSign").startswith("AWS4-HMAC-SHA256\n"))
        self.assertAbsent(key)

    def test_wrong_secret(self):
        key = self.key("wrongsecret")
        r = self.put(key, b"body", sk="not-the-secret")
        self.assertS3Error(r, 403, "SignatureDoesNotMatch")
        self.assertAbsent(key)

    def test_unknown_access_key(self):
        r = self.put(self.key("unknown"), b"body", ak="AKIDUNKNOWN", sk="whatever")
        self.assertS3Error(r, 403, "InvalidAccessKeyId")
        self.assertEqual(r.field("AWSAccessKeyId"), "AKIDUNKNOWN")

    def test_access_key_of_one_user_with_secret_of_the_other(self):
        if not self.p.ak2:
            self.skipTest("peer has no second user")
        r = self.put(self.key("mixed"), b"body", ak=self.p.ak, sk=self.p.sk2)
        self.assertS3Error(r, 403, "SignatureDoesNotMatch")

    def test_signed_for_key_a_sent_to_key_b(self):
        a, b = self.key("a.png"), self.key("b.png")
        target, hdrs = botocore_headers(self.p, "PUT", self.path(a), b"body")
        r = send(self.p, "PUT", self.path(b), hdrs, b"body")
        self.assertS3Error(r, 403, "SignatureDoesNotMatch")
        self.assertAbsent(a)
        self.assertAbsent(b)

    def test_tampered_body(self):
        key = self.key("tampered")
        target, hdrs = botocore_headers(self.p, "PUT", self.path(key), b"original body")
        r = send(self.p, "PUT", target, hdrs, b"tampered body")
        self.assertS3Error(r, 400, "XAmzContentSHA256Mismatch")
        self.assertEqual(r.field("S3ComputedContentSHA256"),
                         hashlib.sha256(b"tampered body").hexdigest())
        self.assertAbsent(key)

    def test_signed_hash_differs_from_body(self):
        key = self.key("hashlie")
        wrong = hashlib.sha256(b"something else").hexdigest()
        # a correctly signed request whose declared payload hash is not the body's
        amz = utcnow().strftime(AMZ)
        h = {"host": self.p.netloc, "x-amz-date": amz, "x-amz-content-sha256": wrong}
        authz = stdlib_authorization("PUT", self.path(key), "", h, wrong, self.p.ak, self.p.sk,
                                     self.p.region, amz)
        r = send(self.p, "PUT", self.path(key), list(h.items()) + [("Authorization", authz)],
                 b"body")
        self.assertS3Error(r, 400, "XAmzContentSHA256Mismatch")
        self.assertAbsent(key)

    def test_wrong_region(self):
        r = self.put(self.key("region"), b"body", region="eu-west-9")
        self.assertS3Error(r, 400, "AuthorizationHeaderMalformed")
        self.assertEqual(r.field("Region"), "auto")

    def test_wrong_service(self):
        amz = utcnow().strftime(AMZ)
        key = self.key("svc")
        h = {"host": self.p.netloc, "x-amz-date": amz, "x-amz-content-sha256": EMPTY}
        authz = stdlib_authorization("PUT", self.path(key), "", h, EMPTY, self.p.ak, self.p.sk,
                                     self.p.region, amz, service="execute-api")
        r = send(self.p, "PUT", self.path(key), list(h.items()) + [("Authorization", authz)])
        self.assertS3Error(r, 400, "AuthorizationHeaderMalformed")

    def test_stale_date(self):
        r = self.put(self.key("stale"), b"body",
                     timestamp=utcnow() - datetime.timedelta(minutes=20))
        self.assertS3Error(r, 403, "RequestTimeTooSkewed")
        self.assertIsNotNone(r.field("ServerTime"))
        self.assertIsNotNone(r.field("RequestTime"))
        date = email_date(r.header("Date"))
        self.assertLess(abs(date - time.time()), 60)

    def test_future_date(self):
        r = self.put(self.key("future"), b"body",
                     timestamp=utcnow() + datetime.timedelta(minutes=16))
        self.assertS3Error(r, 403, "RequestTimeTooSkewed")

    def test_date_within_skew_is_accepted(self):
        self.assertOk(self.put(self.key("skew-ok"), b"body",
                               timestamp=utcnow() - datetime.timedelta(minutes=14)))

    def test_scope_date_differs_from_x_amz_date(self):
        amz = utcnow().strftime(AMZ)
        key = self.key("scope")
        h = {"host": self.p.netloc, "x-amz-date": amz, "x-amz-content-sha256": EMPTY}
        authz = stdlib_authorization("PUT", self.path(key), "", h, EMPTY, self.p.ak, self.p.sk,
                                     self.p.region, amz)
        authz = authz.replace("/%s/" % amz[:8], "/19990101/")
        r = send(self.p, "PUT", self.path(key), list(h.items()) + [("Authorization", authz)])
        self.assertS3Error(r, 400, "AuthorizationHeaderMalformed")

    def test_missing_content_sha256_header(self):
        amz = utcnow().strftime(AMZ)
        key = self.key("nohash")
        h = {"host": self.p.netloc, "x-amz-date": amz}
        authz = stdlib_authorization("PUT", self.path(key), "", h, EMPTY, self.p.ak, self.p.sk,
                                     self.p.region, amz)
        r = send(self.p, "PUT", self.path(key), list(h.items()) + [("Authorization", authz)])
        self.assertS3Error(r, 400, "InvalidRequest")
        self.assertIn("x-amz-content-sha256", r.field("Message"))

    def test_content_sha256_present_but_not_signed(self):
        amz = utcnow().strftime(AMZ)
        key = self.key("hashunsigned")
        h = {"host": self.p.netloc, "x-amz-date": amz}
        authz = stdlib_authorization("PUT", self.path(key), "", h, EMPTY, self.p.ak, self.p.sk,
                                     self.p.region, amz)
        r = send(self.p, "PUT", self.path(key), list(h.items()) +
                 [("x-amz-content-sha256", EMPTY), ("Authorization", authz)])
        self.assertS3Error(r, 400, "AuthorizationHeaderMalformed")

    def test_streaming_payload_not_implemented(self):
        key = self.key("chunked")
        amz = utcnow().strftime(AMZ)
        v = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        h = {"host": self.p.netloc, "x-amz-date": amz, "x-amz-content-sha256": v}
        authz = stdlib_authorization("PUT", self.path(key), "", h, v, self.p.ak, self.p.sk,
                                     self.p.region, amz)
        r = send(self.p, "PUT", self.path(key), list(h.items()) + [("Authorization", authz)], b"x")
        self.assertS3Error(r, 501, "NotImplemented")

    def test_anonymous_put(self):
        key = self.key("anon")
        r = send(self.p, "PUT", self.path(key), [], b"anonymous")
        self.assertS3Error(r, 403, "AccessDenied")
        self.assertAbsent(key)

    def test_anonymous_get(self):
        key = self.key("anon-get")
        self.assertOk(self.put(key, b"private"))
        r = send(self.p, "GET", self.path(key))
        self.assertS3Error(r, 403, "AccessDenied")
        r = send(self.p, "GET", "/" + self.p.bucket + "?list-type=2")
        self.assertS3Error(r, 403, "AccessDenied")

    def test_raw_plus_sent_when_percent_2b_was_signed(self):
        key = self.key("a+b.png")
        signed = self.path(key)
        self.assertIn("%2B", signed)
        target, hdrs = botocore_headers(self.p, "PUT", signed, b"body")
        r = send(self.p, "PUT", signed.replace("%2B", "+"), hdrs, b"body")
        self.assertS3Error(r, 403, "SignatureDoesNotMatch")
        self.assertAbsent(key)

    def test_raw_plus_signed_and_sent_is_not_strict(self):
        key = self.key("c+d.png")
        raw = self.path(key).replace("%2B", "+")
        target, hdrs = botocore_headers(self.p, "PUT", raw, b"body")   # signs the raw path
        r = send(self.p, "PUT", raw, hdrs, b"body")
        self.assertS3Error(r, 403, "SignatureDoesNotMatch")
        self.assertEqual(r.field("CanonicalURIExpected"), self.path(key))

    def test_loosely_encoded_paths_are_refused(self):
        # signed verbatim and sent verbatim, but not in the strict form S3/R2 canonicalise to
        cases = [("bang!", "%21", "!"), ("paren(1)", "%28", "("), ("star*", "%2A", "*"),
                 ("quote'", "%27", "'"), ("\u00fc-lower-hex", "%C3%BC", "%c3%bc"),
                 ("tilde~", "~", "%7E")]
        for name, strict, loose in cases:
            with self.subTest(name=name):
                key = self.key(name)
                strict_path = self.path(key)
                self.assertIn(strict, strict_path)
                path = strict_path.replace(strict, loose)
                target, hdrs = botocore_headers(self.p, "PUT", path, b"x")
                r = send(self.p, "PUT", path, hdrs, b"x")
                self.assertS3Error(r, 403, "SignatureDoesNotMatch")
                self.assertEqual(r.field("CanonicalURIExpected"), strict_path)
                self.assertAbsent(key)

    def test_query_signed_unencoded(self):
        # curl 7.88 --aws-sigv4 signs 'prefix=a/' verbatim; S3 canonicalises to 'prefix=a%2F'
        target, hdrs = botocore_headers(self.p, "GET", "/" + self.p.bucket,
                                        query="list-type=2&prefix=a/")
        r = send(self.p, "GET", target, hdrs)
        self.assertS3Error(r, 403, "SignatureDoesNotMatch")
        self.assertIn("prefix=a%2F", r.field("CanonicalRequest"))
        target, hdrs = botocore_headers(self.p, "GET", "/" + self.p.bucket,
                                        query="list-type=2&prefix=a%2F")
        self.assertOk(send(self.p, "GET", target, hdrs))

    def test_r2_refused_headers(self):
        for h, v in [("x-amz-acl", "public-read"), ("x-amz-acl", "private"),
                     ("x-amz-storage-class", "STANDARD"), ("x-amz-checksum-crc32", "AAAAAA=="),
                     ("x-amz-sdk-checksum-algorithm", "CRC32"), ("x-amz-grant-read", "id=1"),
                     ("x-amz-tagging", "a=b")]:
            with self.subTest(header=h, value=v):
                key = self.key(h)
                r = self.put(key, b"body", {h: v})
                self.assertS3Error(r, 501, "NotImplemented")
                self.assertIn(h, r.field("Message"))
                self.assertAbsent(key)

    def test_missing_content_length_and_chunked(self):
        key = self.key("nolen")
        target, hdrs = botocore_headers(self.p, "PUT", self.path(key), b"")
        conn = http.client.HTTPConnection(self.p.host, self.p.port, timeout=10)
        conn.putrequest("PUT", target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", self.p.netloc)
        for k, v in hdrs:
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        self.assertS3Error(Resp(r.status, r.getheaders(), r.read()), 411, "MissingContentLength")
        conn.close()
        conn = http.client.HTTPConnection(self.p.host, self.p.port, timeout=10)
        conn.putrequest("PUT", target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", self.p.netloc)
        for k, v in hdrs:
            conn.putheader(k, v)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        conn.send(b"0\r\n\r\n")
        r = conn.getresponse()
        self.assertS3Error(Resp(r.status, r.getheaders(), r.read()), 501, "NotImplemented")
        conn.close()

    def test_signature_v2_refused(self):
        r = send(self.p, "GET", self.path(self.key("v2")),
                 [("Authorization", "AWS %s:c2lnbmF0dXJl" % self.p.ak),
                  ("Date", "Thu, 01 Jan 2026 00:00:00 GMT")])
        self.assertS3Error(r, 400, "InvalidRequest")


def email_date(text):
    import email.utils
    return email.utils.parsedate_to_datetime(text).timestamp()


class Presigned(PeerCase):
    def setUp(self):
        self.k = self.key("obj.png")
        self.body = os.urandom(1234)
        self.assertOk(self.put(self.k, self.body))

    def test_correct(self):
        r = send(self.p, "GET", presign(self.p, "GET", self.path(self.k)))
        self.assertOk(r)
        self.assertEqual(r.body, self.body)

    def test_tampered_signature(self):
        t = presign(self.p, "GET", self.path(self.k))
        i = t.index("X-Amz-Signature=") + len("X-Amz-Signature=")
        t = t[:i] + ("0" if t[i] != "0" else "1") + t[i + 1:]
        self.assertS3Error(send(self.p, "GET", t), 403, "SignatureDoesNotMatch")

    def test_changed_key(self):
        t = presign(self.p, "GET", self.path(self.k))
        other = self.key("other.png")
        self.assertOk(self.put(other, b"other"))
        t = t.replace(self.path(self.k), self.path(other))
        self.assertS3Error(send(self.p, "GET", t), 403, "SignatureDoesNotMatch")

    def test_changed_expires(self):
        t = presign(self.p, "GET", self.path(self.k), expires=300)
        self.assertIn("X-Amz-Expires=300", t)
        self.assertS3Error(send(self.p, "GET", t.replace("X-Amz-Expires=300", "X-Amz-Expires=301")),
                           403, "SignatureDoesNotMatch")

    def test_changed_date(self):
        t = presign(self.p, "GET", self.path(self.k))
        m = re.search(r"X-Amz-Date=(\d{8}T\d{6}Z)", t)
        then = datetime.datetime.strptime(m.group(1), AMZ)
        then += datetime.timedelta(seconds=1 if then.time() < datetime.time(23, 59, 59) else -1)
        t = t.replace(m.group(0), "X-Amz-Date=" + then.strftime(AMZ))
        self.assertS3Error(send(self.p, "GET", t), 403, "SignatureDoesNotMatch")

    def test_expired(self):
        t = presign(self.p, "GET", self.path(self.k), expires=60,
                    timestamp=utcnow() - datetime.timedelta(minutes=5))
        r = send(self.p, "GET", t)
        self.assertS3Error(r, 403, "AccessDenied")
        self.assertEqual(r.field("Message"), "Request has expired")

    def test_expires_over_a_week(self):
        t = presign(self.p, "GET", self.path(self.k), expires=604801)
        self.assertS3Error(send(self.p, "GET", t), 400, "AuthorizationQueryParametersError")

    def test_expires_a_week_is_fine(self):
        self.assertOk(send(self.p, "GET", presign(self.p, "GET", self.path(self.k),
                                                  expires=604800)))

    def test_unknown_key_and_wrong_secret(self):
        self.assertS3Error(send(self.p, "GET", presign(self.p, "GET", self.path(self.k),
                                                       ak="AKIDNOPE", sk="x")),
                           403, "InvalidAccessKeyId")
        self.assertS3Error(send(self.p, "GET", presign(self.p, "GET", self.path(self.k),
                                                       sk="wrong")),
                           403, "SignatureDoesNotMatch")

    def test_presigned_get_used_for_put(self):
        t = presign(self.p, "GET", self.path(self.k))
        self.assertS3Error(send(self.p, "PUT", t, [], b"overwrite"), 403, "SignatureDoesNotMatch")
        self.assertEqual(send(self.p, "GET", t).body, self.body)

    def test_missing_parameter(self):
        t = presign(self.p, "GET", self.path(self.k))
        t = re.sub(r"&?X-Amz-SignedHeaders=[^&]*", "", t)
        self.assertS3Error(send(self.p, "GET", t), 400, "AuthorizationQueryParametersError")


# ----------------------------------------------------------------------------------------------
# Faults, always-fail, clock offset: dedicated peers started through start.sh
# ----------------------------------------------------------------------------------------------

class DedicatedPeer(PeerCase):
    args = ()

    @classmethod
    def setUpClass(cls):
        cls.peer = Peer.start(*cls.args)

    @classmethod
    def tearDownClass(cls):
        cls.peer.stop()

    def log_lines(self):
        with open(self.p.env["S3PEER_LOG"], encoding="utf-8") as f:
            return f.read().splitlines()


class FaultSlowDown(DedicatedPeer):
    args = ("--slowdown", "1.0", "--retry-after", "3", "--seed", "7")

    def test_every_request_gets_503_slowdown(self):
        for _ in range(3):
            r = self.put(self.key("f"), b"body")
            self.assertS3Error(r, 503, "SlowDown")
            self.assertEqual(r.header("Retry-After"), "3")
        # before verification: even an anonymous request gets the fault
        self.assertS3Error(send(self.p, "GET", "/tiles/x"), 503, "SlowDown")
        self.assertTrue(any("fault-slowdown" in line for line in self.log_lines()))
        st, doc = self.p.control("GET", "stats")
        self.assertEqual(doc["forwarded"], 0)


class FaultInternalError(DedicatedPeer):
    args = ("--internal-error", "1.0")

    def test_every_request_gets_500(self):
        self.assertS3Error(self.put(self.key("f"), b"body"), 500, "InternalError")
        self.assertS3Error(self.get(self.key("f")), 500, "InternalError")


class FaultReset(DedicatedPeer):
    args = ("--reset", "1.0")

    def test_connection_reset(self):
        target, hdrs = botocore_headers(self.p, "PUT", self.path(self.key("f")), b"body")
        with self.assertRaises(ConnectionResetError):
            send(self.p, "PUT", target, hdrs, b"body")
        self.assertTrue(any("fault-reset" in line for line in self.log_lines()))


class FaultDrop(DedicatedPeer):
    args = ("--drop", "1.0")

    def test_connection_closed_without_response(self):
        target, hdrs = botocore_headers(self.p, "PUT", self.path(self.key("f")), b"body")
        with self.assertRaises(http.client.RemoteDisconnected):
            send(self.p, "PUT", target, hdrs, b"body")


class FaultMethodsAndSeed(DedicatedPeer):
    args = ("--slowdown", "0.5", "--seed", "42", "--fault-methods", "PUT")

    def test_only_listed_methods_and_seeded_sequence(self):
        key = self.key("seeded")
        statuses = [self.put(key, b"x").status for _ in range(24)]
        self.assertEqual(set(statuses), {200, 503}, statuses)
        for _ in range(5):                        # GET is not in --fault-methods
            self.assertOk(self.get(key))
        # same seed again (runtime control endpoint) -> same sequence
        st, _ = self.p.control("POST", "faults", "seed=42")
        self.assertEqual(st, 200)
        again = [self.put(key, b"x").status for _ in range(24)]
        self.assertEqual(statuses, again)
        # and the control endpoint switches faults off
        self.p.control("POST", "faults", "clear=1")
        self.assertOk(self.put(key, b"x"))


class FaultStall(DedicatedPeer):
    args = ("--stall", "1.0", "--stall-seconds", "1")

    def test_no_answer_then_close(self):
        t0 = time.monotonic()
        with self.assertRaises(http.client.RemoteDisconnected):
            self.get(self.key("f"))
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)


class PeerOptions(DedicatedPeer):
    args = ("--anon-get", "--user", "custom-key:custom/secret+x", "--regions", "auto",
            "--bucket", "other-bucket")

    def test_custom_user_region_bucket_and_anonymous_get(self):
        self.assertEqual((self.p.ak, self.p.sk, self.p.bucket, self.p.ak2),
                         ("custom-key", "custom/secret+x", "other-bucket", None))
        key = self.key("public.png")
        self.assertOk(self.put(key, b"public"))
        r = self.put(key, b"x", ak="tilekit-test-key", sk="tilekit-test-secret")
        self.assertS3Error(r, 403, "InvalidAccessKeyId")
        self.assertS3Error(self.put(key, b"x", region="us-east-1"),
                           400, "AuthorizationHeaderMalformed")
        r = send(self.p, "GET", self.path(key))            # anonymous GET allowed
        self.assertOk(r)
        self.assertEqual(r.body, b"public")
        self.assertS3Error(send(self.p, "PUT", self.path(key), [], b"anon"), 403, "AccessDenied")
        self.assertS3Error(send(self.p, "DELETE", self.path(key)), 403, "AccessDenied")


class AlwaysFail(DedicatedPeer):
    args = ("--always-fail",)

    def test_everything_fails(self):
        k = self.key("af")
        for r in [self.put(k, b"body"), self.get(k), self.get(k, "HEAD"), self.get(k, "DELETE"),
                  send(self.p, "GET", presign(self.p, "GET", self.path(k))),
                  send(self.p, "PUT", self.path(k), [], b"anon"),
                  send(self.p, "GET", "/" + self.p.bucket + "?list-type=2")]:
            self.assertEqual(r.status, 503, r)
            if r.body:
                self.assertEqual(r.code, "SlowDown")
        st, doc = self.p.control("GET", "stats")
        self.assertEqual(doc["forwarded"], 0)
        self.assertEqual(doc["by_outcome"].get("fault-always:SlowDown"), 7)


class ClockOffset(DedicatedPeer):
    args = ("--clock-offset", "3600")

    def test_skew_correction_from_date_header(self):
        key = self.key("skew")
        r = self.put(key, b"body")
        self.assertS3Error(r, 403, "RequestTimeTooSkewed")
        server_now = email_date(r.header("Date"))
        self.assertAlmostEqual(server_now - time.time(), 3600, delta=60)
        corrected = datetime.datetime.fromtimestamp(server_now, datetime.timezone.utc) \
            .replace(tzinfo=None)
        self.assertOk(self.put(key, b"body", timestamp=corrected))
        self.assertEqual(self.get(key, timestamp=corrected).body, b"body")


if __name__ == "__main__":
    sys.stderr.write("test_verifier.py: python %s, botocore %s\n"
                     % (sys.version.split()[0], botocore.__version__))
    unittest.main(verbosity=2)

#!/usr/bin/env python3
"""Sign requests with botocore's S3 SigV4 signers, as an independent reference for tilekit's.

    python3 compare.py requests.json      # or: python3 compare.py < requests.json
    python3 compare.py --selftest         # botocore reproduces two S3 documentation examples

Input: a JSON array of requests, each
    {"kind": "header" | "presign",
     "method": "PUT", "scheme": "https", "host": "127.0.0.1:9000",
     "path": "/bucket/raw key/é.png",       # decoded (raw) path; encoded here as botocore does
     "query": [["prefix", "a/b"], ...],     # decoded (raw) name/value pairs, repeats allowed
     "headers": [["Content-Type", "image/png"], ...],   # extra headers, repeats allowed; not
                                            # host, x-amz-date, x-amz-content-sha256 or
                                            # x-amz-security-token (botocore adds those itself)
     "body_hex": "00ff...", "unsigned_payload": false,
     "date": "20250101T000000Z", "region": "auto",
     "access_key_id": "...", "secret_access_key": "...", "session_token": "" (optional),
     "expires": 3600 (presign only)}

Output: a JSON array with, for each request, "encoded_path", "canonical_request",
"string_to_sign" and either "authorization" (header) or "url" and "signature" (presign).

What botocore does here is what it does for S3 (botocore.auth.S3SigV4Auth and
S3SigV4QueryAuth): the path is percent-encoded once with botocore.utils.percent_encode(path,
safe='/~'), the encoding botocore's REST serializer applies to {Key+}, and never normalised;
query parameters are encoded by the signer (safe '-_.~'); x-amz-content-sha256 is the sha256 of
the body (or UNSIGNED-PAYLOAD when payload signing is off); the session token is added by the
signer. Only the clock is ours: add_auth() reads the current time, so its steps are run here with
request.context['timestamp'] set to the given date (the same steps in botocore 1.29 and 1.43).
"""

import json
import sys

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode


def _sign(auth, request, date):
    request.context["timestamp"] = date
    auth._modify_request_before_signing(request)
    canonical_request = auth.canonical_request(request)
    string_to_sign = auth.string_to_sign(request, canonical_request)
    signature = auth.signature(string_to_sign, request)
    auth._inject_signature_to_request(request, signature)
    return canonical_request, string_to_sign, signature


def sign(item):
    credentials = Credentials(item["access_key_id"], item["secret_access_key"], item.get("session_token") or None)
    encoded_path = percent_encode(item["path"], safe="/~")
    url = "%s://%s%s" % (item.get("scheme", "https"), item["host"], encoded_path)
    params = [(name, value) for name, value in item.get("query", [])]
    body = bytes.fromhex(item.get("body_hex", ""))
    request = AWSRequest(method=item["method"], url=url, data=body, params=params or None)
    for name, value in item.get("headers", []):
        request.headers[name] = value  # an email.message: assignment appends, repeats are kept
    out = {"encoded_path": encoded_path}
    if item.get("kind", "header") == "presign":
        auth = S3SigV4QueryAuth(credentials, "s3", item["region"], expires=int(item["expires"]))
        out["canonical_request"], out["string_to_sign"], out["signature"] = _sign(auth, request, item["date"])
        out["url"] = request.url
    else:
        if item.get("unsigned_payload"):
            request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
        auth = S3SigV4Auth(credentials, "s3", item["region"])
        out["canonical_request"], out["string_to_sign"], _ = _sign(auth, request, item["date"])
        out["authorization"] = request.headers["Authorization"]
    return out


def selftest():
    """The S3 documentation's GET-with-Range and presigned-GET examples."""
    common = {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
              "date": "20130524T000000Z", "region": "us-east-1", "host": "examplebucket.s3.amazonaws.com",
              "method": "GET", "path": "/test.txt"}
    get = sign(dict(common, kind="header", headers=[["Range", "bytes=0-9"]]))
    presigned = sign(dict(common, kind="presign", expires=86400))
    ok = get["authorization"].endswith("Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41") \
        and presigned["signature"] == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    print("compare.py selftest: %s" % ("ok" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv):
    if argv[1:] == ["--selftest"]:
        return selftest()
    if len(argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    if len(argv) == 2:
        with open(argv[1], encoding="utf-8") as f:
            items = json.load(f)
    else:
        items = json.load(sys.stdin)
    json.dump([sign(item) for item in items], sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

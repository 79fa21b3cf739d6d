#!/usr/bin/env python3
"""Throughput sanity check of a running peer: N small PUTs with a botocore client from T threads.

    eval "$(tests/s3peer/start.sh)"
    "$S3PEER_PYTHON" tests/s3peer/bench_put.py -n 2000 -t 8 --size 16384
    tests/s3peer/stop.sh

Reports requests/s and the CPU seconds used by each PID in S3PEER_PIDS (the verifier and s3rver)
and by this client, then checks that every object is listed. The peer is for correctness, not
for throughput claims: on 2 cores the client, the verifier and s3rver share the machine.
Options --endpoint/--access-key/--secret-key/--region point it elsewhere (e.g. at s3rver directly,
key S3RVER/S3RVER, for comparison).
"""

import argparse
import os
import resource
import sys
import threading
import time
import uuid

import botocore.session
from botocore.config import Config


def proc_cpu(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tick
    except (OSError, IndexError, ValueError):
        return None


def name_of(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            cmd = f.read().split(b"\0")
        for part in cmd:
            if part.endswith(b"sigv4_verifier.py"):
                return "verifier"
            if part.endswith(b"s3rver.js"):
                return "s3rver"
        return os.path.basename(cmd[0].decode(errors="replace"))
    except OSError:
        return "?"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("-t", type=int, default=8)
    p.add_argument("--size", type=int, default=16384)
    p.add_argument("--endpoint", default=os.environ.get("S3PEER_ENDPOINT"))
    p.add_argument("--bucket", default=os.environ.get("S3PEER_BUCKET", "tiles"))
    p.add_argument("--access-key", default=os.environ.get("S3PEER_ACCESS_KEY"))
    p.add_argument("--secret-key", default=os.environ.get("S3PEER_SECRET_KEY"))
    p.add_argument("--region", default=os.environ.get("S3PEER_REGION", "auto"))
    p.add_argument("--pids", default=os.environ.get("S3PEER_PIDS", ""))
    p.add_argument("--attempts", type=int, default=1,
                   help="botocore max_attempts (standard retry mode); >1 against a faulty peer")
    a = p.parse_args()
    if not a.endpoint or not a.access_key:
        sys.exit("bench_put.py: set S3PEER_* (eval \"$(tests/s3peer/start.sh)\") or pass options")
    cfg = dict(s3={"addressing_style": "path"}, max_pool_connections=a.t,
               retries={"max_attempts": a.attempts, "mode": "standard"})
    try:   # botocore >= 1.36 adds CRC32 checksum headers by default; R2 (and the peer) refuse them
        config = Config(request_checksum_calculation="when_required", **cfg)
    except TypeError:
        config = Config(**cfg)
    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=a.endpoint, region_name=a.region, aws_access_key_id=a.access_key,
        aws_secret_access_key=a.secret_key, config=config)
    prefix = "bench-%s/" % uuid.uuid4().hex[:8]
    body = b"\x89PNG\r\n\x1a\n" + os.urandom(max(0, a.size - 8))
    pids = [x for x in a.pids.split() if x]
    before = {pid: proc_cpu(pid) for pid in pids}
    errors = []
    counter = iter(range(a.n))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                client.put_object(Bucket=a.bucket, Key="%s%d/%d.png" % (prefix, i % 16, i),
                                  Body=body, ContentType="image/png")
            except Exception as e:  # noqa: BLE001 - report, do not stop the others
                with lock:
                    errors.append(repr(e))

    # warm up the connection pool outside the timing
    client.head_bucket(Bucket=a.bucket)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(a.t)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    after = {pid: proc_cpu(pid) for pid in pids}
    listed = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=prefix):
        listed += page.get("KeyCount", 0)
    print("PUTs: %d x %d bytes, %d threads, %d errors" % (a.n, len(body), a.t, len(errors)))
    print("wall %.2f s, %.0f requests/s" % (wall, a.n / wall))
    print("client CPU %.2f s (user %.2f + sys %.2f)" % (
        (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), r1.ru_utime - r0.ru_utime,
        r1.ru_stime - r0.ru_stime))
    for pid in pids:
        if before.get(pid) is not None and after.get(pid) is not None:
            cpu = after[pid] - before[pid]
            print("%s (pid %s) CPU %.2f s = %.0f%% of one core, %.2f ms/request" % (
                name_of(pid), pid, cpu, 100 * cpu / wall, 1000 * cpu / a.n))
    print("listed afterwards: %d of %d" % (listed, a.n))
    for e in errors[:5]:
        print("error:", e)
    return 0 if not errors and listed == a.n else 1


if __name__ == "__main__":
    sys.exit(main())

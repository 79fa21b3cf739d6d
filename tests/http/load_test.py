#!/usr/bin/env python3
"""A bounded load test of tilekit-service on loopback, with slow clients connected throughout.

Usage: load_test.py SERVICE_BINARY TILEKIT_CLI_BINARY [--seconds S] [--gets N] [--uploads M]
                    [--slow K] [--check] [-- SERVICE_ARGS...]

For S seconds: N clients send GET /jobs/{id} back to back (one kept-alive connection each), M
clients upload a small PNG base map back to back, K slow clients hold connections (half dribble
request headers, a byte a second; half announce a 10 MB upload with a valid token and send a
byte of it a second), and a probe asks GET /health on a new connection every 0.25 s. Prints
requests/s, median and p99 latency and the error rate of each kind, and the service's peak
resident memory over the whole run. --check (ctest) then
asserts no GET or upload failed, every /health probe was answered, and the probes' p99 stayed
under 1 s (the stall this guards against was 30 s). Python 3 standard library only; the client
shares the machine's cores with the service, so the rates are the pair's, not the service's.
"""

import argparse
import http.client
import os
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
parser = argparse.ArgumentParser()
parser.add_argument("service")
parser.add_argument("cli")
parser.add_argument("--seconds", type=float, default=10)
parser.add_argument("--gets", type=int, default=8)
parser.add_argument("--uploads", type=int, default=2)
parser.add_argument("--slow", type=int, default=20)
parser.add_argument("--check", action="store_true")
arguments = sys.argv[1:]
service_args = arguments[arguments.index("--") + 1:] if "--" in arguments else []
options = parser.parse_args(arguments[:arguments.index("--")] if "--" in arguments else arguments)
sys.argv = [sys.argv[0], options.service, options.cli]
import test_service as base  # noqa: E402


class Tally:
    def __init__(self, name):
        self.name = name
        self.latencies = []  # seconds, of the answered requests
        self.errors = {}     # what went wrong -> how often
        self.lock = threading.Lock()

    def ok(self, seconds):
        with self.lock:
            self.latencies.append(seconds)

    def error(self, what):
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1

    def count(self):
        return len(self.latencies) + sum(self.errors.values())

    def report(self, seconds):
        n = self.count()
        lat = sorted(self.latencies)
        median = statistics.median(lat) * 1000 if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
        worst = lat[-1] * 1000 if lat else float("nan")
        failed = sum(self.errors.values())
        print("%-26s %7d requests %8.1f/s  median %7.1f ms  p99 %7.1f ms  max %7.1f ms  errors %d (%.2f%%)%s" % (
            self.name, n, n / seconds, median, p99, worst, failed, 100.0 * failed / n if n else 0.0,
            "  " + repr(self.errors) if self.errors else ""), flush=True)
        return p99


def keep_getting(port, path, token, until, tally):
    connection = None
    while time.time() < until:
        try:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            started = time.time()
            connection.request("GET", path, headers={"Authorization": "Bearer " + token})
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                tally.ok(time.time() - started)
            else:
                tally.error(response.status)
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as e:
            tally.error(type(e).__name__)
            if connection:
                connection.close()
            connection = None


def keep_uploading(port, path, token, image, until, tally):
    connection = None
    while time.time() < until:
        try:
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            started = time.time()
            connection.request("POST", path, body=image,
                               headers={"Authorization": "Bearer " + token, "Content-Type": "image/png"})
            response = connection.getresponse()
            response.read()
            if response.status == 201:
                tally.ok(time.time() - started)
            else:
                tally.error(response.status)
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as e:
            tally.error(type(e).__name__)
            if connection:
                connection.close()
            connection = None


def slow_client(port, token, slow_body, until, held):
    """Holds a connection by sending a byte a second; opens another when the service drops it."""
    while time.time() < until:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            time.sleep(0.5)
            continue
        try:
            if slow_body:
                sock.sendall(("POST /projects/load/assets?type=base_map HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                              "Content-Type: image/png\r\nContent-Length: 10000000\r\n\r\n" % token).encode())
            else:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            with held["lock"]:
                held["opened"] += 1
            while time.time() < until:
                sock.sendall(b"0" if slow_body else b"X")
                time.sleep(1.0)
        except OSError:
            pass
        finally:
            sock.close()


def probe_health(port, until, tally):
    while time.time() < until:
        started = time.time()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status == 200:
                tally.ok(time.time() - started)
            else:
                tally.error(response.status)
        except (OSError, http.client.HTTPException) as e:
            tally.error(type(e).__name__)
        time.sleep(0.25)


def main():
    s = base.Service(args=service_args).start()
    try:
        token = s.add_user("load")
        s.project(token, "load")
        s.version(token, "load")
        asset = s.asset(token, "load", base.sample("300x200"))
        job = base.expect(s.generate(token, "load", 1, asset["id"]), 202)["job_id"]
        s.wait_job(token, job)
        image = base.sample("400x300")

        gets, uploads, health = Tally("GET /jobs/{id}"), Tally("POST /projects/*/assets"), Tally("GET /health (probe)")
        held = {"lock": threading.Lock(), "opened": 0}
        slow_until = time.time() + options.seconds + 1.5
        threads = [threading.Thread(target=slow_client, args=(s.port, token, i % 2 == 1, slow_until, held), daemon=True)
                   for i in range(options.slow)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # the slow clients are connected before the load starts
        started = time.time()
        until = started + options.seconds
        load = [threading.Thread(target=keep_getting, args=(s.port, "/jobs/" + job, token, until, gets))
                for _ in range(options.gets)]
        load += [threading.Thread(target=keep_uploading, args=(s.port, "/projects/load/assets?type=base_map", token, image,
                                                                until, uploads)) for _ in range(options.uploads)]
        load.append(threading.Thread(target=probe_health, args=(s.port, until, health)))
        for t in load:
            t.start()
        for t in load:
            t.join()
        elapsed = time.time() - started
        print("load: %.1f s, %d GET clients, %d upload clients (%d bytes each), %d slow clients (%d connections opened)" % (
            elapsed, options.gets, options.uploads, len(image), options.slow, held["opened"]), flush=True)
        gets.report(elapsed)
        uploads.report(elapsed)
        health_p99 = health.report(elapsed)
        with open("/proc/%d/status" % s.process.pid) as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        print("service: peak RSS %.1f MiB (VmHWM), %s threads" % (int(fields["VmHWM"].split()[0]) / 1024,
                                                                 fields["Threads"].strip()), flush=True)
        for t in threads:
            t.join()
        if options.check:
            assert gets.latencies and not gets.errors, ("GET failures", gets.errors)
            assert uploads.latencies and not uploads.errors, ("upload failures", uploads.errors)
            assert health.count() >= 5 and not health.errors, ("/health failures", health.errors)
            assert health_p99 < 1000, "/health p99 %.1f ms under load" % health_p99
            assert held["opened"] >= options.slow, held
            # The service still answers, and its slow clients are gone.
            base.expect(s.request("GET", "/health"), 200)
            print("PASS load_test", flush=True)
    finally:
        s.stop()
    base.shutil.rmtree(base.WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

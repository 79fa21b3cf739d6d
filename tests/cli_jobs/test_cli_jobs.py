#!/usr/bin/env python3
"""`tilekit jobs` end to end with real processes, on a SQLite job store or a PostgreSQL one.

    test_cli_jobs.py --cli PATH --service PATH --work DIR [--postgresql] [--scenario NAME ...]

--postgresql takes the store's URL from $TILEKIT_TEST_POSTGRES_URL (scripts/postgres-server.sh
run sets it) and fails when it is missing; the catalog and storage stay in the data directory,
as with the service. Scenarios (all by default):

  refused      a project or version missing from the catalog is refused (exit 1, naming
               --create-draft); a published version is refused at enqueue; a version published
               after enqueue makes the job fail when a worker starts it (the guard again)
  two_workers  enqueue 3 jobs (--file, --create-draft), list/show JSON, two `work` processes:
               `wait` exits 0 for each, pyramids and manifests under mp/{slug}/uploads/tiles/{v}/;
               SIGTERM stops both workers (exit 0)
  cancel       cancel a running job: `wait` exits 3, no manifest, the tiles it wrote are gone
  sigterm      SIGTERM a worker (grace 0) mid-job: the job is handed back (queued, attempt not
               counted), a second worker completes it
  timeout      `wait --timeout 1` on a job nobody runs exits 4; a bad command line exits 2
  service      (with --service) the same store, catalog and storage as tilekit-service: a job
               enqueued by the CLI for a service user's project is run by the service's workers and
               shown by its API; a job the API (--role serve) enqueues is run by `tilekit jobs work`
  terminal     on a terminal (a pty): list and show print tables, not JSON; wait draws a bar
  run          `tilekit jobs run` (what scripts/demo.sh runs): enqueue + in-process worker +
               wait, the result JSON on stdout, stage progress lines on stderr
  pg_settings  (PostgreSQL only) a missing database, a missing role and a wrong password end `list`
               at once (exit 1, the server's message, [store_refused]); `schema-sql` applied by a
               superuser lets a role with only USAGE and DML grants run `list` and `work --drain`
               with --jobs-create-schema 0, and refuses it with a clear message with 1
  operator     the operator's verbs without a worker: list pages (--limit, --after), cancel
               --project --all, retry ID (a new budget of attempts; refused while the version is busy),
               retry --status cancelled --project, stats, prune --dry-run / --older-than /
               --keep-per-version

Every wait has a timeout; child processes are killed at the end, also on failure.
"""

import argparse
import http.client
import json
import os
import pty
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "queue"))
from pyramids import pyramid_report, write_png  # noqa: E402

ALL = ["refused", "two_workers", "cancel", "sigterm", "timeout", "service", "terminal", "run", "pg_settings", "operator"]
children = []


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


class Env:
    def __init__(self, cli, work, jobs_db):
        self.cli = cli
        self.work = work
        self.data = work / "data"
        self.jobs_db = jobs_db
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TILEKIT_")}

    def args(self, *extra):
        a = [self.cli, "jobs", *extra, "--data-dir", str(self.data)]
        if self.jobs_db:
            a += ["--jobs-db", self.jobs_db]
        return a

    def run(self, *extra, timeout=120, expect=None):
        p = subprocess.run(self.args(*extra), capture_output=True, text=True, timeout=timeout, env=self.env, cwd=self.work)
        if expect is not None and p.returncode != expect:
            raise Failure(f"tilekit jobs {' '.join(extra)}: exit {p.returncode}, expected {expect}\n"
                          f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-3000:]}")
        return p

    def start_worker(self, name, *extra):
        log = open(self.work / f"{name}.log", "w")
        p = subprocess.Popen(self.args("work", "--threads", "1", *extra), stdout=log, stderr=subprocess.STDOUT,
                             env=self.env, cwd=self.work)
        p.log_path = self.work / f"{name}.log"
        children.append(p)
        return p

    def show(self, job_id):
        return json.loads(self.run("show", job_id, expect=0).stdout)

    def tiles(self, slug, version):
        """The version's committed run (what its pointer current.json names), or the version's
        prefix when nothing was committed."""
        prefix = self.data / "storage" / "mp" / slug / "uploads" / "tiles" / str(version)
        pointer = prefix / "current.json"
        if pointer.is_file():
            run = json.loads(pointer.read_text()).get("run")
            if run:
                return prefix / run
        return prefix

    def enqueue(self, image, slug, version, *extra):
        p = self.run("enqueue", "--file", str(image), "--project", slug, "--version", str(version), "--create-draft",
                     "--tile-size", "256", *extra, expect=0)
        job_id = p.stdout.strip()
        check(len(job_id) == 36, f"enqueue printed {p.stdout!r}, not a job id")
        return job_id

    def wait_until(self, job_id, predicate, seconds, what):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            job = self.show(job_id)
            if predicate(job):
                return job
            time.sleep(0.1)
        raise Failure(f"job {job_id}: not {what} within {seconds} s: {json.dumps(job)[:1500]}")

    def publish(self, slug, version):
        with sqlite3.connect(self.data / "catalog.db") as db:
            n = db.execute("UPDATE versions SET status = 'published', published_at = '2026-01-01T00:00:00.000Z' "
                           "WHERE number = ? AND project_id = (SELECT id FROM projects WHERE slug = ?)",
                           (version, slug)).rowcount
        check(n == 1, f"could not publish version {version} of {slug} in the catalog")


def stop(p, sig=signal.SIGTERM, seconds=30):
    p.send_signal(sig)
    try:
        return p.wait(seconds)
    except subprocess.TimeoutExpired:
        raise Failure(f"worker {p.pid} did not exit within {seconds} s of signal {sig}:\n{p.log_path.read_text()[-3000:]}")


def scenario_refused(e, small, big):
    p = e.run("enqueue", "--file", str(small), "--project", "nowhere", "--version", "1", expect=1)
    check("--create-draft" in p.stderr and "not in the catalog" in p.stderr, f"refusal message: {p.stderr}")
    e.enqueue(small, "guard", 1)  # registers project guard, draft version 1
    p = e.run("enqueue", "--file", str(small), "--project", "guard", "--version", "2", expect=1)
    check("has no version 2" in p.stderr and "--create-draft" in p.stderr, f"refusal message: {p.stderr}")
    e.publish("guard", 1)
    p = e.run("enqueue", "--file", str(small), "--project", "guard", "--version", "1", "--create-draft", expect=1)
    check("Can only generate tiles for draft versions" in p.stderr and "'published'" in p.stderr, f"published: {p.stderr}")
    # The guard again at start: version 2 is queued as a draft, then published before it runs.
    job_id = e.enqueue(small, "guard", 2)
    e.publish("guard", 2)
    w = e.start_worker("guard-worker", "--drain")
    try:
        w.wait(60)
    except subprocess.TimeoutExpired:
        raise Failure("work --drain did not exit once the queue was empty")
    check(w.returncode == 0, f"work --drain exited {w.returncode}")
    p = e.run("wait", job_id, "--timeout", "30", expect=1)
    job = json.loads(p.stdout)
    check(job["status"] == "failed" and "draft" in job["error"], f"job of a published version: {job}")
    check(not (e.tiles("guard", 2) / "image.dzi").exists(), "a published version got a pyramid")
    # `work --drain` on an empty queue exits at once.
    started = time.monotonic()
    e.run("work", "--drain", expect=0, timeout=30)
    check(time.monotonic() - started < 10, "work --drain on an empty queue took too long")
    return "missing project/version refused, published refused at enqueue and at start, --drain exits"


def scenario_two_workers(e, small, big):
    ids = [e.enqueue(small, "fleet", v) for v in (1, 2, 3)]
    listed = json.loads(e.run("list", "--project", "fleet", expect=0).stdout)
    check(sorted(j["id"] for j in listed) == sorted(ids), f"list --project fleet: {[j['id'] for j in listed]}")
    check(all(j["status"] == "queued" for j in listed), "jobs not queued before any worker")
    queued = json.loads(e.run("list", "--status", "queued", "--limit", "2", expect=0).stdout)
    check(len(queued) == 2 and all(j["status"] == "queued" for j in queued), f"list --status queued --limit 2: {queued}")
    job = e.show(ids[0])
    check(job["payload"]["project_slug"] == "fleet" and job["payload"]["version"] == 1, f"show: {job['payload']}")
    check(job["payload"]["source_key"].startswith("mp/fleet/uploads/assets/"), f"source key {job['payload']['source_key']}")
    check((e.data / "storage" / job["payload"]["source_key"]).is_file(), "the uploaded base map is not in storage")
    workers = [e.start_worker(f"fleet-w{i}") for i in (1, 2)]
    for v, job_id in zip((1, 2, 3), ids):
        p = e.run("wait", job_id, "--timeout", "90", expect=0)
        done = json.loads(p.stdout)
        check(done["status"] == "completed", f"wait: {done}")
        check(done["result"]["tiles_path"] == f"mp/fleet/uploads/tiles/{v}/runs/{job_id}.1/",
              f"tiles_path {done['result']['tiles_path']}")
        tiles, stray = pyramid_report(e.tiles("fleet", v))
        check((e.tiles("fleet", v) / "image.dzi").is_file(), f"no manifest for version {v}")
        check(tiles == done["result"]["tile_count"] and not stray, f"version {v}: {tiles} tiles, stray {stray[:5]}")
    codes = [stop(w) for w in workers]
    check(codes == [0, 0], f"workers exited {codes} on SIGTERM")
    claimed = sum(int(line.split("claimed ")[1].split(",")[0]) for w in workers
                  for line in w.log_path.read_text().splitlines() if "stopped; claimed" in line)
    check(claimed == 3, f"the workers claimed {claimed} jobs, expected 3")
    listed = json.loads(e.run("list", "--status", "completed", expect=0).stdout)
    check(set(ids) <= {j["id"] for j in listed}, "list --status completed misses a job")
    return "3 jobs over 2 work processes completed, pyramids and manifests complete, list/show JSON"


def scenario_cancel(e, small, big):
    job_id = e.enqueue(big, "cancelme", 1)
    w = e.start_worker("cancel-w", "--tiler-threads", "1")
    try:
        e.wait_until(job_id, lambda j: j["status"] == "running" and j["progress"] > 10, 60, "tiling")
        p = e.run("cancel", job_id, expect=0)
        check(json.loads(p.stdout)["status"] == "cancelled", f"cancel printed {p.stdout[:300]}")
        p = e.run("wait", job_id, "--timeout", "30", expect=3)
        check(json.loads(p.stdout)["status"] == "cancelled", "wait's record is not cancelled")
        # The worker stops the handler at its next renewal and deletes what it wrote.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(e.tiles("cancelme", 1).rglob("*.png")):
            time.sleep(0.2)
        check(not (e.tiles("cancelme", 1) / "image.dzi").exists(), "a cancelled job left a manifest")
        check(not (e.tiles("cancelme", 1) / "pyramid.json").exists(), "a cancelled job left pyramid.json")
        check(not any(e.tiles("cancelme", 1).rglob("*.png")), "a cancelled job left tiles")
        p = e.run("cancel", job_id, expect=1)
        check("cancel" in p.stderr, f"second cancel: {p.stderr}")
        check(w.poll() is None, "the worker died")
    finally:
        code = stop(w)
    check(code == 0, f"worker exit {code}")
    return "running job cancelled: wait exit 3, no manifest or tiles; cancelling again refused"


def scenario_sigterm(e, small, big):
    job_id = e.enqueue(big, "handback", 1)
    first = e.start_worker("sigterm-w1", "--tiler-threads", "1", "--grace-seconds", "0")
    e.wait_until(job_id, lambda j: j["status"] == "running" and j["progress"] > 10, 60, "tiling")
    began = time.monotonic()
    code = stop(first)
    check(code == 0, f"SIGTERMed worker exited {code}")
    check(time.monotonic() - began < 15, "the SIGTERMed worker took too long to hand back")
    job = e.show(job_id)
    # Not counted: the budget grew by the attempt handed back (attempt numbers are never reused).
    check(job["status"] == "queued" and job["attempt"] == 1 and job["releases"] == 1 and job["max_attempts"] == 4,
          f"after SIGTERM: {job['status']} attempt {job['attempt']} of {job['max_attempts']}, releases {job['releases']}")
    check("Queued again" in job["message"], f"message {job['message']}")
    check("handed back 1" in first.log_path.read_text(), "the worker did not report the hand-back")
    second = e.start_worker("sigterm-w2")
    try:
        done = json.loads(e.run("wait", job_id, "--timeout", "90", expect=0).stdout)
    finally:
        stop(second)
    check(done["attempt"] == 2, f"completed on attempt {done['attempt']}, expected 2 (a run prefix of its own)")
    tiles, stray = pyramid_report(e.tiles("handback", 1))
    check(tiles == done["result"]["tile_count"] and not stray, f"{tiles} tiles, stray {stray[:5]}")
    return "SIGTERM mid-job: handed back (the attempt not counted), completed by another worker on attempt 2"


def scenario_timeout(e, small, big):
    job_id = e.enqueue(small, "lonely", 1)
    started = time.monotonic()
    p = e.run("wait", job_id, "--timeout", "1", expect=4)
    check(time.monotonic() - started < 10 and "has not ended" in p.stderr, f"timeout: {p.stderr}")
    e.run("cancel", job_id, expect=0)
    e.run("wait", job_id, expect=3)
    e.run("show", "not-a-uuid", expect=2)
    e.run("frobnicate", expect=2)
    e.run("show", "00000000-0000-4000-8000-000000000000", expect=1)
    e.run("enqueue", "--project", "x", "--version", "1", expect=2)  # neither --file nor --source
    return "wait --timeout exits 4, cancelled 3, usage 2, unknown job 1"


class Service:
    def __init__(self, e, role):
        args = [e.service, "--data-dir", str(e.data), "--port", "0", "--role", role]
        if e.jobs_db:
            args += ["--jobs-db", e.jobs_db]
        self.log_path = e.work / f"service-{role}.log"
        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, env=e.env, cwd=e.work)
        children.append(self.p)
        line = self.p.stdout.readline().decode()
        check(line.startswith("listening "), f"tilekit-service did not start: {line!r}: {self.log_path.read_text()[-2000:]}")
        self.port = int(line.split()[1])

    def request(self, method, path, token, body=None, content_type="application/json"):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        c.request(method, path, body=body if body is not None else (b"" if method == "POST" else None),
                  headers={"Authorization": "Bearer " + token, "Content-Type": content_type})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data) if data else None

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(60)
        self.p.stdout.close()
        self.log.close()


def scenario_service(e, small, big):
    if not e.service:
        raise Failure("no --service binary given")
    token = subprocess.run([e.service, "add-user", "interop-user", "--data-dir", str(e.data)], check=True,
                           capture_output=True, text=True, env=e.env).stdout.strip()
    # The CLI enqueues for the service user's project; the service's workers run it; its API shows it.
    job_id = e.enqueue(small, "interop", 1, "--owner", "interop-user")
    s = Service(e, "all")
    try:
        done = json.loads(e.run("wait", job_id, "--timeout", "90", expect=0).stdout)
        status, job = s.request("GET", "/jobs/" + job_id, token)
        check(status == 200 and job["status"] == "completed", f"the service's GET /jobs/{job_id}: {status} {job}")
    finally:
        s.stop()
    check("completed" in s.log_path.read_text(), "the service's log does not show the job")
    check(done["result"]["tiles_path"].startswith("mp/interop/uploads/tiles/1/runs/"), f"tiles_path {done['result']['tiles_path']}")
    # The API only enqueues (--role serve); `tilekit jobs work --drain` runs the job.
    s = Service(e, "serve")
    try:
        status, version = s.request("POST", "/projects/interop/versions", token, {"status": "draft", "number": 2})
        check(status == 201, f"POST version: {status} {version}")
        status, asset = s.request("POST", "/projects/interop/assets?type=base_map", token, small.read_bytes(), "image/png")
        check(status == 201, f"POST asset: {status} {asset}")
        status, queued = s.request("POST", f"/projects/interop/versions/2/generate-tiles?asset_id={asset['id']}", token)
        check(status == 202, f"generate-tiles: {status} {queued}")
        e.run("work", "--drain", expect=0, timeout=120)
        done = json.loads(e.run("wait", queued["job_id"], "--timeout", "30", expect=0).stdout)
        status, job = s.request("GET", "/jobs/" + queued["job_id"], token)
        check(status == 200 and job["status"] == "completed", f"the service's GET /jobs: {status} {job}")
        # GET /projects/{slug}/jobs pages with ?limit= and X-Next-After; GET /metrics needs the token.
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        c.request("GET", "/projects/interop/jobs?limit=1", headers={"Authorization": "Bearer " + token})
        r = c.getresponse()
        first = json.loads(r.read())
        cursor = r.getheader("X-Next-After")
        check(r.status == 200 and len(first) == 1 and cursor, f"jobs?limit=1: {r.status} {first} next {cursor}")
        c.request("GET", "/projects/interop/jobs?limit=10&after=" + cursor, headers={"Authorization": "Bearer " + token})
        r = c.getresponse()
        rest = json.loads(r.read())
        check(r.status == 200 and len(rest) == 1 and rest[0]["id"] != first[0]["id"] and not r.getheader("X-Next-After"),
              f"the second page: {r.status} {rest}")
        c.request("GET", "/projects/interop/jobs?after=nonsense", headers={"Authorization": "Bearer " + token})
        r = c.getresponse()
        r.read()
        check(r.status == 422, f"a bad cursor: {r.status}")
        c.request("GET", "/metrics")
        r = c.getresponse()
        r.read()
        check(r.status == 401, f"/metrics without a token: {r.status}")
        c.request("GET", "/metrics", headers={"Authorization": "Bearer " + token})
        r = c.getresponse()
        metrics = r.read().decode()
        c.close()
        check(r.status == 200 and r.getheader("Content-Type", "").startswith("text/plain"), f"/metrics: {r.status}")
        check('tilekit_jobs{status="completed"} ' in metrics and "# TYPE tilekit_jobs_failure_ratio gauge" in metrics
              and "tilekit_jobs_pickup_latency_seconds{stat=\"max\"}" in metrics, f"/metrics body: {metrics[:1500]}")
    finally:
        s.stop()
    tiles, stray = pyramid_report(e.tiles("interop", 2))
    check(tiles == done["result"]["tile_count"] and not stray, f"{tiles} tiles, stray {stray[:5]}")
    return "CLI job run by tilekit-service's workers; API-enqueued job run by tilekit jobs work --drain"


def on_terminal(e, *extra):
    """Runs tilekit jobs with stdout and stderr on a pty; returns (exit code, everything it wrote)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(e.args(*extra), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=e.env, cwd=e.work)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the pty
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(60), b"".join(chunks).decode(errors="replace")


def scenario_terminal(e, small, big):
    job_id = e.enqueue(small, "tty", 1)
    e.run("work", "--drain", expect=0, timeout=120)
    code, out = on_terminal(e, "list", "--project", "tty")
    check(code == 0 and "STATUS" in out and job_id in out and "completed" in out and not out.lstrip().startswith("["),
          f"list on a terminal: {out[:500]!r}")
    code, out = on_terminal(e, "show", job_id)
    check(code == 0 and "status" in out and "tiles_path" in out and not out.lstrip().startswith("{"),
          f"show on a terminal: {out[:500]!r}")
    code, out = on_terminal(e, "wait", job_id)
    check(code == 0 and "[" + "#" * 30 + "] 100%" in out, f"wait on a terminal: {out[:500]!r}")
    code, out = on_terminal(e, "list", "--project", "tty", "--json")
    check(code == 0 and out.lstrip().startswith("["), f"list --json on a terminal: {out[:200]!r}")
    return "tables on a terminal, JSON with --json, a progress bar"


def scenario_run(e, small, big):
    p = e.run("run", "--file", str(small), "--project", "demo", "--version", "1", "--create-draft", expect=0)
    result = json.loads(p.stdout)
    check(result["tiles_path"].startswith("mp/demo/uploads/tiles/1/runs/") and result["layout"] == "dz", f"run result {result}")
    # Garbage collection: nothing to collect (the only run is the committed one), and it says so.
    gc = json.loads(e.run("gc", "--project", "demo", "--json", expect=0).stdout)
    check(gc["removed_runs"] == 0 and gc["versions"][0]["prefix"] == "mp/demo/uploads/tiles/1/", f"gc: {gc}")
    check("job " in p.stderr and "completed" in p.stderr and "queued" in p.stderr, f"run progress: {p.stderr}")
    tiles, stray = pyramid_report(e.tiles("demo", 1))
    check(tiles == result["tile_count"] and not stray, f"{tiles} tiles, stray {stray[:5]}")
    # Again on the same draft: a rerun replaces the pyramid.
    p = e.run("run", "--file", str(small), "--project", "demo", "--version", "1", "--layout", "xyz", "--format", "jpg",
              expect=0)
    check(json.loads(p.stdout)["layout"] == "xyz", "rerun with --layout xyz")
    meta = json.loads((e.tiles("demo", 1) / "pyramid.json").read_text())
    check(meta["layout"] == "xyz" and meta["format"] == "jpg", f"pyramid.json after the rerun: {meta['layout']}")
    return "run: enqueue + worker + wait in one command, result JSON, rerun replaces the pyramid"


def scenario_pg_settings(e, small, big):
    if not e.jobs_db:
        return "skipped (a SQLite job store)"
    base, _, query = e.jobs_db.partition("?")
    params = dict(kv.split("=", 1) for kv in query.split("&"))
    host = params["host"]

    def url(db, user, password=None):
        return f"postgresql:///{db}?host={host}&user={user}" + (f"&password={password}" if password else "")

    def psql(sql, **kw):
        return subprocess.run(["psql", e.jobs_db, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True, capture_output=True,
                              text=True, **kw).stdout

    def cli(*extra, jobs_db, timeout=60):
        a = [e.cli, "jobs", *extra, "--data-dir", str(e.data), "--jobs-db", jobs_db]
        began = time.monotonic()
        p = subprocess.run(a, capture_output=True, text=True, timeout=timeout, env=e.env, cwd=e.work)
        return p, time.monotonic() - began

    # A password the server checks: scram for one role on the socket, ahead of the trust lines.
    hba = Path(os.environ["TILEKIT_TEST_POSTGRES_DIR"]) / "data" / "pg_hba.conf"
    line = "local all tk_pw_user scram-sha-256\n"
    if line not in hba.read_text():
        hba.write_text(line + hba.read_text())
    psql("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tk_pw_user') THEN "
         "CREATE ROLE tk_pw_user LOGIN PASSWORD 'the-right-one'; END IF; END$$")
    psql("SELECT pg_reload_conf()")
    time.sleep(0.5)
    refusals = [(url("tk_no_such_database", params["user"]), "does not exist"),
                (url(base.rsplit("/", 1)[-1], "tk_no_such_role"), "does not exist"),
                (url(base.rsplit("/", 1)[-1], "tk_pw_user", "wrong-secret"), "password authentication failed")]
    times = []
    for bad, words in refusals:
        p, took = cli("list", jobs_db=bad)
        times.append(took)
        check(p.returncode == 1, f"list on {bad}: exit {p.returncode}\n{p.stderr}")
        check(words in p.stderr and "[store_refused]" in p.stderr, f"list on {bad}: stderr {p.stderr}")
        check("wrong-secret" not in p.stderr, f"the password shows: {p.stderr}")
        check(took < 5, f"list on {bad} took {took:.1f} s")
        p, took = cli("work", "--drain", jobs_db=bad)
        check(p.returncode == 1 and "[store_refused]" in p.stderr and took < 5,
              f"work --drain on {bad}: exit {p.returncode} after {took:.1f} s\n{p.stderr}")

    # The DBA path: the schema from schema-sql, a role with USAGE and DML only.
    schema = "tk_restricted"
    psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    p = subprocess.run([e.cli, "jobs", "schema-sql", "--jobs-schema", schema], capture_output=True, text=True, timeout=30)
    check(p.returncode == 0 and "CREATE TABLE" in p.stdout, f"schema-sql: exit {p.returncode}\n{p.stderr}")
    psql(p.stdout)
    psql("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tk_dml') THEN CREATE ROLE tk_dml LOGIN; END IF; END$$")
    psql(f"GRANT USAGE ON SCHEMA {schema} TO tk_dml; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO tk_dml;"
         f" GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO tk_dml")
    dml = url(base.rsplit("/", 1)[-1], "tk_dml")
    p, _ = cli("list", "--jobs-schema", schema, "--jobs-create-schema", "0", jobs_db=dml)
    check(p.returncode == 0, f"list as tk_dml, create-schema 0: exit {p.returncode}\n{p.stderr}")
    p, _ = cli("work", "--drain", f"--jobs-schema={schema}", "--jobs-create-schema=0", jobs_db=dml, timeout=120)
    check(p.returncode == 0, f"work --drain as tk_dml, create-schema 0: exit {p.returncode}\n{p.stderr}")
    p, took = cli("list", "--jobs-schema", schema, "--jobs-create-schema", "1", jobs_db=dml)
    check(p.returncode == 1 and "permission denied" in p.stderr and "--jobs-create-schema 0" in p.stderr
          and "[store_refused]" in p.stderr, f"list as tk_dml, create-schema 1: exit {p.returncode}\n{p.stderr}")
    psql(f"DROP SCHEMA {schema} CASCADE; DROP OWNED BY tk_dml")
    return (f"3 refusals exit 1 in {max(times):.2f} s at most; a USAGE+DML role runs list and work --drain with "
            f"create-schema 0, refused clearly with 1")


def scenario_operator(e, small, big):
    ids = [e.enqueue(small, "ops", v) for v in (1, 2, 3)]
    p = e.run("list", "--project", "ops", "--limit", "2", "--json", expect=0)
    page = json.loads(p.stdout)
    check([j["id"] for j in page] == ids[::-1][:2], f"first page: {[j['id'] for j in page]}")
    check("--after " in p.stderr, f"no next-page cursor on stderr: {p.stderr}")
    cursor = p.stderr.split("--after ")[1].split()[0]
    p = e.run("list", "--project", "ops", "--limit", "2", "--after", cursor, "--json", expect=0)
    rest = json.loads(p.stdout)
    check([j["id"] for j in rest] == [ids[0]] and "--after" not in p.stderr, f"second page: {rest} {p.stderr}")
    e.run("list", "--after", "nonsense", expect=2)
    done = json.loads(e.run("cancel", "--project", "ops", "--all", "--json", expect=0).stdout)
    check(sorted(j["id"] for j in done) == sorted(ids), f"cancel --all: {[j['id'] for j in done]}")
    stats = json.loads(e.run("stats", "--json", expect=0).stdout)
    check(stats["counts"]["cancelled"] >= 3 and "pickup_latency_avg_ms" in stats and "failure_rate" in stats, f"stats: {stats}")
    job = json.loads(e.run("retry", ids[0], "--json", expect=0).stdout)
    check(job["status"] == "queued" and job["attempt"] == 0, f"retry: {job}")
    e.run("retry", ids[0], expect=1)  # queued: nothing to retry
    # Another job of version 1 is active now: retrying an old one of it is refused.
    e.run("cancel", ids[0], expect=0)
    other = e.enqueue(small, "ops", 1)
    p = e.run("retry", ids[0], expect=1)
    check("already" in p.stderr, f"retry of a busy version: {p.stderr}")
    e.run("cancel", other, expect=0)
    done = json.loads(e.run("retry", "--status", "cancelled", "--project", "ops", "--version", "2", "--json",
                            expect=0).stdout)
    check([j["id"] for j in done] == [ids[1]], f"retry --status cancelled --version 2: {done}")
    e.run("retry", "--status", "completed", "--project", "ops", expect=2)
    e.run("cancel", "--project", "ops", "--all", expect=0)
    before = len(json.loads(e.run("list", "--limit", "1000", "--json", expect=0).stdout))
    p = json.loads(e.run("prune", "--keep-per-version", "1", "--dry-run", "--json", expect=0).stdout)
    check(p["dry_run"] and p["would_delete"] >= 1, f"prune --keep-per-version 1 --dry-run: {p}")  # ops v1 has 2
    check(len(json.loads(e.run("list", "--limit", "1000", "--json", expect=0).stdout)) == before, "a dry run deleted")
    p = json.loads(e.run("prune", "--keep-per-version", "1", "--json", expect=0).stdout)
    check(p["deleted"] >= 1, f"prune --keep-per-version 1: {p}")
    left = json.loads(e.run("list", "--project", "ops", "--version", "1", "--json", expect=0).stdout)
    check([j["id"] for j in left] == [other], f"ops version 1 after the cap: {[j['id'] for j in left]}")
    e.run("prune", "--older-than", "soon", expect=2)
    time.sleep(1.1)
    p = json.loads(e.run("prune", "--older-than", "1s", "--json", expect=0).stdout)
    check(p["deleted"] >= 3, f"prune --older-than 1s: {p}")
    check(json.loads(e.run("list", "--project", "ops", "--json", expect=0).stdout) == [], "ops jobs left after prune")
    return "list pages, cancel --all, retry (single, refused, bulk), stats, prune (dry run, cap, age)"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cli", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--postgresql", action="store_true")
    parser.add_argument("--service", help="tilekit-service binary (the service scenario)")
    parser.add_argument("--scenario", action="append")
    a = parser.parse_args()
    cli = str(Path(a.cli).resolve())
    check(os.access(cli, os.X_OK), f"no CLI at {cli}")
    jobs_db = None
    if a.postgresql:
        jobs_db = os.environ.get("TILEKIT_TEST_POSTGRES_URL")
        check(bool(jobs_db), "TILEKIT_TEST_POSTGRES_URL is not set (run under scripts/postgres-server.sh run)")
        # A fresh queue: the server's directory may be reused between runs.
        subprocess.run(["psql", jobs_db, "-qc", "DROP SCHEMA IF EXISTS tilekit CASCADE"], check=True)
    work = Path(a.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    small, big = work / "small.png", work / "big.png"
    write_png(small, 1500, 1000)
    write_png(big, 6144, 6144)
    e = Env(cli, work, jobs_db)
    e.service = str(Path(a.service).resolve()) if a.service else None
    failed = 0
    for name in a.scenario or ALL:
        began = time.monotonic()
        try:
            summary = globals()["scenario_" + name](e, small, big)
            print(f"PASS {name} ({time.monotonic() - began:.1f} s): {summary}", flush=True)
        except Exception as ex:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name} ({time.monotonic() - began:.1f} s): {type(ex).__name__}: {ex}", flush=True)
        finally:
            for p in children:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            children.clear()
    return 1 if failed else 0


def kill_all():
    for p in children:
        if p.poll() is None:
            p.kill()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda s, f: (kill_all(), sys.exit(128 + s)))
    sys.exit(main())

"""The harness of the multi-process queue tests: queue_tool processes (workers and one-shot
commands) on one store, the side-effect log they write, waits that fail with the job states,
and the checks every scenario makes. Python 3 standard library only."""

import json
import os
import shlex
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

TERMINAL = {"completed", "failed", "cancelled"}


class ToolError(Exception):
    pass


# Every queue_tool process this driver started; killed on exit, whatever happens.
CHILDREN = []


def kill_children():
    for proc in CHILDREN:
        if proc.poll() is None:
            proc.kill()
    for proc in CHILDREN:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    CHILDREN.clear()


class Worker:
    def __init__(self, name, proc, stderr_path):
        self.name = name
        self.proc = proc
        self.stderr_path = stderr_path

    def stderr_tail(self, lines=15):
        try:
            return "".join(Path(self.stderr_path).read_text(errors="replace").splitlines(True)[-lines:])
        except OSError:
            return ""


class Scenario:
    """One scenario's store, log, workers and helpers."""

    def __init__(self, config, name):
        self.config = config
        self.name = name
        self.work_dir = config.work_dir
        self.log_path = self.work_dir / f"{name}.log"
        self.log_path.unlink(missing_ok=True)
        self.store_args = self._fresh_store()
        self.workers = []
        self.killed_at = {}  # pid -> monotonic time of its SIGKILL

    def _fresh_store(self):
        if self.config.is_postgresql:
            # Its own schema, so that no scenario sees another's jobs.
            return [self.config.store, "--schema", f"tk_q_{self.name}_{os.getpid()}"]
        base = Path(self.config.store)
        path = base.with_name(f"{base.stem}-{self.name}{base.suffix or '.sqlite'}")
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return [str(path)]

    # --- queue_tool commands ---------------------------------------------------------------

    def tool(self, command, *args, timeout=60, prefix=()):
        argv = [*prefix, self.config.tool, command, self.store_args[0], *args, *self.store_args[1:]]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolError(f"{' '.join(map(shlex.quote, argv))} took over {timeout} s")
        if done.returncode != 0:
            raise ToolError(f"{' '.join(map(shlex.quote, argv))} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def enqueue(self, job_type, count=1, payload=None, max_attempts=None):
        args = ["--type", job_type, "--count", str(count)]
        if payload is not None:
            args += ["--payload", json.dumps(payload)]
        if max_attempts is not None:
            args += ["--max-attempts", str(max_attempts)]
        ids = self.tool("enqueue", *args, timeout=300).split()
        assert len(ids) == count, f"enqueue printed {len(ids)} ids, expected {count}"
        return ids

    def show(self, job_id):
        return json.loads(self.tool("show", job_id))

    def jobs(self):
        return {job["id"]: job for job in json.loads(self.tool("list"))}

    def cancel(self, job_id):
        return json.loads(self.tool("cancel", job_id))

    def start_worker(self, name, threads=2, lease_ms=30000, heartbeat_ms=None, rescue_ms=5000, poll_ms=100,
                     grace_ms=20000, backoff_base_ms=100, backoff_cap_ms=60000, jitter=False, prefix=()):
        """`prefix`: a command the worker runs under (e.g. unshare into a PID namespace of its own)."""
        args = ["--threads", str(threads), "--name", name, "--log", str(self.log_path),
                "--lease-ms", str(lease_ms), "--rescue-ms", str(rescue_ms), "--poll-ms", str(poll_ms),
                "--grace-ms", str(grace_ms), "--backoff-base-ms", str(backoff_base_ms),
                "--backoff-cap-ms", str(backoff_cap_ms), "--tiles-root", str(self.config.tiles_root)]
        if heartbeat_ms is not None:
            args += ["--heartbeat-ms", str(heartbeat_ms)]
        if not jitter:
            args.append("--no-jitter")
        stderr_path = self.work_dir / f"{self.name}-{name}.stderr"
        argv = [*prefix, self.config.tool, "work", self.store_args[0], *args, *self.store_args[1:]]
        with open(stderr_path, "w") as stderr:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        CHILDREN.append(proc)
        worker = Worker(name, proc, stderr_path)
        self.workers.append(worker)
        self.wait_for(lambda: any(e["event"] == "ready" and e.get("worker") == name for e in self.log()),
                      30, f"worker {name} to start")
        return worker

    def stop_worker(self, worker, timeout=60):
        """SIGTERM (graceful) and wait; returns the seconds it took to exit."""
        began = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        try:
            rc = worker.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker {worker.name} did not exit within {timeout} s of SIGTERM")
        assert rc == 0, f"worker {worker.name} exited {rc}: {worker.stderr_tail()}"
        return time.monotonic() - began

    def kill_worker(self, worker):
        """SIGKILL: the worker's running executions end now, without a line in the log."""
        worker.proc.kill()
        self.killed_at[worker.proc.pid] = time.monotonic()
        worker.proc.wait(timeout=10)
        return self.killed_at[worker.proc.pid]

    def stop_all_workers(self):
        for worker in self.workers:
            if worker.proc.poll() is None:
                self.stop_worker(worker)

    # --- the side-effect log -----------------------------------------------------------------

    def log(self):
        if not self.log_path.exists():
            return []
        events = []
        with open(self.log_path) as lines:
            for number, line in enumerate(lines, 1):
                if not line.endswith("\n"):
                    break  # a line being written right now (or cut by SIGKILL)
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    raise AssertionError(f"{self.log_path}:{number} is not one JSON object (interleaved?): {line!r}")
        return events

    def job_events(self, job_id, event=None, events=None):
        return [e for e in (events if events is not None else self.log())
                if e.get("job") == job_id and (event is None or e["event"] == event)]

    # --- waiting -----------------------------------------------------------------------------

    def wait_for(self, predicate, timeout, what):
        """Polls predicate() until true; on timeout fails with the job states and the workers' stderr.
        A failing queue_tool (a database restarting) counts as "not yet"."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except ToolError as e:
                last_error = e
            for worker in self.workers:
                if worker.proc.poll() not in (None, 0, -signal.SIGKILL):
                    raise AssertionError(f"worker {worker.name} died ({worker.proc.returncode}) while waiting for "
                                         f"{what}:\n{worker.stderr_tail()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                             + (f" (last tool error: {last_error})" if last_error else "") + "\n" + self.describe())

    def wait_terminal(self, ids, timeout):
        wanted = set(ids)

        def all_terminal():
            jobs = self.jobs()
            return all(jobs.get(i, {}).get("status") in TERMINAL for i in wanted)

        self.wait_for(all_terminal, timeout, f"{len(wanted)} job(s) to end")
        jobs = self.jobs()
        return {i: jobs[i] for i in wanted}

    def describe(self):
        out = []
        try:
            counts = Counter(job["status"] for job in self.jobs().values())
            out.append(f"job states: {dict(counts)}")
            for job in [j for j in self.jobs().values() if j["status"] not in TERMINAL][:10]:
                out.append(f"  {job['id']} {job['job_type']} {job['status']} attempt {job['attempt']} "
                           f"worker {job['worker']} run_at {job['run_at']} progress {job['progress']} {job['message']}")
        except (ToolError, ValueError) as e:
            out.append(f"(cannot list the jobs: {e})")
        for worker in self.workers:
            tail = worker.stderr_tail(5).strip()
            if tail:
                out.append(f"worker {worker.name} stderr:\n{tail}")
        return "\n".join(out)

    # --- checks every scenario makes ---------------------------------------------------------

    def executions(self, events):
        """(job, pid, worker, attempt) -> [start, end] in seconds (monotonic); an execution without
        an end line ends when its process was killed (or never)."""
        runs = {}
        for e in events:
            key = (e.get("job"), e.get("pid"), e.get("worker"), e.get("attempt"))
            if e["event"] == "start":
                assert key not in runs, f"job {key[0]} attempt {key[3]} started twice by {key[2]}"
                runs[key] = [e["mono_ns"] / 1e9, None]
            elif e["event"] in ("end", "stopped", "failed"):
                assert key in runs, f"an {e['event']} line without a start: {e}"
                runs[key][1] = e["mono_ns"] / 1e9
        for (_job, pid, _worker, _attempt), run in runs.items():
            if run[1] is None:
                run[1] = self.killed_at.get(pid, float("inf"))
        return runs

    def assert_no_overlap(self, events):
        by_job = defaultdict(list)
        for (job, _pid, worker, attempt), (begin, end) in self.executions(events).items():
            by_job[job].append((begin, end, worker, attempt))
        for job, runs in by_job.items():
            runs.sort()
            for earlier, later in zip(runs, runs[1:]):
                assert later[0] >= earlier[1], (f"job {job} ran twice at once: {earlier[2]} attempt {earlier[3]} "
                                                f"until {earlier[1]:.3f}, {later[2]} attempt {later[3]} from {later[0]:.3f}")

    def assert_completed_once(self, ids, events, expected_attempt=1):
        jobs = self.jobs()
        ends = Counter(e["job"] for e in events if e["event"] == "end")
        starts = Counter(e["job"] for e in events if e["event"] == "start")
        for job_id in ids:
            job = jobs.get(job_id)
            assert job is not None, f"job {job_id} is not in the store"
            assert job["status"] == "completed", f"job {job_id} is {job['status']} ({job['error']}), not completed"
            if expected_attempt is not None:
                assert job["attempt"] == expected_attempt, f"job {job_id} completed on attempt {job['attempt']}"
            assert ends[job_id] == 1, f"job {job_id} ran to its end {ends[job_id]} times (side-effect log)"
            if expected_attempt == 1:
                assert starts[job_id] == 1, f"job {job_id} started {starts[job_id]} times (side-effect log)"

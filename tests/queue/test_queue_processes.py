#!/usr/bin/env python3
"""The durable job queue with real processes: several queue_tool workers on one store.

    test_queue_processes.py --tool PATH --store FILE_OR_URL [--scenario NAME ...]
    test_queue_processes.py --tool PATH --store-from-env --restart-cmd "CMD"   # PostgreSQL (ctest)

Scenarios (all but `restart` by default; `restart` runs when --restart-cmd is given or it is named):
  spread    3 workers, 300 short jobs: each completes exactly once, the work is spread
  kill      SIGKILL a worker mid-job (a long sleep, then a tile_generation): rescued after its
            lease by the surviving worker, completed on attempt 2; the pyramid is complete. On
            its last attempt, the job fails as interrupted instead
  dead_owner  (SQLite) the next worker to open the store rescues a killed worker's job at once
  namespaces  (SQLite, root) workers in two PID namespaces on one file (unshare --pid): a live
            one's job is never rescued from the other namespace; a SIGKILLed one's is, at once
  clock_step  rescues whose wall clock is 2 h ahead or behind (libfaketime; the monotonic and
            boot clocks left true), as after a step of the host's clock: no live job is rescued,
            and a SIGKILLed worker's job is rescued when its lease ends, not 2 h off
  pause     SIGSTOP a worker past its lease: taken over; on SIGCONT its writes are fenced off
            and its handler stopped
  retry     a job that always fails retryably: exactly max_attempts attempts with growing gaps,
            then failed; a permanent failure fails at once
  cancel    cancel a running sleep job (stops within ~1 s) and a running tile_generation (no
            manifest left)
  graceful  SIGTERM a worker with a short grace: its job is handed back, not used up, and
            another worker completes it
  restart   200 jobs over 2 workers with CMD (e.g. a database restart) run in the middle: every
            job completes exactly once. CMD finds the scenario's store in $TILEKIT_QUEUE_STORE.

Each scenario gets a fresh store (its own SQLite file, or its own PostgreSQL schema), a fresh
side-effect log and prints one summary line. The side-effect log, written by the handlers with
one O_APPEND write() per line, is the proof of what ran; the store is only checked against it.
Every wait has a timeout that fails with the job states; all child processes are killed at the
end, also on failure. Python 3 standard library only.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from pyramids import (TILE_IMAGE_KEY, TILE_IMAGE_SIZE, TILE_VERSION_PREFIX, committed_pointer, files_under,
                      pyramid_report, tile_payload, write_png)
from queue_harness import Scenario, kill_children

ALL_SCENARIOS = ["spread", "kill", "dead_owner", "namespaces", "clock_step", "pause", "retry", "cancel", "graceful",
                 "restart"]


def on_stop_signal(signum, _frame):
    kill_children()
    sys.exit(128 + signum)


def scenario_spread(s):
    workers = [s.start_worker(f"w{i}", threads=2) for i in (1, 2, 3)]
    began = time.monotonic()
    ids = s.enqueue("sleep", 300, payload={"ms": 5})
    s.wait_terminal(ids, 180)
    elapsed = time.monotonic() - began
    s.stop_all_workers()
    events = s.log()
    s.assert_completed_once(ids, events)
    s.assert_no_overlap(events)
    per_worker = Counter(e["worker"].split("#")[0] for e in events if e["event"] == "end")
    for worker in workers:
        share = per_worker[worker.name] / len(ids)
        assert share >= 0.10, f"worker {worker.name} ran only {per_worker[worker.name]} of {len(ids)} jobs: {dict(per_worker)}"
    return (f"{len(ids)} jobs by 3 workers x 2 threads in {elapsed:.1f} s; per worker "
            + " ".join(f"{w.name}={per_worker[w.name]}" for w in workers) + "; each exactly once, no overlap")


def kill_mid_job(s, job_type, payload, started):
    """Worker `victim` runs the job until started(job) says it is in the middle; `survivor` (rescue
    every 500 ms) starts, the victim is SIGKILLed; returns (job id, seconds from kill to attempt 2)."""
    lease_ms, heartbeat_ms = 2000, 500
    victim_name, survivor_name = f"victim-{job_type}", f"survivor-{job_type}"
    victim = s.start_worker(victim_name, threads=1, lease_ms=lease_ms, heartbeat_ms=heartbeat_ms, rescue_ms=0)
    [job_id] = s.enqueue(job_type, payload=payload, max_attempts=3)
    s.wait_for(lambda: s.job_events(job_id, "start"), 30, f"the victim to start {job_type} job {job_id}")
    s.wait_for(lambda: started(job_id), 60, f"{job_type} job {job_id} to be under way")
    s.start_worker(survivor_name, threads=1, lease_ms=lease_ms, heartbeat_ms=heartbeat_ms, rescue_ms=500)
    assert not s.job_events(job_id, "end"), f"the {job_type} job ended before the victim was killed: make it longer"
    killed_at = s.kill_worker(victim)
    [job] = s.wait_terminal([job_id], 120).values()
    events = s.log()
    s.assert_no_overlap(events)
    assert job["status"] == "completed", f"job {job_id} is {job['status']}: {job['error']}"
    assert job["attempt"] == 2, f"job {job_id} completed on attempt {job['attempt']}, expected 2"
    starts = s.job_events(job_id, "start", events)
    assert [(e["worker"].split("#")[0], e["attempt"]) for e in starts] == [(victim_name, 1), (survivor_name, 2)], \
        f"expected the victim's attempt 1 then the survivor's attempt 2, got {starts}"
    ends = s.job_events(job_id, "end", events)
    assert len(ends) == 1 and ends[0]["worker"].startswith(survivor_name + "#"), f"expected one end, by the survivor: {ends}"
    rescue_seconds = starts[1]["mono_ns"] / 1e9 - killed_at
    # Not before the lease can have ended (last renewal <= a heartbeat and a keeper tick before the
    # kill), and not long after: lease + rescue interval + backoff + poll + slack.
    earliest = (lease_ms - heartbeat_ms - 250) / 1000 - 0.1
    latest = (lease_ms + 500 + 100 + 100) / 1000 + 3.0
    assert earliest <= rescue_seconds <= latest, \
        f"attempt 2 began {rescue_seconds:.2f} s after the kill; expected {earliest:.2f}..{latest:.2f} s (lease {lease_ms} ms)"
    return job_id, rescue_seconds


def scenario_kill(s):
    sleep_id, sleep_rescue = kill_mid_job(s, "sleep", {"ms": 4000},
                                          lambda job_id: s.show(job_id)["progress"] >= 10)
    s.stop_all_workers()
    s.workers.clear()
    tile_id, tile_rescue = kill_mid_job(s, "tile_generation", tile_payload(),
                                        lambda job_id: s.show(job_id)["progress"] >= 20)
    s.stop_all_workers()
    s.workers.clear()
    last_chance = kill_with_no_attempt_left(s)
    result = s.show(tile_id)["result"]
    tiles_dir = s.config.tiles_root / "tiles" / result["tiles_path"]
    tile_count, strays = pyramid_report(tiles_dir)
    assert tile_count == result["tile_count"], f"{tile_count} tiles, the job's result says {result['tile_count']}"
    pointer = committed_pointer(s.config.tiles_root / "tiles")
    assert pointer and pointer["job_id"] == tile_id and pointer["run"] == result["run"], \
        f"the version's pointer {pointer} does not name the completed run {result['run']}"
    assert not strays, f"the committed run holds files that are not part of its pyramid: {strays[:5]}"
    return (f"SIGKILL mid-job, lease 2 s: sleep job rescued and restarted after {sleep_rescue:.2f} s, "
            f"tile_generation after {tile_rescue:.2f} s; both completed on attempt 2; pyramid complete "
            f"({tile_count} tiles, {result['levels']} levels); stray files left by the killed worker: {len(strays)}"
            + (f" e.g. {strays[:3]}" if strays else "") + f"; with max_attempts 1: {last_chance}")


def kill_with_no_attempt_left(s):
    """A job on its last attempt whose worker is killed fails as interrupted and never runs again."""
    victim = s.start_worker("victim-last", threads=1, lease_ms=2000, heartbeat_ms=500, rescue_ms=0)
    [job_id] = s.enqueue("sleep", payload={"ms": 4000}, max_attempts=1)
    s.wait_for(lambda: s.job_events(job_id, "start"), 30, f"job {job_id} to start")
    s.start_worker("survivor-last", threads=1, lease_ms=2000, heartbeat_ms=500, rescue_ms=500)
    killed_at = s.kill_worker(victim)
    [job] = s.wait_terminal([job_id], 60).values()
    failed_after = time.monotonic() - killed_at
    time.sleep(0.5)  # it must not come back
    s.stop_all_workers()
    assert job["status"] == "failed" and job["attempt"] == 1, \
        f"job {job_id} is {job['status']} on attempt {job['attempt']}, expected failed on attempt 1"
    assert "interrupted" in (job["error"] or ""), f"the error should say the job was interrupted: {job['error']!r}"
    assert len(s.job_events(job_id, "start")) == 1, "a job with no attempt left was run again"
    return f"failed as interrupted {failed_after:.2f} s after the kill, not run again"


def scenario_dead_owner(s):
    """SQLite only: a worker opening the store rescues at once the jobs of a local process that
    is gone (pid and start time from /proc), without waiting for their (long) lease."""
    if s.config.is_postgresql:
        return None
    lease_ms = 30000
    victim = s.start_worker("victim", threads=1, lease_ms=lease_ms, rescue_ms=0)
    [job_id] = s.enqueue("sleep", payload={"ms": 3000}, max_attempts=3)
    s.wait_for(lambda: s.job_events(job_id, "start"), 30, f"job {job_id} to start")
    killed_at = s.kill_worker(victim)
    s.start_worker("newcomer", threads=1, lease_ms=lease_ms, rescue_ms=0)  # no lease-based rescue at all
    s.wait_for(lambda: len(s.job_events(job_id, "start")) == 2, 20, f"job {job_id} to be rescued on open")
    taken_after = s.job_events(job_id, "start")[1]["mono_ns"] / 1e9 - killed_at
    [job] = s.wait_terminal([job_id], 60).values()
    s.stop_all_workers()
    events = s.log()
    s.assert_no_overlap(events)
    assert job["status"] == "completed" and job["attempt"] == 2, \
        f"job {job_id} is {job['status']} on attempt {job['attempt']}, expected completed on attempt 2"
    recovered = s.job_events(job_id, "recovered", events)
    assert recovered and recovered[0]["status"] == "queued", f"the newcomer's open-time rescue: {recovered}"
    assert taken_after < lease_ms / 1000 / 2, f"rescued {taken_after:.2f} s after the kill: that was the lease, not the open"
    return (f"SIGKILLed worker's job rescued by the next process to open the store {taken_after:.2f} s after the "
            f"kill (lease {lease_ms / 1000:.0f} s), completed on attempt 2")


# A PID namespace of its own, with its own /proc, killed with its unshare process.
NAMESPACE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--"]


def can_unshare():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run([*NAMESPACE, "true"], capture_output=True).returncode == 0


def scenario_namespaces(s):
    """SQLite only, as root: two containers sharing the data volume and the host name are two PID
    namespaces on one file; there each worker is pid 1 of its own. A live worker's running job is
    never rescued from the other namespace (opening the store, repeated dead-owner rescues); once
    the worker is SIGKILLed, the other namespace rescues its job at once (the owner's lock is gone)."""
    if s.config.is_postgresql or not can_unshare():
        return None
    lease_ms = 60000
    victim = s.start_worker("victim", threads=1, lease_ms=lease_ms, rescue_ms=0, prefix=NAMESPACE)
    [job_id] = s.enqueue("sleep", payload={"ms": 30000}, max_attempts=3)
    s.wait_for(lambda: s.job_events(job_id, "start"), 30, f"job {job_id} to start")
    s.start_worker("neighbour", threads=1, lease_ms=lease_ms, rescue_ms=0, prefix=NAMESPACE)
    for _ in range(3):
        rescued = json.loads(s.tool("rescue-dead", prefix=NAMESPACE))
        assert rescued == [], f"a live worker's job was rescued from another PID namespace: {rescued}"
    job = s.show(job_id)
    assert job["status"] == "running" and job["attempt"] == 1, f"job {job_id}: {job}"
    assert not s.job_events(job_id, "recovered"), "the neighbour's open-time rescue took a live worker's job"
    assert len(s.job_events(job_id, "start")) == 1

    killed_at = s.kill_worker(victim)
    rescued = []

    def rescued_now():
        rescued.extend(json.loads(s.tool("rescue-dead", prefix=NAMESPACE)))
        return rescued

    s.wait_for(rescued_now, 10, f"job {job_id} to be rescued from another namespace")
    rescued_after = time.monotonic() - killed_at
    assert [j["id"] for j in rescued] == [job_id] and rescued[0]["status"] == "queued", f"rescued: {rescued}"
    assert rescued_after < 5, f"rescued {rescued_after:.2f} s after the kill"
    s.wait_for(lambda: len(s.job_events(job_id, "start")) == 2, 20, f"the neighbour to start job {job_id} again")
    # (assert_no_overlap cannot tell when the victim stopped: its log names pid 1 of its namespace.)
    second_start = s.job_events(job_id, "start")[1]["mono_ns"] / 1e9
    assert second_start > killed_at, f"attempt 2 began {killed_at - second_start:.2f} s before the victim was killed"
    return (f"a live worker's job left alone by a neighbour and 3 rescues in other PID namespaces; after its "
            f"SIGKILL rescued {rescued_after:.2f} s later and started again by the neighbour (lease {lease_ms / 1000:.0f} s)")


LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"  # Debian's faketime package


def wall_clock_off(offset):
    """Runs a command with its wall clock moved by `offset` ("+2h", "-2h") and every other clock
    true (FAKETIME_DONT_FAKE_MONOTONIC): a host whose clock is off, or one just stepped by NTP.
    Through env, which execs, so the worker's pid is the tool's own."""
    assert os.path.exists(LIBFAKETIME), f"{LIBFAKETIME} is missing: install Debian's faketime (scripts/install-deps.sh)"
    # Under AddressSanitizer (CI's sanitizer stage) the preloaded library comes before the ASan
    # runtime, which ASan refuses unless told that the order is intended.
    asan = os.environ.get("ASAN_OPTIONS", "")
    return ["env", f"LD_PRELOAD={LIBFAKETIME}", f"FAKETIME={offset}", "FAKETIME_DONT_FAKE_MONOTONIC=1",
            f"ASAN_OPTIONS={asan + ':' if asan else ''}verify_asan_link_order=0"]


def scenario_clock_step(s):
    """A step of the wall clock moves no lease. Rescues whose wall clock is 2 h ahead (a step
    forward since the claims) leave live jobs alone, a 60 s lease and a 3 s one renewed every
    0.5 s; once the second job's worker is SIGKILLed, rescues whose wall clock is 2 h behind (a
    step back) rescue it when its lease ends by the true clock: not at once, not 2 h late.
    SQLite keeps leases on the host's boot clock; PostgreSQL on the server's clock."""
    ahead, behind = wall_clock_off("+2h"), wall_clock_off("-2h")
    s.start_worker("steady", threads=1, lease_ms=60000, rescue_ms=0)
    [live] = s.enqueue("sleep", payload={"ms": 30000}, max_attempts=3)
    s.wait_for(lambda: s.job_events(live, "start"), 30, f"job {live} to start")
    for _ in range(3):
        rescued = json.loads(s.tool("rescue", prefix=ahead))
        assert rescued == [], f"a rescue with the wall clock 2 h ahead took live jobs: {rescued}"

    lease_ms = 3000
    victim = s.start_worker("victim", threads=1, lease_ms=lease_ms, heartbeat_ms=500, rescue_ms=0)
    [held] = s.enqueue("sleep", payload={"ms": 30000}, max_attempts=3)
    s.wait_for(lambda: s.job_events(held, "start"), 30, f"job {held} to start")
    [started] = s.job_events(held, "start")
    assert started["pid"] == victim.proc.pid, f"job {held} went to another worker: {started}"
    checks_until = time.monotonic() + 2 * lease_ms / 1000
    while time.monotonic() < checks_until:  # its renewals keep it alive by the true clock
        rescued = json.loads(s.tool("rescue", prefix=ahead))
        assert rescued == [], f"a renewed job was rescued by a rescue whose wall clock is 2 h ahead: {rescued}"
        time.sleep(0.2)

    # The wall clock stepped back 2 h: a dead worker's job is still rescued when its lease ends.
    killed_at = s.kill_worker(victim)
    rescued = json.loads(s.tool("rescue", prefix=behind))
    assert rescued == [], f"rescued at once after the kill, with up to {lease_ms} ms of lease left: {rescued}"
    found = []

    def rescued_now():
        found.extend(json.loads(s.tool("rescue", prefix=behind)))
        return found

    s.wait_for(rescued_now, 20, f"job {held} to be rescued when its lease ends")
    after = time.monotonic() - killed_at
    assert [j["id"] for j in found] == [held], f"rescued: {found}"
    assert 2.0 <= after <= lease_ms / 1000 + 3, f"rescued {after:.2f} s after the kill (lease {lease_ms} ms)"
    job = s.show(live)
    assert job["status"] == "running" and job["attempt"] == 1, f"the live job {live}: {job}"
    return (f"no live job rescued with the wall clock 2 h ahead; with it 2 h behind, the killed worker's job "
            f"rescued {after:.2f} s after its SIGKILL (lease {lease_ms / 1000:.0f} s, renewed every 0.5 s)")


def scenario_pause(s):
    """SIGSTOP a worker past its lease: the job is rescued and run by another worker; when the
    paused worker resumes, the store refuses its writes (fencing) and its keeper stops its handler."""
    lease_ms, heartbeat_ms = 2000, 500
    paused = s.start_worker("paused", threads=1, lease_ms=lease_ms, heartbeat_ms=heartbeat_ms, rescue_ms=0)
    [job_id] = s.enqueue("sleep", payload={"ms": 6000}, max_attempts=3)
    s.wait_for(lambda: s.job_events(job_id, "start"), 30, f"job {job_id} to start")
    s.wait_for(lambda: s.show(job_id)["progress"] >= 5, 30, f"job {job_id} to report progress")
    s.start_worker("other", threads=1, lease_ms=lease_ms, heartbeat_ms=heartbeat_ms, rescue_ms=500)
    paused.proc.send_signal(signal.SIGSTOP)
    try:
        s.wait_for(lambda: len(s.job_events(job_id, "start")) == 2, 20, f"job {job_id} to be taken over")
    finally:
        resumed_at = time.monotonic()
        paused.proc.send_signal(signal.SIGCONT)
    s.wait_for(lambda: [e for e in s.job_events(job_id) if e["pid"] == paused.proc.pid
                        and e["event"] in ("end", "stopped", "failed")], 20, "the paused worker's handler to return")
    [job] = s.wait_terminal([job_id], 60).values()
    s.stop_all_workers()
    events = s.log()
    mine = [e for e in s.job_events(job_id, events=events) if e["pid"] == paused.proc.pid]
    ended = [e for e in mine if e["event"] in ("end", "stopped", "failed")][0]
    assert ended["event"] == "stopped", f"the paused worker's handler was not stopped after its lease was lost: {ended}"
    stopped_after = ended["mono_ns"] / 1e9 - resumed_at
    assert stopped_after <= 1.5, f"the resumed worker stopped its handler only {stopped_after:.2f} s after SIGCONT"
    assert not [e for e in mine if e["event"] == "outcome"], f"the paused worker wrote an outcome after losing its lease: {mine}"
    pool = [e for e in events if e["event"] == "pool_stopped" and e["worker"] == "paused"]
    assert pool and pool[0]["lost"] == 1 and pool[0]["completed"] == 0, f"the paused pool's counts: {pool}"
    assert job["status"] == "completed" and job["attempt"] == 2, \
        f"job {job_id} is {job['status']} on attempt {job['attempt']}, expected completed on attempt 2"
    other_start = s.job_events(job_id, "start", events)[1]["mono_ns"] / 1e9
    overlap = max(0.0, ended["mono_ns"] / 1e9 - max(other_start, resumed_at))
    return (f"SIGSTOP past the 2 s lease: taken over on attempt 2; after SIGCONT the paused worker's writes were "
            f"fenced off and its handler stopped {stopped_after * 1000:.0f} ms later (it ran beside attempt 2 for "
            f"{overlap * 1000:.0f} ms); completed once, by the other worker")


def scenario_retry(s):
    base_ms, attempts = 200, 4
    s.start_worker("w1", threads=1, backoff_base_ms=base_ms, backoff_cap_ms=10000, poll_ms=50)
    [retry_id] = s.enqueue("retryable_fail", max_attempts=attempts)
    [permanent_id] = s.enqueue("permanent_fail", max_attempts=attempts)
    jobs = s.wait_terminal([retry_id, permanent_id], 60)
    s.stop_all_workers()
    events = s.log()
    s.assert_no_overlap(events)

    starts = s.job_events(retry_id, "start", events)
    assert [e["attempt"] for e in starts] == list(range(1, attempts + 1)), \
        f"expected attempts 1..{attempts} in the side-effect log, got {[e['attempt'] for e in starts]}"
    gaps = [(b["mono_ns"] - a["mono_ns"]) / 1e9 for a, b in zip(starts, starts[1:])]
    windows = [base_ms * 2 ** i / 1000 for i in range(attempts - 1)]  # no jitter: the whole window
    for gap, window in zip(gaps, windows):
        assert window * 0.95 <= gap <= window + 1.5, f"retry gaps {gaps} do not follow the backoff windows {windows}"
    assert all(b > a for a, b in zip(gaps, gaps[1:])), f"retry gaps do not grow: {gaps}"
    job = jobs[retry_id]
    assert job["status"] == "failed" and job["attempt"] == attempts, \
        f"retryable job: {job['status']} on attempt {job['attempt']}, expected failed on {attempts}"
    assert f"simulated storage outage on attempt {attempts}" in (job["error"] or ""), f"last error: {job['error']!r}"

    permanent = jobs[permanent_id]
    assert len(s.job_events(permanent_id, "start", events)) == 1, "the permanent failure ran more than once"
    assert permanent["status"] == "failed" and permanent["attempt"] == 1, \
        f"permanent job: {permanent['status']} on attempt {permanent['attempt']}, expected failed on 1"
    assert "simulated bad input" in (permanent["error"] or ""), f"permanent error: {permanent['error']!r}"
    return (f"retryable: {attempts} attempts, gaps " + ", ".join(f"{g * 1000:.0f}" for g in gaps)
            + " ms (windows " + ", ".join(f"{w * 1000:.0f}" for w in windows) + " ms), then failed; "
            "permanent: failed on attempt 1")


def cancel_mid_job(s, job_type, payload, started, stop_within):
    [job_id] = s.enqueue(job_type, payload=payload)
    s.wait_for(lambda: s.job_events(job_id, "start"), 30, f"{job_type} job {job_id} to start")
    s.wait_for(lambda: started(job_id), 60, f"{job_type} job {job_id} to be under way")
    before = time.monotonic()
    s.cancel(job_id)
    s.wait_for(lambda: s.job_events(job_id, "stopped") or s.job_events(job_id, "end"), 30,
               f"the worker to stop cancelled job {job_id}")
    events = s.log()
    assert not s.job_events(job_id, "end", events), f"cancelled job {job_id} ran to its end"
    latency = s.job_events(job_id, "stopped", events)[0]["mono_ns"] / 1e9 - before
    assert latency <= stop_within, f"the worker stopped {latency:.2f} s after the cancel (limit {stop_within} s)"
    job = s.show(job_id)
    assert job["status"] == "cancelled", f"job {job_id} is {job['status']}, not cancelled"
    return job_id, latency


def scenario_cancel(s):
    s.start_worker("w1", threads=2, lease_ms=6000, heartbeat_ms=500)
    sleep_id, sleep_latency = cancel_mid_job(s, "sleep", {"ms": 60000}, lambda _id: True, 1.5)
    tile_id, tile_latency = cancel_mid_job(s, "tile_generation", tile_payload(),
                                           lambda job_id: s.show(job_id)["progress"] >= 20, 3.0)
    time.sleep(1.0)  # a cancelled job must not come back
    s.stop_all_workers()
    events = s.log()
    s.assert_no_overlap(events)
    for job_id in (sleep_id, tile_id):
        assert len(s.job_events(job_id, "start", events)) == 1, f"cancelled job {job_id} was started again"
    pointer = committed_pointer(s.config.tiles_root / "tiles")  # the kill scenario's run, if it ran first
    assert pointer is None or pointer["job_id"] != tile_id, "the cancelled tile job committed its run"
    left = files_under(s.config.tiles_root / "tiles" / TILE_VERSION_PREFIX / "runs" / f"{tile_id}.1")
    manifests = [f for f in left if f in ("pyramid.json", "image.dzi")]
    assert not manifests, f"the cancelled tile job left its manifests: {manifests}"
    assert not left, f"the cancelled tile job left {len(left)} files, e.g. {left[:5]}"
    return (f"cancel -> worker stopped: sleep job {sleep_latency * 1000:.0f} ms, tile_generation "
            f"{tile_latency * 1000:.0f} ms; both cancelled, no manifest or tile left")


def scenario_graceful(s):
    """SIGTERM a worker running three long jobs and a short one, with a grace longer than the short
    one: the short job completes there, the long ones go back (attempt not used) to the other worker."""
    grace_ms, long_ms, short_ms = 1500, 4000, 1000
    leaving = s.start_worker("leaving", threads=4, grace_ms=grace_ms)
    long_ids = s.enqueue("sleep", 3, payload={"ms": long_ms})
    [short_id] = s.enqueue("sleep", payload={"ms": short_ms})
    s.wait_for(lambda: all(s.job_events(i, "start") for i in long_ids + [short_id]), 30, "all four jobs to start")
    s.start_worker("staying", threads=3)
    exit_seconds = s.stop_worker(leaving, timeout=30)
    assert exit_seconds <= grace_ms / 1000 + 3.0, f"the worker took {exit_seconds:.2f} s to stop (grace {grace_ms} ms)"
    jobs = s.wait_terminal(long_ids + [short_id], 60)
    s.stop_all_workers()
    events = s.log()
    s.assert_no_overlap(events)

    short_runs = [(e["worker"].split("#")[0], e["event"]) for e in s.job_events(short_id, events=events)
                  if e["event"] in ("start", "end", "stopped")]
    assert short_runs == [("leaving", "start"), ("leaving", "end")], \
        f"the short job should have finished within the grace, on the leaving worker: {short_runs}"
    assert jobs[short_id]["status"] == "completed" and jobs[short_id]["attempt"] == 1, f"short job: {jobs[short_id]}"
    handbacks = []
    for job_id in long_ids:
        starts = s.job_events(job_id, "start", events)
        assert [(e["worker"].split("#")[0], e["attempt"]) for e in starts] == [("leaving", 1), ("staying", 2)], \
            f"job {job_id}: expected attempt 1 by the leaving worker, then attempt 2 by the staying one: {starts}"
        stopped = s.job_events(job_id, "stopped", events)
        assert len(stopped) == 1 and stopped[0]["worker"].startswith("leaving#"), f"job {job_id}: the leaving worker's stop: {stopped}"
        # The record the release wrote (the staying worker may have claimed the job again since).
        handed_back = [e for e in s.job_events(job_id, "outcome", events) if e["pid"] == leaving.proc.pid]
        assert [(e["status"], e["attempt"]) for e in handed_back] == [("queued", 1)], \
            f"job {job_id}: the release should leave it queued after attempt 1: {handed_back}"
        job = jobs[job_id]
        # Not used up: the hand-back grew the budget by the attempt it took (attempt numbers are
        # never reused, so attempt 2's run prefix and scratch directory are its own).
        assert job["status"] == "completed" and job["attempt"] == 2 and job["max_attempts"] == 6 and \
            job["releases"] == 1, f"job {job_id}: {job}, expected completed on attempt 2 of 6 (5 + the free hand-back)"
        handbacks.append(starts[1]["mono_ns"] / 1e9 - stopped[0]["mono_ns"] / 1e9)
    pool = [e for e in events if e["event"] == "pool_stopped" and e["worker"] == "leaving"]
    assert pool and (pool[0]["released"], pool[0]["completed"]) == (3, 1), f"the leaving pool's counts: {pool}"
    return (f"SIGTERM with {grace_ms} ms grace: the {short_ms} ms job finished there, the worker exited after "
            f"{exit_seconds:.2f} s and handed 3 long jobs back (queued, the attempt not counted); the other worker "
            f"took them {min(handbacks) * 1000:.0f}..{max(handbacks) * 1000:.0f} ms later and completed them on attempt 2")


def scenario_restart(s):
    restart_cmd = s.config.restart_cmd
    assert restart_cmd, "scenario restart needs --restart-cmd"
    # A lease longer than the restart takes: a job must not be rescued while its worker waits for
    # the store to come back (that would be a second run, which this scenario forbids).
    s.start_worker("w1", threads=2, lease_ms=10000, rescue_ms=1000)
    s.start_worker("w2", threads=2, lease_ms=10000, rescue_ms=1000)
    ids = s.enqueue("sleep", 200, payload={"ms": 50})
    s.wait_for(lambda: sum(e["event"] == "end" for e in s.log()) >= 60, 120, "60 jobs to complete before the restart")
    began = time.monotonic()
    # The command may want this scenario's store (to lock a SQLite file, say).
    env = dict(os.environ, TILEKIT_QUEUE_STORE=s.store_args[0])
    done = subprocess.run(restart_cmd, shell=True, capture_output=True, text=True, timeout=180, env=env)
    restart_seconds = time.monotonic() - began
    assert done.returncode == 0, f"--restart-cmd exited {done.returncode}: {done.stderr.strip()}"
    s.wait_terminal(ids, 300)
    s.stop_all_workers()
    events = s.log()
    s.assert_completed_once(ids, events, expected_attempt=None)
    s.assert_no_overlap(events)
    starts = Counter(e["job"] for e in events if e["event"] == "start")
    rerun = sorted(i for i in ids if starts[i] > 1)
    attempts = Counter(job["attempt"] for job in s.jobs().values())
    return (f"{len(ids)} jobs over 2 workers, `{restart_cmd}` took {restart_seconds:.1f} s mid-run; every job "
            f"completed exactly once; started more than once: {len(rerun)}; attempts {dict(attempts)}")


SCENARIOS = {"spread": scenario_spread, "kill": scenario_kill, "dead_owner": scenario_dead_owner,
             "namespaces": scenario_namespaces, "clock_step": scenario_clock_step,
             "pause": scenario_pause, "retry": scenario_retry, "cancel": scenario_cancel,
             "graceful": scenario_graceful, "restart": scenario_restart}


class Config:
    pass


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tool", required=True, help="the tilekit_queue_tool binary")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", help="a SQLite file (each scenario uses a sibling file) or a postgresql:// URL")
    where.add_argument("--store-from-env", action="store_true",
                       help="the PostgreSQL URL in TILEKIT_TEST_POSTGRES_URL (scripts/postgres-server.sh run)")
    parser.add_argument("--scenario", action="append", choices=ALL_SCENARIOS,
                        help="run only this scenario (repeatable)")
    parser.add_argument("--restart-cmd", help="a shell command run in the middle of scenario restart")
    parser.add_argument("--work-dir", help="logs, tiles and SQLite files (default: beside the store, or a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory's tiles on success")
    args = parser.parse_args()

    config = Config()
    config.tool = str(Path(args.tool).resolve())
    if args.store_from_env:
        config.store = os.environ.get("TILEKIT_TEST_POSTGRES_URL", "")
        if not config.store:
            parser.error("--store-from-env: TILEKIT_TEST_POSTGRES_URL is not set (run under scripts/postgres-server.sh run)")
    else:
        config.store = args.store
    config.is_postgresql = config.store.startswith(("postgresql://", "postgres://"))
    if args.work_dir:
        config.work_dir = Path(args.work_dir)
    elif config.is_postgresql and os.environ.get("TILEKIT_TEST_POSTGRES_DIR"):
        # Beside the server's directory, not in it: postgres-server.sh chowns that one on (re)start.
        server_dir = Path(os.environ["TILEKIT_TEST_POSTGRES_DIR"]).resolve()
        config.work_dir = server_dir.with_name(server_dir.name + "-driver")
    elif config.is_postgresql:
        config.work_dir = Path(tempfile.mkdtemp(prefix="tilekit-queue-processes-"))
    else:
        config.work_dir = Path(config.store).resolve().parent
        config.store = str(Path(config.store).resolve())
    config.work_dir.mkdir(parents=True, exist_ok=True)
    config.tiles_root = config.work_dir / "tiles-root"
    config.restart_cmd = args.restart_cmd
    config.keep = args.keep
    if args.scenario:
        config.scenarios = args.scenario
        if "restart" in args.scenario and not args.restart_cmd:
            parser.error("scenario restart needs --restart-cmd")
    else:
        config.scenarios = [n for n in ALL_SCENARIOS if n != "restart" or args.restart_cmd]
    return config


def prepare_tiles_root(config):
    shutil.rmtree(config.tiles_root, ignore_errors=True)
    (config.tiles_root / "sources").mkdir(parents=True)
    began = time.monotonic()
    write_png(config.tiles_root / "sources" / TILE_IMAGE_KEY, *TILE_IMAGE_SIZE)
    print(f"test image {TILE_IMAGE_SIZE[0]}x{TILE_IMAGE_SIZE[1]} written in {time.monotonic() - began:.1f} s", flush=True)


def main():
    config = parse_args()
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    where = "PostgreSQL" if config.is_postgresql else "SQLite"
    print(f"queue processes: {where} store, scenarios {', '.join(config.scenarios)}, work dir {config.work_dir}",
          flush=True)
    if {"kill", "cancel"} & set(config.scenarios):
        prepare_tiles_root(config)
    failures = []
    for name in config.scenarios:
        began = time.monotonic()
        scenario = None
        try:
            scenario = Scenario(config, name)
            summary = SCENARIOS[name](scenario)
            if summary is None:
                print(f"SKIP {name}: not for this store", flush=True)
            else:
                print(f"PASS {name} ({time.monotonic() - began:.1f} s): {summary}", flush=True)
        except Exception as e:  # report, clean up, go on with the next scenario
            failures.append(name)
            detail = traceback.format_exc() if not isinstance(e, AssertionError) else f"{e}\n{traceback.format_exc(limit=-2)}"
            print(f"FAIL {name} ({time.monotonic() - began:.1f} s): {detail}", flush=True)
            if scenario is not None:
                print(scenario.describe(), flush=True)
        finally:
            kill_children()
    if failures:
        print(f"queue processes: {len(failures)} of {len(config.scenarios)} scenario(s) failed: {', '.join(failures)}")
        return 1
    if not config.keep:
        shutil.rmtree(config.tiles_root, ignore_errors=True)
    print(f"queue processes: all {len(config.scenarios)} scenario(s) passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_children()

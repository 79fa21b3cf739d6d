#!/usr/bin/env node
// The graphile-worker side of bench/queue.sh: the same two measurements as tilekit_queue_bench,
// with the same no-op jobs, against the same PostgreSQL server.
//
//   node bench.js throughput URL --jobs N --workers W [--timeout-s S]
//   node bench.js latency    URL --jobs N --workers W --interval-ms I [--timeout-s S]
//
// Every run starts from an empty queue: the graphile_worker schema is dropped and migrated again
// before anything is measured (run it against a database of its own; nothing else may use that
// schema at the same time).
//
// throughput: N jobs are added in bulk (WorkerUtils.addJobs) before the clock starts; then a
//   runner with concurrency W and a no-op task starts (run()), and the clock stops when the task
//   has started N times and the jobs table is empty (graphile-worker deletes a job when it
//   completes, possibly in batches, so the table is polled once all N have started).
// latency: the runner starts idle; after a settle time one job is added every I ms with
//   runner.addJob; each job's latency is performance.now() at the start of its task minus
//   performance.now() just before its addJob call. Nearest-rank percentiles, as in the C++ side.
//
// Only graphile-worker's documented options are set: concurrency (= W), pollInterval left at its
// default (new jobs are announced by LISTEN/NOTIFY), maxPoolSize = max(10, W + 2) so that the
// pg pool (default 10) is not what 16 workers wait for. Prints one JSON line, like the C++ side.
"use strict";

const { performance } = require("perf_hooks");
const { run, makeWorkerUtils, Logger } = require("graphile-worker");
const { Client } = require("pg");

const SCHEMA = "graphile_worker";
const TASK = "bench_noop";

function usage(why) {
  process.stderr.write(
    `bench.js: ${why}\n` +
      "usage: node bench.js throughput URL --jobs N --workers W [--timeout-s S]\n" +
      "       node bench.js latency URL --jobs N --workers W --interval-ms I [--timeout-s S]\n",
  );
  process.exit(2);
}

function parseArgs(argv) {
  if (argv.length < 2) usage("missing MODE or URL");
  const args = { mode: argv[0], url: argv[1], jobs: 0, workers: 1, intervalMs: 20, timeoutS: 600 };
  if (args.mode !== "throughput" && args.mode !== "latency") usage(`unknown mode '${args.mode}'`);
  const keys = { "--jobs": "jobs", "--workers": "workers", "--interval-ms": "intervalMs", "--timeout-s": "timeoutS" };
  for (let i = 2; i < argv.length; i += 2) {
    const key = keys[argv[i]];
    if (!key) usage(`unknown option '${argv[i]}'`);
    const value = Number(argv[i + 1]);
    if (!Number.isInteger(value) || value <= 0) usage(`${argv[i]} expects a positive number, got '${argv[i + 1]}'`);
    args[key] = value;
  }
  if (!args.jobs) usage("--jobs is required");
  return args;
}

// graphile-worker logs every job at info level; a benchmark only wants warnings and errors.
const quietLogger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") process.stderr.write(`graphile-worker ${level}: ${message}\n`);
});

function options(args) {
  return {
    connectionString: args.url,
    schema: SCHEMA,
    concurrency: args.workers,
    maxPoolSize: Math.max(10, args.workers + 2),
    noHandleSignals: true,
    logger: quietLogger,
  };
}

// A fresh, migrated schema; returns WorkerUtils (for addJobs) on it.
async function freshQueue(args) {
  const client = new Client({ connectionString: args.url });
  await client.connect();
  await client.query(`drop schema if exists ${SCHEMA} cascade`);
  await client.end();
  const utils = await makeWorkerUtils({ connectionString: args.url, schema: SCHEMA, logger: quietLogger });
  await utils.migrate();
  return utils;
}

function deadline(seconds, what) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} not done within ${seconds} s`)), seconds * 1000);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

function percentile(sorted, p) {
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.max(rank, 1) - 1];
}

async function throughput(args) {
  const utils = await freshQueue(args);
  const specs = [];
  for (let i = 0; i < args.jobs; ++i) specs.push({ identifier: TASK, payload: { i } });
  for (let at = 0; at < specs.length; at += 1000) await utils.addJobs(specs.slice(at, at + 1000));
  await utils.release();

  const watcher = new Client({ connectionString: args.url });
  await watcher.connect();
  let started = 0;
  let allStarted;
  const allStartedPromise = new Promise((resolve) => (allStarted = resolve));
  const limit = deadline(args.timeoutS, "throughput run");

  const start = performance.now();
  const runner = await run({
    ...options(args),
    taskList: {
      [TASK]: async () => {
        if (++started === args.jobs) allStarted();
      },
    },
  });
  await Promise.race([allStartedPromise, limit.promise]);
  // Completed = deleted; completions may be batched, so wait until the table is empty.
  for (;;) {
    const { rows } = await watcher.query(`select count(*)::int as n from ${SCHEMA}._private_jobs`);
    if (rows[0].n === 0) break;
    await Promise.race([sleep(2), limit.promise]);
  }
  const end = performance.now();
  limit.cancel();
  await runner.stop();
  await watcher.end();

  const seconds = (end - start) / 1000;
  return { tool: "graphile-worker", mode: "throughput", store: "postgresql", jobs: args.jobs, workers: args.workers, seconds, jobs_per_s: args.jobs / seconds };
}

async function latency(args) {
  const utils = await freshQueue(args);
  await utils.release();

  const enqueued = new Array(args.jobs);
  const startedAt = new Array(args.jobs);
  let started = 0;
  let allStarted;
  const allStartedPromise = new Promise((resolve) => (allStarted = resolve));
  const runner = await run({
    ...options(args),
    taskList: {
      [TASK]: async (payload) => {
        const now = performance.now(); // first thing: the pickup time
        if (startedAt[payload.i] === undefined) {
          startedAt[payload.i] = now;
          if (++started === args.jobs) allStarted();
        }
      },
    },
  });
  // Let every worker find the queue empty and wait for a notification.
  await sleep(500);

  const first = performance.now();
  for (let i = 0; i < args.jobs; ++i) {
    await sleep(first + i * args.intervalMs - performance.now());
    enqueued[i] = performance.now();
    await runner.addJob(TASK, { i });
  }
  const limit = deadline(args.timeoutS, "latency run");
  await Promise.race([allStartedPromise, limit.promise]);
  limit.cancel();
  await runner.stop();

  const ms = startedAt.map((t, i) => t - enqueued[i]).sort((a, b) => a - b);
  const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
  return {
    tool: "graphile-worker",
    mode: "latency",
    store: "postgresql",
    jobs: args.jobs,
    workers: args.workers,
    interval_ms: args.intervalMs,
    median_ms: percentile(ms, 50),
    p90_ms: percentile(ms, 90),
    p99_ms: percentile(ms, 99),
    max_ms: ms[ms.length - 1],
    mean_ms: mean,
  };
}

(async () => {
  const args = parseArgs(process.argv.slice(2));
  try {
    const result = args.mode === "throughput" ? await throughput(args) : await latency(args);
    process.stdout.write(JSON.stringify(result) + "\n");
    process.exit(0);
  } catch (e) {
    process.stderr.write(`bench.js: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  }
})();

#pragma once
// tilekit's optional PostgreSQL part: the job store for many worker processes on many hosts
// (libpq; SKIP LOCKED claims, fenced writes, LISTEN/NOTIFY wake-ups, the server's clock). Link
// `tilekit::postgresql` (CMake), `tilekit_postgresql_dep` (meson) or `pkg-config
// tilekit-postgresql` (Debian: libpq-dev). The core never includes this.
//
//   #include <tilekit/postgresql.hpp>
//   tilekit::jobs::postgresql_job_store store("postgresql://app@db.internal/app");  // schema "tilekit"
//   tilekit::jobs::new_job job;  job.project_id = "project";  job.version_id = "v1";
//   store.enqueue(job);
//   auto claimed = store.claim("host-1/worker-1", {tilekit::jobs::tile_generation_job}, std::chrono::seconds(30));
//   if (claimed) store.complete(claimed->lease, {{"levels", 12}}, "Done");

#include <tilekit/jobs.hpp>
#include <tilekit/postgresql/postgresql_store.hpp>

#pragma once
// tilekit's jobs part: "generate tiles for version N of project X" as a tracked job. The job
// record (UUID, status, progress, result; JSON both ways) and its state machine, the job_store
// interface with an in-memory store, progress written per stage, the draft-version guard, and the
// tile-generation job itself. Standard library and nlohmann_json only; link `tilekit::jobs`
// (CMake), `tilekit_jobs_dep` (meson) or `pkg-config tilekit-jobs`. The durable SQLite store is
// <tilekit/sqlite.hpp>. The core never includes this.

#include <tilekit/tilekit.hpp>
#include <tilekit/jobs/job.hpp>
#include <tilekit/jobs/job_store.hpp>
#include <tilekit/jobs/memory_store.hpp>
#include <tilekit/jobs/version_guard.hpp>
#include <tilekit/jobs/progress.hpp>
#include <tilekit/jobs/run_pointer.hpp>
#include <tilekit/jobs/tile_generation.hpp>

#pragma once
// Jobs: the job record and its state machine, the job-store interface with an in-memory store,
// progress written per stage, the draft-version guard and job sources. Core: standard library
// and nlohmann_json only. The durable SQLite store is <tilekit/sqlite.hpp>; the tile-generation
// job itself is <tilekit/jobs/tile_generation.hpp> (it streams the source through libpng/libjpeg).

#include <tilekit/jobs/job.hpp>
#include <tilekit/jobs/job_store.hpp>
#include <tilekit/jobs/memory_store.hpp>
#include <tilekit/jobs/version_guard.hpp>
#include <tilekit/jobs/progress.hpp>
#include <tilekit/jobs/source.hpp>

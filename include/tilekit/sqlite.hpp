#pragma once
// tilekit's optional SQLite part: the durable job store (one file, WAL; safe for several threads
// and several processes on one host). Link `tilekit::sqlite` (CMake), `tilekit_sqlite_dep`
// (meson) or `pkg-config tilekit-sqlite`. The core never includes this.

#include <tilekit/tilekit.hpp>
#include <tilekit/jobs/sqlite_store.hpp>

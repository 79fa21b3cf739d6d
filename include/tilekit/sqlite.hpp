#pragma once
// tilekit's optional SQLite part: the durable job store (one file in WAL mode; safe for several
// threads and several processes on one host). Link `tilekit::sqlite` (CMake), `tilekit_sqlite_dep`
// (meson) or `pkg-config tilekit-sqlite` (Debian: libsqlite3-dev). The core never includes this.

#include <tilekit/jobs.hpp>
#include <tilekit/sqlite/sqlite_store.hpp>

// A consumer of the installed (or single-header) tilekit PostgreSQL part. It needs no server: it
// prints the schema SQL and checks that a store pointed at a server that is not there fails with
// store_unavailable (and without the password in the message), so a missing include or link flag
// of tilekit::postgresql / tilekit-postgresql.pc fails here. The store against a real server is
// tested by the postgresql_live test. Exits non-zero on mismatch.

#include <tilekit/postgresql.hpp>

#include <libpq-fe.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>

#ifndef TILEKIT_HAS_POSTGRESQL
#error "TILEKIT_HAS_POSTGRESQL is not defined: tilekit::postgresql (CMake), tilekit_postgresql_dep (meson) and tilekit-postgresql.pc define it"
#endif

int main() try {
    const std::string sql = tilekit::jobs::postgresql_job_store::schema_sql("tilekit");
    bool ok = sql.find("CREATE TABLE \"tilekit\".jobs") != std::string::npos;
    tilekit::jobs::postgresql_store_options options;
    options.connect_timeout = std::chrono::seconds(2);
    try {
        tilekit::jobs::postgresql_job_store store("postgresql://app:secret-word@/tilekit?host=/nonexistent-tilekit-consumer", options);
        ok = false;  // there is no server there
    } catch (const tilekit::error& e) {
        ok = ok && e.code() == tilekit::errc::store_unavailable && std::string(e.what()).find("secret-word") == std::string::npos;
    }
    std::printf("tilekit %s postgresql job store (libpq %d): %s\n", TILEKIT_VERSION, PQlibVersion(), ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "tilekit consumer: %s\n", e.what());
    return 1;
}

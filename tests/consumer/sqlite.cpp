// A consumer of the installed (or single-header) tilekit SQLite part: takes a job through the
// durable store in a scratch file and reads it back after reopening, so a missing include or link
// flag of tilekit::sqlite / tilekit-sqlite.pc fails here. Exits non-zero on mismatch.

#include <tilekit/sqlite.hpp>

#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <unistd.h>

#ifndef TILEKIT_HAS_SQLITE
#error "TILEKIT_HAS_SQLITE is not defined: tilekit::sqlite (CMake), tilekit_sqlite_dep (meson) and tilekit-sqlite.pc define it"
#endif

int main() try {
    char dir[] = "/tmp/tilekit-consumer-sqlite-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    const std::string path = std::string(dir) + "/jobs.db";
    std::string id;
    {
        tilekit::jobs::sqlite_job_store store(path);
        tilekit::jobs::new_job job;
        job.project_id = "consumer";
        job.version_id = "v1";
        id = store.enqueue(job).id;
        auto claimed = store.claim("consumer", {tilekit::jobs::tile_generation_job}, std::chrono::seconds(30));
        if (!claimed || claimed->job.id != id) return 1;
        store.report_progress(claimed->lease, 50, "Generating tiles...");
        store.complete(claimed->lease, {{"levels", 3}}, "Done");
    }
    const tilekit::jobs::sqlite_job_store store(path);
    const auto job = store.get(id);
    const bool ok = job && job->status == tilekit::jobs::job_status::completed && job->result.at("levels") == 3;
    std::printf("tilekit %s sqlite job store (SQLite %s): %s\n", TILEKIT_VERSION, sqlite3_libversion(), ok ? "ok" : "FAILED");
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
    rmdir(dir);
    return ok ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "tilekit consumer: %s\n", e.what());
    return 1;
}

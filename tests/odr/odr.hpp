#pragma once
// Two TUs include every tilekit header and instantiate the same templates; linking them into one
// program fails if any non-template function or variable in a header lacks `inline`.
//
// The list of headers is not written here: tilekit_odr_headers.hpp is generated at build time
// from the tree (tests/odr/all_headers.py; exclusions, each with its reason, in
// tests/odr/excluded_headers.txt), so a new header cannot be forgotten.

#include "tilekit_odr_headers.hpp"

// The umbrellas again, in case the list were ever empty of them: the helpers below need them.
#include <tilekit/fast_codecs.hpp>
#include <tilekit/jobs.hpp>
#include <tilekit/postgresql.hpp>
#include <tilekit/s3.hpp>
#include <tilekit/sqlite.hpp>
#include <tilekit/tilekit.hpp>

#include <cstdint>
#include <chrono>
#include <string>
#include <vector>

std::uint64_t odr_tiles_a();
std::uint64_t odr_tiles_b();
std::string odr_s3_a();
std::string odr_s3_b();
std::string odr_sqlite_a();
std::string odr_sqlite_b();
std::string odr_postgresql_a();
std::string odr_postgresql_b();
std::string odr_job_a();
std::string odr_job_b();

// Used by both TUs, so both emit the SQLite job store's inline functions. ":memory:" keeps it off
// the disk (and out of WAL mode, which an in-memory database cannot use).
inline std::string odr_sqlite_job(const std::string& project) {
    tilekit::jobs::sqlite_job_store store(":memory:");
    tilekit::jobs::new_job job;
    job.project_id = project;
    job.version_id = "v1";
    store.enqueue(job);
    auto claimed = store.claim("odr", {tilekit::jobs::tile_generation_job}, std::chrono::seconds(30));
    return store.complete(claimed->lease, {{"project", project}}, "done").result.dump();
}

// Used by both TUs, so both emit the PostgreSQL job store's inline functions. No server: a socket
// directory that does not exist fails at once, with store_unavailable.
inline std::string odr_postgresql(const std::string& schema) {
    const bool sql_ok = tilekit::jobs::postgresql_job_store::schema_sql(schema).find(schema) != std::string::npos;
    tilekit::jobs::postgresql_store_options options;
    options.schema = schema;
    try {
        tilekit::jobs::postgresql_job_store store("postgresql:///tilekit?host=/nonexistent-tilekit-odr", options);
        return "connected";
    } catch (const tilekit::error& e) {
        return sql_ok && e.code() == tilekit::errc::store_unavailable ? "unavailable" : "FAILED";
    }
}

// Used by both TUs (with different keys), so both emit the S3 part's inline functions.
inline std::string odr_s3_authorization(const std::string& key) {
    const tilekit::s3::signer signer({"AKIDEXAMPLE", "secret", ""}, "auto", "s3");
    tilekit::s3::request_to_sign request;
    request.method = "PUT";
    request.encoded_path = "/bucket/" + key;
    request.query = "x-id=PutObject";
    request.payload_hash = "UNSIGNED-PAYLOAD";
    request.headers = {{"host", "127.0.0.1:9000"}, {"x-amz-content-sha256", request.payload_hash},
                       {"x-amz-date", "20250101T000000Z"}};
    return signer.authorization(signer.sign(request, "20250101T000000Z"));
}

inline tilekit::image_buffer odr_image() {
    tilekit::image_buffer image(200, 100, 3);
    for (int y = 0; y < image.height(); ++y)
        for (int x = 0; x < image.width(); ++x)
            for (int c = 0; c < 3; ++c) image.row(y)[3 * x + c] = static_cast<std::uint8_t>(x + y + 50 * c);
    return image;
}

// Used by both TUs, with different codec sets, so both instantiate the run-time front door and
// the tiler behind it.
template <class Codecs>
std::uint64_t odr_tile_count(tilekit::layout_type layout) {
    std::vector<std::uint8_t> png;
    tilekit::stb_png_encoder().encode(odr_image(), png);
    tilekit::memory_sink sink;
    tilekit::pyramid_options options;
    options.layout = layout;
    options.threads = 1;
    return tilekit::tile_memory<Codecs>(png, sink, options).tile_count;
}

// Used by both TUs: the tile-generation job from the memory store and source into a memory sink.
template <class Codecs>
std::string odr_tile_job(const std::string& project) {
    std::vector<std::uint8_t> png;
    tilekit::stb_png_encoder().encode(odr_image(), png);
    tilekit::memory_source source;
    source.add("map.png", png);
    tilekit::memory_sink sink;
    tilekit::jobs::memory_job_store store;
    tilekit::jobs::tile_generation_request request;
    request.source_key = "map.png";
    request.project_slug = project;
    request.version = 1;
    tilekit::jobs::new_job job{tilekit::jobs::tile_generation_job, project, "v1", "odr"};
    job.payload = tilekit::jobs::to_payload(request);
    store.enqueue(job);
    tilekit::jobs::tile_generation_settings settings;
    settings.threads = 1;
    const auto draft = [](const tilekit::jobs::job_record&) { return tilekit::jobs::version_info{1, "draft"}; };
    const tilekit::jobs::job_record done = *tilekit::jobs::run_next_job(
        store, {{tilekit::jobs::tile_generation_job, tilekit::jobs::tile_generation_handler<Codecs>(source, sink, draft, settings)}});
    return tilekit::jobs::to_string(done.status);
}

#pragma once
// Two TUs include every public tilekit header and instantiate the same templates; linking them
// into one program fails if any non-template function in a header lacks `inline`.

#include <tilekit/fast_codecs.hpp>
#include <tilekit/s3.hpp>
#include <tilekit/sqlite.hpp>
#include <tilekit/streaming_decode.hpp>
#include <tilekit/tilekit.hpp>

#include <cstdint>
#include <string>

std::uint64_t odr_tiles_a();
std::uint64_t odr_tiles_b();
std::string odr_s3_a();
std::string odr_s3_b();
std::string odr_sqlite_a();
std::string odr_sqlite_b();

// Used by both TUs, so both emit the SQLite job store's inline functions. ":memory:" keeps it off
// the disk (and out of WAL mode, which an in-memory database cannot use).
inline std::string odr_sqlite_job(const std::string& project) {
    tilekit::jobs::sqlite_job_store store(":memory:");
    tilekit::jobs::new_job job;
    job.project_id = project;
    job.version_id = "v1";
    const std::string id = store.create(job).id;
    store.start(id, "go");
    return store.complete(id, {{"project", project}}, "done").result.dump();
}

// Used by both TUs (with different keys), so both emit the S3 part's inline functions.
inline std::string odr_s3_authorization(const std::string& key) {
    const tilekit::s3::signer signer({"AKIDEXAMPLE", "secret", ""}, "auto", "s3");
    tilekit::s3::request_to_sign request;
    request.method = "PUT";
    request.encoded_path = "/bucket/" + tilekit::s3::detail::uri_encode(key, true);
    request.query = "x-id=PutObject";
    request.payload_hash = tilekit::s3::detail::sha256_hex(key);
    request.headers = {{"host", "127.0.0.1:9000"}, {"x-amz-content-sha256", request.payload_hash},
                       {"x-amz-date", "20250101T000000Z"}};
    return signer.authorization(signer.sign(request, "20250101T000000Z"));
}

// Used by both TUs, with different codecs, so both instantiate the tiler.
template <class Codecs>
std::uint64_t odr_tile_count(tilekit::layout_type layout) {
    tilekit::image_buffer image(200, 100, 3);
    tilekit::memory_sink sink;
    tilekit::pyramid_options options;
    options.layout = layout;
    options.tiling.threads = 1;
    return tilekit::tile_image<Codecs>(image, sink, options).tile_count;
}

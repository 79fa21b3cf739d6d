// The JSON documents users read, pinned byte for byte against files in tests/golden/: the
// pyramid's metadata (pyramid.json), the job record, and a tile-generation job's result. A
// deterministic encoder keeps tile bytes (and so total_bytes) independent of codec versions.
// TILEKIT_UPDATE_GOLDEN=1 rewrites the files instead of comparing (then review the diff).

#include "test_helpers.hpp"

#include <tilekit/jobs.hpp>

using namespace tilekit;

namespace {

// "TILE wxhxc": fixed bytes per tile, whatever the codec libraries.
struct fixed_encoder {
    fixed_encoder() = default;
    explicit fixed_encoder(int) {}
    std::string extension() const { return "png"; }
    std::string content_type() const { return "image/png"; }
    bool supports_alpha() const { return true; }
    void encode(const image_view& tile, std::vector<std::uint8_t>& out) const {
        const std::string text = "TILE " + std::to_string(tile.width) + "x" + std::to_string(tile.height) + "x" +
                                 std::to_string(tile.channels);
        out.assign(text.begin(), text.end());
    }
};

struct fixed_codecs {
    static constexpr const char* name() noexcept { return "fixed"; }
    using png = fixed_encoder;
    using jpeg = fixed_encoder;
    static std::unique_ptr<row_source> open_file(const std::string& path, const decode_limits& limits) {
        return stb_codecs::open_file(path, limits);
    }
    static std::unique_ptr<row_source> open_memory(const std::uint8_t* data, std::size_t size,
                                                   const decode_limits& limits) {
        return stb_codecs::open_memory(data, size, limits);
    }
};

tkt::fs::path golden_path(const std::string& name) { return tkt::fs::path(TILEKIT_SOURCE_DIR) / "tests" / "golden" / name; }

void check_golden(const std::string& name, const std::string& actual) {
    const tkt::fs::path path = golden_path(name);
    const char* update = std::getenv("TILEKIT_UPDATE_GOLDEN");
    if (update && std::string(update) == "1") {
        tkt::write_file(path, tkt::bytes(actual.begin(), actual.end()));
        WARN("rewrote " << path);
        return;
    }
    REQUIRE(tkt::fs::exists(path));  // a missing golden file is a failure, never a pass
    const std::string expected = tkt::as_string(tkt::read_file(path));
    INFO("golden file " << path << " (TILEKIT_UPDATE_GOLDEN=1 rewrites it)");
    CHECK(actual == expected);
}

}  // namespace

TEST_CASE("pyramid.json is pinned by a golden file, for both layouts", "[golden]") {
    const image_buffer image = tkt::make_image(300, 200, 4, 5);
    {
        memory_sink sink;
        tile_options options;
        options.prefix = "maps/7/";
        generate_pyramid(image, deep_zoom_layout(), fixed_encoder(), sink, options);
        check_golden("pyramid-dz.json", tkt::as_string(sink.get("maps/7/pyramid.json")->body));
        check_golden("image.dzi", tkt::as_string(sink.get("maps/7/image.dzi")->body));
    }
    {
        memory_sink sink;
        tile_options options;
        options.skip_blank_tiles = true;
        generate_pyramid(image, xyz_layout(128), fixed_encoder(), sink, options);
        check_golden("pyramid-xyz.json", tkt::as_string(sink.get("pyramid.json")->body));
    }
}

TEST_CASE("the job record's JSON is pinned by a golden file", "[golden][jobs]") {
    jobs::job_record record;
    record.id = "2f1e0c52-8d7b-4f0e-9a61-3c5d2b7e9f10";
    record.status = jobs::job_status::failed;
    record.progress = 37;
    record.message = "Failed";
    record.error = "source image 'uploads/map.png' not found";
    record.project_id = "project-1";
    record.version_id = "version-3";
    record.created_by = "alice";
    record.created_at = "2026-12-01T10:00:00.000Z";
    record.started_at = "2026-12-01T10:00:01.250Z";
    record.completed_at = "2026-12-01T10:00:02.500Z";
    record.payload = {{"source_key", "uploads/map.png"}, {"project_slug", "harbour-map"}, {"version", 3}};
    record.attempt = 2;
    record.max_attempts = 5;
    record.run_at = "2026-12-01T10:00:00.900Z";
    check_golden("job-record-failed.json", nlohmann::json(record).dump(2) + "\n");
    jobs::job_record queued;
    queued.id = "0b9f4e1a-6c2d-4a8b-8e3f-1d2c3b4a5f60";
    queued.message = "Queued";
    queued.project_id = "project-1";
    queued.version_id = "version-4";
    queued.created_at = "2026-12-01T11:00:00.000Z";
    queued.run_at = queued.created_at;
    check_golden("job-record-queued.json", nlohmann::json(queued).dump(2) + "\n");
}

TEST_CASE("a tile-generation job's result is pinned by a golden file", "[golden][jobs]") {
    jobs::memory_job_store store;
    memory_source source;
    memory_sink sink;
    tkt::temp_dir scratch("tilekit-golden");
    source.add("uploads/map.png", tkt::png_of(tkt::make_image(500, 300, 3, 8)));
    jobs::tile_generation_request request;
    request.source_key = "uploads/map.png";
    request.project_slug = "harbour-map";
    request.version = 3;
    jobs::new_job job{jobs::tile_generation_job, "project-1", "version-3", "alice"};
    job.payload = jobs::to_payload(request);
    store.enqueue(job);
    jobs::tile_generation_settings settings;
    settings.scratch_root = scratch.path();
    settings.threads = 1;
    const auto draft = [](const jobs::job_record&) { return jobs::version_info{3, "draft"}; };
    const jobs::job_record done = *jobs::run_next_job(
        store, {{jobs::tile_generation_job, jobs::tile_generation_handler<fixed_codecs>(source, sink, draft, settings)}});
    INFO(done.error);
    REQUIRE(done.status == jobs::job_status::completed);
    // The run prefix carries the job's random id: shown as {job_id} in the golden file.
    std::string result = done.result.dump(2) + "\n";
    for (std::size_t at = result.find(done.id); at != std::string::npos; at = result.find(done.id, at))
        result.replace(at, done.id.size(), "{job_id}");
    check_golden("job-result-tile-generation.json", result);
    check_golden("pyramid-job.json", tkt::as_string(sink.get(done.result.at("metadata").get<std::string>())->body));
}

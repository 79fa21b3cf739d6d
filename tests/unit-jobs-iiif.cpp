// The IIIF layout through the tile-generation job: the payload carries it (and the base URL of
// info.json's id) per job, the worker runs it, the result and pyramid.json name it, the id is the
// base URL joined with the job's prefix, and a rerun withdraws the previous info.json first.

#include "test_helpers.hpp"

#include <tilekit/jobs.hpp>

#include <nlohmann/json.hpp>

using namespace tilekit;
using namespace tilekit::jobs;

TEST_CASE("IIIF in the tile-generation payload: layout and base URL round-trip, bad ones refused", "[jobs][iiif]") {
    tile_generation_request r;
    r.source_key = "mp/x/uploads/base.png";
    r.project_slug = "x";
    r.version = 4;
    r.tiling.layout = layout_type::iiif;
    r.tiling.iiif_base_url = "https://tiles.example.org/";
    const nlohmann::json payload = to_payload(r);
    CHECK(payload["tiling"]["layout"] == "iiif");
    CHECK(payload["tiling"]["iiif_base_url"] == "https://tiles.example.org/");
    const tile_generation_request back = request_from_payload(payload);
    CHECK(back.tiling.layout == layout_type::iiif);
    CHECK(back.tiling.iiif_base_url == "https://tiles.example.org/");
    CHECK(to_payload(back) == payload);
    // Without a base URL the key is left out (payloads of other layouts do not change).
    r.tiling.iiif_base_url.clear();
    CHECK_FALSE(to_payload(r)["tiling"].contains("iiif_base_url"));

    const auto refused = [&](const std::function<void(nlohmann::json&)>& edit) {
        nlohmann::json p = payload;
        edit(p);
        try {
            request_from_payload(p);
        } catch (const error& e) {
            CHECK(e.code() == errc::invalid_argument);
            return true;
        }
        return false;
    };
    CHECK(refused([](nlohmann::json& p) { p["tiling"]["overlap"] = 1; }));  // IIIF has no overlap
    CHECK(refused([](nlohmann::json& p) { p["tiling"]["iiif_base_url"] = "https://x.org/a b"; }));
    CHECK(refused([](nlohmann::json& p) { p["tiling"]["iiif_base_url"] = "https://x.org/?q"; }));
    CHECK(refused([](nlohmann::json& p) { p["tiling"]["iiif_base_url"] = 7; }));
    CHECK_FALSE(refused([](nlohmann::json& p) { p["tiling"]["overlap"] = 0; }));
}

TEST_CASE("an IIIF tile-generation job: result, pyramid.json and info.json with the public id", "[jobs][iiif]") {
    memory_job_store store;
    memory_source source;
    memory_sink sink;
    tkt::temp_dir scratch("tilekit-job-iiif");
    tile_generation_settings settings;
    settings.scratch_root = scratch.path();
    settings.threads = 2;
    std::vector<std::uint8_t> png;
    stb_png_encoder().encode(tkt::make_image(700, 300, 3, 3).view(), png);
    source.add("uploads/map.png", png);

    tile_generation_request r;
    r.source_key = "uploads/map.png";
    r.project_slug = "harbour-map";
    r.version = 3;
    r.prefix_template = "mp/{slug}/uploads/tiles/{version}/";
    r.tiling.layout = layout_type::iiif;
    r.tiling.tile_size = 256;
    r.tiling.iiif_base_url = "https://cdn.example.org";
    const auto run = [&] {
        new_job job{tile_generation_job, "project-1", "version-3", "alice"};
        job.payload = to_payload(r);
        store.enqueue(job);
        const std::map<std::string, job_handler> handlers{
            {tile_generation_job,
             tile_generation_handler<stb_codecs>(source, sink, [](const job_record&) { return version_info{3, "draft"}; },
                                                 settings)}};
        const auto done = run_next_job(store, handlers, worker_options{}, cancel_token{});
        REQUIRE(done);
        INFO(done->error);
        REQUIRE(done->status == job_status::completed);
        return done->result;
    };
    settings.gc_grace = std::chrono::seconds(0);  // a replaced run is collected by the next commit
    const nlohmann::json result = run();
    // The run's own prefix below the version's (the publish protocol: jobs/run_pointer.hpp).
    const std::string prefix = result["tiles_path"];
    CHECK(prefix.rfind("mp/harbour-map/uploads/tiles/3/runs/", 0) == 0);
    CHECK(result["layout"] == "iiif");
    CHECK(result["manifest"] == prefix + "info.json");
    CHECK(result["overlap"] == 0);
    CHECK(result["tile_size"] == 256);
    const nlohmann::json meta = nlohmann::json::parse(tkt::as_string(sink.get(prefix + "pyramid.json")->body));
    CHECK(meta["layout"] == "iiif");
    CHECK(meta["manifest"] == "info.json");
    const nlohmann::json info = nlohmann::json::parse(tkt::as_string(sink.get(prefix + "info.json")->body));
    CHECK(info["id"] == "https://cdn.example.org/" + prefix.substr(0, prefix.size() - 1));
    CHECK(info["tiles"][0]["scaleFactors"] == nlohmann::json::array({1, 2, 4}));
    CHECK(sink.contains(prefix + "full/175,75/0/default.png"));
    CHECK(sink.contains(prefix + "0,0,256,256/256,256/0/default.png"));
    // Every object under the prefix is a tile of this pyramid or one of its two manifests.
    std::size_t objects = 0;
    for (const std::string& key : sink.keys()) objects += key.rfind(prefix, 0) == 0;
    CHECK(objects == result["tile_count"].get<std::size_t>() + 2);

    // A rerun as Deep Zoom: its own run; the IIIF run is collected once replaced (grace 0 here).
    r.tiling.layout = layout_type::deep_zoom;
    r.tiling.iiif_base_url.clear();
    const nlohmann::json again = run();
    CHECK(again["layout"] == "dz");
    const std::string again_prefix = again["tiles_path"];
    CHECK_FALSE(sink.contains(prefix + "info.json"));
    CHECK_FALSE(sink.contains(prefix + "full/175,75/0/default.png"));
    CHECK(sink.contains(again_prefix + "image.dzi"));
}

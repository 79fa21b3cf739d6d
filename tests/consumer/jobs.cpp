// A consumer of the installed (or single-header) tilekit jobs part on its own: runs one
// tile-generation job (memory store, memory source, memory sink) with nothing but the core's
// dependencies, so a missing include or link flag of tilekit::jobs / tilekit-jobs.pc, or a jobs
// header that needs an optional library, fails here. Exits non-zero on mismatch.

#include <tilekit/jobs.hpp>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

int main() try {
    tilekit::image_buffer image(300, 200, 3);
    for (int y = 0; y < image.height(); ++y)
        for (int x = 0; x < image.width(); ++x)
            for (int c = 0; c < 3; ++c) image.row(y)[3 * x + c] = static_cast<std::uint8_t>(x + 2 * y + 80 * c);
    std::vector<std::uint8_t> png;
    tilekit::stb_png_encoder().encode(image, png);

    tilekit::memory_source source;
    source.add("uploads/map.png", png);
    tilekit::memory_sink sink;
    tilekit::jobs::memory_job_store store;
    tilekit::jobs::new_job job;
    job.project_id = "consumer";
    job.version_id = "v1";

    tilekit::jobs::tile_generation_request request;
    request.source_key = "uploads/map.png";
    request.project_slug = "consumer";
    request.version = 1;
    request.tiling.tile_size = 128;  // options one level deep
    job.payload = tilekit::jobs::to_payload(request);
    store.enqueue(job);
    tilekit::jobs::tile_generation_settings settings;
    settings.threads = 2;
    const auto draft = [](const tilekit::jobs::job_record&) { return tilekit::jobs::version_info{1, "draft"}; };
    const tilekit::jobs::job_record done = *tilekit::jobs::run_next_job(
        store, {{tilekit::jobs::tile_generation_job, tilekit::jobs::tile_generation_handler(source, sink, draft, settings)}});

    // Without <tilekit/fast_codecs.hpp> in the program the job tiles with stb.
    const bool stb = std::string(tilekit::default_codecs_name()) == "stb";
    const bool ok = stb && done.status == tilekit::jobs::job_status::completed && done.result.at("width") == 300 &&
                    done.result.at("tile_count").get<std::uint64_t>() > 0 && sink.size() > 2;
    std::printf("tilekit %s jobs consumer: job %s, %s tiles (%s codecs), %s\n", TILEKIT_VERSION,
                tilekit::jobs::to_string(done.status), done.result.value("tile_count", nlohmann::json()).dump().c_str(),
                tilekit::default_codecs_name(), ok ? "ok" : "FAILED");
    if (!ok && !done.error.empty()) std::fprintf(stderr, "job error: %s\n", done.error.c_str());
    return ok ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED: %s\n", e.what());
    return 1;
}

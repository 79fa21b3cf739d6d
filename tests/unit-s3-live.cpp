// The S3 path against a real S3 server on loopback: s3rver behind tests/s3peer's SigV4 verifier
// (botocore recomputes every signature). Hidden tag: run by tests/s3peer/run-with-peer.sh, which
// starts three peers and exports S3PEER_*: a clean one, a flaky one (20% 5xx and 5% dropped
// connections on PUT) and a broken one (every PUT fails); faults hit PUTs only, so reading back
// through the same peer is reliable. Without them the tests are skipped visibly
// (TILEKIT_SKIP_TEST), unless CI=true or TILEKIT_REQUIRE_TESTDATA=1, where a missing peer is a
// failure.

#include "test_helpers.hpp"

#include <tilekit/fast_codecs.hpp>
#include <tilekit/jobs.hpp>
#include <tilekit/s3.hpp>
#include <tilekit/sqlite.hpp>

#include <algorithm>
#include <cstdlib>
#include <iterator>

using namespace tilekit;

namespace {

std::string env(const char* name) {
    const char* value = std::getenv(name);
    return value ? value : "";
}

// The peer's settings, or nullopt (after a visible skip) when it is not running.
std::optional<s3::config> peer_config(const char* endpoint_variable = "S3PEER_ENDPOINT") {
    if (env(endpoint_variable).empty()) {
        if (env("CI") == "true") FAIL(endpoint_variable << " is not set: the S3 peer must run in CI");
        TILEKIT_SKIP_TEST(endpoint_variable << " is not set: no S3 peer (run tests/s3peer/run-with-peer.sh)");
        return std::nullopt;
    }
    s3::config c;
    c.target = s3::parse_endpoint(env(endpoint_variable), env("S3PEER_REGION"));
    c.bucket = env("S3PEER_BUCKET");
    c.creds.access_key_id = env("S3PEER_ACCESS_KEY");
    c.creds.secret_access_key = env("S3PEER_SECRET_KEY");
    return c;
}

std::string unique_prefix(const std::string& test) {
    static std::atomic<int> counter{0};
    return "t/" + test + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "/";
}

std::vector<std::uint8_t> random_bytes(std::size_t size, std::uint32_t seed) {
    tkt::rng random(seed);
    std::vector<std::uint8_t> out(size);
    for (auto& b : out) b = static_cast<std::uint8_t>(random.range(0, 255));
    return out;
}

}  // namespace

TEST_CASE("S3 PUT, GET, HEAD and DELETE round-trip binary bodies and awkward keys", "[.s3-live]") {
    const auto config = peer_config();
    if (!config) return;
    s3::client client(*config);
    const std::string prefix = unique_prefix("roundtrip");
    const std::vector<std::string> keys = {"plain.bin",          "with space/file name.png", "plus+sign+.txt",
                                           "marks!'()*.dat",     "utf8/ü-ñ-中文-🙂.bin",     "deep/a/b/c/d/e/f/g/h.bin",
                                           "tilde~_-.ext",       "equals=and&amp;.bin"};
    std::uint32_t seed = 1;
    for (const std::string& name : keys) {
        const std::string key = prefix + name;
        INFO(key);
        for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{70000}}) {
            const auto body = random_bytes(size, seed++);
            client.put(key, body);
            CHECK(client.get(key) == body);
            const auto info = client.head(key);
            REQUIRE(info.has_value());
            CHECK(info->size == size);
        }
        client.remove(key);
        CHECK_FALSE(client.head(key).has_value());
    }
    const auto missing = tkt::exception_of<s3::s3_error>([&] { client.get(prefix + "missing"); });
    REQUIRE(missing);
    CHECK(missing->code() == errc::not_found);
    CHECK(missing->http_status() == 404);
}

TEST_CASE("S3 GET streams to a file, with a size limit and no file left on failure", "[.s3-live]") {
    const auto config = peer_config();
    if (!config) return;
    s3::client client(*config);
    const std::string key = unique_prefix("download") + "big.bin";
    const auto body = random_bytes(3 << 20, 7);
    client.put(key, body);
    tkt::temp_dir dir;
    const std::string path = (dir.path() / "out.bin").string();
    client.get_to_file(key, path);
    CHECK(tkt::read_file(path) == body);

    const std::string limited = (dir.path() / "limited.bin").string();
    const auto too_big = tkt::exception_of<s3::s3_error>([&] { client.get_to_file(key, limited, 1 << 20); });
    REQUIRE(too_big);
    CHECK(std::string(too_big->what()).find("limit") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(limited));
    CHECK_FALSE(std::filesystem::exists(limited + ".part"));
    const auto missing = tkt::exception_of<s3::s3_error>([&] { client.get_to_file(key + ".nope", limited); });
    REQUIRE(missing);
    CHECK(missing->code() == errc::not_found);
    CHECK_FALSE(std::filesystem::exists(limited));
}

TEST_CASE("a wrong secret is a clear auth error, not retried, and never printed", "[.s3-live]") {
    auto config = peer_config();
    if (!config) return;
    config->creds.secret_access_key = "definitely-not-the-secret";
    s3::client client(*config);
    const std::string key = unique_prefix("auth") + "x.bin";
    const auto failure = tkt::exception_of<s3::s3_error>([&] { client.put(key, random_bytes(10, 3)); });
    REQUIRE(failure);
    const std::string message = failure->what();
    INFO(message);
    CHECK(failure->code() == errc::access_denied);
    CHECK(failure->http_status() == 403);
    CHECK(failure->s3_code() == "SignatureDoesNotMatch");
    CHECK(failure->key() == key);
    CHECK(message.find(key) != std::string::npos);
    CHECK(message.find("attempts") == std::string::npos);  // one attempt only
    CHECK(message.find("definitely-not-the-secret") == std::string::npos);

    config->creds.access_key_id = "unknown-key-id";
    s3::client stranger(*config);
    const auto unknown = tkt::exception_of<s3::s3_error>([&] { stranger.put(key, random_bytes(10, 3)); });
    REQUIRE(unknown);
    CHECK(unknown->code() == errc::access_denied);
    CHECK(unknown->s3_code() == "InvalidAccessKeyId");
}

TEST_CASE("a skewed clock is corrected from the server's Date and the request retried", "[.s3-live]") {
    const auto config = peer_config();
    if (!config) return;
    s3::client client(*config);
    client.clock().set_seconds(-3600);  // an hour slow: S3 allows 15 minutes
    const std::string key = unique_prefix("skew") + "x.bin";
    const auto body = random_bytes(100, 4);
    client.put(key, body);
    CHECK(std::llabs(client.clock().seconds()) < 120);
    CHECK(client.get(key) == body);
}

TEST_CASE("presigned GET and PUT work; tampered and expired ones fail", "[.s3-live]") {
    const auto config = peer_config();
    if (!config) return;
    s3::client client(*config);
    const std::string key = unique_prefix("presign") + "sp ace+plus/ü(1)!.png";
    const auto body = random_bytes(5000, 5);
    client.put(key, body);

    const std::string url = client.presign("GET", key, std::chrono::seconds(300));
    CHECK(client.download_url(url) == body);

    std::string tampered = url;
    tampered[tampered.size() - 1] = tampered.back() == '0' ? '1' : '0';
    const auto bad_signature = tkt::exception_of<s3::s3_error>([&] { client.download_url(tampered); });
    REQUIRE(bad_signature);
    CHECK(bad_signature->code() == errc::access_denied);
    CHECK(std::string(bad_signature->what()).find("X-Amz-Signature") == std::string::npos);  // URL redacted

    std::string longer = url;
    const std::size_t expires = longer.find("X-Amz-Expires=300");
    REQUIRE(expires != std::string::npos);
    longer.replace(expires, 17, "X-Amz-Expires=301");
    CHECK(tkt::exception_of<s3::s3_error>([&] { client.download_url(longer); }).has_value());

    s3::client past(*config);
    past.clock().set_seconds(-7200);  // signed two hours ago, valid for one minute
    const std::string expired_url = past.presign("GET", key, std::chrono::seconds(60));
    const auto expired = tkt::exception_of<s3::s3_error>([&] { client.download_url(expired_url); });
    REQUIRE(expired);
    CHECK(expired->code() == errc::access_denied);

    // Presigned PUT with plain libcurl: what a browser or another service would do.
    const std::string put_key = unique_prefix("presign") + "uploaded by url.bin";
    const std::string put_url = client.presign("PUT", put_key, std::chrono::seconds(300));
    const auto upload = random_bytes(2048, 6);
    tkt::temp_dir dir;
    tkt::write_file(dir.path() / "up.bin", upload);
    const std::string command = "curl -sf -o /dev/null -X PUT --data-binary @" +
                                tkt::shell_quote((dir.path() / "up.bin").string()) + " " + tkt::shell_quote(put_url);
    CHECK(std::system(command.c_str()) == 0);
    CHECK(client.get(put_key) == upload);
}

namespace {

// Tiles a generated image into `sink` (Deep Zoom, overlap 1, PNG) and returns the metadata.
pyramid_metadata tile_into(storage_sink& sink, const std::string& prefix, int tile_size = 64) {
    static const image_buffer image = tkt::make_image(1500, 1100, 3, 42, 20);
    tile_options options;
    options.prefix = prefix;
    options.threads = 2;
    return generate_pyramid(image.view(), deep_zoom_layout(tile_size, 1), libdeflate_png_encoder(), sink, options);
}

void check_same_objects(s3::client& client, const memory_sink& reference, const std::string& prefix) {
    const std::vector<std::string> keys = reference.keys();
    REQUIRE(keys.size() > 400);
    std::size_t identical = 0;
    for (const std::string& key : keys) identical += client.get(key) == reference.get(key)->body;
    CHECK(identical == keys.size());
    (void)prefix;
}

}  // namespace

TEST_CASE("a whole pyramid uploads through the S3 sink, byte-identical", "[.s3-live]") {
    const auto config = peer_config();
    if (!config) return;
    const std::string prefix = unique_prefix("pyramid");
    memory_sink reference;
    tile_into(reference, prefix);
    s3::s3_sink sink(*config);
    const pyramid_metadata meta = tile_into(sink, prefix);
    CHECK(sink.stats().objects == meta.tile_count + 2);  // tiles + image.dzi + pyramid.json
    s3::client client(*config);
    check_same_objects(client, reference, prefix);

    // remove() through the sink contract (as the job retracts old manifests): true once the
    // DELETE succeeded, also for a key that no longer exists.
    storage_sink& contract = sink;
    CHECK(contract.remove(prefix + "pyramid.json"));
    CHECK_FALSE(client.head(prefix + "pyramid.json").has_value());
    CHECK(contract.remove(prefix + "pyramid.json"));
}

TEST_CASE("with injected 5xx and dropped connections every object still arrives intact", "[.s3-live]") {
    const auto flaky = peer_config("S3PEER_FLAKY_ENDPOINT");
    if (!flaky) return;
    const std::string prefix = unique_prefix("flaky");
    memory_sink reference;
    tile_into(reference, prefix);
    s3::sink_options options;
    options.retry.base_delay = std::chrono::milliseconds(5);
    options.retry.max_delay = std::chrono::milliseconds(200);
    options.retry.max_retry_after = std::chrono::milliseconds(200);
    s3::s3_sink sink(*flaky, options);
    tile_into(sink, prefix);
    CHECK(sink.stats().retries > 0);
    s3::client client(*flaky);
    check_same_objects(client, reference, prefix);
}

TEST_CASE("when every request fails the upload fails clearly and no manifest exists", "[.s3-live]") {
    const auto broken = peer_config("S3PEER_BROKEN_ENDPOINT");
    if (!broken) return;
    const std::string prefix = unique_prefix("broken");
    s3::sink_options options;
    options.retry.max_attempts = 3;
    options.retry.base_delay = std::chrono::milliseconds(1);
    options.retry.max_delay = std::chrono::milliseconds(10);
    options.retry.max_retry_after = std::chrono::milliseconds(10);
    s3::s3_sink sink(*broken, options);
    const auto failure = tkt::exception_of<s3::s3_error>([&] { tile_into(sink, prefix); });
    REQUIRE(failure);
    INFO(failure->what());
    CHECK(failure->code() == errc::storage_error);
    CHECK(failure->key().rfind(prefix, 0) == 0);
    CHECK(std::string(failure->what()).find("3 attempts") != std::string::npos);
    s3::client client(*broken);
    CHECK_FALSE(client.head(prefix + "pyramid.json").has_value());
    CHECK_FALSE(client.head(prefix + "image.dzi").has_value());
}

TEST_CASE("the tile-generation job downloads from and uploads to the S3 peer", "[.s3-live]") {
    const auto config = peer_config();
    if (!config) return;
    s3::client client(*config);
    const std::string root = unique_prefix("job");
    std::vector<std::uint8_t> png;
    libdeflate_png_encoder().encode(tkt::make_image(1100, 800, 4, 17, 20).view(), png);
    client.put(root + "uploads/base map.png", png);

    tkt::temp_dir scratch;
    jobs::sqlite_job_store store((scratch.path() / "jobs.db").string());  // the embedded default store
    const auto draft = [](const jobs::job_record&) { return jobs::version_info{1, "draft"}; };
    jobs::tile_generation_settings settings;
    settings.scratch_root = scratch.path();
    const auto run_in = [&](jobs::job_store& jobs_store, image_source& source, const std::string& slug, const std::string& key) {
        jobs::tile_generation_request request;
        request.source_key = key;
        request.project_slug = slug;
        request.version = 1;
        request.prefix_template = root + "mp/{slug}/uploads/tiles/";
        request.tiling.tile_size = 128;
        jobs::new_job job{jobs::tile_generation_job, "p-" + slug, "v1", "tester"};
        job.payload = jobs::to_payload(request);
        jobs_store.enqueue(job);
        const auto make_sink = [&] { return std::make_unique<s3::s3_sink>(*config); };  // one S3 sink per job
        const auto done = jobs::run_next_job(
            jobs_store, {{jobs::tile_generation_job, jobs::tile_generation_handler<fast_codecs>(source, make_sink, draft, settings)}});
        REQUIRE(done);
        return *done;
    };
    const auto run = [&](image_source& source, const std::string& slug) {
        return run_in(store, source, slug, root + "uploads/base map.png");
    };

    s3::object_source signed_get(client);
    const jobs::job_record by_get = run(signed_get, "signed-get");
    INFO(by_get.error);
    REQUIRE(by_get.status == jobs::job_status::completed);
    const std::string tiles = by_get.result.at("tiles_path");
    const auto metadata = nlohmann::json::parse(tkt::as_string(client.get(tiles + "pyramid.json")));
    CHECK(metadata.at("width") == 1100);
    CHECK(metadata.at("tile_count") == by_get.result.at("tile_count"));
    CHECK(client.head(tiles + "image_files/0/0_0.png").has_value());
    CHECK(store.get(by_get.id)->status == jobs::job_status::completed);  // as read back from SQLite

    s3::presigned_url_source by_url(client, client.presign("GET", root + "uploads/base map.png", std::chrono::minutes(5)));
    CHECK(run(by_url, "presigned").status == jobs::job_status::completed);

    s3::presigned_url_source tampered(client, client.presign("GET", root + "uploads/base map.png", std::chrono::minutes(5)) + "0");
    const jobs::job_record denied = run(tampered, "tampered");
    CHECK(denied.status == jobs::job_status::failed);
    CHECK(denied.error.find("403") != std::string::npos);
    CHECK_FALSE(client.head(root + "mp/tampered/uploads/tiles/current.json").has_value());  // nothing committed

    jobs::memory_job_store other;
    s3::object_source missing(client);
    const jobs::job_record failed = run_in(other, missing, "missing", root + "uploads/missing.png");
    CHECK(failed.status == jobs::job_status::failed);  // not found: bad input, not retried
    CHECK(failed.attempt == 1);
    CHECK(failed.error.find("NoSuchKey") != std::string::npos);
}

namespace {

// Every key client::list reports under `prefix`, sorted.
std::vector<std::string> listed(s3::client& client, const std::string& prefix, unsigned page_size = 1000) {
    std::vector<std::string> keys;
    s3::list_options options;
    options.max_keys = page_size;
    client.list(prefix, [&](const std::string& key) { keys.push_back(key); }, options);
    std::sort(keys.begin(), keys.end());
    return keys;
}

std::vector<std::string> with_prefix(const std::string& prefix, std::vector<std::string> names) {
    for (std::string& name : names) name = prefix + name;
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace

TEST_CASE("S3 listing pages through continuation tokens, filters by prefix and keeps awkward keys", "[.s3-live]") {
    const auto config = peer_config();
    if (!config) return;
    s3::client client(*config);
    const std::string prefix = unique_prefix("list");
    std::vector<std::string> many;
    for (int i = 0; i < 23; ++i) many.push_back("many/k" + std::to_string(100 + i) + ".bin");
    const std::vector<std::string> odd = {"with space/file name.png", "plus+sign+.txt",        "percent%20literal%2B.bin",
                                          "utf8/ü-ñ-中文-🙂.bin",      "amp&lt;tag>\"q'.bin",    "marks!'()*.dat",
                                          "tilde~_-.ext",              "equals=and&amp;.bin",    " lead and trail ",
                                          "many_not/x.bin"};
    for (const auto& name : many) client.put(prefix + name, random_bytes(3, 1));
    for (const auto& name : odd) client.put(prefix + name, random_bytes(3, 2));
    client.put(prefix + "manyx", random_bytes(3, 3));

    // 23 keys, at most 5 a page (the client refuses a larger page): five requests or more.
    CHECK(listed(client, prefix + "many/", 5) == with_prefix(prefix, many));
    CHECK(listed(client, prefix + "many/", 1) == with_prefix(prefix, many));
    std::vector<std::string> all = many;
    all.insert(all.end(), odd.begin(), odd.end());
    all.push_back("manyx");
    CHECK(listed(client, prefix, 4) == with_prefix(prefix, all));
    // many/..., many_not/x.bin, manyx. (Not "many-not/": s3rver walks its directories in name order,
    // so it would list "many-not/x.bin" after "many/..." and skip it past a page boundary.)
    CHECK(listed(client, prefix + "many", 7).size() == 23 + 2);
    CHECK(listed(client, prefix + "nothing/").empty());
    CHECK(listed(client, prefix + "many/k1", 3).size() == 23);

    // Prefixes with characters that need encoding select exactly their keys.
    CHECK(listed(client, prefix + "with space/") == with_prefix(prefix, {"with space/file name.png"}));
    CHECK(listed(client, prefix + "plus+") == with_prefix(prefix, {"plus+sign+.txt"}));
    CHECK(listed(client, prefix + "percent%20") == with_prefix(prefix, {"percent%20literal%2B.bin"}));
    CHECK(listed(client, prefix + "utf8/ü-ñ") == with_prefix(prefix, {"utf8/ü-ñ-中文-🙂.bin"}));
    CHECK(listed(client, prefix + "amp&lt;") == with_prefix(prefix, {"amp&lt;tag>\"q'.bin"}));
    CHECK(listed(client, prefix + " lead") == with_prefix(prefix, {" lead and trail "}));
    for (const std::string& key : listed(client, prefix)) CHECK(client.head(key).has_value());  // names are exact
}

TEST_CASE("the S3 sink lists what it put (pending uploads included) and can delete while listing", "[.s3-live]") {
    const auto config = peer_config();
    if (!config) return;
    const std::string prefix = unique_prefix("sinklist");
    s3::sink_options options;
    options.listing.max_keys = 4;
    s3::s3_sink sink(*config, options);
    storage_sink& contract = sink;
    REQUIRE(contract.can_list());
    std::vector<std::string> expected;
    for (int i = 0; i < 30; ++i) {
        const std::string key = prefix + "tiles/" + std::to_string(i % 3) + "/" + std::to_string(i) + "_0.png";
        contract.put({key, random_bytes(100, static_cast<std::uint32_t>(i)), "image/png", ""});
        expected.push_back(key);
    }
    std::sort(expected.begin(), expected.end());
    std::vector<std::string> keys;
    contract.list(prefix, [&](const std::string& key) { keys.push_back(key); });  // no flush() before
    std::sort(keys.begin(), keys.end());
    CHECK(keys == expected);

    std::size_t removed = 0;
    contract.list(prefix, [&](const std::string& key) { removed += contract.remove(key); });
    CHECK(removed == expected.size());
    s3::client client(*config);
    CHECK(listed(client, prefix).empty());
}

TEST_CASE("a rerun of the tile-generation job on the S3 peer leaves no object of the earlier pyramid", "[.s3-live]") {
    const auto config = peer_config();
    if (!config) return;
    s3::client client(*config);
    const std::string root = unique_prefix("rerun");
    tkt::temp_dir scratch;
    const auto upload = [&](const std::string& name, int width, int height) {
        std::vector<std::uint8_t> png;
        libdeflate_png_encoder().encode(tkt::make_image(width, height, 3, 17, 20).view(), png);
        client.put(root + "uploads/" + name, png);
        tkt::write_file(scratch.path() / name, png);
        return (scratch.path() / name).string();
    };
    const std::string big = upload("big.png", 1100, 800);
    const std::string small = upload("small.png", 500, 300);

    jobs::memory_job_store store;
    const auto draft = [](const jobs::job_record&) { return jobs::version_info{1, "draft"}; };
    jobs::tile_generation_settings settings;
    settings.scratch_root = scratch.path();
    settings.gc_grace = std::chrono::seconds(0);  // the replaced run goes at the next commit
    s3::object_source source(client);
    const std::string version = root + "mp/rerun/uploads/tiles/1/";
    // One run of the job for version 1 of project "rerun"; the sink lists 50 keys a page.
    // Returns the run's prefix.
    const auto run = [&](const std::string& image, int tile_size) {
        jobs::tile_generation_request request;
        request.source_key = root + "uploads/" + image;
        request.project_slug = "rerun";
        request.version = 1;
        request.prefix_template = root + "mp/{slug}/uploads/tiles/{version}/";
        request.tiling.tile_size = tile_size;
        jobs::new_job job{jobs::tile_generation_job, "p-rerun", "v1", "tester"};
        job.payload = jobs::to_payload(request);
        store.enqueue(job);
        const auto make_sink = [&] {
            s3::sink_options options;
            options.listing.max_keys = 50;
            return std::make_unique<s3::s3_sink>(*config, options);
        };
        const auto done = jobs::run_next_job(
            store, {{jobs::tile_generation_job, jobs::tile_generation_handler<fast_codecs>(source, make_sink, draft, settings)}});
        REQUIRE(done);
        INFO(done->error);
        REQUIRE(done->status == jobs::job_status::completed);
        return done->result.at("tiles_path").get<std::string>();
    };
    // The keys a run with these settings writes, from tiling the same file into memory, plus the
    // version's pointer.
    const auto version_keys = [&](const std::string& path, int tile_size, const std::string& run_prefix) {
        memory_sink reference;
        pyramid_options options;
        options.tile_size = tile_size;
        options.prefix = run_prefix;
        tile_file<fast_codecs>(path, reference, options);
        std::vector<std::string> keys = reference.keys();
        keys.push_back(version + jobs::pointer_name);
        keys.push_back(version + "image.dzi");  // the stable manifests beside the pointer
        keys.push_back(version + "pyramid.json");
        std::sort(keys.begin(), keys.end());
        return keys;
    };

    const std::string first = run("big.png", 128);
    REQUIRE(first.rfind(version + "runs/", 0) == 0);
    CHECK(listed(client, version) == version_keys(big, 128, first));

    // Same image, larger tiles; then a smaller image: each time exactly the new run, the pointer
    // and the stable manifests.
    const std::string second = run("big.png", 256);
    CHECK(second != first);
    CHECK(listed(client, version) == version_keys(big, 256, second));
    const std::string third = run("small.png", 256);
    CHECK(listed(client, version) == version_keys(small, 256, third));
    const auto metadata = nlohmann::json::parse(tkt::as_string(client.get(third + "pyramid.json")));
    CHECK(metadata.at("width") == 500);
    const auto pointer = jobs::pointer_from_json(nlohmann::json::parse(tkt::as_string(client.get(version + jobs::pointer_name))));
    CHECK(version + pointer.run == third);

    // Runs stay inside the version's prefix: the sources next to it are untouched.
    CHECK(client.head(root + "uploads/big.png").has_value());
    CHECK(client.head(root + "uploads/small.png").has_value());
}

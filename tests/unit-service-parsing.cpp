// The example HTTP service's pure request parsers (examples/http_service/request_parsing.hpp),
// where the fuzz target (tests/fuzz/service_request.cpp) found something.
#include "../examples/http_service/request_parsing.hpp"

#include "test_helpers.hpp"

#include <string>

namespace svc = tilekit_service;

TEST_CASE("an asset filename is cut to 200 bytes and always valid UTF-8, so it can be answered as JSON", "[service]") {
    CHECK(svc::asset_filename("map.png", "ignored.png") == "map.png");
    CHECK(svc::asset_filename("", "from-form.jpg") == "from-form.jpg");
    CHECK(svc::asset_filename(std::string(300, 'a'), "") == std::string(200, 'a'));
    // 199 ASCII bytes, then a 2-byte character: a byte cut would leave half of it.
    const std::string cut = svc::asset_filename(std::string(199, 'a') + "\xc3\xa9.png", "");
    CHECK(cut == std::string(199, 'a'));
    CHECK_NOTHROW(nlohmann::json{{"filename", cut}}.dump());
    // Ill-formed bytes (a lone continuation byte, an overlong form, a surrogate) become '?'.
    const std::string bad = svc::asset_filename("x\x80y\xc0\xafz\xed\xa0\x80.png", "");
    CHECK(bad == "x?y??z???.png");
    CHECK_NOTHROW(nlohmann::json{{"filename", bad}}.dump());
    // Well-formed multi-byte text is kept.
    CHECK(svc::asset_filename("Karte \xc3\xbc\xe2\x82\xac\xf0\x9f\x97\xba.png", "") == "Karte \xc3\xbc\xe2\x82\xac\xf0\x9f\x97\xba.png");
}

TEST_CASE("version numbers round-trip to text; slugs and tokens keep their rules", "[service]") {
    CHECK(svc::parse_version_number("1") == 1);
    CHECK(svc::parse_version_number("000000012") == 12);
    CHECK(svc::parse_version_number("999999999") == 999999999);
    for (const char* bad : {"", "0", "000", "1000000000", "-1", "+1", "1e3", " 1", "１"}) CHECK(svc::parse_version_number(bad) == 0);
    CHECK(svc::valid_slug("demo-1"));
    CHECK_FALSE(svc::valid_slug("Demo"));
    CHECK_FALSE(svc::valid_slug(std::string(65, 'a')));
    CHECK(svc::bearer_token("Bearer abc") == "abc");
    CHECK(svc::bearer_token("bearer abc") == "abc");
    CHECK(svc::bearer_token("Basic abc").empty());
    CHECK(svc::session_cookie("Basic abc", "GET", "tilekit_session=c", "tilekit_session").empty());
    CHECK(svc::session_cookie("", "POST", "tilekit_session=c", "tilekit_session").empty());
    CHECK(svc::session_cookie("", "GET", "a=1; tilekit_session=c", "tilekit_session") == "c");
    CHECK(svc::session_cookie("", "HEAD", "tilekit_token=t", "tilekit_session").empty());
}

TEST_CASE("/tiles/ serves what lies under a version's tile prefix, nothing next to it", "[service]") {
    const std::string t = "mp/{slug}/uploads/tiles/{version}/";
    CHECK(svc::key_under_tile_prefix(t, "demo", 1, "mp/demo/uploads/tiles/1/image_files/0/0_0.png"));
    CHECK(svc::key_under_tile_prefix(t, "demo", 12, "mp/demo/uploads/tiles/12/pyramid.json"));
    CHECK_FALSE(svc::key_under_tile_prefix(t, "demo", 1, "mp/demo/uploads/tiles/1/"));  // the prefix itself
    CHECK_FALSE(svc::key_under_tile_prefix(t, "demo", 1, "mp/demo/uploads/tiles/12/pyramid.json"));
    CHECK_FALSE(svc::key_under_tile_prefix(t, "demo", 1, "mp/demo/uploads/assets/4f6c.png"));  // a source upload
    CHECK_FALSE(svc::key_under_tile_prefix(t, "demo", 1, "mp/demo-2/uploads/tiles/1/pyramid.json"));
    CHECK_FALSE(svc::key_under_tile_prefix(t, "demo", 1, "mp/demo/uploads/tiles/pyramid.json"));
    // No trailing slash in the template: the jobs add one.
    CHECK(svc::key_under_tile_prefix("tiles/{slug}-{version}", "demo", 3, "tiles/demo-3/image.dzi"));
    CHECK_FALSE(svc::key_under_tile_prefix("tiles/{slug}-{version}", "demo", 3, "tiles/demo-33/image.dzi"));
    // {job_id}: any job id, a UUID.
    const std::string j = "mp/{slug}/{version}/{job_id}/";
    CHECK(svc::key_under_tile_prefix(j, "demo", 1, "mp/demo/1/0c8f3a55-1f7e-4e43-9a3c-6d2b8e4f1a20/image.dzi"));
    CHECK_FALSE(svc::key_under_tile_prefix(j, "demo", 1, "mp/demo/1/not-a-job-id/image.dzi"));
    CHECK_FALSE(svc::key_under_tile_prefix(j, "demo", 1, "mp/demo/1/0c8f3a55-1f7e-4e43-9a3c-6d2b8e4f1a20"));
}

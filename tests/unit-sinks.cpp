// Storage sinks: key validation, filesystem_sink writes and atomic overwrites, memory_sink under
// concurrent puts.

#include "test_helpers.hpp"

#include <atomic>
#include <fstream>
#include <set>
#include <string>
#include <thread>

using namespace tilekit;

namespace {

storage_object object_of(const std::string& key, const std::string& text, const std::string& type = "text/plain") {
    storage_object o;
    o.key = key;
    o.body.assign(text.begin(), text.end());
    o.content_type = type;
    return o;
}

const std::vector<std::string>& bad_keys() {
    static const std::vector<std::string> keys = {
        "",                      // empty
        "/etc/passwd",           // absolute
        "/abs",                  // absolute
        "..",                    // parent
        "../escape.txt",         // parent first
        "a/../../escape.txt",    // parent in the middle
        "a/..",                  // parent last
        "a\\..\\escape.txt",     // backslashes
        "a\\b",                  // backslash
        std::string("a\0b", 3),  // NUL
        std::string("\0", 1),    // only NUL
        "a//b",                  // empty segment
        "a/",                    // trailing slash
        "./a",                   // '.' segment
        "a/./b",                 // '.' segment
        "a\nb",                  // control characters
        "a\tb",
        "a\x01",
        "a\x7f",
        "\x1b[31m",
        std::string(1025, 'k'),  // too long
    };
    return keys;
}

}  // namespace

TEST_CASE("key_problem / validate_key refuse unsafe keys and accept ordinary ones", "[sink][key]") {
    for (const std::string& key : bad_keys()) {
        INFO("key of " << key.size() << " bytes: " << key_problem(key));
        CHECK_FALSE(key_problem(key).empty());
        try {
            validate_key(key);
            FAIL("accepted");
        } catch (const tilekit::error& e) {
            CHECK(e.code() == errc::invalid_key);
            // the message never carries raw control characters
            for (const char ch : std::string(e.what())) CHECK((static_cast<unsigned char>(ch) >= 0x20 && ch != 0x7f));
        }
    }
    for (const std::string key : {"a", "image.dzi", "image_files/10/3_2.png", "maps/42/1/0/0.png", "a..b/c.d",
                                  "...", "x/.hidden", "with space/ü.png"}) {
        INFO(key);
        CHECK(key_problem(key).empty());
        CHECK_NOTHROW(validate_key(key));
    }
    CHECK(key_problem(std::string(1024, 'k')).empty());
}

TEST_CASE("filesystem_sink writes files under its root", "[sink][fs]") {
    tkt::temp_dir dir;
    const tkt::fs::path root = dir.path() / "out" / "nested";
    filesystem_sink sink(root);  // creates the root
    CHECK(tkt::fs::is_directory(root));
    CHECK(sink.root() == root);
    sink.put(object_of("image.dzi", "<Image/>"));
    sink.put(object_of("image_files/0/0_0.png", "tile"));
    sink.put(object_of("deep/a/b/c/d.txt", ""));  // empty body
    sink.flush();
    CHECK(tkt::as_string(tkt::read_file(root / "image.dzi")) == "<Image/>");
    CHECK(tkt::as_string(tkt::read_file(root / "image_files/0/0_0.png")) == "tile");
    CHECK(tkt::fs::file_size(root / "deep/a/b/c/d.txt") == 0);
    CHECK(tkt::list_files(root) == std::set<std::string>{"image.dzi", "image_files/0/0_0.png", "deep/a/b/c/d.txt"});

    SECTION("overwrites replace the whole file and leave no temporary files") {
        sink.put(object_of("image.dzi", std::string(10000, 'x')));
        sink.put(object_of("image.dzi", "short"));
        CHECK(tkt::as_string(tkt::read_file(root / "image.dzi")) == "short");
        // concurrent overwrites of one key: the file always holds one complete version
        std::vector<std::thread> threads;
        for (int t = 0; t < 8; ++t)
            threads.emplace_back([&sink, t] {
                for (int i = 0; i < 50; ++i) sink.put(object_of("same.txt", std::string(1000 + 100 * t, char('a' + t))));
            });
        for (auto& thread : threads) thread.join();
        const std::string final_text = tkt::as_string(tkt::read_file(root / "same.txt"));
        REQUIRE(!final_text.empty());
        const char ch = final_text[0];
        CHECK(final_text == std::string(1000 + 100 * (ch - 'a'), ch));
        CHECK(tkt::list_files(root) ==
              std::set<std::string>{"image.dzi", "image_files/0/0_0.png", "deep/a/b/c/d.txt", "same.txt"});
    }

    SECTION("a file cannot be replaced by a directory") {
        sink.put(object_of("plain", "x"));
        try {
            sink.put(object_of("plain/child", "y"));
            FAIL("wrote below a file");
        } catch (const tilekit::error& e) {
            CHECK(e.code() == errc::io_error);
        }
    }
}

TEST_CASE("filesystem_sink::put_file moves a file into place; open finds objects, never through links", "[sink][fs]") {
    tkt::temp_dir dir;
    const tkt::fs::path root = dir.path() / "root";
    filesystem_sink sink(root);
    const auto scratch_file = [](const tkt::fs::path& where, const std::string& text) {
        std::ofstream(where, std::ios::binary) << text;
        return where;
    };

    SECTION("on the same filesystem (a rename) and from another one (a copy), the source is gone") {
        std::vector<tkt::fs::path> sources{scratch_file(dir.path() / "upload-1", std::string(3 << 20, 'u'))};
        // /dev/shm is tmpfs where it exists: rename() answers EXDEV and the copy path runs.
        if (tkt::fs::is_directory("/dev/shm")) sources.push_back(scratch_file("/dev/shm/tilekit-put-file-test", "from tmpfs"));
        for (std::size_t i = 0; i < sources.size(); ++i) {
            const std::string expected = tkt::as_string(tkt::read_file(sources[i]));
            const std::string key = "assets/a/" + std::to_string(i) + ".png";
            sink.put_file(key, sources[i]);
            CHECK_FALSE(tkt::fs::exists(sources[i]));
            CHECK(tkt::as_string(tkt::read_file(root / key)) == expected);
        }
        CHECK(tkt::list_files(root).size() == sources.size());  // no temporary file left
    }

    SECTION("a link on the key's path is refused, and nothing is written through it") {
        tkt::fs::create_directories(dir.path() / "elsewhere");
        tkt::fs::create_directory_symlink(dir.path() / "elsewhere", root / "linked");
        const tkt::fs::path source = scratch_file(dir.path() / "upload-2", "x");
        CHECK_THROWS_AS(sink.put_file("linked/file.png", source), tilekit::error);
        CHECK(tkt::fs::is_empty(dir.path() / "elsewhere"));
        CHECK(tkt::fs::exists(source));  // still the caller's
    }

    SECTION("open: a descriptor for an object; nothing for a missing key, a directory or a link") {
        sink.put(object_of("tiles/0/0_0.png", "tile bytes"));
        tilekit::detail::unique_fd file = sink.open("tiles/0/0_0.png");
        REQUIRE(file);
        char buffer[32] = {};
        CHECK(::read(file.get(), buffer, sizeof buffer) == 10);
        CHECK(std::string(buffer) == "tile bytes");
        CHECK_FALSE(sink.open("tiles/0/missing.png"));
        CHECK_FALSE(sink.open("tiles/0"));
        scratch_file(dir.path() / "secret", "not an object");
        tkt::fs::create_symlink(dir.path() / "secret", root / "tiles" / "0" / "1_0.png");
        CHECK_FALSE(sink.open("tiles/0/1_0.png"));
        tkt::fs::create_directory_symlink(root / "tiles", root / "alias");
        CHECK_FALSE(sink.open("alias/0/0_0.png"));
    }
}

TEST_CASE("filesystem_sink lists the keys under a prefix, and nothing that is not an object", "[sink][fs]") {
    tkt::temp_dir dir;
    const tkt::fs::path root = dir.path() / "root";
    filesystem_sink sink(root);
    CHECK(sink.can_list());
    for (const char* key : {"a/b/1.png", "a/b/c/2.png", "a/bc/3.png", "a/x.json", "z.txt"}) sink.put(object_of(key, "x"));
    tkt::temp_dir outside;
    tkt::fs::create_directories(outside.path() / "secret");
    { std::ofstream(outside.path() / "secret" / "s.txt") << "s"; }
    tkt::fs::create_directory_symlink(outside.path() / "secret", root / "a" / "b" / "linked");  // not followed
    tkt::fs::create_symlink(outside.path() / "secret" / "s.txt", root / "a" / "b" / "link.png");  // not an object
    { std::ofstream(root / "a" / "b" / ".tk0000abcd-7.tmp") << "half"; }  // a put in flight
    tkt::fs::create_directories(root / "a" / "b" / "empty");

    const auto listed = [&](const std::string& prefix) {
        std::set<std::string> keys;
        sink.list(prefix, [&](const std::string& key) { CHECK(keys.insert(key).second); });
        return keys;
    };
    CHECK(listed("a/b/") == std::set<std::string>{"a/b/1.png", "a/b/c/2.png"});
    CHECK(listed("a/b") == std::set<std::string>{"a/b/1.png", "a/b/c/2.png", "a/bc/3.png"});  // a string prefix, as S3's
    CHECK(listed("a/") == std::set<std::string>{"a/b/1.png", "a/b/c/2.png", "a/bc/3.png", "a/x.json"});
    CHECK(listed("") == std::set<std::string>{"a/b/1.png", "a/b/c/2.png", "a/bc/3.png", "a/x.json", "z.txt"});
    CHECK(listed("a/b/c/2").size() == 1);
    CHECK(listed("missing/") .empty());
    CHECK(listed("a/b/1.png/").empty());  // a file where a directory would be
    CHECK_THROWS_AS(listed("../"), tilekit::error);

    SECTION("on_key may remove what it is given") {
        sink.list("a/", [&](const std::string& key) { CHECK(sink.remove(key)); });
        CHECK(listed("").size() == 1);
        CHECK(tkt::fs::exists(outside.path() / "secret" / "s.txt"));  // the link's target is untouched
    }
}

TEST_CASE("filesystem_sink refuses unsafe keys and writes nothing outside its root", "[sink][fs][key]") {
    tkt::temp_dir dir;
    const tkt::fs::path root = dir.path() / "root";
    filesystem_sink sink(root);
    for (const std::string& key : bad_keys()) {
        INFO("key of " << key.size() << " bytes");
        try {
            sink.put(object_of(key, "evil"));
            FAIL("accepted");
        } catch (const tilekit::error& e) {
            CHECK(e.code() == errc::invalid_key);
        }
    }
    // Nothing anywhere: not in the root, not beside it.
    CHECK(tkt::list_files(dir.path()).empty());
    std::size_t entries = 0;
    for (const auto& entry : tkt::fs::recursive_directory_iterator(dir.path())) {
        (void)entry;
        ++entries;
    }
    CHECK(entries == 1);  // only the (empty) root directory
    CHECK_FALSE(tkt::fs::exists("/tmp/escape.txt.tilekit-should-not-exist"));
}

TEST_CASE("filesystem_sink: many threads writing a pyramid", "[sink][fs][threads]") {
    tkt::temp_dir dir;
    const image_buffer image = tkt::make_image(300, 200, 3, 9);
    filesystem_sink sink(dir.path() / "pyramid");
    tile_options options;
    options.threads = 4;
    const pyramid_metadata m = generate_pyramid(image.view(), deep_zoom_layout(32, 1), stb_png_encoder(), sink, options);
    memory_sink reference;
    generate_pyramid(image.view(), deep_zoom_layout(32, 1), stb_png_encoder(), reference);
    const auto files = tkt::list_files(dir.path() / "pyramid");
    const auto keys = reference.keys();
    CHECK(files == std::set<std::string>(keys.begin(), keys.end()));  // no temporary files left
    CHECK(files.size() == m.tile_count + 2);
    for (const auto& key : keys) {
        if (key == "pyramid.json") continue;
        INFO(key);
        CHECK(tkt::read_file(dir.path() / "pyramid" / key) == reference.get(key)->body);
    }
}

TEST_CASE("memory_sink is thread-safe under concurrent puts", "[sink][memory][threads]") {
    memory_sink sink;
    constexpr int threads = 16, per_thread = 400;
    std::atomic<bool> go{false};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t)
        workers.emplace_back([&, t] {
            while (!go.load()) std::this_thread::yield();
            for (int i = 0; i < per_thread; ++i) {
                sink.put(object_of("t" + std::to_string(t) + "/" + std::to_string(i), std::to_string(t * 100000 + i)));
                sink.put(object_of("shared/" + std::to_string(i % 10), std::to_string(t)));  // contended overwrites
                if (i % 50 == 0) {
                    (void)sink.keys();  // readers at the same time
                    (void)sink.contains("shared/0");
                    (void)sink.get("t0/0");
                }
            }
        });
    go = true;
    for (auto& worker : workers) worker.join();
    CHECK(sink.size() == static_cast<std::size_t>(threads * per_thread + 10));
    CHECK(sink.put_count() == static_cast<std::size_t>(2 * threads * per_thread));
    std::size_t wrong = 0;
    for (int t = 0; t < threads; ++t)
        for (int i = 0; i < per_thread; ++i) {
            const auto o = sink.get("t" + std::to_string(t) + "/" + std::to_string(i));
            if (!o || tkt::as_string(o->body) != std::to_string(t * 100000 + i)) ++wrong;
        }
    CHECK(wrong == 0);
    for (int i = 0; i < 10; ++i) {
        const auto o = sink.get("shared/" + std::to_string(i));
        REQUIRE(o.has_value());
        const int writer = std::stoi(tkt::as_string(o->body));
        CHECK((writer >= 0 && writer < threads));
    }
    CHECK_FALSE(sink.get("missing").has_value());
    CHECK_THROWS_AS(sink.put(object_of("../x", "y")), tilekit::error);
    // memory_sink is also usable through the storage_sink interface
    storage_sink& base = sink;
    base.put(object_of("via/base", "ok"));
    base.flush();
    CHECK(sink.contains("via/base"));
}

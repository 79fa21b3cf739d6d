// Writing under attack: the filesystem sink never leaves its root whatever symbolic links exist
// below it, keeps temporary names short enough for 255-byte segments, and the S3 client never
// puts a caller's control characters on the wire (checked against a raw capture server).

#include "test_helpers.hpp"

#include <tilekit/s3.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>

using namespace tilekit;

namespace {

storage_object object_for(const std::string& key, const std::string& text = "tile") {
    storage_object object;
    object.key = key;
    object.body.assign(text.begin(), text.end());
    object.content_type = "image/png";
    return object;
}

// Everything below `dir`, as relative paths (links listed, not followed).
std::set<std::string> tree(const tkt::fs::path& dir) {
    std::set<std::string> out;
    for (auto it = tkt::fs::recursive_directory_iterator(dir); it != tkt::fs::recursive_directory_iterator(); ++it)
        out.insert(tkt::fs::relative(it->path(), dir).string());
    return out;
}

// A TCP server on loopback that records each request's raw bytes and answers 200.
class capture_server {
public:
    capture_server() {
        listener_ = tkt::listen_on_loopback(8, port_);
        thread_ = std::thread([this] { serve(); });
    }
    ~capture_server() {
        stop_ = true;
        thread_.join();
        ::close(listener_);
    }
    int port() const { return port_; }
    std::vector<std::string> requests() {
        std::lock_guard<std::mutex> lock(mutex_);
        return requests_;
    }

private:
    void serve() {
        while (!stop_) {
            pollfd p{listener_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            const int client = ::accept(listener_, nullptr, nullptr);
            if (client < 0) continue;
            std::string raw;
            char buffer[4096];
            // Headers, then the body by Content-Length.
            while (true) {
                pollfd c{client, POLLIN, 0};
                if (::poll(&c, 1, 2000) <= 0) break;
                const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
                if (n <= 0) break;
                raw.append(buffer, static_cast<std::size_t>(n));
                const std::size_t end = raw.find("\r\n\r\n");
                if (end == std::string::npos) continue;
                std::size_t body = 0;
                const std::size_t at = raw.find("content-length: ");
                const std::size_t at_upper = raw.find("Content-Length: ");
                const std::size_t found = at != std::string::npos ? at : at_upper;
                if (found != std::string::npos && found < end) body = std::stoul(raw.substr(found + 16));
                if (raw.size() >= end + 4 + body) break;
            }
            {
                std::lock_guard<std::mutex> lock(mutex_);
                requests_.push_back(raw);
            }
            const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            ::send(client, answer.data(), answer.size(), MSG_NOSIGNAL);
            ::close(client);
        }
    }

    int listener_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::mutex mutex_;
    std::vector<std::string> requests_;
};

s3::config capture_config(int port) {
    s3::config config;
    config.target = s3::parse_endpoint("http://127.0.0.1:" + std::to_string(port), "us-east-1");
    config.bucket = "bucket";
    config.creds = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
    return config;
}

}  // namespace

TEST_CASE("filesystem_sink never writes through a symbolic link below its root", "[sink][fs][hostile]") {
    tkt::temp_dir dir;
    const tkt::fs::path root = dir.path() / "out";
    const tkt::fs::path elsewhere = dir.path() / "elsewhere";
    tkt::fs::create_directories(root);
    tkt::fs::create_directories(elsewhere);

    SECTION("a linked folder") {
        tkt::fs::create_directory_symlink(elsewhere, root / "image_files");
        filesystem_sink sink(root);
        std::string message;
        CHECK(tkt::error_of([&] { sink.put(object_for("image_files/12/0_0.png")); }, &message) == errc::io_error);
        CHECK(message.find("image_files/12/0_0.png") != std::string::npos);
        CHECK(message.find("symbolic link") != std::string::npos);
        CHECK(tkt::fs::is_empty(elsewhere));
        CHECK(tkt::error_of([&] { sink.remove("image_files/12/0_0.png"); }, &message) == errc::io_error);
        CHECK(message.find("cannot remove") != std::string::npos);
    }
    SECTION("a linked folder deeper down, and a link swapped in after the first write") {
        filesystem_sink sink(root);
        sink.put(object_for("a/b/first.png"));
        tkt::fs::create_directory_symlink(elsewhere, root / "a" / "c");
        CHECK(tkt::error_of([&] { sink.put(object_for("a/c/tile.png")); }) == errc::io_error);
        // The directory the sink already opened is used through its descriptor: replacing it by
        // a link to elsewhere does not redirect later writes there.
        tkt::fs::rename(root / "a" / "b", dir.path() / "moved-away");
        tkt::fs::create_directory_symlink(elsewhere, root / "a" / "b");
        filesystem_sink fresh(root);
        CHECK(tkt::error_of([&] { fresh.put(object_for("a/b/second.png")); }) == errc::io_error);
        CHECK(tkt::fs::is_empty(elsewhere));
    }
    SECTION("a link (or a dangling link) where the file goes is replaced, never written through") {
        const tkt::fs::path target = elsewhere / "secret.txt";
        tkt::write_file(target, tkt::bytes{'s', 'e', 'c', 'r', 'e', 't'});
        tkt::fs::create_symlink(target, root / "pyramid.json");
        tkt::fs::create_symlink(elsewhere / "nowhere", root / "image.dzi");
        filesystem_sink sink(root);
        sink.put(object_for("pyramid.json", "{}"));
        sink.put(object_for("image.dzi", "<Image/>"));
        CHECK(tkt::as_string(tkt::read_file(target)) == "secret");
        CHECK_FALSE(tkt::fs::exists(elsewhere / "nowhere"));
        CHECK_FALSE(tkt::fs::is_symlink(root / "pyramid.json"));
        CHECK(tkt::as_string(tkt::read_file(root / "pyramid.json")) == "{}");
        // remove() deletes a link itself, never what it points to.
        tkt::fs::create_symlink(target, root / "old.png");
        CHECK(sink.remove("old.png"));
        CHECK(tkt::fs::exists(target));
    }
    CHECK(tree(elsewhere).size() <= 1);  // only the secret file of the last section, if any
}

TEST_CASE("filesystem_sink writes into a folder deleted mid-run again, visibly, not into the unlinked one",
          "[sink][fs][hostile]") {
    tkt::temp_dir dir;
    const tkt::fs::path root = dir.path() / "out";
    filesystem_sink sink(root);
    sink.put(object_for("image_files/3/0_0.png"));
    tkt::fs::remove_all(root / "image_files");  // an operator empties the output folder
    sink.put(object_for("image_files/3/1_0.png"));
    CHECK(tkt::fs::exists(root / "image_files" / "3" / "1_0.png"));
    CHECK(sink.remove("image_files/3/1_0.png"));
}

TEST_CASE("filesystem_sink stores 255-byte key segments and refuses 256 with a clear error", "[sink][fs][hostile]") {
    tkt::temp_dir dir;
    filesystem_sink sink(dir.path() / "out");
    for (const std::size_t length : {228u, 240u, 255u}) {
        INFO(length);
        const std::string name = std::string(length - 4, 'n') + ".png";
        REQUIRE_NOTHROW(sink.put(object_for("dir/" + name)));
        CHECK(tkt::fs::exists(dir.path() / "out" / "dir" / name));
        const std::string folder(length, 'd');
        REQUIRE_NOTHROW(sink.put(object_for(folder + "/x.png")));
    }
    std::string message;
    CHECK(tkt::error_of([&] { sink.put(object_for("dir/" + std::string(256, 'n'))); }, &message) == errc::invalid_key);
    CHECK(message.find("255") != std::string::npos);
    CHECK(tree(dir.path() / "out").size() == 1 + 3 + 3 * 2);  // dir/ and its 3 files, 3 folders and theirs: no temporaries
}

TEST_CASE("the S3 client refuses control characters in header values before anything is sent", "[s3][hostile]") {
    capture_server server;
    s3::client client(capture_config(server.port()));
    s3::put_options options;
    options.content_type = "image/png";
    client.put("maps/ok.png", tkt::bytes{1, 2, 3}, options);
    REQUIRE(server.requests().size() == 1);
    CHECK(server.requests()[0].find("content-type: image/png\r\n") != std::string::npos);

    for (const std::string& bad : {std::string("image/png\r\nx-injected: 1"), std::string("image/png\nx-injected: 1"),
                                   std::string("image/png\rx"), std::string("a\x01" "b")}) {
        s3::put_options evil;
        evil.content_type = bad;
        std::string message;
        CHECK(tkt::error_of([&] { client.put("maps/evil.png", tkt::bytes{1}, evil); }, &message) == errc::invalid_argument);
        CHECK(message.find("content-type") != std::string::npos);
        s3::put_options evil_cache;
        evil_cache.cache_control = bad;
        CHECK(tkt::error_of([&] { client.put("maps/evil.png", tkt::bytes{1}, evil_cache); }) == errc::invalid_argument);
    }
    // The sink takes content types and cache controls from the tiler's options, so the same rule holds there.
    {
        s3::s3_sink sink(capture_config(server.port()));
        storage_object object = object_for("maps/sink.png");
        object.cache_control = "public\r\nx-injected: 1";
        CHECK(tkt::error_of([&] {
                  sink.put(std::move(object));
                  sink.flush();
              }) == errc::invalid_argument);
    }
    for (const std::string& raw : server.requests()) CHECK(raw.find("x-injected") == std::string::npos);
    CHECK(server.requests().size() == 1);
}

// Listing on S3, offline: the ListObjectsV2 reader (entities, hostile and truncated bodies,
// size and depth limits), the query the client signs, and client::list's paging against a
// scripted loopback HTTP server that answers what a broken or hostile S3 might (a repeated
// continuation token, keys outside the prefix, endless empty pages, an oversized page).

#include "test_helpers.hpp"

#include <tilekit/s3.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

using namespace tilekit;
namespace s3 = tilekit::s3;
using tilekit::detail::parse_list_objects_v2;

namespace {

std::string contents(const std::string& escaped_key) {
    return "<Contents><Key>" + escaped_key +
           "</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>&quot;0123abcd&quot;</ETag>"
           "<Size>42</Size><StorageClass>STANDARD</StorageClass></Contents>";
}

std::string page_xml(const std::vector<std::string>& escaped_keys, bool truncated, const std::string& token = "") {
    std::string xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                      "<Name>tiles</Name><Prefix>p/</Prefix><KeyCount>" +
                      std::to_string(escaped_keys.size()) + "</KeyCount><MaxKeys>1000</MaxKeys>";
    if (!token.empty()) xml += "<NextContinuationToken>" + token + "</NextContinuationToken>";
    xml += std::string("<IsTruncated>") + (truncated ? "true" : "false") + "</IsTruncated>";
    for (const std::string& key : escaped_keys) xml += contents(key);
    return xml + "</ListBucketResult>\n";
}

// The message of the error parsing `xml` throws, or "(parsed)" when it parses.
std::string parse_failure(const std::string& xml, std::size_t max_bytes = std::size_t{64} << 20) {
    try {
        parse_list_objects_v2(xml, max_bytes);
        return "(parsed)";
    } catch (const tilekit::error& e) {
        CHECK(e.code() == errc::storage_error);
        return e.what();
    }
}

}  // namespace

TEST_CASE("ListObjectsV2 pages parse: keys in order, IsTruncated and the continuation token", "[s3][list]") {
    const auto page = parse_list_objects_v2(page_xml({"p/a.png", "p/b/c.png"}, true, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="));
    CHECK(page.keys == std::vector<std::string>{"p/a.png", "p/b/c.png"});
    CHECK(page.truncated);
    CHECK(page.next_token == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");

    const auto last = parse_list_objects_v2(page_xml({"p/z"}, false));
    CHECK(last.keys == std::vector<std::string>{"p/z"});
    CHECK_FALSE(last.truncated);
    CHECK(last.next_token.empty());

    // An empty listing as S3 sends it, with an owner, a self-closing element, comments, a byte
    // order mark and single-quoted attributes.
    const auto empty = parse_list_objects_v2(
        "\xEF\xBB\xBF<?xml version='1.0'?><!-- hello --><ListBucketResult xmlns='x' a = \"1\"><Name>tiles</Name>"
        "<Prefix/><KeyCount>0</KeyCount><IsTruncated>\n  false\n</IsTruncated><!-- no keys --></ListBucketResult>"
        "<!-- trailing -->\n");
    CHECK(empty.keys.empty());
    CHECK_FALSE(empty.truncated);

    const auto owned = parse_list_objects_v2(
        "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key><Owner><ID>1</ID>"
        "<DisplayName>me</DisplayName></Owner></Contents></ListBucketResult>");
    CHECK(owned.keys == std::vector<std::string>{"k"});
}

TEST_CASE("ListObjectsV2 keys are unescaped: entities, character references, CDATA, line ends", "[s3][list]") {
    const auto page = parse_list_objects_v2(page_xml(
        {"a&amp;b &lt;c&gt; &quot;d&quot; &apos;e&apos;", "&#65;&#x42;&#xe9;&#233;&#x1F642;&#x4E2D;", "  spaced  ",
         "plus+percent%20=&amp;amp;", "<![CDATA[raw <&> text]]>", "x&#13;&#10;y\r\nz\rw", "tab\there"},
        false));
    REQUIRE(page.keys.size() == 7);
    CHECK(page.keys[0] == "a&b <c> \"d\" 'e'");
    CHECK(page.keys[1] == "ABé\xC3\xA9🙂中");
    CHECK(page.keys[2] == "  spaced  ");           // keys are never trimmed
    CHECK(page.keys[3] == "plus+percent%20=&amp;");  // no percent-decoding; one level of entities
    CHECK(page.keys[4] == "raw <&> text");
    CHECK(page.keys[5] == "x\r\ny\nz\nw");  // references keep CR; raw CR LF and CR become LF (XML 1.0)
    CHECK(page.keys[6] == "tab\there");
}

TEST_CASE("hostile ListObjectsV2 bodies are clear errors, never a crash or a wrong listing", "[s3][list]") {
    const std::string ok_key = contents("p/k");
    struct bad_case {
        std::string xml;
        std::string says;
    };
    const std::vector<bad_case> cases = {
        {"", "no root element"},
        {"   \n", "no root element"},
        {"not xml", "text before the root element"},
        {"<Error><Code>AccessDenied</Code><Message>no</Message></Error>", "not <ListBucketResult>"},
        {"<ListBucketResult></ListBucketResult>", "no <IsTruncated>"},
        {"<ListBucketResult/>", "no <IsTruncated>"},
        {"<ListBucketResult><IsTruncated>yes</IsTruncated></ListBucketResult>", "neither true nor false"},
        {"<ListBucketResult><IsTruncated>TRUE</IsTruncated></ListBucketResult>", "neither true nor false"},
        {"<ListBucketResult><IsTruncated>true</IsTruncated>" + ok_key + "</ListBucketResult>",
         "no <NextContinuationToken>"},
        {"<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken></NextContinuationToken>"
         "</ListBucketResult>",
         "no <NextContinuationToken>"},
        {"<ListBucketResult><IsTruncated>false</IsTruncated><IsTruncated>false</IsTruncated></ListBucketResult>",
         "more than one <IsTruncated>"},
        {"<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>a</NextContinuationToken>"
         "<NextContinuationToken>b</NextContinuationToken></ListBucketResult>",
         "more than one <NextContinuationToken>"},
        {"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Size>1</Size></Contents></ListBucketResult>",
         "with 0 <Key>"},
        {"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Key>b</Key></Contents>"
         "</ListBucketResult>",
         "with 2 <Key>"},
        {"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key></Key></Contents></ListBucketResult>",
         "an empty <Key>"},
        {"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key/></Contents></ListBucketResult>",
         "an empty <Key>"},
        {"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a<b>c</b></Key></Contents>"
         "</ListBucketResult>",
         "text mixed with elements"},
        {"<ListBucketResult><IsTruncated>false</IsTruncated><CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes>"
         "</ListBucketResult>",
         "<CommonPrefixes>"},
        {"<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated></ListBucketResult>",
         "was not asked for"},
        {"<ListBucketResult>junk<IsTruncated>false</IsTruncated></ListBucketResult>", "text mixed with elements"},
        {"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult><ListBucketResult/>",
         "content after the root element"},
        {"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>trailing", "content after the root"},
        {"<ListBucketResult><IsTruncated>false</Contents></ListBucketResult>", "closes <IsTruncated>"},
        {"</ListBucketResult>", "before the root element"},
        {"<ListBucketResult><IsTruncated>false</IsTruncated><!-- open", "unterminated comment"},
        {"<ListBucketResult><IsTruncated><![CDATA[false</IsTruncated></ListBucketResult>", "unterminated CDATA"},
        {"<ListBucketResult a=\"1><b c=\"2\"><IsTruncated>false</IsTruncated></ListBucketResult>", "'<' in an attribute"},
        {"<ListBucketResult a=\"1><IsTruncated>false</IsTruncated></ListBucketResult>", "unterminated attribute"},
        {"<ListBucketResult a=1><IsTruncated>false</IsTruncated></ListBucketResult>", "without quotes"},
        {"<ListBucketResult a=\"1\"b=\"2\"><IsTruncated>false</IsTruncated></ListBucketResult>",
         "separated by whitespace"},
        {"<ListBucketResult><1Key>a</1Key></ListBucketResult>", "starts with a digit"},
        {"<ListBucketResult>< IsTruncated>false</IsTruncated></ListBucketResult>", "without a name"},
        {"<ListBucketResult><!ENTITY x \"y\"><IsTruncated>false</IsTruncated></ListBucketResult>",
         "unexpected '<!'"},
        {"<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]>"
         "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>&lol2;</Key></Contents></ListBucketResult>",
         "DTD is not accepted"},
    };
    for (const bad_case& c : cases) {
        INFO(c.xml);
        const std::string message = parse_failure(c.xml);
        INFO(message);
        CHECK(message.find("malformed ListObjectsV2 response") != std::string::npos);
        CHECK(message.find(c.says) != std::string::npos);
    }

    // Entities and character references: only the five predefined names and XML characters.
    for (const char* key : {"&nbsp;", "a & b", "&amp", "&#0;", "&#x0;", "&#1;", "&#xD800;", "&#xFFFE;", "&#x110000;",
                            "&#99999999;", "&#;", "&#x;", "&#12a;", "&#X41;", "&#-1;", "&lol;", "&aaaaaaaaaaaaaaaaaa;"}) {
        INFO(key);
        const std::string message = parse_failure(page_xml({key}, false));
        CHECK((message.find("entity") != std::string::npos || message.find("character reference") != std::string::npos));
    }
    // Raw control characters are not XML.
    for (const char control : {'\x01', '\x1f', '\x7f', '\0'}) {
        const std::string message = parse_failure(page_xml({std::string("a") + control + "b"}, false));
        CHECK(message.find("control character") != std::string::npos);
    }
}

TEST_CASE("every truncation of a ListObjectsV2 body is refused", "[s3][list]") {
    const std::string xml = page_xml({"p/a&amp;b.png", "p/&#x1F642;", "p/c"}, true, "token+/=");
    REQUIRE(parse_failure(xml) == "(parsed)");
    const std::size_t end = xml.rfind("</ListBucketResult>") + std::string("</ListBucketResult>").size();
    for (std::size_t size = 0; size < end; ++size) {
        const std::string message = parse_failure(xml.substr(0, size));
        INFO(size << ": " << xml.substr(0, size));
        CHECK(message.find("malformed ListObjectsV2 response") != std::string::npos);
    }
}

TEST_CASE("ListObjectsV2 size and depth limits hold, and a full page of long escaped keys parses", "[s3][list]") {
    // Over the size limit: refused before reading.
    const std::string xml = page_xml({"p/a"}, false);
    CHECK(parse_failure(xml, xml.size()) == "(parsed)");
    CHECK(parse_failure(xml, xml.size() - 1).find("larger than the limit") != std::string::npos);

    // Deep nesting, also far deeper than any stack would take recursively.
    std::string deep = "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key>";
    for (int i = 0; i < 10; ++i) deep += "<a>";
    CHECK(parse_failure(deep).find("nested too deep") != std::string::npos);
    std::string very_deep = "<ListBucketResult>";
    for (int i = 0; i < 200000; ++i) very_deep += "<a>";
    CHECK(parse_failure(very_deep).find("nested too deep") != std::string::npos);

    // 1000 keys of 1024 bytes, every byte escaped: about 6 MB, read in one pass.
    std::string escaped;
    for (int i = 0; i < 1024; ++i) escaped += "&quot;";
    std::vector<std::string> keys(1000, escaped);
    const std::string big = page_xml(keys, true, "next");
    CHECK(big.size() > 6000000);
    const auto started = std::chrono::steady_clock::now();
    const auto page = parse_list_objects_v2(big);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
    REQUIRE(page.keys.size() == 1000);
    CHECK(page.keys[999] == std::string(1024, '"'));

    // Many small elements and a huge token parse as well.
    const auto long_token = parse_list_objects_v2(page_xml({}, true, std::string(100000, 'T')));
    CHECK(long_token.next_token.size() == 100000);
}

TEST_CASE("randomly damaged ListObjectsV2 bodies parse or throw tilekit::error, nothing else", "[s3][list]") {
    const std::string xml = page_xml({"p/a&amp;b.png", "p/&#x1F642;", "p/<![CDATA[c]]>"}, true, "tok");
    tkt::rng random(20261203);
    std::size_t parsed = 0, refused = 0;
    for (int round = 0; round < 5000; ++round) {
        std::string damaged = xml;
        const int edits = static_cast<int>(random.range(1, 4));
        for (int e = 0; e < edits; ++e) {
            const auto at = static_cast<std::size_t>(random.range(0, static_cast<int>(damaged.size()) - 1));
            const char byte = "<>/&;#x![]\"'= \0a"[random.range(0, 15)];
            switch (random.range(0, 2)) {
                case 0: damaged[at] = byte; break;
                case 1: damaged.insert(damaged.begin() + static_cast<std::ptrdiff_t>(at), byte); break;
                default: damaged.erase(at, 1); break;
            }
        }
        try {
            const auto page = parse_list_objects_v2(damaged);
            ++parsed;
            CHECK((!page.truncated || !page.next_token.empty()));
            for (const std::string& key : page.keys) CHECK_FALSE(key.empty());
        } catch (const tilekit::error& e) {
            ++refused;
            CHECK(e.code() == errc::storage_error);
        }
    }
    CHECK(parsed + refused == 5000);
    CHECK(refused > 1000);
}

TEST_CASE("list requests are strictly encoded and signed for path and virtual-host addressing", "[s3][list]") {
    const std::string query = tilekit::detail::list_objects_v2_query("a b/+%ü", 50, "tok+/=");
    CHECK(query == "list-type=2&max-keys=50&prefix=a%20b%2F%2B%25%C3%BC&continuation-token=tok%2B%2F%3D");
    CHECK(tilekit::detail::list_objects_v2_query("", 1000, "") == "list-type=2&max-keys=1000&prefix=");

    s3::config c;
    c.bucket = "tiles";
    c.creds = {"id", "secret", ""};
    c.target = s3::parse_endpoint("http://127.0.0.1:9000");
    const auto when = std::chrono::system_clock::time_point(std::chrono::seconds(1767225600));
    const std::string sorted = "continuation-token=tok%2B%2F%3D&list-type=2&max-keys=50&prefix=a%20b%2F%2B%25%C3%BC";
    CHECK(s3::request_signer(c).sign("GET", "", query, {}, "e3b0", when).url == "http://127.0.0.1:9000/tiles?" + sorted);
    c.style = s3::addressing::virtual_host;
    c.target = s3::parse_endpoint("https://s3.example.com");
    const s3::http_request vhost = s3::request_signer(c).sign("GET", "", query, {}, "e3b0", when);
    CHECK(vhost.url == "https://tiles.s3.example.com/?" + sorted);
}

namespace {

// The next connection on `listener`, or -1 after 50 ms without one (so that a server's loop can
// look at its stop flag).
int accept_briefly(int listener) {
    pollfd p{listener, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) return -1;
    return ::accept(listener, nullptr, nullptr);
}

// A request's line and header fields, read up to the blank line (or until the client stops).
std::string read_request_head(int connection) {
    std::string request;
    char buffer[4096];
    while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t got = ::recv(connection, buffer, sizeof buffer, 0);
        if (got <= 0) break;
        request.append(buffer, static_cast<std::size_t>(got));
    }
    return request;
}

// A loopback server as the client's S3 endpoint.
s3::config loopback_config(int port) {
    s3::config c;
    c.bucket = "tiles";
    c.creds = {"id", "secret", ""};
    c.target = s3::parse_endpoint("http://127.0.0.1:" + std::to_string(port));
    return c;
}

// A loopback HTTP server that answers each request with the next scripted body (the last one
// again when the script runs out), status 200, and records the request lines.
class scripted_server {
public:
    explicit scripted_server(std::vector<std::string> bodies) : bodies_(std::move(bodies)) {
        listener_ = tkt::listen_on_loopback(16, port_);
        thread_ = std::thread([this] { serve(); });
    }
    ~scripted_server() {
        stop_ = true;
        thread_.join();
        ::close(listener_);
    }

    s3::config config() const { return loopback_config(port_); }
    std::vector<std::string> requests() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return requests_;
    }

private:
    void serve() {
        std::size_t next = 0;
        while (!stop_) {
            const int connection = accept_briefly(listener_);
            if (connection < 0) continue;
            const std::string request = read_request_head(connection);
            {
                std::lock_guard<std::mutex> lock(mutex_);
                requests_.push_back(request.substr(0, request.find("\r\n")));
            }
            const std::string& body = bodies_[std::min(next++, bodies_.size() - 1)];
            const std::string answer = "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: " +
                                       std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
            std::size_t sent = 0;
            while (sent < answer.size()) {
                const ssize_t n = ::send(connection, answer.data() + sent, answer.size() - sent, MSG_NOSIGNAL);
                if (n <= 0) break;
                sent += static_cast<std::size_t>(n);
            }
            ::close(connection);
        }
    }

    std::vector<std::string> bodies_;
    int listener_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    mutable std::mutex mutex_;
    std::vector<std::string> requests_;
    std::thread thread_;
};

// The keys client::list reports, and the s3_error it throws (if any).
struct listing {
    std::vector<std::string> keys;
    std::optional<s3::s3_error> failure;
};

listing list_from(scripted_server& server, const std::string& prefix, s3::list_options options = {}) {
    s3::client client(server.config());
    listing out;
    out.failure = tkt::exception_of<s3::s3_error>(
        [&] { client.list(prefix, [&](const std::string& key) { out.keys.push_back(key); }, options); });
    return out;
}

}  // namespace

TEST_CASE("client::list follows continuation tokens to the last page", "[s3][list]") {
    scripted_server server({page_xml({"p/a", "p/b+c"}, true, "t1/+="), page_xml({}, true, "t2"),
                            page_xml({"p/d e"}, false)});
    s3::list_options options;
    options.max_keys = 2;
    const listing got = list_from(server, "p/", options);
    REQUIRE_FALSE(got.failure);
    CHECK(got.keys == std::vector<std::string>{"p/a", "p/b+c", "p/d e"});
    const auto requests = server.requests();
    REQUIRE(requests.size() == 3);
    CHECK(requests[0] == "GET /tiles?list-type=2&max-keys=2&prefix=p%2F HTTP/1.1");
    CHECK(requests[1] == "GET /tiles?continuation-token=t1%2F%2B%3D&list-type=2&max-keys=2&prefix=p%2F HTTP/1.1");
    CHECK(requests[2] == "GET /tiles?continuation-token=t2&list-type=2&max-keys=2&prefix=p%2F HTTP/1.1");
}

TEST_CASE("client::list refuses answers it cannot trust, with a clear s3_error", "[s3][list]") {
    SECTION("the same continuation token twice (an endless listing)") {
        scripted_server server({page_xml({"p/a"}, true, "again"), page_xml({"p/b"}, true, "again")});
        const listing got = list_from(server, "p/");
        REQUIRE(got.failure);
        CHECK(got.failure->code() == errc::storage_error);
        CHECK(got.failure->s3_code() == "MalformedListResponse");
        CHECK(std::string(got.failure->what()).find("same continuation token twice") != std::string::npos);
        CHECK(got.keys == std::vector<std::string>{"p/a"});  // the page with the repeated token is not reported
        CHECK(server.requests().size() == 2);
    }
    SECTION("truncated without a token") {
        scripted_server server({"<ListBucketResult><IsTruncated>true</IsTruncated>" + contents("p/a") +
                                "</ListBucketResult>"});
        const listing got = list_from(server, "p/");
        REQUIRE(got.failure);
        CHECK(std::string(got.failure->what()).find("no <NextContinuationToken>") != std::string::npos);
        CHECK(std::string(got.failure->what()).find("S3 LIST 'p/'") != std::string::npos);
        CHECK(got.keys.empty());
    }
    SECTION("a key outside the prefix: a server that ignored the prefix must not get a whole bucket deleted") {
        scripted_server server({page_xml({"p/a", "other/b"}, false)});
        const listing got = list_from(server, "p/");
        REQUIRE(got.failure);
        CHECK(std::string(got.failure->what()).find("'other/b' is outside the prefix") != std::string::npos);
        CHECK(got.keys.empty());
    }
    SECTION("more keys than asked for") {
        scripted_server server({page_xml({"p/a", "p/b", "p/c"}, false)});
        s3::list_options options;
        options.max_keys = 2;
        const listing got = list_from(server, "p/", options);
        REQUIRE(got.failure);
        CHECK(std::string(got.failure->what()).find("3 keys in a page of at most 2") != std::string::npos);
    }
    SECTION("endless empty pages with fresh tokens") {
        std::vector<std::string> pages;
        for (int i = 0; i < 10; ++i) pages.push_back(page_xml({}, true, "t" + std::to_string(i)));
        scripted_server server(pages);
        s3::list_options options;
        options.max_empty_pages = 3;
        const listing got = list_from(server, "p/", options);
        REQUIRE(got.failure);
        CHECK(std::string(got.failure->what()).find("4 truncated pages in a row without a key") != std::string::npos);
        CHECK(server.requests().size() == 4);
    }
    SECTION("a page larger than the response limit") {
        scripted_server server({page_xml({"p/" + std::string(5000, 'a')}, false)});
        s3::list_options options;
        options.max_response_bytes = 1000;
        const listing got = list_from(server, "p/", options);
        REQUIRE(got.failure);
        CHECK(got.failure->s3_code() == "ResponseTooLarge");
        CHECK(server.requests().size() == 1);  // not retried
    }
    SECTION("an error document with status 200") {
        scripted_server server({"<Error><Code>InternalError</Code></Error>"});
        const listing got = list_from(server, "");
        REQUIRE(got.failure);
        CHECK(std::string(got.failure->what()).find("not <ListBucketResult>") != std::string::npos);
    }
}

TEST_CASE("client::list checks its arguments before any request", "[s3][list]") {
    scripted_server server({page_xml({}, false)});
    s3::client client(server.config());
    const auto ignore = [](const std::string&) {};
    s3::list_options options;
    options.max_keys = 0;
    CHECK(tkt::error_of([&] { client.list("p/", ignore, options); }) == errc::invalid_argument);
    options.max_keys = 1001;
    CHECK(tkt::error_of([&] { client.list("p/", ignore, options); }) == errc::invalid_argument);
    CHECK(tkt::error_of([&] { client.list(std::string("p\n/"), ignore); }) == errc::invalid_argument);
    CHECK(tkt::error_of([&] { client.list(std::string(1025, 'p'), ignore); }) == errc::invalid_argument);
    CHECK(server.requests().empty());
    CHECK_FALSE(tkt::error_of([&] { client.list("", ignore); }));  // the whole bucket
}

TEST_CASE("the S3 sink lists through the client and skips keys it could not remove", "[s3][list]") {
    scripted_server server({page_xml({"p/ok.png", "p//double", "p/../up", "p/./dot", "p/sub/ok 2.png"}, false)});
    s3::s3_sink sink(server.config());
    storage_sink& contract = sink;
    CHECK(contract.can_list());
    std::vector<std::string> keys;
    contract.list("p/", [&](const std::string& key) { keys.push_back(key); });
    CHECK(keys == std::vector<std::string>{"p/ok.png", "p/sub/ok 2.png"});
}

namespace {

// A loopback HTTP server that answers one GET with 200, a Content-Length of 64 MiB and then a
// trickle: 1 KiB every 50 ms, until the client goes away. A download of it takes hours, so only
// a cancel ends it in time.
class trickle_server {
public:
    trickle_server() {
        listener_ = tkt::listen_on_loopback(4, port_);
        thread_ = std::thread([this] { serve(); });
    }
    ~trickle_server() {
        stop_ = true;
        thread_.join();
        ::close(listener_);
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/slow/source.png"; }
    s3::config config() const { return loopback_config(port_); }
    bool client_left() const { return client_left_; }

private:
    void serve() {
        while (!stop_) {
            const int connection = accept_briefly(listener_);
            if (connection < 0) continue;
            read_request_head(connection);  // whatever it asks, the answer is the trickle
            const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 67108864\r\n\r\n";
            bool open = ::send(connection, head.data(), head.size(), MSG_NOSIGNAL) > 0;
            const std::string chunk(1024, 'x');
            while (open && !stop_) {
                open = ::send(connection, chunk.data(), chunk.size(), MSG_NOSIGNAL) > 0;
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
            if (!open) client_left_ = true;
            ::close(connection);
        }
    }

    int listener_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<bool> client_left_{false};
    std::thread thread_;
};

}  // namespace

TEST_CASE("S3 sources: a cancel stops a download part-way and leaves no file", "[s3][source]") {
    trickle_server server;
    s3::timeouts limits;
    limits.request_ms = 600000;  // no timeout would end it: only the cancel
    s3::client client(server.config(), s3::retry_policy{}, limits);
    const tkt::temp_dir scratch;
    const auto stop_after = [](cancel_token token) {
        return std::thread([token]() mutable {
            std::this_thread::sleep_for(std::chrono::milliseconds(400));
            token.cancel();
        });
    };
    SECTION("by key (signed GET)") {
        s3::object_source source(client);
        cancel_token cancel;
        std::thread canceller = stop_after(cancel);
        const auto start = std::chrono::steady_clock::now();
        CHECK_THROWS_AS(source.fetch_cancellable("slow/source.png", scratch.path(), 1ull << 30, cancel), cancelled_error);
        canceller.join();
        CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
    }
    SECTION("by presigned URL") {
        s3::presigned_url_source source(client, server.url());
        cancel_token cancel;
        std::thread canceller = stop_after(cancel);
        const auto start = std::chrono::steady_clock::now();
        CHECK_THROWS_AS(source.fetch_cancellable("source.png", scratch.path(), 1ull << 30, cancel), cancelled_error);
        canceller.join();
        CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
    }
    CHECK(std::filesystem::is_empty(scratch.path()));  // neither the file nor its .part
    // The connection was closed, not left open behind the cancel.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!server.client_left() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(server.client_left());
}

// Offline parts of the S3 support: endpoints and their presets, the plain-http guard,
// environment credentials, error documents, retry decisions and backoff bounds.

#include "test_helpers.hpp"

#include <tilekit/s3.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

using namespace tilekit;
namespace s3 = tilekit::s3;

TEST_CASE("endpoints parse, and presets build R2 and AWS hosts", "[s3]") {
    const s3::endpoint local = s3::parse_endpoint("http://127.0.0.1:9000/", "auto");
    CHECK(local.scheme == "http");
    CHECK(local.host == "127.0.0.1");
    CHECK(local.port == 9000);
    CHECK(local.authority() == "127.0.0.1:9000");
    CHECK(s3::parse_endpoint("https://s3.example.com:443").authority() == "s3.example.com");

    const s3::endpoint r2 = s3::r2_endpoint("0123456789abcdef0123456789abcdef");
    CHECK(r2.base_url() == "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com");
    CHECK(r2.region == "auto");
    CHECK(r2.is_r2);
    CHECK(s3::aws_endpoint("eu-west-1").base_url() == "https://s3.eu-west-1.amazonaws.com");
    CHECK(s3::aws_endpoint("eu-west-1").region == "eu-west-1");

    for (const char* bad : {"ftp://x", "s3.example.com", "https://", "https://host/path", "https://host:0",
                            "https://host:99999", "https://user@host"})
        CHECK_THROWS_AS(s3::parse_endpoint(bad), tilekit::error);
    CHECK_THROWS_AS(s3::r2_endpoint("not/hex"), tilekit::error);
    CHECK_THROWS_AS(s3::aws_endpoint("Eu West"), tilekit::error);
}

TEST_CASE("plain http is refused except to loopback unless allowed", "[s3]") {
    s3::config c;
    c.bucket = "tiles";
    c.creds = {"id", "secret", ""};
    c.target = s3::parse_endpoint("http://storage.example.com");
    CHECK_THROWS_AS(s3::request_signer(c), tilekit::error);
    c.allow_insecure_http = true;
    CHECK_NOTHROW(s3::request_signer(c));
    c.allow_insecure_http = false;
    for (const char* loopback : {"http://127.0.0.1:9000", "http://localhost:9000", "http://127.255.0.9", "http://[::1]:9000"}) {
        c.target = s3::parse_endpoint(loopback);
        CHECK_NOTHROW(s3::request_signer(c));
    }
    // Names that only look like loopback resolve wherever their owner wants.
    for (const char* name : {"http://127.attacker.example", "http://127.0.0.1.attacker.example", "http://127.0.0.256",
                             "http://127.0.0", "http://127.0.0.1.", "http://1270.0.0.1", "http://128.0.0.1"}) {
        c.target = s3::parse_endpoint(name);
        CHECK_THROWS_AS(s3::request_signer(c), tilekit::error);
    }
    c.bucket.clear();
    CHECK_THROWS_AS(s3::request_signer(c), tilekit::error);
}

TEST_CASE("credentials and endpoint come from the AWS environment variables", "[s3]") {
    setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret-test", 1);
    setenv("AWS_SESSION_TOKEN", "token-test", 1);
    setenv("AWS_REGION", "auto", 1);
    setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:4566", 1);
    const s3::config c = s3::config_from_environment("bucket");
    CHECK(c.creds.access_key_id == "AKIDTEST");
    CHECK(c.creds.secret_access_key == "secret-test");
    CHECK(c.creds.session_token == "token-test");
    CHECK(c.target.authority() == "127.0.0.1:4566");
    CHECK(c.target.region == "auto");
    unsetenv("AWS_ENDPOINT_URL_S3");
    setenv("AWS_REGION", "eu-central-1", 1);
    CHECK(s3::config_from_environment("b").target.host == "s3.eu-central-1.amazonaws.com");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    CHECK_THROWS_AS(s3::config_from_environment("b"), tilekit::error);
    for (const char* name : {"AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "AWS_REGION"}) unsetenv(name);
}

TEST_CASE("signed requests send exactly what they sign, and refuse bad keys", "[s3]") {
    s3::config c;
    c.bucket = "tiles";
    c.creds = {"id", "secret", "session"};
    c.target = s3::parse_endpoint("http://127.0.0.1:9000");
    const s3::request_signer signer(c);
    const auto when = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
    const s3::http_request r =
        signer.sign("PUT", "a b/c+d!'()*.png", "z=1&a=x/y", {{"content-type", "image/png"}, {"Expect", ""}},
                    "UNSIGNED-PAYLOAD", when);
    CHECK(r.url == "http://127.0.0.1:9000/tiles/a%20b/c%2Bd%21%27%28%29%2A.png?a=x%2Fy&z=1");
    std::string authorization;
    bool has_token = false;
    for (const auto& [name, value] : r.headers) {
        if (name == "Authorization") authorization = value;
        if (name == "x-amz-security-token") has_token = value == "session";
    }
    CHECK(has_token);
    CHECK(authorization.find("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token,") !=
          std::string::npos);
    CHECK(authorization.find("secret") == std::string::npos);
    for (const char* bad : {"../x", "a//b", "/abs", "a\\b"})
        CHECK_THROWS_AS(signer.sign("PUT", bad, "", {}, "UNSIGNED-PAYLOAD", when), tilekit::error);

    c.style = s3::addressing::virtual_host;
    const s3::request_signer virtual_host(c);
    CHECK(virtual_host.sign("GET", "k", "", {}, "UNSIGNED-PAYLOAD", when).url == "http://tiles.127.0.0.1:9000/k");

    CHECK_THROWS_AS(signer.presign("DELETE", "k", std::chrono::seconds(60), when), tilekit::error);
    CHECK_THROWS_AS(signer.presign("GET", "k", std::chrono::seconds(0), when), tilekit::error);
    CHECK_THROWS_AS(signer.presign("GET", "k", std::chrono::seconds(604801), when), tilekit::error);
    const std::string url = signer.presign("GET", "k", std::chrono::seconds(604800), when);
    CHECK(url.find("X-Amz-Expires=604800") != std::string::npos);
    CHECK(url.find("X-Amz-Security-Token=session") != std::string::npos);
}

TEST_CASE("S3 answers are judged: done, retry, fix the clock, or fail with a typed error", "[s3]") {
    using tilekit::detail::s3_verdict;
    tilekit::detail::s3_response r;
    r.status = 200;
    CHECK(tilekit::detail::judge_s3_response(r) == s3_verdict::done);
    for (long status : {500L, 502L, 503L, 504L, 429L}) {
        r.status = status;
        CHECK(tilekit::detail::judge_s3_response(r) == s3_verdict::retry);
    }
    r.status = 400;
    r.body = "<Error><Code>RequestTimeout</Code></Error>";
    CHECK(tilekit::detail::judge_s3_response(r) == s3_verdict::retry);
    r.status = 403;
    r.body = "<Error><Code>RequestTimeTooSkewed</Code><Message>skewed</Message></Error>";
    CHECK(tilekit::detail::judge_s3_response(r) == s3_verdict::fix_clock_and_retry);
    for (const char* code : {"SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"}) {
        r.body = std::string("<Error><Code>") + code + "</Code><Message>no</Message></Error>";
        CHECK(tilekit::detail::judge_s3_response(r) == s3_verdict::fail);
        const s3::s3_error e = tilekit::detail::make_s3_error("PUT", "k.png", r, 1);
        CHECK(e.code() == errc::access_denied);
        CHECK(e.s3_code() == code);
        CHECK(std::string(e.what()).find("k.png") != std::string::npos);
    }
    r.status = 404;
    r.body = "<Error><Code>NoSuchBucket</Code></Error>";
    CHECK(tilekit::detail::make_s3_error("GET", "k", r, 1).code() == errc::not_found);
    r.status = 0;
    r.body.clear();
    r.curl_code = CURLE_COULDNT_CONNECT;
    CHECK(tilekit::detail::judge_s3_response(r) == s3_verdict::retry);
    r.curl_code = CURLE_URL_MALFORMAT;
    CHECK(tilekit::detail::judge_s3_response(r) == s3_verdict::fail);
}

TEST_CASE("backoff is full jitter under the cap and honours Retry-After", "[s3]") {
    s3::retry_policy policy;
    policy.base_delay = std::chrono::milliseconds(100);
    policy.max_delay = std::chrono::milliseconds(1000);
    std::mt19937_64 random(1);
    tilekit::detail::s3_response r;
    long long largest = 0;
    for (int attempt = 1; attempt < 12; ++attempt)
        for (int i = 0; i < 200; ++i) {
            const long long d = tilekit::detail::s3_backoff(policy, attempt, r, random).count();
            CHECK(d >= 0);
            CHECK(d <= std::min(1000LL, 100LL << attempt));
            largest = std::max(largest, d);
        }
    CHECK(largest > 500);  // jitter really spreads up to the cap
    r.retry_after = "3";
    CHECK(tilekit::detail::s3_backoff(policy, 1, r, random).count() >= 3000);
    r.retry_after = "999999";
    CHECK(tilekit::detail::s3_backoff(policy, 1, r, random) <= policy.max_retry_after);
}

TEST_CASE("a server that never answers gives a clear timeout error after bounded retries", "[s3]") {
    // A listening socket that nobody accepts from: the kernel completes the handshake, then silence.
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(listener >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listener, 16) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    const std::string endpoint = "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port));

    s3::config c;
    c.bucket = "tiles";
    c.creds = {"id", "secret", ""};
    c.target = s3::parse_endpoint(endpoint);
    s3::retry_policy retry;
    retry.max_attempts = 2;
    retry.base_delay = std::chrono::milliseconds(1);
    s3::timeouts limits;
    limits.request_ms = 300;
    s3::client client(c, retry, limits);
    const auto started = std::chrono::steady_clock::now();
    try {
        client.download_url(endpoint + "/tiles/source.png?X-Amz-Signature=abc");
        FAIL("the download should time out");
    } catch (const s3::s3_error& e) {
        const std::string message = e.what();
        INFO(message);
        CHECK(e.code() == errc::storage_error);
        CHECK(message.find("timed out") != std::string::npos);
        CHECK(message.find("2 attempts") != std::string::npos);
        CHECK(message.find("X-Amz-Signature") == std::string::npos);
    }
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
    ::close(listener);
}

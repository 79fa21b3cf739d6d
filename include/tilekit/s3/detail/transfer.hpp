#pragma once
// One HTTP exchange with S3, shared by the blocking client and the concurrent sink: setting up
// a curl handle for a signed request, judging the answer (done, retry, or fail), the backoff
// before a retry, and the typed error for a failure.

#include <tilekit/s3/config.hpp>
#include <tilekit/s3/detail/curl.hpp>
#include <tilekit/s3/error.hpp>
#include <tilekit/s3/request.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

inline void setup_easy(CURL* easy, const s3::http_request& request, const header_slist& headers, upload_cursor* upload,
                       s3_response& answer, const s3::timeouts& limits) {
    curl_easy_setopt(easy, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, limits.connect_ms);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, limits.request_ms);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, limits.low_speed_bytes_per_s);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, limits.low_speed_seconds);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L);  // send the signed path byte for byte
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, answer.curl_message);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_curl_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_curl_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &answer);
    if (answer.cancel) {
        curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_curl_progress);
        curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &answer);
    }
    answer.easy = easy;
    if (request.method == "PUT") {
        curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_curl_read);
        curl_easy_setopt(easy, CURLOPT_READDATA, upload);
        curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, on_curl_seek);
        curl_easy_setopt(easy, CURLOPT_SEEKDATA, upload);
        curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(upload ? upload->size : 0));
    } else if (request.method == "HEAD") {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    } else if (request.method != "GET") {
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
}

enum class s3_verdict { done, retry, fix_clock_and_retry, fail };

inline bool retryable_curl_code(CURLcode code) {
    switch (code) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SSL_CONNECT_ERROR:
            return true;
        default:
            return false;
    }
}

inline s3_verdict judge_s3_response(const s3_response& answer) {
    if (answer.curl_code != CURLE_OK)
        return !answer.body_too_large && retryable_curl_code(answer.curl_code) ? s3_verdict::retry : s3_verdict::fail;
    const long status = answer.status;
    if (status >= 200 && status < 300) return s3_verdict::done;
    const std::string code = s3_xml_element(answer.body, "Code");
    if (code == "RequestTimeTooSkewed") return s3_verdict::fix_clock_and_retry;
    if (status == 500 || status == 502 || status == 503 || status == 504 || status == 429) return s3_verdict::retry;
    if (code == "SlowDown" || code == "RequestTimeout" || code == "InternalError" || code == "ServiceUnavailable")
        return s3_verdict::retry;
    return s3_verdict::fail;
}

// Server time minus local time, from a Date header; 0 when it cannot be read.
inline long long skew_from_date(const std::string& date_header) {
    if (date_header.empty()) return 0;
    const std::time_t server = curl_getdate(date_header.c_str(), nullptr);
    if (server <= 0) return 0;
    return static_cast<long long>(server) - static_cast<long long>(std::time(nullptr));
}

inline std::chrono::milliseconds s3_backoff(const s3::retry_policy& policy, int attempt, const s3_response& answer,
                                            std::mt19937_64& random) {
    const long long cap = std::min<long long>(policy.max_delay.count(),
                                              policy.base_delay.count() << std::min(attempt, 20));
    std::uniform_int_distribution<long long> jitter(0, std::max<long long>(cap, 0));
    long long delay = jitter(random);
    if (!answer.retry_after.empty() && answer.retry_after.find_first_not_of("0123456789") == std::string::npos &&
        answer.retry_after.size() < 7)
        delay = std::max<long long>(delay, std::min<long long>(std::stoll(answer.retry_after) * 1000,
                                                               policy.max_retry_after.count()));
    return std::chrono::milliseconds(delay);
}

inline s3::s3_error make_s3_error(const std::string& method, const std::string& key, const s3_response& answer,
                                  int attempts) {
    const std::string what = "S3 " + method + " '" + key + "'";
    const std::string tries = attempts > 1 ? " (after " + std::to_string(attempts) + " attempts)" : "";
    if (answer.body_too_large)
        return s3::s3_error(errc::storage_error, what + " failed: the response is larger than the limit of " +
                                                     std::to_string(answer.max_body) + " bytes",
                            answer.status, "ResponseTooLarge", key);
    if (answer.curl_code != CURLE_OK) {
        const std::string detail = answer.curl_message[0] ? answer.curl_message : curl_easy_strerror(answer.curl_code);
        return s3::s3_error(errc::storage_error, what + " failed: " + detail + tries, 0,
                            "curl:" + std::string(curl_easy_strerror(answer.curl_code)), key);
    }
    const std::string code = s3_xml_element(answer.body, "Code");
    const std::string message = s3_xml_element(answer.body, "Message");
    std::string text = what + " failed: HTTP " + std::to_string(answer.status);
    if (!code.empty()) text += " " + code;
    if (!message.empty()) text += ": " + message;
    text += tries;
    return s3::s3_error(classify_s3_code(answer.status, code), text, answer.status, code, key);
}

}  // namespace detail
TILEKIT_NAMESPACE_END

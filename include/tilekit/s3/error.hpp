#pragma once
// S3 failures as typed errors: the HTTP status, S3's error code and the object key, never a
// secret or a signature. Auth failures map to errc::access_denied, missing buckets and keys to
// errc::not_found, everything else to errc::storage_error.

#include <tilekit/error.hpp>

#include <string>

TILEKIT_NAMESPACE_BEGIN
namespace s3 {

class s3_error : public error {
public:
    s3_error(errc code, const std::string& message, long http_status, std::string s3_code, std::string key)
        : error(code, message), http_status_(http_status), s3_code_(std::move(s3_code)), key_(std::move(key)) {}

    long http_status() const noexcept { return http_status_; }  // 0 when no response arrived
    const std::string& s3_code() const noexcept { return s3_code_; }  // "NoSuchKey", ... or a curl error name
    const std::string& key() const noexcept { return key_; }

private:
    long http_status_;
    std::string s3_code_;
    std::string key_;
};

}  // namespace s3
namespace detail {

// The text of the first <tag>...</tag> in an S3 error document (they are flat and small).
inline std::string s3_xml_element(const std::string& xml, const std::string& tag) {
    const std::string open = "<" + tag + ">";
    const std::size_t start = xml.find(open);
    if (start == std::string::npos) return {};
    const std::size_t end = xml.find("</" + tag + ">", start);
    if (end == std::string::npos) return {};
    std::string text = xml.substr(start + open.size(), end - start - open.size());
    if (text.size() > 300) text = text.substr(0, 300) + "...";
    return text;
}

inline errc classify_s3_code(long status, const std::string& code) {
    if (code == "SignatureDoesNotMatch" || code == "AccessDenied" || code == "InvalidAccessKeyId" ||
        code == "AuthorizationHeaderMalformed" || code == "AuthorizationQueryParametersError" ||
        code == "ExpiredToken" || code == "InvalidToken" || (code.empty() && (status == 401 || status == 403)))
        return errc::access_denied;
    if (code == "NoSuchBucket" || code == "NoSuchKey" || (code.empty() && status == 404)) return errc::not_found;
    return errc::storage_error;
}

}  // namespace detail
TILEKIT_NAMESPACE_END

#pragma once
// One exception type with a machine-readable code, so callers can both print and branch.

#include <tilekit/config.hpp>

#include <stdexcept>
#include <string>

TILEKIT_NAMESPACE_BEGIN

enum class errc {
    invalid_argument,  // options out of range, bad sizes
    empty_input,       // zero bytes where an image was expected
    not_an_image,      // bytes are not PNG/JPEG/any format the decoder knows
    truncated_image,   // the file stops before the image ends
    corrupt_image,     // the image is damaged or unsupported
    image_too_large,   // over the configured pixel limit (checked before decoding)
    invalid_key,       // a storage key that is unsafe or malformed
    io_error,          // the filesystem refused
    storage_error,     // a storage sink failed to store an object
    cancelled,         // the caller cancelled the run
    access_denied,     // storage refused the credentials or the signature (never retried)
    not_found,         // no such bucket or object
};

inline const char* to_string(errc code) noexcept {
    switch (code) {
        case errc::invalid_argument: return "invalid_argument";
        case errc::empty_input: return "empty_input";
        case errc::not_an_image: return "not_an_image";
        case errc::truncated_image: return "truncated_image";
        case errc::corrupt_image: return "corrupt_image";
        case errc::image_too_large: return "image_too_large";
        case errc::invalid_key: return "invalid_key";
        case errc::io_error: return "io_error";
        case errc::storage_error: return "storage_error";
        case errc::cancelled: return "cancelled";
        case errc::access_denied: return "access_denied";
        case errc::not_found: return "not_found";
    }
    return "unknown";
}

class error : public std::runtime_error {
public:
    error(errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
    errc code() const noexcept { return code_; }

private:
    errc code_;
};

// Thrown when a run stops because its cancellation token was triggered.
class cancelled_error : public error {
public:
    cancelled_error() : error(errc::cancelled, "tiling was cancelled") {}
};

TILEKIT_NAMESPACE_END

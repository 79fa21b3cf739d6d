#pragma once
// One exception type with a machine-readable code, so callers can both print and branch.

#include <tilekit/config.hpp>

#include <cstdint>
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
    encode_failed,     // a tile encoder (PNG, JPEG) failed
    crypto_error,      // the cryptographic library (OpenSSL) failed: hashing, HMAC
    illegal_transition,  // a job state change the state machine forbids (completing a failed job, ...)
    not_a_draft,       // tiles may only be generated for a draft version
    duplicate_job,     // a queued or running job already exists for this project version
    over_memory_budget,  // decoding the image would need more memory than decode_limits allows
    lease_lost,        // a worker's lease on a job expired and the job was taken over or ended
    store_unavailable, // the job store could not be reached (a database down or restarting)
    store_refused,     // the job store refused this client for good: a wrong password, no such
                       // database or role, no privilege; retrying cannot help (never retried)
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
        case errc::encode_failed: return "encode_failed";
        case errc::crypto_error: return "crypto_error";
        case errc::illegal_transition: return "illegal_transition";
        case errc::not_a_draft: return "not_a_draft";
        case errc::duplicate_job: return "duplicate_job";
        case errc::over_memory_budget: return "over_memory_budget";
        case errc::lease_lost: return "lease_lost";
        case errc::store_unavailable: return "store_unavailable";
        case errc::store_refused: return "store_refused";
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

namespace detail {

// The one wording of every size limit: "<subject> is N <unit>, over the limit of M <unit>".
inline void refuse_over_limit(const std::string& subject, std::uint64_t size, std::uint64_t limit, const char* unit) {
    if (size > limit)
        throw error(errc::image_too_large, subject + " is " + std::to_string(size) + " " + unit + ", over the limit of " +
                                               std::to_string(limit) + " " + unit);
}

}  // namespace detail

TILEKIT_NAMESPACE_END

#pragma once
// The decoding memory budget (decode_limits::max_memory_bytes): each streaming decoder estimates
// its cost from the header and refuses the file before allocating anything that size.

#include <tilekit/error.hpp>

#include <cstdint>
#include <string>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

inline void refuse_over_budget(const std::string& label, const char* format, std::uint64_t estimate,
                               std::uint64_t budget) {
    if (estimate <= budget) return;
    throw error(errc::over_memory_budget, label + "decoding this " + format + " needs about " + std::to_string(estimate) +
                                              " bytes, over the memory budget of " + std::to_string(budget) +
                                              " bytes (decode_limits::max_memory_bytes)");
}

// a * b, saturating instead of wrapping (header fields are attacker-controlled).
inline std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) noexcept {
    if (a != 0 && b > UINT64_MAX / a) return UINT64_MAX;
    return a * b;
}

inline std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
    return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

}  // namespace detail
TILEKIT_NAMESPACE_END

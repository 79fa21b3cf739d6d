#pragma once
// PNG row filters, chosen per encoder (see libdeflate_png_encoder in <tilekit/fast_codecs.hpp>).

#include <tilekit/config.hpp>

TILEKIT_NAMESPACE_BEGIN

// `adaptive` picks, per row, the filter with the smallest sum of absolute values (the heuristic
// libpng recommends); `up` compresses map-like images about as well at half the cost.
enum class png_filter { none = 0, sub = 1, up = 2, average = 3, paeth = 4, adaptive = 5 };

TILEKIT_NAMESPACE_END

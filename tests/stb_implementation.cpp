// stb_image and stb_image_write compiled from their headers into the test binary, for the
// sanitized suite (TILEKIT_STB_FROM_SOURCE): Debian's libstb.so carries no instrumentation.
#define TILEKIT_STB_IMPLEMENTATION
#include <tilekit/detail/stb.hpp>

#pragma once
// Every user-overridable TILEKIT_* macro, with its default.
//
//   TILEKIT_ASSERT(x)            internal invariant check; defaults to assert().
//   TILEKIT_STB_IMPLEMENTATION   define in exactly one TU to compile stb_image and stb_image_write
//                                there (only when not linking a library that already has them,
//                                such as Debian's libstb: see README "How stb reaches the linker").
//   TILEKIT_NO_INCLUDE_STB       the caller has already included stb_image.h / stb_image_write.h.
//
// No public type changes shape with any of these macros.

#include <tilekit/version.hpp>

#ifndef TILEKIT_ASSERT
#include <cassert>
#define TILEKIT_ASSERT(x) assert(x)
#endif

// Public names live in an inline namespace named after the ABI version, so two copies of
// tilekit embedded in different libraries cannot silently merge.
#define TILEKIT_NAMESPACE_BEGIN \
    namespace tilekit {         \
    inline namespace v0 {
#define TILEKIT_NAMESPACE_END \
    }                         \
    }

#if defined(TILEKIT_DETECTED_VERSION) && TILEKIT_DETECTED_VERSION != TILEKIT_VERSION_MINOR
#warning "two different versions of tilekit are included in this translation unit"
#endif
#define TILEKIT_DETECTED_VERSION TILEKIT_VERSION_MINOR

#pragma once
// The single source of truth for tilekit's version (CMake and meson read it from here).

#define TILEKIT_VERSION_MAJOR 0
#define TILEKIT_VERSION_MINOR 1
#define TILEKIT_VERSION_PATCH 0
#define TILEKIT_VERSION "0.1.0"

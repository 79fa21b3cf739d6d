// The test runner: Catch2's own main, so options can be added here later. No tests live in this
// file; they are in tests/unit-*.cpp.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

int main(int argc, char* argv[]) {
    Catch::Session session;
    const int status = session.applyCommandLine(argc, argv);
    if (status != 0) return status;
    return session.run();
}

#include "odr.hpp"

#include <cstdio>

std::uint64_t odr_tiles_a() { return odr_tile_count<tilekit::stb_codecs>(tilekit::layout_type::deep_zoom); }
std::string odr_s3_a() { return odr_s3_authorization("a/0_0.png"); }
std::string odr_sqlite_a() { return odr_sqlite_job("a"); }
std::string odr_postgresql_a() { return odr_postgresql("odr_a"); }
std::string odr_job_a() { return odr_tile_job<tilekit::stb_codecs>("a"); }

int main() {
    const std::uint64_t a = odr_tiles_a();
    const std::uint64_t b = odr_tiles_b();
    const std::string s3_a = odr_s3_a();
    const std::string s3_b = odr_s3_b();
    const bool s3_ok = !s3_a.empty() && !s3_b.empty() && s3_a != s3_b;
    const bool sqlite_ok = odr_sqlite_a() == R"({"project":"a"})" && odr_sqlite_b() == R"({"project":"b"})";
    const bool jobs_ok = odr_job_a() == "completed" && odr_job_b() == "completed";
    const bool postgresql_ok = odr_postgresql_a() == "unavailable" && odr_postgresql_b() == "unavailable";
    std::printf("odr: %d headers in both TUs (%d excluded), %llu + %llu tiles, s3 %s, sqlite %s, postgresql %s, jobs %s\n",
                TILEKIT_ODR_HEADER_COUNT, TILEKIT_ODR_EXCLUDED_COUNT, static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b), s3_ok ? "ok" : "FAILED", sqlite_ok ? "ok" : "FAILED",
                postgresql_ok ? "ok" : "FAILED", jobs_ok ? "ok" : "FAILED");
    return a > 0 && b > 0 && s3_ok && sqlite_ok && postgresql_ok && jobs_ok ? 0 : 1;
}

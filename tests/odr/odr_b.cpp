#include "odr.hpp"

std::uint64_t odr_tiles_b() { return odr_tile_count<tilekit::fast_codecs>(tilekit::layout_type::xyz); }
std::string odr_s3_b() { return odr_s3_authorization("b/0_0.png"); }
std::string odr_sqlite_b() { return odr_sqlite_job("b"); }
std::string odr_postgresql_b() { return odr_postgresql("odr_b"); }
std::string odr_job_b() { return odr_tile_job<tilekit::fast_codecs>("b"); }

// A consumer of the installed (or single-header) tilekit S3 part: signs the S3 documentation's
// GET-with-Range example (OpenSSL libcrypto) and asks libcurl for its version, so a missing
// include or link flag of tilekit::s3 / tilekit-s3.pc fails here. Exits non-zero on mismatch.

#include <tilekit/s3.hpp>

#include <curl/curl.h>

#include <cstdio>
#include <exception>
#include <string>

#ifndef TILEKIT_HAS_S3
#error "TILEKIT_HAS_S3 is not defined: tilekit::s3 (CMake), tilekit_s3_dep (meson) and tilekit-s3.pc define it"
#endif

int main() try {
    // docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html, "GET Object".
    // SHA-256 of the empty body (a constant: consumers do not reach into tilekit::detail).
    const std::string empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const tilekit::s3::signer signer({"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""},
                                     "us-east-1", "s3");
    tilekit::s3::request_to_sign request;
    request.method = "GET";
    request.encoded_path = "/test.txt";
    request.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
                       {"Range", "bytes=0-9"},
                       {"x-amz-content-sha256", empty},
                       {"x-amz-date", "20130524T000000Z"}};
    request.payload_hash = empty;
    const auto parts = signer.sign(request, "20130524T000000Z");
    const bool signature_ok = parts.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";

    const curl_version_info_data* curl = curl_version_info(CURLVERSION_NOW);
    const bool curl_ok = curl != nullptr && curl->version != nullptr;

    const bool ok = signature_ok && curl_ok;
    std::printf("tilekit %s s3 consumer: signature %s, libcurl %s, %s\n", TILEKIT_VERSION,
                signature_ok ? "matches" : parts.signature.c_str(), curl_ok ? curl->version : "?", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED: %s\n", e.what());
    return 1;
}

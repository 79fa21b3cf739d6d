// The in-memory job store against the job-store conformance suite, and the draft-version guard.

#include <tilekit/jobs.hpp>

#include "job_store_conformance.hpp"

#include <memory>
#include <string>

using namespace tilekit::jobs;

TEST_CASE("memory_job_store conforms to the job_store contract", "[jobs][memory]") {
    check_job_store_conformance([] { return std::make_unique<memory_job_store>(); });
}

TEST_CASE("memory_job_store: the refusal names the job already active", "[jobs][memory]") {
    memory_job_store store;
    new_job job;
    job.project_id = "p";
    job.version_id = "v";
    const job_record first = store.enqueue(job);
    try {
        store.enqueue(job);
        FAIL("a second active job for one version was accepted");
    } catch (const job_state_error& e) {
        CHECK(std::string(e.what()).find(first.id) != std::string::npos);
    }
}

TEST_CASE("require_draft lets only draft versions through", "[jobs][version_guard]") {
    CHECK_NOTHROW(require_draft({3, "draft"}));
    CHECK(is_draft({1, "draft"}));

    for (const std::string status : {"published", "archived", "Draft", "DRAFT", "", "draft "}) {
        INFO("status '" << status << "'");
        const version_info version{7, status};
        CHECK_FALSE(is_draft(version));
        CHECK_THROWS_AS(require_draft(version), version_not_draft);
        try {
            require_draft(version);
        } catch (const version_not_draft& e) {
            const std::string what = e.what();
            CHECK(what.rfind("Can only generate tiles for draft versions", 0) == 0);
            CHECK(what.find('7') != std::string::npos);
            if (!status.empty()) CHECK(what.find(status) != std::string::npos);
            CHECK(e.code() == tilekit::errc::not_a_draft);
            CHECK(e.version().number == 7);
            CHECK(e.version().status == status);
        }
    }
}

TEST_CASE("version_not_draft is a tilekit::error but not a job_state_error", "[jobs][version_guard]") {
    try {
        require_draft({2, "published"});
        FAIL("published version accepted");
    } catch (const job_state_error&) {
        FAIL("version_not_draft must be distinct from job_state_error");
    } catch (const tilekit::error& e) {
        CHECK(std::string(e.what()) == "Can only generate tiles for draft versions: version 2 is 'published'");
    }
}

TEST_CASE("the conformance suite's timestamp check itself", "[jobs]") {
    using job_store_conformance::parse_utc;
    CHECK(parse_utc("1970-01-01T00:00:00Z") == 0);
    CHECK(parse_utc("2026-11-28T23:07:16.123Z") == 1795907236);
    CHECK(parse_utc(utc_now_iso8601()) > 0);
    for (const char* bad : {"", "2026-11-28 23:07:16Z", "2026-11-28T23:07:16", "2026-11-28T23:07:16.Z",
                            "2026-11-28T23:07:16+01:00", "2026-11-28T23:07:16.123Zx", "26-11-28T23:07:16Z"})
        CHECK(parse_utc(bad) == -1);
}

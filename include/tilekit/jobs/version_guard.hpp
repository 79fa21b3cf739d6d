#pragma once
// The draft-version guard: only a draft version may (re)generate its tiles, so a published or
// archived pyramid is never overwritten. Apply it before a job is created and again when the
// job starts, because the version may have been published in between.

#include <tilekit/error.hpp>

#include <string>
#include <utility>

TILEKIT_NAMESPACE_BEGIN
namespace jobs {

inline const char* const draft_version_status = "draft";

// What the service knows about the version a request is for.
struct version_info {
    int number = 0;
    std::string status;  // "draft", "published", "archived", ... (compared exactly, case-sensitive)
};

// A distinct type so a service can map it to its own response (for example HTTP 409), while
// what() keeps the sentence the service this replaces showed its users.
class version_not_draft : public error {
public:
    explicit version_not_draft(const version_info& version)
        : error(errc::not_a_draft, "Can only generate tiles for draft versions: version " +
                                            std::to_string(version.number) + " is " +
                                            (version.status.empty() ? "of unknown status" : "'" + version.status + "'")),
          version_(version) {}

    const version_info& version() const noexcept { return version_; }

private:
    version_info version_;
};

inline bool is_draft(const version_info& version) noexcept { return version.status == draft_version_status; }

inline void require_draft(const version_info& version) {
    if (!is_draft(version)) throw version_not_draft(version);
}

}  // namespace jobs
TILEKIT_NAMESPACE_END

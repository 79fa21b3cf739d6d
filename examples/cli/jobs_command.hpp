#pragma once
// `tilekit jobs`: the tile-generation queue from the shell, on the service's own configuration,
// catalog, storage and job store (examples/http_service, library target tilekit_service_core).
// See jobs_usage_text (and README.md, "tilekit jobs") for the subcommands and exit codes.

#include <string>
#include <vector>

namespace tilekit_cli {

extern const char* const jobs_usage_text;

// Exit codes of `tilekit jobs`.
enum jobs_exit : int {
    exit_ok = 0,         // done; for wait/run: the job completed
    exit_failed = 1,     // the job failed, or the command did (a refusal, an unknown job, a store error)
    exit_usage = 2,      // a bad command line
    exit_cancelled = 3,  // wait/run: the job was cancelled
    exit_timeout = 4,    // wait/run --timeout: the job had not ended in time
};

// `args` excludes "tilekit jobs".
int jobs_main(const std::vector<std::string>& args);

}  // namespace tilekit_cli

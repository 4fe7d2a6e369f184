// Probes of the scale phase of dsm-bench (docs/benchmarks.md, "Scale"): a process's resident
// memory, a directory's size on disk, and a timed `dsm-dbdump --verify` of a stopped node's data
// directory.
//
// Free functions, thread-compatible.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "dsm/status.h"

namespace dsm::bench {

struct ResidentMemory {
  uint64_t rss_bytes = 0;   // VmRSS of /proc/<pid>/status
  uint64_t peak_bytes = 0;  // VmHWM: the largest resident set since the process started
};

// The resident memory of process `pid`. Unavailable when /proc does not show it.
Result<ResidentMemory> ReadResidentMemory(pid_t pid);

// The bytes of the regular files under `dir` (their sizes, not their allocated blocks).
uint64_t DirectoryBytes(const std::string& dir);

struct VerifyRun {
  uint64_t records = 0;  // from the tool's "OK: N records" summary
  double seconds = 0;    // wall time of the whole command
  std::string summary;   // the tool's summary line
};

// Runs `dbdump --data-dir dir --verify` and times it. An error when the tool cannot run, exits
// non-zero (damage) or prints no summary.
Result<VerifyRun> TimeVerify(const std::string& dbdump, const std::string& dir);

}  // namespace dsm::bench

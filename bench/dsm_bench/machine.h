// What dsm-bench knows about the machine it runs on: a description (cores, CPU model, kernel,
// the data directory's filesystem and disk, load average), CPU accounting (the whole machine,
// this process, the node processes) and the disk's fsync latency baseline.
//
// Thread safety: the free functions are thread-safe; a CpuSnapshot is a value.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "bench/dsm_bench/stats.h"
#include "dsm/status.h"

namespace dsm::bench {

struct MachineInfo {
  unsigned cores = 0;
  std::string cpu_model;
  std::string kernel;
  std::string filesystem;  // of the data directory: "ext4 on /dev/vda mounted at /"
  std::string disk;        // the block device: "vda, rotational=0, scheduler=[none] ..."
  std::string loadavg;     // /proc/loadavg's first three fields
};

// Describes the machine; `data_dir` is the directory whose filesystem and disk are reported.
MachineInfo DescribeMachine(const std::string& data_dir);
// The 1-, 5- and 15-minute load averages.
std::string LoadAverage();

// CPU time counters at one instant.
struct CpuSnapshot {
  int64_t wall_ns = 0;
  double machine_busy_s = 0;   // all cores, from /proc/stat (non-idle, non-iowait)
  double machine_total_s = 0;  // all cores
  double self_s = 0;           // this process (user + system)
  std::vector<double> pids_s;  // each watched process (user + system); 0 when gone
};

CpuSnapshot TakeCpuSnapshot(const std::vector<pid_t>& pids);

// CPU use between two snapshots, in percent of ONE core (so 2 busy cores = 200%).
struct CpuUse {
  double machine_pct = 0;  // all cores together
  double self_pct = 0;     // dsm-bench (load generators and watchers)
  std::vector<double> pids_pct;
};
CpuUse CpuBetween(const CpuSnapshot& a, const CpuSnapshot& b);

// The disk baseline: appends 4 KiB and fdatasync()s, again and again, to a new file in `dir`
// (so on the data directory's filesystem, as a write-ahead log does), for at most `duration` and
// `max_ops` operations; the file is removed afterwards. Returns the latency per write+fdatasync
// of this window and appends its samples (ns) to *samples, so that several windows can be pooled.
struct FsyncWindow {
  LatencySummary latency;
  double ops_per_s = 0;
};
Result<FsyncWindow> MeasureFsync(const std::string& dir, std::chrono::milliseconds duration,
                                 size_t max_ops, std::vector<int64_t>* samples);

// The same 4 KiB append + fdatasync, once every `interval` on a thread of its own while a phase
// runs: on a shared machine the disk's latency drifts, and this shows what it was during each
// phase (a few syncs per second, negligible next to the nodes' own).
class FsyncProbe {
 public:
  FsyncProbe(std::string dir, std::chrono::milliseconds interval);
  ~FsyncProbe();  // Stop()
  FsyncProbe(const FsyncProbe&) = delete;
  FsyncProbe& operator=(const FsyncProbe&) = delete;

  // Stops the thread (idempotent) and returns what it measured (ns per write + fdatasync).
  std::vector<int64_t> Stop();

 private:
  void Run();

  const std::string path_;
  const std::chrono::milliseconds interval_;
  std::atomic<bool> stop_{false};
  std::vector<int64_t> samples_;  // written by the thread, read after it joined
  std::thread thread_;
};

}  // namespace dsm::bench

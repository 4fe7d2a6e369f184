// One dsm-bench run: sets up the cluster (a local 3-node cluster of dsm-node processes, or the
// nodes given), measures the baselines, then the phases in order - publish closed loop (async,
// then sync_quorum, at each client count), publish open loop at a fixed rate, batch publish,
// catch-up - and fills a BenchReport. Each phase waits until what it published is on every node
// before the next one starts, so phases do not measure each other's backlog.
//
// Thread safety: RunBench is called from the main thread (it spawns the node processes, which
// die with the thread that spawned them).
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "bench/dsm_bench/http_client.h"
#include "bench/dsm_bench/report.h"
#include "dsm/status.h"

namespace dsm::bench {

struct RunOptions {
  BenchConfig config;
  std::string node_binary;             // dsm-node (local cluster)
  std::string dbdump_binary;           // dsm-dbdump (the scale phase's --verify)
  std::vector<std::string> node_args;  // extra dsm-node options (local cluster)
  TlsClientFiles tls;                  // how https:// nodes are verified (--tls-ca, ...)
  bool pass_memory_mb = false;         // give every node --memory-mb config.node_memory_mb
  bool keep_data = false;              // keep the local cluster's directories
  bool progress = true;
};

// Runs everything; on error (the cluster cannot start, a node dies) returns it with what was
// measured so far in *report. Stops early, with an OK status, when `stop` is set.
Status RunBench(const RunOptions& options, const std::atomic<bool>& stop, BenchReport* report);

}  // namespace dsm::bench

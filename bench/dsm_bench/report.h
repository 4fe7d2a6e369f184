// The results of one dsm-bench run (BenchReport) and how they are written: as JSON (the
// machine-readable record, schema below), as a readable table, and the performance targets
// (docs/benchmarks.md, "The targets") evaluated against the baselines measured in the same run
// (and against etcd's figures of the same run, with --compare etcd).
//
// JSON layout (times in ms, rates per second, CPU in % of one core):
//   {"tool","version","profile","started_at","duration_s","machine":{...},"config":{...},
//    "baselines":{"fsync":{...},"http_1":{...},"http_ceiling":{...},"base_latency_ms",...},
//    "publish":{"closed_loop":[run...],"open_loop":[run...]},
//    "quorum_write_stages":[{"clients",...stages}],"etcd":{...},
//    "replication":{...},"batch":{...},"catch_up":{...},"targets":[...]}
// where every run has its latency percentiles, throughput, errors, CPU, end-to-end replication
// and its ratios to the baselines; "etcd" holds etcd's runs and dsm's ratios to them.
//
// Pure functions over values, thread-compatible.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "bench/dsm_bench/consume.h"
#include "bench/dsm_bench/load.h"
#include "bench/dsm_bench/machine.h"
#include "bench/dsm_bench/membership_phase.h"
#include "bench/dsm_bench/retention_phase.h"
#include "bench/dsm_bench/stats.h"
#include "bench/dsm_bench/watch.h"
#include "dsm/status.h"

namespace dsm::bench {

// The options a run used, echoed in the report.
struct BenchConfig {
  std::string profile = "default";  // default | quick | smoke
  bool local_cluster = true;
  std::vector<std::string> nodes;  // node URLs
  std::string fsync = "always";
  int quorum = 2;
  std::vector<int> clients = {1, 4, 16, 64};
  double warmup_s = 1;
  double duration_s = 5;
  double open_rate = 1000;
  int open_clients = 64;
  size_t payload_bytes = 100;
  int batch_size = 1000;
  int batch_clients = 4;
  double batch_duration_s = 5;
  size_t catchup_messages = 100000;
  double fsync_s = 2;           // the first fsync baseline window
  double fsync_window_s = 0.3;  // each later one (before every load phase)
  double http_s = 2;
  int ceiling_clients = 64;
  int watch_interval_us = 2000;
  bool spread = false;  // publish to every node (round-robin) instead of the first one
  // Phases to run after the baselines: "closed", "open", "batch", "catchup" by default; "scale"
  // (it takes minutes), "consume" (durable consumers), "retention" and "membership" only when
  // asked for.
  std::vector<std::string> phases = {"closed", "open", "batch", "catchup"};
  // The scale phase: the log sizes (messages) it measures at, the closed-loop quorum clients and
  // seconds of its latency probe.
  std::vector<size_t> scale_messages = {1000000, 5000000};
  int scale_clients = 4;
  double scale_latency_s = 3;
  // --memory-mb of every local node; the scale phase checks their resident memory against it.
  int node_memory_mb = 256;
  ConsumeConfig consume;
  MembershipConfig membership;  // --phases membership
  bool Runs(const std::string& phase) const;
  std::string data_root;
  // --compare etcd: a 3-member etcd cluster measured before dsm, at these client counts.
  bool compare_etcd = false;
  std::string etcd_binary;  // --etcd-binary; empty = "etcd" on $PATH
  std::vector<int> etcd_clients = {1, 64};
};

// The disk's fsync latency while dsm is idle: a first window before the cluster starts, then a
// short window before each load phase (between phases the cluster is idle), pooled. On a shared
// disk one window can land in someone else's burst; the pool is what the ratios use.
struct FsyncBaseline {
  LatencySummary latency;  // all windows pooled
  size_t windows = 0;
  FsyncWindow first;  // the first window alone
  std::vector<double> window_p50_ms;
};

struct HttpBaseline {
  LatencySummary latency_1;  // GET /heartbeat, 1 connection
  double rps_1 = 0;
  int ceiling_clients = 0;
  double ceiling_rps = 0;  // GET /heartbeat, ceiling_clients connections, closed loop
  LatencySummary latency_ceiling;
  CpuUse cpu_1;
  CpuUse cpu_ceiling;
};

// One stage of a quorum write, from a node's histograms between two scrapes of /metrics.
struct StageFigure {
  uint64_t count = 0;  // observations (per /send, or per push batch for the push stages)
  double mean_ms = 0;  // from the _sum and _count deltas
  double p50_ms = 0;   // estimated from the bucket deltas (linear inside the bucket)
};

// Where a quorum write's time went during one sync_quorum closed-loop run: the publishing node's
// /metrics scraped before the run and after everything it published reached every node, its
// peers' /metrics for their /replicate write. Warm-up requests are included.
struct QuorumStages {
  bool measured = false;
  std::string error;            // why not, when !measured
  StageFigure log_write;        // dsm_send_stage_duration_seconds{stage="log_write"}
  StageFigure core_queue;       // ...{stage="core_queue"}
  StageFigure quorum_wait;      // ...{stage="quorum_wait"}
  StageFigure push_round_trip;  // dsm_peer_push_round_trip_seconds, every peer (per batch)
  StageFigure peer_write;       // dsm_replicate_write_duration_seconds on the peers (per batch)
  StageFigure total;            // dsm_send_duration_seconds{ack="quorum"}: core to answer
};

struct PublishRun {
  std::string mode;            // "async" | "sync_quorum"
  LatencySummary fsync_probe;  // the disk's fsync latency during this run (FsyncProbe)
  bool open_loop = false;
  int clients = 0;
  LoadResult load;  // records are dropped once evaluated
  ReplicationResult replication;
  bool replicated_in_time = true;  // every message on every node before the next run
  QuorumStages stages;             // sync_quorum closed-loop runs
};

// `--compare etcd`: the same closed-loop load (one 100-byte value per request, JSON over HTTP) put
// into a 3-member etcd cluster on this machine, measured before dsm's runs.
struct EtcdRun {
  int clients = 0;
  LoadResult load;
  LatencySummary fsync_probe;  // the disk's fsync latency during this run
};

struct EtcdComparison {
  bool requested = false;
  bool ran = false;
  std::string skipped;  // why not, when requested && !ran (printed as one line)
  std::string binary;
  std::string version;  // as the members report it
  std::string leader;   // the leader's client URL the load went to
  std::vector<EtcdRun> runs;
  const EtcdRun* Find(int clients) const;
};

struct BatchRun {
  LatencySummary fsync_probe;
  int clients = 0;
  int batch = 0;
  LoadResult load;
  ReplicationResult replication;
};

struct CatchUpRun {
  bool ran = false;
  std::string skipped;  // why not, when !ran
  size_t messages = 0;  // written while the node was down
  double write_s = 0;   // time to write them (with the node down)
  double down_to_restart_s = 0;
  double seconds = 0;          // restart (process spawned) -> holds them all
  double seconds_from_up = 0;  // first /heartbeat answer -> holds them all
  double messages_per_s = 0;   // messages / seconds
  double messages_per_s_from_up = 0;
  bool complete = false;  // held them all before the deadline
};

// The scale phase at one log size (the first point is the log before the phase writes).
struct ScalePoint {
  uint64_t messages = 0;  // in the publishing node's log (its last seq)
  double write_s = 0;     // writing the messages since the previous point
  double write_per_s = 0;
  std::vector<uint64_t> rss_bytes;   // each node's resident set, after the latency probe
  std::vector<uint64_t> peak_bytes;  // each node's largest resident set so far
  uint64_t disk_bytes = 0;           // the publishing node's data directory
  double disk_bytes_per_message = 0;
  LoadResult send;  // the closed-loop quorum probe (records dropped)
  // A new empty peer: the last node's directory wiped, the node restarted, until it holds the
  // publishing node's whole log.
  bool catchup_ran = false;
  bool catchup_complete = false;
  double catchup_s = 0;
  double catchup_per_s = 0;
  // dsm-dbdump --verify of that node's directory, stopped once caught up.
  bool verify_ran = false;
  std::string verify_error;
  uint64_t verify_records = 0;
  double verify_s = 0;
  double verify_per_s = 0;
  uint64_t MaxRss() const;
};

struct ScaleRun {
  bool requested = false;
  bool ran = false;
  std::string skipped;  // why not, when requested && !ran
  std::vector<ScalePoint> points;
};

struct TargetCheck {
  // "ratio to baselines" (of the same run), "absolute", or "ratio to etcd" (of the same run).
  std::string kind;
  std::string name;
  std::string goal;
  std::string value;
  bool measured = false;
  bool met = false;
};

struct BenchReport {
  std::string started_at;  // UTC, ISO 8601
  double duration_s = 0;
  BenchConfig config;
  MachineInfo machine;
  std::string load_before;  // load averages before and after the run
  std::string load_after;
  std::string node_binary;  // the dsm-node started (local cluster)
  std::string run_dir;      // the local cluster's directories (removed unless --keep-data)
  FsyncBaseline fsync;
  // The same 4 KiB append + fdatasync, one every 100 ms during the load phases (FsyncProbe),
  // pooled: what a single sync costs when it is not back to back with the previous one.
  LatencySummary paced_fsync;
  HttpBaseline http;
  std::vector<PublishRun> closed_loop;
  std::vector<PublishRun> open_loop;
  BatchRun batch;
  CatchUpRun catch_up;
  ScaleRun scale;
  ConsumeReport consume;
  EtcdComparison etcd;
  RetentionComparison retention;  // --phases retention
  MembershipReport membership;    // --phases membership
  std::vector<TargetCheck> targets;
  std::vector<std::string> warnings;

  // fsync p50 + HTTP (1 connection) p50: the least a durable round trip can take.
  double BaseLatencyMs() const { return fsync.latency.p50_ms + http.latency_1.p50_ms; }
  // The empty-request ceiling, requests/s.
  double CeilingRps() const { return http.ceiling_rps; }
  // The closed-loop run of `mode` at `clients`, or nullptr.
  const PublishRun* FindClosed(const std::string& mode, int clients) const;
  const PublishRun* FindOpen(const std::string& mode) const;
};

// Fills report->targets from the measured figures.
void EvaluateTargets(BenchReport* report);

std::string ReportJson(const BenchReport& report);
void PrintTables(const BenchReport& report, std::FILE* out);

Status WriteFile(const std::string& path, const std::string& contents);

}  // namespace dsm::bench

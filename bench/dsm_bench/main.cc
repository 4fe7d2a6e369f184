// dsm-bench: the cluster benchmark. Starts a local 3-node dsm cluster (or uses --nodes), measures
// the machine's baselines and dsm's publish latency and throughput, replication, batch publish and
// catch-up (with --compare etcd, a local 3-member etcd cluster under the same load first), and
// reports them as a table, JSON (--json) and SVG (--svg). See docs/benchmarks.md.

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "bench/dsm_bench/bench_run.h"
#include "bench/dsm_bench/report.h"
#include "bench/dsm_bench/svg_report.h"

namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop = true; }

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// Parses a comma-separated list of client counts (1..1024) into *out; prints the error.
bool ParseCounts(const char* option, const std::string& list, std::vector<int>* out) {
  out->clear();
  for (const std::string& s : Split(list, ',')) {
    const int n = std::atoi(s.c_str());
    if (n < 1 || n > 1024) {
      std::fprintf(stderr, "dsm-bench: %s: '%s' is not a count from 1 to 1024\n", option,
                   s.c_str());
      return false;
    }
    out->push_back(n);
  }
  if (out->empty()) {
    std::fprintf(stderr, "dsm-bench: %s needs at least one count\n", option);
    return false;
  }
  return true;
}

// The directory holding this executable.
fs::path ExeDir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::current_path() : exe.parent_path();
}

}  // namespace

int main(int argc, char** argv) {
  using dsm::bench::BenchConfig;
  CLI::App app{
      "dsm-bench: publish latency and throughput, replication, batch publish and catch-up of a "
      "3-node dsm cluster, against the disk's fsync and an empty HTTP request measured in the "
      "same run"};
  app.get_formatter()->column_width(34);

  std::string nodes, json_path, svg_path, clients, fsync = "always", data_dir, node_binary;
  bool quick = false, smoke = false, spread = false, keep_data = false, no_progress = false;
  double duration = 0, warmup = 0, rate = 0, batch_duration = 0;
  int open_clients = 0, batch_size = 0, batch_clients = 0, quorum = 2, watch_us = 0;
  size_t payload = 0, catchup = 0;
  std::string scale_messages;
  int memory_mb = 0;
  std::vector<std::string> node_args;
  dsm::bench::TlsClientFiles tls;

  app.add_option("--nodes", nodes, "use these nodes (URL,URL,URL) instead of a local cluster");
  app.add_option("--json", json_path, "write the report as JSON to this file");
  app.add_option("--svg", svg_path, "write the SVG report to this file");
  app.add_flag("--quick", quick, "a ~30 s smoke run (shorter phases, 20,000-message catch-up)");
  app.add_flag("--smoke", smoke, "tiny counts, for tests: checks that everything runs");
  auto* o_duration = app.add_option("--duration", duration, "measured seconds per publish run (5)");
  auto* o_warmup = app.add_option("--warmup", warmup, "unmeasured seconds before each run (1)");
  auto* o_clients = app.add_option("--clients", clients, "closed-loop client counts (1,4,16,64)");
  auto* o_rate =
      app.add_option("--rate", rate, "open-loop rate, requests/s; 0 = no open loop (1000)");
  auto* o_open = app.add_option("--open-clients", open_clients, "open-loop connections (64)");
  auto* o_payload = app.add_option("--payload-bytes", payload, "payload size (100)");
  auto* o_bsize = app.add_option("--batch-size", batch_size, "messages per batch request (1000)");
  auto* o_bclients = app.add_option("--batch-clients", batch_clients, "batch publishers (4)");
  auto* o_bdur = app.add_option("--batch-duration", batch_duration, "batch publish seconds (5)");
  std::string consume_clients;
  int consume_runs = 3;
  size_t consume_messages = 20000;
  auto* o_cclients = app.add_option("--consume-clients", consume_clients,
                                    "consume phase: client counts (1,16)");
  auto* o_cruns = app.add_option("--consume-runs", consume_runs,
                                 "consume phase: runs per client count (3)");
  auto* o_cmsgs = app.add_option("--consume-messages", consume_messages,
                                 "consume phase: messages consumed per run (20000)");
  int membership_runs = 3;
  uint64_t membership_messages = 100000;
  double membership_seconds = 5;
  auto* o_mruns = app.add_option("--membership-runs", membership_runs,
                                 "membership phase: runs, each on a fresh cluster (3)");
  auto* o_mmsgs = app.add_option("--membership-messages", membership_messages,
                                 "membership phase: messages preloaded before a node is added "
                                 "(100000)");
  auto* o_msecs = app.add_option("--membership-seconds", membership_seconds,
                                 "membership phase: measured seconds before and after the change "
                                 "(5)");
  auto* o_catchup = app.add_option("--catchup-messages", catchup,
                                   "messages written while a node is down (100000)");
  app.add_option("--fsync", fsync, "local cluster: always | never")
      ->check(CLI::IsMember({"always", "never"}))
      ->capture_default_str();
  app.add_option("--quorum", quorum, "local cluster: Q of quorum writes")
      ->check(CLI::Range(1, 3))
      ->capture_default_str();
  auto* o_scale = app.add_option("--scale-messages", scale_messages,
                                 "scale phase: the log sizes to measure at (1000000,5000000)");
  auto* o_memory = app.add_option("--memory-mb", memory_mb,
                                  "local cluster: --memory-mb of every node (default: the node's, 256)");
  auto* o_watch = app.add_option("--watch-interval-us", watch_us,
                                 "replication watcher poll interval, microseconds (2000)");
  std::string compare, etcd_binary, etcd_clients;
  app.add_option("--compare", compare,
                 "also measure etcd (3 local members, Debian's etcd-server) before dsm and give "
                 "dsm's figures as ratios to etcd's")
      ->check(CLI::IsMember({"etcd"}));
  app.add_option("--etcd-binary", etcd_binary, "etcd to start (default: etcd on $PATH)");
  auto* o_etcd_clients =
      app.add_option("--etcd-clients", etcd_clients, "etcd closed-loop client counts (1,64)");
  std::string phases;
  app.add_option("--phases", phases,
                 "phases after the baselines (closed,open,batch,catchup by default; scale, "
                 "consume, retention and membership only when listed: scale takes minutes, "
                 "consume measures durable consumers, retention ~2 minutes, membership adds a "
                 "node under load, ~1 minute a run)");
  app.add_flag("--spread", spread, "publish to every node round-robin (default: the first node)");
  app.add_option("--data-dir", data_dir,
                 "where the local cluster's directories go (default: bench-tmp in the build dir)");
  app.add_option("--node-binary", node_binary, "dsm-node to start (default: next to dsm-bench)");
  std::string dbdump_binary;
  app.add_option("--dbdump-binary", dbdump_binary,
                 "dsm-dbdump the scale phase runs (default: next to dsm-bench)");
  app.add_option("--node-arg", node_args,
                 "an extra dsm-node option (repeatable), e.g. "
                 "--node-arg=--http-threads=8");
  app.add_option("--tls-ca", tls.ca_file,
                 "https:// nodes: their certificates must be signed by this PEM CA (a local "
                 "cluster serves HTTPS when --node-arg=--tls-cert=... is given)");
  app.add_option("--tls-cert", tls.cert_file,
                 "https:// nodes: PEM client certificate to present (with --tls-key)");
  app.add_option("--tls-key", tls.key_file, "PEM private key of --tls-cert");
  app.add_flag("--keep-data", keep_data, "keep the local cluster's data and logs");
  app.add_flag("--no-progress", no_progress, "no progress line on stderr");
  CLI11_PARSE(app, argc, argv);

  dsm::bench::RunOptions options;
  BenchConfig& c = options.config;
  if (smoke) {
    c.profile = "smoke";
    c.clients = {1, 4};
    c.warmup_s = 0.1;
    c.duration_s = 0.4;
    c.open_rate = 200;
    c.open_clients = 4;
    c.batch_size = 50;
    c.batch_clients = 2;
    c.batch_duration_s = 0.4;
    c.catchup_messages = 1000;
    c.fsync_s = 0.2;
    c.fsync_window_s = 0.05;
    c.http_s = 0.3;
    c.ceiling_clients = 8;
    c.etcd_clients = {1, 4};
    c.scale_messages = {2000};
    c.scale_latency_s = 0.3;
    c.membership.runs = 1;
    c.membership.messages = 300;
    c.membership.clients = 4;
    c.membership.warmup_s = 0.1;
    c.membership.before_s = 0.4;
    c.membership.after_s = 0.4;
  } else if (quick) {
    c.profile = "quick";
    c.warmup_s = 0.3;
    c.duration_s = 1.5;
    c.batch_duration_s = 2;
    c.catchup_messages = 20000;
    c.consume.runs = 2;
    c.consume.messages = 2000;
    c.membership.runs = 1;
    c.membership.messages = 20000;
    c.membership.warmup_s = 0.3;
    c.membership.before_s = 1.5;
    c.membership.after_s = 1.5;
    c.fsync_s = 1;
    c.fsync_window_s = 0.15;
    c.http_s = 1;
  }
  if (o_duration->count()) c.duration_s = duration;
  if (o_warmup->count()) c.warmup_s = warmup;
  if (o_clients->count() && !ParseCounts("--clients", clients, &c.clients)) return 2;
  if (o_etcd_clients->count() && !ParseCounts("--etcd-clients", etcd_clients, &c.etcd_clients)) {
    return 2;
  }
  c.compare_etcd = compare == "etcd";
  c.etcd_binary = etcd_binary;
  if (o_rate->count()) c.open_rate = rate;
  if (o_open->count()) c.open_clients = open_clients;
  if (o_payload->count()) c.payload_bytes = payload;
  if (o_bsize->count()) c.batch_size = batch_size;
  if (o_bclients->count()) c.batch_clients = batch_clients;
  if (o_bdur->count()) c.batch_duration_s = batch_duration;
  if (o_catchup->count()) c.catchup_messages = catchup;
  if (o_cclients->count() && !ParseCounts("--consume-clients", consume_clients, &c.consume.clients)) {
    return 2;
  }
  if (o_cruns->count()) c.consume.runs = consume_runs;
  if (o_cmsgs->count()) c.consume.messages = consume_messages;
  if (c.consume.runs < 1 || c.consume.messages < 1 || c.consume.clients.empty()) {
    std::fprintf(stderr, "dsm-bench: --consume-runs and --consume-messages must be >= 1\n");
    return 2;
  }
  if (o_mruns->count()) c.membership.runs = membership_runs;
  if (o_mmsgs->count()) c.membership.messages = membership_messages;
  if (o_msecs->count()) c.membership.before_s = c.membership.after_s = membership_seconds;
  if (c.membership.runs < 1 || c.membership.messages < 1 || c.membership.before_s <= 0) {
    std::fprintf(stderr,
                 "dsm-bench: --membership-runs and --membership-messages must be >= 1, "
                 "--membership-seconds > 0\n");
    return 2;
  }
  if (o_watch->count()) c.watch_interval_us = watch_us;
  if (o_memory->count()) {
    c.node_memory_mb = memory_mb;
    options.pass_memory_mb = true;
  }
  if (o_scale->count()) {
    c.scale_messages.clear();
    for (const std::string& s : Split(scale_messages, ',')) {
      char* end = nullptr;
      const unsigned long long n = std::strtoull(s.c_str(), &end, 10);
      if (*end != '\0' || n < 1 || n > 1000000000ULL) {
        std::fprintf(stderr, "dsm-bench: --scale-messages: '%s' is not a count from 1 to 10^9\n",
                     s.c_str());
        return 2;
      }
      c.scale_messages.push_back(static_cast<size_t>(n));
    }
    if (c.scale_messages.empty() || !std::is_sorted(c.scale_messages.begin(), c.scale_messages.end())) {
      std::fprintf(stderr, "dsm-bench: --scale-messages needs increasing counts\n");
      return 2;
    }
  }
  if (c.duration_s <= 0 || c.warmup_s < 0 || c.open_rate < 0 || c.open_clients < 1 ||
      c.batch_size < 1 || c.batch_size > 10000 || c.batch_clients < 1 || c.batch_duration_s <= 0 ||
      c.catchup_messages < 1 || c.watch_interval_us < 0 || c.clients.empty()) {
    std::fprintf(stderr,
                 "dsm-bench: invalid counts (durations > 0, clients >= 1, batch size "
                 "1..10000, catch-up messages >= 1)\n");
    return 2;
  }
  if (!phases.empty()) {
    c.phases = Split(phases, ',');
    for (const std::string& p : c.phases) {
      if (p != "closed" && p != "open" && p != "batch" && p != "catchup" && p != "scale" &&
          p != "consume" && p != "retention" && p != "membership") {
        std::fprintf(stderr,
                     "dsm-bench: --phases: unknown phase '%s' (closed, open, batch, catchup, "
                     "scale, consume, retention, membership)\n",
                     p.c_str());
        return 2;
      }
    }
  }
  c.fsync = fsync;
  c.quorum = quorum;
  c.spread = spread;
  if (!nodes.empty()) {
    c.local_cluster = false;
    c.nodes = Split(nodes, ',');
    if (c.nodes.empty()) {
      std::fprintf(stderr, "dsm-bench: --nodes needs at least one URL\n");
      return 2;
    }
  }
  const fs::path exe_dir = ExeDir();
  c.data_root = data_dir.empty() ? (exe_dir.parent_path() / "bench-tmp").string() : data_dir;
  options.node_binary = node_binary.empty() ? (exe_dir / "dsm-node").string() : node_binary;
  if (c.local_cluster && access(options.node_binary.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "dsm-bench: no dsm-node at %s (build it, or pass --node-binary)\n",
                 options.node_binary.c_str());
    return 2;
  }
  options.dbdump_binary =
      dbdump_binary.empty() ? (exe_dir / "dsm-dbdump").string() : dbdump_binary;
  options.node_args = node_args;
  options.tls = tls;
  options.keep_data = keep_data;
  options.progress = !no_progress;

  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  dsm::bench::BenchReport report;
  const dsm::Status status = dsm::bench::RunBench(options, g_stop, &report);
  dsm::bench::PrintTables(report, stdout);
  if (keep_data && !report.run_dir.empty()) {
    std::printf("data directories and node logs kept in %s\n", report.run_dir.c_str());
  }
  std::fflush(stdout);
  int rc = 0;
  if (!json_path.empty()) {
    if (dsm::Status s = dsm::bench::WriteFile(json_path, dsm::bench::ReportJson(report)); !s.ok()) {
      std::fprintf(stderr, "dsm-bench: %s\n", s.ToString().c_str());
      rc = 1;
    }
  }
  if (!svg_path.empty()) {
    if (dsm::Status s = dsm::bench::WriteFile(svg_path, dsm::bench::RenderSvg(report)); !s.ok()) {
      std::fprintf(stderr, "dsm-bench: %s\n", s.ToString().c_str());
      rc = 1;
    }
  }
  if (!status.ok()) {
    std::fprintf(stderr, "dsm-bench: %s\n", status.ToString().c_str());
    return 1;
  }
  if (g_stop) {
    std::fprintf(stderr, "dsm-bench: interrupted; the report holds what was measured\n");
    return 130;
  }
  return rc;
}

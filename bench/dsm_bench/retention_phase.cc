#include "bench/dsm_bench/retention_phase.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <thread>

#include "bench/dsm_bench/load.h"
#include "bench/dsm_bench/local_cluster.h"
#include "bench/dsm_bench/metrics_scrape.h"
#include "bench/dsm_bench/watch.h"
#include "common/ids.h"

namespace dsm::bench {

namespace fs = std::filesystem;

namespace {

std::chrono::nanoseconds Seconds(double s) {
  return std::chrono::nanoseconds(static_cast<int64_t>(s * 1e9));
}

// dsm_retention_trimmed_messages_total summed over `nodes` (a node that does not answer counts 0).
double TrimmedTotal(const std::vector<Endpoint>& nodes) {
  double total = 0;
  for (const Endpoint& e : nodes) {
    Result<MetricsScrape> m = ScrapeMetrics(e);
    if (!m.ok()) continue;
    for (const MetricSample& s : *m) {
      if (s.name == "dsm_retention_trimmed_messages_total") total += s.value;
    }
  }
  return total;
}

Status AllRunning(LocalCluster& cluster) {
  for (size_t i = 0; i < cluster.size(); ++i) {
    LocalNode& node = cluster.node(i);
    if (!node.Running()) {
      return Status::Unavailable(node.id() + " exited during the retention phase; log tail:\n" +
                                 node.LogTail());
    }
  }
  return Status::Ok();
}

}  // namespace

void RetentionFigure::Summarize() {
  std::vector<double> p50, p99, p999, rate, trimmed;
  errors = 0;
  for (const RetentionSample& s : samples) {
    p50.push_back(s.latency.p50_ms);
    p99.push_back(s.latency.p99_ms);
    p999.push_back(s.latency.p999_ms);
    rate.push_back(s.messages_per_s);
    trimmed.push_back(s.trimmed_per_s);
    errors += s.errors;
  }
  p50_ms = Median(p50);
  p99_ms = Median(p99);
  p999_ms = Median(p999);
  messages_per_s = Median(rate);
  trimmed_per_s = Median(trimmed);
}

const RetentionFigure* RetentionComparison::Find(bool trimming, int clients) const {
  for (const RetentionFigure& f : figures) {
    if (f.trimming == trimming && f.clients == clients) return &f;
  }
  return nullptr;
}

Status RunRetention(const RetentionRunOptions& options, const std::atomic<bool>& stop,
                    Progress* progress, RetentionComparison* out) {
  const RetentionConfig& rc = out->config;
  out->figures.clear();
  for (int clients : rc.clients) {
    for (bool trimming : {false, true}) {
      RetentionFigure f;
      f.trimming = trimming;
      f.clients = clients;
      out->figures.push_back(f);
    }
  }
  auto figure = [out](bool trimming, int clients) {
    for (RetentionFigure& f : out->figures) {
      if (f.trimming == trimming && f.clients == clients) return &f;
    }
    return static_cast<RetentionFigure*>(nullptr);
  };
  const std::string run_id = RandomHex(8);
  int loads = 0;
  for (int rep = 0; rep < rc.repetitions && !stop; ++rep) {
    // The two kinds alternate which goes first, so a drift of the machine's load does not
    // always fall on the same side.
    for (int k = 0; k < 2 && !stop; ++k) {
      const bool trimming = (rep + k) % 2 == 1;
      const std::string kind = trimming ? "trimming" : "no-retention";
      LocalClusterOptions o;
      o.node_binary = options.node_binary;
      o.root = options.root + "/retention-" + std::to_string(rep + 1) + "-" + kind;
      o.nodes = 3;
      o.fsync = options.fsync;
      o.mode = "sync_quorum";
      o.quorum = options.quorum;
      o.extra_args = options.node_args;
      if (trimming) {
        o.extra_args.push_back("--retention-max-messages=" + std::to_string(rc.max_messages));
        o.extra_args.push_back("--retention-interval-ms=" + std::to_string(rc.interval_ms));
      }
      Status result;
      {
        LocalCluster cluster(o);
        progress->Begin("retention " + std::to_string(rep + 1) + "/" +
                            std::to_string(rc.repetitions) + ": starting 3 nodes, " + kind,
                        0);
        if (Status s = cluster.Start(std::chrono::milliseconds(30000)); !s.ok()) return s;
        const std::vector<Endpoint> nodes = cluster.endpoints();
        OriginTable origins;
        auto base = [&]() {
          LoadConfig lc;
          lc.targets = {nodes[0]};
          lc.target_nodes = {0};
          lc.payload_bytes = options.payload_bytes;
          lc.id_prefix = "bench-" + run_id + "-retention-" + std::to_string(++loads);
          return lc;
        };
        // Prefill: both kinds start each measurement from a log over the limit.
        LoadConfig fill = base();
        fill.ack = "quorum";
        fill.clients = 2;
        fill.batch = 500;
        fill.max_requests = (rc.prefill_messages + 499) / 500;
        LoadResult filled = RunLoad(fill, &origins, progress, stop, cluster.pids());
        if (Status s = AllRunning(cluster); !s.ok()) return s;
        // A trimming cluster first trims what the prefill put over its limit, so that the
        // measured trim rate is the steady one the load causes.
        double settled = 0;
        if (trimming && filled.messages > rc.max_messages) {
          const double over = 3.0 * static_cast<double>(filled.messages - rc.max_messages);
          const int64_t deadline = NowNs() + 20 * int64_t{1'000'000'000};
          while (!stop && (settled = TrimmedTotal(nodes)) < over && NowNs() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          }
        }
        progress->End(std::to_string(filled.messages) + " messages written first" +
                      (trimming ? ", " + std::to_string(static_cast<uint64_t>(settled)) +
                                      " trimmed on the 3 nodes before measuring"
                                : std::string()));
        for (int clients : rc.clients) {
          if (stop) break;
          LoadConfig lc = base();
          lc.ack = "quorum";
          lc.clients = clients;
          lc.warmup = Seconds(options.warmup_s);
          lc.duration = Seconds(options.duration_s);
          progress->Begin("retention " + std::to_string(rep + 1) + "/" +
                              std::to_string(rc.repetitions) + ", " + kind + ", " +
                              std::to_string(clients) + " clients",
                          options.warmup_s + options.duration_s);
          const double before = TrimmedTotal(nodes);
          const int64_t t0 = NowNs();
          LoadResult load = RunLoad(lc, &origins, progress, stop, cluster.pids());
          const double elapsed = static_cast<double>(NowNs() - t0) / 1e9;
          const double trimmed = TrimmedTotal(nodes) - before;
          RetentionSample s;
          s.latency = load.latency;
          s.messages_per_s = load.messages_per_s;
          s.trimmed_per_s = elapsed > 0 ? trimmed / elapsed : 0;
          s.errors = load.total_errors();
          figure(trimming, clients)->samples.push_back(s);
          char line[160];
          std::snprintf(line, sizeof line,
                        "%.0f msgs/s, p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, trimmed %.0f/s",
                        s.messages_per_s, s.latency.p50_ms, s.latency.p99_ms, s.latency.p999_ms,
                        s.trimmed_per_s);
          progress->End(line);
          if (result = AllRunning(cluster); !result.ok()) break;
        }
      }  // the cluster stops here
      if (!options.keep_data) {
        std::error_code ec;
        fs::remove_all(o.root, ec);
      }
      if (!result.ok()) return result;
    }
  }
  for (RetentionFigure& f : out->figures) f.Summarize();
  out->ran = true;
  return Status::Ok();
}

}  // namespace dsm::bench

#include "bench/dsm_bench/bench_run.h"

#include <rapidjson/document.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <memory>
#include <thread>

#include "bench/dsm_bench/etcd_cluster.h"
#include "bench/dsm_bench/load.h"
#include "bench/dsm_bench/local_cluster.h"
#include "bench/dsm_bench/machine.h"
#include "bench/dsm_bench/membership_phase.h"
#include "bench/dsm_bench/metrics_scrape.h"
#include "bench/dsm_bench/progress.h"
#include "bench/dsm_bench/retention_phase.h"
#include "bench/dsm_bench/scale_probe.h"
#include "bench/dsm_bench/watch.h"
#include "common/ids.h"

namespace dsm::bench {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kSecondNs = 1'000'000'000;
// How long a phase waits for its messages to reach every node before it gives up.
constexpr int64_t kReplicationDeadlineNs = 60 * kSecondNs;
// The scale phase's deadlines for moving many messages: a minute, plus this long per message
// (a rate of 2,000 msgs/s: a loaded shared machine replicates well below what it accepts).
constexpr int64_t kScaleNsPerMessage = kSecondNs / 2000;

std::chrono::nanoseconds Seconds(double s) {
  return std::chrono::nanoseconds(static_cast<int64_t>(s * 1e9));
}

std::string UtcNow() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string Fmt(const char* fmt, double a, double b = 0, double c = 0) {
  char buf[160];
  std::snprintf(buf, sizeof buf, fmt, a, b, c);
  return buf;
}

class Bench {
 public:
  Bench(const RunOptions& options, const std::atomic<bool>& stop, BenchReport* report)
      : options_(options),
        config_(report->config),
        stop_(stop),
        report_(report),
        progress_(options.progress),
        run_id_(RandomHex(8)) {}

  ~Bench() {
    etcd_.reset();
    cluster_.reset();
    if (!created_root_.empty() && !options_.keep_data) {
      std::error_code ec;
      fs::remove_all(created_root_, ec);
    }
  }

  Status Run();

 private:
  Status PrepareDataRoot();
  Status StartCluster();
  void MeasureBaselines();
  // Another fsync baseline window (the cluster is idle between phases), pooled with the others.
  void SampleFsync();
  void SummarizeFsync();
  // Adds a phase's FsyncProbe samples to the paced-fsync pool; returns their summary.
  LatencySummary PoolProbe(std::vector<int64_t> samples);
  PublishRun Publish(const std::string& mode, int clients, double rate);
  // --compare etcd: starts a 3-member etcd cluster, runs the closed-loop put load at each of
  // config_.etcd_clients, stops it. Never fails the run: what went wrong is report_->etcd.skipped.
  void CompareEtcd();
  // The /metrics of the publishing node, and of the other nodes (for their /replicate writes).
  struct StageScrape {
    Result<MetricsScrape> publisher = Status::Unavailable("not scraped");
    std::vector<MetricsScrape> peers;
  };
  StageScrape ScrapeStages() const;
  static QuorumStages StagesBetween(const StageScrape& before, const StageScrape& after);
  void BatchPublish();
  Status CatchUp();
  // The scale phase: at the start and at each of config_.scale_messages, the nodes' resident
  // memory, the bytes on disk per message, quorum /send latency, the catch-up of a new empty
  // peer and dsm-dbdump --verify of its directory.
  Status Scale();
  // Measures one point of the scale phase (the log holds `messages`).
  Status MeasureScalePoint(ScalePoint* point, bool catch_up);
  // The last node as a new empty peer: stopped, its directory wiped, restarted; fills the
  // catch-up figures of `point`, then stops it for dsm-dbdump --verify and starts it again.
  Status NewPeerCatchUp(ScalePoint* point);
  Status Retention();
  Status Membership();

  // OK while every node of the local cluster is running (always OK for given nodes).
  Status NodesAlive();

  std::vector<pid_t> Pids() const { return cluster_ ? cluster_->pids() : std::vector<pid_t>{}; }
  LoadConfig BaseLoad() const;
  std::vector<bool> WatchFlags() const;
  std::string NextPrefix() { return "bench-" + run_id_ + "-" + std::to_string(++runs_); }

  const RunOptions& options_;
  BenchConfig& config_;
  const std::atomic<bool>& stop_;
  BenchReport* report_;
  Progress progress_;
  const std::string run_id_;
  int runs_ = 0;
  std::string created_root_;
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<EtcdCluster> etcd_;
  std::vector<Endpoint> nodes_;
  std::vector<size_t> targets_;  // indexes of the nodes publishes go to
  OriginTable origins_;
  Status failure_;                      // a node died during a phase: the run stops with this error
  std::vector<int64_t> fsync_samples_;  // every fsync baseline window, pooled
  std::vector<int64_t> probe_samples_;  // every phase's FsyncProbe, pooled
};

Status Bench::NodesAlive() {
  if (!cluster_) return Status::Ok();
  for (size_t i = 0; i < cluster_->size(); ++i) {
    LocalNode& node = cluster_->node(i);
    if (!node.Running()) {
      return Status::Unavailable(node.id() + " exited during the run; log tail:\n" +
                                 node.LogTail());
    }
  }
  return Status::Ok();
}

Status Bench::PrepareDataRoot() {
  std::error_code ec;
  fs::create_directories(config_.data_root, ec);
  if (ec) return Status::IOError("cannot create " + config_.data_root + ": " + ec.message());
  std::string tmpl = config_.data_root + "/run-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    return Status::IOError("cannot create a directory in " + config_.data_root);
  }
  created_root_ = tmpl;
  report_->run_dir = created_root_;
  return Status::Ok();
}

Status Bench::StartCluster() {
  if (config_.local_cluster) {
    LocalClusterOptions o;
    o.node_binary = options_.node_binary;
    o.root = created_root_;
    o.nodes = 3;
    o.fsync = config_.fsync == "always";
    o.mode = "sync_quorum";
    o.quorum = config_.quorum;
    if (options_.pass_memory_mb) {
      o.extra_args = {"--memory-mb", std::to_string(config_.node_memory_mb)};
    }
    o.extra_args.insert(o.extra_args.end(), options_.node_args.begin(), options_.node_args.end());
    o.tls = options_.tls;
    cluster_ = std::make_unique<LocalCluster>(o);
    progress_.Begin("starting 3 dsm-node processes", 0);
    if (Status s = cluster_->Start(std::chrono::milliseconds(30000)); !s.ok()) return s;
    nodes_ = cluster_->endpoints();
    config_.nodes.clear();
    for (const Endpoint& e : nodes_) config_.nodes.push_back(e.url);
    progress_.End("up, every node sees its peers alive");
  } else {
    for (const std::string& url : config_.nodes) {
      Result<Endpoint> e = ParseEndpoint(url);
      if (!e.ok()) return e.status();
      e->tls = options_.tls;
      nodes_.push_back(*e);
    }
    for (const Endpoint& e : nodes_) {
      HttpConnection conn(e, std::chrono::milliseconds(5000));
      HttpAnswer answer;
      Status s = conn.Request("GET", "/status", "", &answer);
      if (!s.ok() || answer.status != 200) {
        return Status::Unavailable(e.url + " does not answer GET /status" +
                                   (s.ok() ? "" : ": " + s.message()));
      }
      rapidjson::Document doc;
      doc.Parse(answer.body.data(), answer.body.size());
      if (&e == &nodes_.front() && !doc.HasParseError() && doc.IsObject() &&
          doc.HasMember("quorum") && doc["quorum"].IsInt()) {
        config_.quorum = doc["quorum"].GetInt();
      }
    }
  }
  targets_.clear();
  if (config_.spread) {
    for (size_t i = 0; i < nodes_.size(); ++i) targets_.push_back(i);
  } else {
    targets_.push_back(0);
  }
  return Status::Ok();
}

LoadConfig Bench::BaseLoad() const {
  LoadConfig lc;
  for (size_t t : targets_) {
    lc.targets.push_back(nodes_[t]);
    lc.target_nodes.push_back(static_cast<uint32_t>(t));
  }
  lc.payload_bytes = config_.payload_bytes;
  lc.warmup = Seconds(config_.warmup_s);
  lc.duration = Seconds(config_.duration_s);
  return lc;
}

std::vector<bool> Bench::WatchFlags() const {
  // Every node that is not the only one accepting the publishes (that one holds a message when
  // its 200 arrives).
  std::vector<bool> watch(nodes_.size(), true);
  if (targets_.size() == 1) watch[targets_[0]] = false;
  return watch;
}

void Bench::MeasureBaselines() {
  progress_.Begin("baseline: disk fsync", config_.fsync_s);
  Result<FsyncWindow> first =
      MeasureFsync(created_root_,
                   std::chrono::duration_cast<std::chrono::milliseconds>(Seconds(config_.fsync_s)),
                   100000, &fsync_samples_);
  if (first.ok()) {
    report_->fsync.first = *first;
    report_->fsync.windows = 1;
    report_->fsync.window_p50_ms.push_back(first->latency.p50_ms);
    SummarizeFsync();
    progress_.End(Fmt("p50 %.3f ms, p99 %.3f ms", first->latency.p50_ms, first->latency.p99_ms));
  } else {
    report_->warnings.push_back("fsync baseline failed: " + first.status().ToString());
    progress_.End("failed: " + first.status().ToString());
  }
}

void Bench::SampleFsync() {
  Result<FsyncWindow> w = MeasureFsync(
      created_root_,
      std::chrono::duration_cast<std::chrono::milliseconds>(Seconds(config_.fsync_window_s)),
      100000, &fsync_samples_);
  if (!w.ok()) return;
  ++report_->fsync.windows;
  report_->fsync.window_p50_ms.push_back(w->latency.p50_ms);
  SummarizeFsync();
}

LatencySummary Bench::PoolProbe(std::vector<int64_t> samples) {
  probe_samples_.insert(probe_samples_.end(), samples.begin(), samples.end());
  std::vector<int64_t> pooled = probe_samples_;
  report_->paced_fsync = Summarize(&pooled);
  return Summarize(&samples);
}

void Bench::SummarizeFsync() {
  std::vector<int64_t> pooled = fsync_samples_;
  report_->fsync.latency = Summarize(&pooled);
}

PublishRun Bench::Publish(const std::string& mode, int clients, double rate) {
  PublishRun run;
  run.mode = mode;
  run.open_loop = rate > 0;
  run.clients = clients;
  LoadConfig lc = BaseLoad();
  lc.ack = mode == "async" ? "local" : "quorum";
  lc.clients = clients;
  lc.rate = rate;
  lc.id_prefix = NextPrefix();

  SampleFsync();
  const bool stages = mode == "sync_quorum" && !run.open_loop;
  StageScrape before;
  if (stages) before = ScrapeStages();
  ReplicationWatcher watcher(nodes_, WatchFlags(), &origins_,
                             std::chrono::microseconds(config_.watch_interval_us));
  watcher.Start();
  FsyncProbe probe(created_root_, std::chrono::milliseconds(100));
  const std::string name = "publish " + mode +
                           (run.open_loop ? Fmt(" open loop %.0f/s", rate) : " closed loop") +
                           ", " + std::to_string(clients) + " clients";
  progress_.Begin(name, config_.warmup_s + config_.duration_s);
  run.load = RunLoad(lc, &origins_, &progress_, stop_, Pids());
  run.fsync_probe = PoolProbe(probe.Stop());
  if (failure_ = NodesAlive(); !failure_.ok()) {
    progress_.End("a node died");
    return run;
  }
  run.replicated_in_time =
      watcher.WaitHeld(HighestPerOrigin(run.load.records), NowNs() + kReplicationDeadlineNs, stop_);
  watcher.Stop();
  if (stages) run.stages = StagesBetween(before, ScrapeStages());
  run.replication = EvaluateReplication(run.load.records, watcher, run.load.window_start_ns);
  run.load.records.clear();
  run.load.records.shrink_to_fit();
  if (!run.replicated_in_time && !stop_) {
    report_->warnings.push_back(name + ": not every message reached every node within " +
                                std::to_string(kReplicationDeadlineNs / kSecondNs) + " s");
  }
  progress_.End(Fmt("%.0f msgs/s, p50 %.3f ms, p99 %.3f ms", run.load.messages_per_s,
                    run.load.latency.p50_ms, run.load.latency.p99_ms) +
                Fmt(", e2e p99 %.3f ms, errors %.0f", run.replication.e2e.p99_ms,
                    static_cast<double>(run.load.total_errors())));
  return run;
}

Bench::StageScrape Bench::ScrapeStages() const {
  StageScrape s;
  if (targets_.empty()) return s;
  s.publisher = ScrapeMetrics(nodes_[targets_[0]]);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (i == targets_[0]) continue;
    Result<MetricsScrape> peer = ScrapeMetrics(nodes_[i]);
    s.peers.push_back(peer.ok() ? std::move(*peer) : MetricsScrape{});
  }
  return s;
}

QuorumStages Bench::StagesBetween(const StageScrape& before, const StageScrape& after) {
  QuorumStages q;
  if (!before.publisher.ok() || !after.publisher.ok()) {
    q.error = "cannot read the publishing node's /metrics: " +
              (before.publisher.ok() ? after.publisher : before.publisher).status().ToString();
    return q;
  }
  auto figure = [](const HistogramDelta& d) {
    StageFigure f;
    f.count = d.count > 0 ? static_cast<uint64_t>(d.count) : 0;
    f.mean_ms = d.MeanMs();
    f.p50_ms = d.QuantileMs(0.5);
    return f;
  };
  auto stage = [&](const char* family, std::vector<std::pair<std::string, std::string>> match) {
    return figure(HistogramBetween(*before.publisher, *after.publisher, family, match));
  };
  q.log_write = stage("dsm_send_stage_duration_seconds", {{"stage", "log_write"}});
  q.core_queue = stage("dsm_send_stage_duration_seconds", {{"stage", "core_queue"}});
  q.quorum_wait = stage("dsm_send_stage_duration_seconds", {{"stage", "quorum_wait"}});
  q.push_round_trip = stage("dsm_peer_push_round_trip_seconds", {});
  q.total = stage("dsm_send_duration_seconds", {{"ack", "quorum"}});
  HistogramDelta peers;
  for (size_t i = 0; i < before.peers.size() && i < after.peers.size(); ++i) {
    peers = Add(peers, HistogramBetween(before.peers[i], after.peers[i],
                                        "dsm_replicate_write_duration_seconds", {}));
  }
  q.peer_write = figure(peers);
  q.measured = q.total.count > 0;
  if (!q.measured) q.error = "the node's dsm_send_duration_seconds{ack=\"quorum\"} did not move";
  return q;
}

void Bench::CompareEtcd() {
  EtcdComparison& e = report_->etcd;
  e.requested = true;
  e.binary = FindEtcd(config_.etcd_binary);
  if (e.binary.empty()) {
    e.skipped = config_.etcd_binary.empty()
                    ? "no etcd on $PATH (apt-get install etcd-server, or --etcd-binary PATH)"
                    : "no executable etcd at " + config_.etcd_binary;
    progress_.Note("etcd comparison skipped: " + e.skipped);
    return;
  }
  progress_.Begin("etcd: starting 3 members (" + e.binary + ")", 0);
  EtcdClusterOptions o;
  o.binary = e.binary;
  o.root = created_root_ + "/etcd";
  etcd_ = std::make_unique<EtcdCluster>(o);
  auto give_up = [&](const std::string& why) {
    e.skipped = why;
    report_->warnings.push_back("etcd comparison not measured: " + why);
    etcd_.reset();
    if (!options_.keep_data) {
      std::error_code ec;
      fs::remove_all(o.root, ec);
    }
  };
  if (Status s = etcd_->Start(std::chrono::milliseconds(30000), stop_); !s.ok()) {
    progress_.End("failed");
    give_up("the etcd cluster did not start: " + s.ToString());
    return;
  }
  Result<Endpoint> leader = etcd_->Leader();
  if (!leader.ok()) {
    progress_.End("no leader");
    give_up(leader.status().ToString());
    return;
  }
  e.version = etcd_->version();
  e.leader = leader->url;
  progress_.End("etcd " + e.version + " up, leader " + e.leader);
  for (int clients : config_.etcd_clients) {
    if (stop_) break;
    EtcdRun run;
    run.clients = clients;
    LoadConfig lc = BaseLoad();
    lc.targets = {*leader};
    lc.target_nodes = {0};
    lc.kind = LoadKind::kEtcdPut;
    lc.clients = clients;
    lc.id_prefix = NextPrefix();
    SampleFsync();
    FsyncProbe probe(created_root_, std::chrono::milliseconds(100));
    progress_.Begin("etcd put, closed loop, " + std::to_string(clients) + " clients",
                    config_.warmup_s + config_.duration_s);
    run.load = RunLoad(lc, &origins_, &progress_, stop_, etcd_->pids());
    run.fsync_probe = PoolProbe(probe.Stop());
    progress_.End(Fmt("%.0f puts/s, p50 %.3f ms, p99 %.3f ms", run.load.messages_per_s,
                      run.load.latency.p50_ms, run.load.latency.p99_ms) +
                  Fmt(", errors %.0f", static_cast<double>(run.load.total_errors())));
    e.runs.push_back(std::move(run));
    if (Status s = etcd_->Alive(); !s.ok()) {
      give_up(s.ToString());
      return;
    }
  }
  e.ran = !e.runs.empty();
  if (!e.ran) e.skipped = "interrupted";
  etcd_.reset();  // stops the members before dsm starts: the two never share the machine
  if (!options_.keep_data) {
    std::error_code ec;
    fs::remove_all(o.root, ec);
  }
}

void Bench::BatchPublish() {
  BatchRun& b = report_->batch;
  b.clients = config_.batch_clients;
  b.batch = config_.batch_size;
  LoadConfig lc = BaseLoad();
  lc.ack = "local";
  lc.clients = config_.batch_clients;
  lc.batch = config_.batch_size;
  lc.duration = Seconds(config_.batch_duration_s);
  lc.warmup = Seconds(std::min(config_.warmup_s, config_.batch_duration_s / 4));
  lc.id_prefix = NextPrefix();
  SampleFsync();
  ReplicationWatcher watcher(nodes_, WatchFlags(), &origins_,
                             std::chrono::microseconds(config_.watch_interval_us));
  watcher.Start();
  FsyncProbe probe(created_root_, std::chrono::milliseconds(100));
  progress_.Begin("batch publish, " + std::to_string(b.clients) + " clients x " +
                      std::to_string(b.batch) + " messages",
                  config_.batch_duration_s + lc.warmup.count() / 1e9);
  b.load = RunLoad(lc, &origins_, &progress_, stop_, Pids());
  b.fsync_probe = PoolProbe(probe.Stop());
  if (failure_ = NodesAlive(); !failure_.ok()) {
    progress_.End("a node died");
    return;
  }
  const bool held =
      watcher.WaitHeld(HighestPerOrigin(b.load.records), NowNs() + kReplicationDeadlineNs, stop_);
  watcher.Stop();
  b.replication = EvaluateReplication(b.load.records, watcher, b.load.window_start_ns);
  b.load.records.clear();
  if (!held && !stop_) {
    report_->warnings.push_back("batch publish: not every message reached every node in time");
  }
  progress_.End(Fmt("accepted %.0f msgs/s, fully replicated %.0f msgs/s", b.load.messages_per_s,
                    b.replication.fully_replicated_per_s));
}

Status Bench::CatchUp() {
  CatchUpRun& cu = report_->catch_up;
  if (!cluster_) {
    cu.skipped = "needs the local cluster (a node must be stopped and restarted)";
    return Status::Ok();
  }
  const size_t down_index = cluster_->size() - 1;
  LocalNode& down = cluster_->node(down_index);
  progress_.Begin("catch-up: " + down.id() + " stopped, writing " +
                      std::to_string(config_.catchup_messages) + " messages",
                  0);
  down.Stop();
  const int64_t stopped_at = NowNs();

  // Write the messages to the first node, in batches, while the node is down.
  LoadConfig lc = BaseLoad();
  lc.targets = {nodes_[0]};
  lc.target_nodes = {0};
  lc.ack = "local";
  lc.clients = config_.batch_clients;
  lc.batch = static_cast<int>(
      std::min<size_t>(static_cast<size_t>(config_.batch_size), config_.catchup_messages));
  lc.max_requests = (config_.catchup_messages + static_cast<size_t>(lc.batch) - 1) /
                    static_cast<size_t>(lc.batch);
  lc.warmup = std::chrono::nanoseconds(0);
  lc.duration = std::chrono::nanoseconds(0);
  lc.id_prefix = NextPrefix();
  LoadResult written = RunLoad(lc, &origins_, &progress_, stop_, Pids());
  for (size_t i = 0; i + 1 < cluster_->size(); ++i) {
    if (!cluster_->node(i).Running()) {
      return Status::Unavailable(cluster_->node(i).id() + " exited during the run; log tail:\n" +
                                 cluster_->node(i).LogTail());
    }
  }
  cu.messages = written.messages;
  cu.write_s = written.window_s;
  const std::map<uint32_t, uint64_t> need = HighestPerOrigin(written.records);
  if (stop_) return Status::Ok();
  if (written.total_errors() > 0) {
    report_->warnings.push_back("catch-up: " + std::to_string(written.total_errors()) +
                                " write requests failed");
  }

  // Let the live peers take them first, so only the restarted node is catching up.
  {
    std::vector<bool> watch(nodes_.size(), false);
    for (size_t i = 1; i < nodes_.size(); ++i) watch[i] = i != down_index;
    ReplicationWatcher live(nodes_, watch, &origins_,
                            std::chrono::microseconds(config_.watch_interval_us));
    live.Start();
    live.WaitHeld(need, NowNs() + kReplicationDeadlineNs, stop_);
  }
  progress_.End(
      Fmt("%.0f messages written in %.2f s", static_cast<double>(cu.messages), cu.write_s));

  progress_.Begin("catch-up: restarting " + down.id(), 0);
  std::vector<bool> watch(nodes_.size(), false);
  watch[down_index] = true;
  ReplicationWatcher watcher(nodes_, watch, &origins_,
                             std::chrono::microseconds(config_.watch_interval_us));
  const int64_t restart = NowNs();
  cu.down_to_restart_s = static_cast<double>(restart - stopped_at) / 1e9;
  if (Status s = down.Start(); !s.ok()) return s;
  watcher.Start();
  cu.ran = true;
  const int64_t deadline = restart + 2 * kReplicationDeadlineNs;
  while (!stop_ && !watcher.WaitHeld(need, std::min(deadline, NowNs() + kSecondNs), stop_)) {
    if (!down.Running()) {
      return Status::Unavailable(down.id() + " exited after its restart; log tail:\n" +
                                 down.LogTail());
    }
    if (NowNs() > deadline) break;
  }
  watcher.Stop();
  int64_t done = -1;
  cu.complete = !need.empty();
  for (const auto& [origin, seq] : need) {
    const int64_t t = watcher.FirstSeen(down_index, origin, seq);
    if (t < 0) cu.complete = false;
    done = std::max(done, t);
  }
  const int64_t up = watcher.FirstAnswer(down_index);
  if (cu.complete) {
    cu.seconds = static_cast<double>(done - restart) / 1e9;
    cu.messages_per_s = cu.seconds > 0 ? static_cast<double>(cu.messages) / cu.seconds : 0;
    if (up >= 0) {
      cu.seconds_from_up = static_cast<double>(done - up) / 1e9;
      cu.messages_per_s_from_up =
          cu.seconds_from_up > 0 ? static_cast<double>(cu.messages) / cu.seconds_from_up : 0;
    }
    progress_.End(Fmt("caught up in %.2f s (%.0f msgs/s), %.2f s after its first heartbeat",
                      cu.seconds, cu.messages_per_s, cu.seconds_from_up));
  } else {
    report_->warnings.push_back("catch-up: the restarted node did not catch up in time");
    progress_.End("did NOT catch up in time");
  }
  return Status::Ok();
}

Status Bench::MeasureScalePoint(ScalePoint* point, bool catch_up) {
  Result<uint64_t> last = LastSeq(nodes_[0]);
  if (!last.ok()) return last.status();
  point->messages = *last;
  progress_.Begin("scale: quorum /send probe at " + std::to_string(point->messages) + " messages",
                  0.5 + config_.scale_latency_s);
  LoadConfig lc = BaseLoad();
  lc.targets = {nodes_[0]};
  lc.target_nodes = {0};
  lc.ack = "quorum";
  lc.clients = config_.scale_clients;
  lc.random_payloads = true;
  lc.warmup = Seconds(0.5);
  lc.duration = Seconds(config_.scale_latency_s);
  lc.id_prefix = NextPrefix();
  point->send = RunLoad(lc, &origins_, &progress_, stop_, Pids());
  point->send.records.clear();
  progress_.End(Fmt("p50 %.3f ms, p99 %.3f ms", point->send.latency.p50_ms,
                    point->send.latency.p99_ms));
  if (failure_ = NodesAlive(); !failure_.ok()) return failure_;
  // The probe's messages are in the log too.
  if (Result<uint64_t> after = LastSeq(nodes_[0]); after.ok()) point->messages = *after;
  const std::string data = (fs::path(created_root_) / cluster_->node(0).id() / "data").string();
  point->disk_bytes = DirectoryBytes(data);
  point->disk_bytes_per_message =
      point->messages > 0
          ? static_cast<double>(point->disk_bytes) / static_cast<double>(point->messages)
          : 0;
  if (catch_up) {
    if (Status s = NewPeerCatchUp(point); !s.ok()) return s;
  }
  // Memory last: after the writes, the probe, and serving a whole catch-up.
  for (pid_t pid : Pids()) {
    Result<ResidentMemory> m = ReadResidentMemory(pid);
    point->rss_bytes.push_back(m.ok() ? m->rss_bytes : 0);
    point->peak_bytes.push_back(m.ok() ? m->peak_bytes : 0);
  }
  return Status::Ok();
}

Status Bench::NewPeerCatchUp(ScalePoint* point) {
  const size_t index = cluster_->size() - 1;
  LocalNode& peer = cluster_->node(index);
  const std::string data = (fs::path(created_root_) / peer.id() / "data").string();
  Result<uint64_t> target = LastSeq(nodes_[0]);
  if (!target.ok()) return target.status();
  progress_.Begin("scale: " + peer.id() + " wiped, catching up on " + std::to_string(*target) +
                      " messages",
                  0);
  peer.Stop();
  std::error_code ec;
  fs::remove_all(data, ec);
  if (ec) return Status::IOError("cannot remove " + data + ": " + ec.message());
  const int64_t start = NowNs();
  if (Status s = peer.Start(); !s.ok()) return s;
  point->catchup_ran = true;
  const int64_t deadline =
      start + kReplicationDeadlineNs + static_cast<int64_t>(*target) * kScaleNsPerMessage;
  while (!stop_ && NowNs() < deadline) {
    if (!peer.Running()) {
      return Status::Unavailable(peer.id() + " exited while catching up; log tail:\n" +
                                 peer.LogTail());
    }
    Result<uint64_t> held = LastSeq(peer.endpoint());
    if (held.ok() && *held >= *target) {
      point->catchup_complete = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  point->catchup_s = static_cast<double>(NowNs() - start) / 1e9;
  if (!point->catchup_complete) {
    progress_.End("did NOT catch up in time");
    report_->warnings.push_back("scale: the new peer did not catch up in time");
    return Status::Ok();
  }
  point->catchup_per_s = static_cast<double>(*target) / point->catchup_s;
  progress_.End(Fmt("caught up in %.2f s (%.0f msgs/s)", point->catchup_s, point->catchup_per_s));

  progress_.Begin("scale: dsm-dbdump --verify of " + peer.id() + "'s directory", 0);
  peer.Stop();
  point->verify_ran = true;
  Result<VerifyRun> v = TimeVerify(options_.dbdump_binary, data);
  if (v.ok()) {
    point->verify_records = v->records;
    point->verify_s = v->seconds;
    point->verify_per_s = v->seconds > 0 ? static_cast<double>(v->records) / v->seconds : 0;
    progress_.End(Fmt("%.0f records in %.2f s", static_cast<double>(v->records), v->seconds) +
                  Fmt(" (%.0f records/s)", point->verify_per_s));
  } else {
    point->verify_error = v.status().ToString();
    progress_.End("failed");
    report_->warnings.push_back("scale: " + point->verify_error);
  }
  if (Status s = peer.Start(); !s.ok()) return s;
  return peer.WaitUp(std::chrono::milliseconds(60000));
}

Status Bench::Scale() {
  ScaleRun& sc = report_->scale;
  if (!cluster_) {
    sc.skipped = "needs the local cluster (a node's directory is wiped)";
    return Status::Ok();
  }
  sc.ran = true;
  ScalePoint start;
  if (Status s = MeasureScalePoint(&start, false); !s.ok()) return s;
  sc.points.push_back(std::move(start));
  for (size_t goal : config_.scale_messages) {
    if (stop_) return Status::Ok();
    Result<uint64_t> have = LastSeq(nodes_[0]);
    if (!have.ok()) return have.status();
    ScalePoint point;
    if (*have < goal) {
      const size_t missing = goal - static_cast<size_t>(*have);
      progress_.Begin("scale: writing " + std::to_string(missing) + " messages (up to " +
                          std::to_string(goal) + ")",
                      0);
      LoadConfig lc = BaseLoad();
      lc.targets = {nodes_[0]};
      lc.target_nodes = {0};
      lc.ack = "local";
      lc.clients = config_.batch_clients;
      lc.batch =
          static_cast<int>(std::min<size_t>(static_cast<size_t>(config_.batch_size), missing));
      lc.max_requests =
          (missing + static_cast<size_t>(lc.batch) - 1) / static_cast<size_t>(lc.batch);
      lc.random_payloads = true;
      lc.warmup = std::chrono::nanoseconds(0);
      lc.duration = std::chrono::nanoseconds(0);  // until max_requests
      lc.id_prefix = NextPrefix();
      LoadResult written = RunLoad(lc, &origins_, &progress_, stop_, Pids());
      if (failure_ = NodesAlive(); !failure_.ok()) return failure_;
      if (stop_) return Status::Ok();
      // Every node holds them before anything is measured.
      ReplicationWatcher watcher(nodes_, WatchFlags(), &origins_,
                                 std::chrono::microseconds(config_.watch_interval_us));
      watcher.Start();
      const bool held = watcher.WaitHeld(
          HighestPerOrigin(written.records),
          NowNs() + kReplicationDeadlineNs + static_cast<int64_t>(missing) * kScaleNsPerMessage,
          stop_);
      watcher.Stop();
      point.write_s = static_cast<double>(NowNs() - written.window_start_ns) / 1e9;
      point.write_per_s =
          point.write_s > 0 ? static_cast<double>(written.messages) / point.write_s : 0;
      progress_.End(Fmt("%.0f msgs/s accepted", written.messages_per_s) +
                    Fmt(", on every node at %.0f msgs/s", point.write_per_s));
      if (!held && !stop_) {
        report_->warnings.push_back(
            "scale: the written messages did not reach every node in time");
      }
    }
    if (Status s = MeasureScalePoint(&point, true); !s.ok()) return s;
    sc.points.push_back(std::move(point));
  }
  return Status::Ok();
}

// --phases retention (retention_phase.h): fresh clusters of its own, with and without trimming.
// The main cluster stays up, idle.
Status Bench::Retention() {
  RetentionComparison& r = report_->retention;
  if (config_.profile == "smoke") {
    r.config.repetitions = 1;
    r.config.max_messages = 100;
    r.config.prefill_messages = 200;
  }
  if (!cluster_) {
    r.skipped = "needs the local cluster (it starts clusters with and without retention)";
    return Status::Ok();
  }
  RetentionRunOptions o;
  o.node_binary = options_.node_binary;
  o.root = created_root_;
  o.node_args = options_.node_args;
  o.fsync = config_.fsync == "always";
  o.quorum = config_.quorum;
  o.payload_bytes = config_.payload_bytes;
  o.warmup_s = config_.warmup_s;
  o.duration_s = config_.duration_s;
  o.keep_data = options_.keep_data;
  return RunRetention(o, stop_, &progress_, &r);
}

// --phases membership (membership_phase.h): fresh clusters of its own, a node added to each under
// load. The main cluster stays up, idle.
Status Bench::Membership() {
  MembershipReport& m = report_->membership;
  m.config = config_.membership;
  if (!cluster_) {
    m.skipped = "needs the local cluster (it starts clusters and adds a node to each)";
    return Status::Ok();
  }
  MembershipRunOptions o;
  o.node_binary = options_.node_binary;
  o.root = created_root_;
  o.node_args = options_.node_args;
  o.fsync = config_.fsync == "always";
  o.quorum = config_.quorum;
  o.payload_bytes = config_.payload_bytes;
  o.keep_data = options_.keep_data;
  return RunMembership(o, stop_, &progress_, &m);
}

Status Bench::Run() {
  report_->started_at = UtcNow();
  report_->load_before = LoadAverage();
  if (Status s = PrepareDataRoot(); !s.ok()) return s;
  report_->machine = DescribeMachine(created_root_);
  if (config_.local_cluster) report_->node_binary = options_.node_binary;

  // The disk first, while nothing else of ours runs.
  MeasureBaselines();
  if (stop_) return Status::Ok();
  // etcd before dsm, stopped before dsm starts.
  if (config_.compare_etcd) CompareEtcd();
  if (stop_) return Status::Ok();
  if (Status s = StartCluster(); !s.ok()) return s;

  // The empty-request baselines on the first node.
  {
    LoadConfig lc = BaseLoad();
    lc.targets = {nodes_[0]};
    lc.kind = LoadKind::kHeartbeat;
    lc.clients = 1;
    lc.warmup = Seconds(std::min(0.3, config_.http_s / 4));
    lc.duration = Seconds(config_.http_s);
    progress_.Begin("baseline: empty HTTP, 1 connection", config_.http_s);
    LoadResult one = RunLoad(lc, &origins_, &progress_, stop_, Pids());
    report_->http.latency_1 = one.latency;
    report_->http.rps_1 = one.requests_per_s;
    report_->http.cpu_1 = one.cpu;
    progress_.End(Fmt("p50 %.3f ms, p99 %.3f ms", one.latency.p50_ms, one.latency.p99_ms));
    if (stop_) return Status::Ok();
    lc.clients = config_.ceiling_clients;
    progress_.Begin("baseline: empty HTTP, " + std::to_string(lc.clients) + " connections",
                    config_.http_s);
    LoadResult many = RunLoad(lc, &origins_, &progress_, stop_, Pids());
    report_->http.ceiling_clients = lc.clients;
    report_->http.ceiling_rps = many.requests_per_s;
    report_->http.latency_ceiling = many.latency;
    report_->http.cpu_ceiling = many.cpu;
    progress_.End(
        Fmt("%.0f requests/s (dsm-bench CPU %.0f%%)", many.requests_per_s, many.cpu.self_pct));
    if (one.total_errors() + many.total_errors() > 0) {
      report_->warnings.push_back("empty-request baseline: some requests failed");
    }
  }

  for (const char* mode : {"async", "sync_quorum"}) {
    if (!config_.Runs("closed")) break;
    for (int clients : config_.clients) {
      if (stop_) return Status::Ok();
      report_->closed_loop.push_back(Publish(mode, clients, 0));
      if (!failure_.ok()) return failure_;
    }
  }
  if (config_.open_rate > 0 && config_.Runs("open")) {
    for (const char* mode : {"async", "sync_quorum"}) {
      if (stop_) return Status::Ok();
      report_->open_loop.push_back(Publish(mode, config_.open_clients, config_.open_rate));
      if (!failure_.ok()) return failure_;
    }
  }
  if (stop_) return Status::Ok();
  if (config_.Runs("batch")) BatchPublish();
  if (!failure_.ok()) return failure_;
  if (stop_) return Status::Ok();
  if (config_.Runs("catchup")) {
    if (Status s = CatchUp(); !s.ok()) return s;
  } else {
    report_->catch_up.skipped = "not among --phases";
  }
  if (stop_) return Status::Ok();
  if (config_.Runs("scale")) {
    report_->scale.requested = true;
    if (Status s = Scale(); !s.ok()) return s;
  }
  if (stop_) return Status::Ok();
  if (config_.Runs("consume")) {
    progress_.Begin("durable consumer: consume and acknowledge", 0);
    Status s = RunConsume(nodes_.front(), config_.consume, NextPrefix(), stop_, &report_->consume);
    if (!s.ok()) return s;
    std::string summary;
    for (const ConsumeRun& r : report_->consume.runs) {
      summary += std::to_string(r.clients) + Fmt(" clients: %.0f msgs/s; ", r.median_per_s);
    }
    progress_.End(summary);
  } else {
    report_->consume.skipped = "not among --phases";
  }

  if (config_.Runs("retention")) {
    if (Status s = Retention(); !s.ok()) return s;
  }
  if (stop_) return Status::Ok();
  if (config_.Runs("membership")) {
    if (Status s = Membership(); !s.ok()) return s;
  }

  // CPU the load generator needed, as a warning when it may have been the bottleneck.
  for (const PublishRun& r : report_->closed_loop) {
    if (r.load.cpu.self_pct > 80) {
      report_->warnings.push_back("publish " + r.mode + " at " + std::to_string(r.clients) +
                                  " clients: dsm-bench used " +
                                  Fmt("%.0f%% of a core", r.load.cpu.self_pct) +
                                  " - the load generator may limit this figure");
    }
  }
  return Status::Ok();
}

}  // namespace

Status RunBench(const RunOptions& options, const std::atomic<bool>& stop, BenchReport* report) {
  report->config = options.config;
  const int64_t started = NowNs();
  Status s;
  {
    Bench bench(options, stop, report);
    s = bench.Run();
  }
  report->duration_s = static_cast<double>(NowNs() - started) / 1e9;
  report->load_after = LoadAverage();
  EvaluateTargets(report);
  return s;
}

}  // namespace dsm::bench

#include "bench/dsm_bench/membership_phase.h"

#include <rapidjson/document.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "bench/dsm_bench/local_cluster.h"
#include "bench/dsm_bench/watch.h"
#include "common/ids.h"

namespace dsm::bench {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kSecondNs = 1'000'000'000;
// How long the new node may take to become a voter, or every node to hold the same messages: a
// minute, plus this long per preloaded message (2,000 msgs/s: a loaded shared machine replicates
// well below what it accepts).
constexpr int64_t kDeadlineNs = 60 * kSecondNs;
constexpr int64_t kNsPerMessage = kSecondNs / 2000;
constexpr size_t kPreloadBatch = 500;
constexpr Millis kPollInterval{20};
const char* const kWindowNames[] = {"before", "during", "after"};

std::chrono::nanoseconds Seconds(double s) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
}

std::string Summary(const LoadResult& l) {
  char line[200];
  std::snprintf(
      line, sizeof line, "%.0f requests/s, p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, %zu errors",
      l.requests_per_s, l.latency.p50_ms, l.latency.p99_ms, l.latency.p999_ms, l.total_errors());
  return line;
}

// What RunLoad kept for the replication watcher; this phase reads the nodes' /status instead.
void DropRecords(LoadResult* l) {
  l->records.clear();
  l->records.shrink_to_fit();
}

// The role GET /cluster on `conn`'s node gives the member at `url` ("" when it lists no such
// member), or an error.
Result<std::string> RoleOf(HttpConnection& conn, const std::string& url, const std::string& auth) {
  HttpAnswer a;
  if (Status s = conn.Request("GET", "/cluster", "", &a, auth); !s.ok()) return s;
  if (a.status != 200) {
    return Status::Unavailable("GET /cluster answered " + std::to_string(a.status) + " " +
                               a.body.substr(0, 200));
  }
  rapidjson::Document doc;
  doc.Parse(a.body.data(), a.body.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("members") ||
      !doc["members"].IsArray()) {
    return Status::Corruption("malformed GET /cluster answer: " + a.body.substr(0, 200));
  }
  for (const auto& m : doc["members"].GetArray()) {
    if (!m.IsObject() || !m.HasMember("url") || !m["url"].IsString() || !m.HasMember("role") ||
        !m["role"].IsString()) {
      continue;
    }
    if (url == m["url"].GetString()) return std::string(m["role"].GetString());
  }
  return std::string();
}

class MembershipRunner {
 public:
  MembershipRunner(const MembershipRunOptions& options, const MembershipConfig& config,
                   const std::atomic<bool>& stop, Progress* progress)
      : options_(options),
        config_(config),
        stop_(stop),
        progress_(progress),
        run_id_(RandomHex(8)),
        token_("bench-" + RandomHex(16)),
        auth_(BearerHeader(token_)) {}

  // The run in a fresh cluster under `root`; its nodes stop with the runner. REQUIRES: called
  // once, from the main thread.
  Status Run(int index, const std::string& root, MembershipRun* run);

 private:
  std::string Label(int index) const {
    return "membership " + std::to_string(index + 1) + "/" + std::to_string(config_.runs);
  }
  std::string NextPrefix() {
    return "bench-" + run_id_ + "-membership-" + std::to_string(++loads_);
  }
  // OK while the cluster's nodes and the new node (when started) run.
  Status AllRunning();
  // Writes config_.messages messages, a third to each node, and waits until each holds them all.
  Status Preload(MembershipRun* run);
  // POST /cluster/members of the new node on the first node, then polls the first node's
  // GET /cluster and the new node's /status: sets *voter_seen once the new node is listed as a
  // voter (the `during` window ends then), and goes on until the new node also holds what the
  // first node held at the add (its catch-up counts from `started_at`, when it was spawned).
  // Returns early, OK, when stop_ is set.
  Status AddAndWaitForVoter(int64_t started_at, std::atomic<bool>* voter_seen, MembershipRun* run);
  // Polls every node's last_seq until the new node's is at least each other node's and they all
  // agree (the load has stopped), or the deadline.
  void CheckHeldEverywhere(MembershipRun* run);
  LoadConfig QuorumLoad();

  const MembershipRunOptions& options_;
  const MembershipConfig& config_;
  const std::atomic<bool>& stop_;
  Progress* progress_;
  const std::string run_id_;
  const std::string token_;
  const std::string auth_;  // the Authorization header line presenting token_
  int loads_ = 0;
  // The run's cluster, the node it adds (once started) and the cluster's endpoints.
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<LocalNode> added_;
  std::vector<Endpoint> nodes_;
  OriginTable origins_;
};

Status MembershipRunner::AllRunning() {
  std::vector<LocalNode*> all;
  for (size_t i = 0; cluster_ && i < cluster_->size(); ++i) all.push_back(&cluster_->node(i));
  if (added_) all.push_back(added_.get());
  for (LocalNode* node : all) {
    if (!node->Running()) {
      return Status::Unavailable(node->id() + " exited during the membership phase; log tail:\n" +
                                 node->LogTail());
    }
  }
  return Status::Ok();
}

LoadConfig MembershipRunner::QuorumLoad() {
  LoadConfig lc;
  lc.targets = nodes_;
  for (size_t i = 0; i < nodes_.size(); ++i) lc.target_nodes.push_back(static_cast<uint32_t>(i));
  lc.payload_bytes = options_.payload_bytes;
  lc.ack = "quorum";
  lc.clients = config_.clients;
  lc.id_prefix = NextPrefix();
  return lc;
}

Status MembershipRunner::Preload(MembershipRun* run) {
  LoadConfig fill = QuorumLoad();
  fill.ack = "local";
  fill.clients = static_cast<int>(nodes_.size());  // client i writes to node i
  fill.batch = static_cast<int>(std::min<uint64_t>(kPreloadBatch, config_.messages));
  const auto batch = static_cast<uint64_t>(fill.batch);
  fill.max_requests = static_cast<size_t>((config_.messages + batch - 1) / batch);
  LoadResult filled = RunLoad(fill, &origins_, progress_, stop_, cluster_->pids());
  if (Status s = AllRunning(); !s.ok()) return s;
  if (stop_) return Status::Ok();
  if (filled.total_errors() > 0) {
    return Status::Unavailable("membership phase: " + std::to_string(filled.total_errors()) +
                               " preload requests failed (" + filled.errors.begin()->first + ")");
  }
  run->preloaded = filled.messages;
  const int64_t deadline =
      NowNs() + kDeadlineNs + static_cast<int64_t>(filled.messages) * kNsPerMessage;
  for (const Endpoint& e : nodes_) {
    for (;;) {
      Result<uint64_t> held = LastSeq(e);
      if (held.ok() && *held >= filled.messages) break;
      if (stop_) return Status::Ok();
      if (NowNs() > deadline) {
        return Status::Timeout("membership phase: " + e.url + " did not hold the " +
                               std::to_string(filled.messages) + " preloaded messages in time");
      }
      std::this_thread::sleep_for(kPollInterval);
    }
  }
  return Status::Ok();
}

Status MembershipRunner::AddAndWaitForVoter(int64_t started_at, std::atomic<bool>* voter_seen,
                                            MembershipRun* run) {
  const std::string& url = added_->endpoint().url;
  Result<uint64_t> held = LastSeq(added_->endpoint());
  if (!held.ok()) return held.status();
  run->held_at_add = *held;
  Result<uint64_t> existing = LastSeq(nodes_[0]);
  if (!existing.ok()) return existing.status();
  run->existing_at_add = *existing;
  HttpConnection admin(nodes_[0], Millis(10000));
  HttpAnswer a;
  const int64_t added_at = NowNs();
  Status s = admin.Request("POST", "/cluster/members", "{\"url\":\"" + url + "\"}", &a, auth_);
  run->add_ms = NsToMs(NowNs() - added_at);
  if (!s.ok()) return Status::Unavailable("POST /cluster/members: " + s.ToString());
  if (a.status != 201) {
    return Status::Unavailable("POST /cluster/members answered " + std::to_string(a.status) + " " +
                               a.body.substr(0, 200));
  }
  const int64_t deadline =
      added_at + kDeadlineNs + static_cast<int64_t>(run->existing_at_add) * kNsPerMessage;
  bool caught_up = false;
  std::string role = "not listed";
  while (!stop_) {
    if (!run->voter) {
      Result<std::string> r = RoleOf(admin, url, auth_);
      if (r.ok() && *r == "voter") {
        run->to_voter_s = static_cast<double>(NowNs() - added_at) / 1e9;
        run->voter = true;
        *voter_seen = true;
        if (held = LastSeq(added_->endpoint()); held.ok()) run->held_at_voter = *held;
      } else {
        role = r.ok() ? (r->empty() ? "not listed" : *r) : r.status().ToString();
      }
    }
    if (!caught_up) {
      held = LastSeq(added_->endpoint());
      if (held.ok() && *held >= run->existing_at_add) {
        caught_up = true;
        run->caught_up_s = static_cast<double>(NowNs() - started_at) / 1e9;
      }
    }
    if (run->voter && caught_up) break;
    if (Status alive = AllRunning(); !alive.ok()) return alive;
    if (NowNs() > deadline) {
      const std::string after =
          std::to_string((NowNs() - added_at) / kSecondNs) + " s after its add";
      if (!run->voter) {
        return Status::Timeout("membership phase: " + url + " was not a voter " + after +
                               " (role: " + role + ")");
      }
      return Status::Timeout("membership phase: " + url + " did not hold the " +
                             std::to_string(run->existing_at_add) +
                             " messages of the cluster at its add " + after);
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  if (run->caught_up_s > 0) {
    run->catchup_per_s = static_cast<double>(run->existing_at_add) / run->caught_up_s;
  }
  return Status::Ok();
}

void MembershipRunner::CheckHeldEverywhere(MembershipRun* run) {
  const int64_t deadline =
      NowNs() + kDeadlineNs + static_cast<int64_t>(run->preloaded) * kNsPerMessage;
  while (!stop_) {
    uint64_t lowest = UINT64_MAX;
    uint64_t highest = 0;
    bool answered = true;
    for (const Endpoint& e : nodes_) {
      Result<uint64_t> held = LastSeq(e);
      answered = answered && held.ok();
      if (!held.ok()) continue;
      lowest = std::min(lowest, *held);
      highest = std::max(highest, *held);
    }
    Result<uint64_t> mine = LastSeq(added_->endpoint());
    if (answered && mine.ok()) {
      run->final_messages = *mine;
      run->others_messages = highest;
      run->complete = lowest == highest && *mine >= highest;
    }
    if (run->complete || NowNs() > deadline) return;
    std::this_thread::sleep_for(kPollInterval);
  }
}

Status MembershipRunner::Run(int index, const std::string& root, MembershipRun* run) {
  LocalClusterOptions o;
  o.node_binary = options_.node_binary;
  o.root = root;
  o.nodes = 3;
  o.fsync = options_.fsync;
  o.mode = "sync_quorum";
  o.quorum = options_.quorum;
  o.extra_args = options_.node_args;
  o.cluster_token = token_;
  cluster_ = std::make_unique<LocalCluster>(o);
  progress_->Begin(Label(index) + ": starting 3 nodes, writing " +
                       std::to_string(config_.messages) + " messages",
                   0);
  if (Status s = cluster_->Start(Millis(30000)); !s.ok()) return s;
  nodes_ = cluster_->endpoints();
  if (Status s = Preload(run); !s.ok() || stop_) return s;
  progress_->End(std::to_string(run->preloaded) + " messages on every node");
  std::vector<pid_t> pids = cluster_->pids();

  LoadConfig lc = QuorumLoad();
  lc.warmup = Seconds(config_.warmup_s);
  lc.duration = Seconds(config_.before_s);
  progress_->Begin(Label(index) + ": before, " + std::to_string(config_.clients) + " clients",
                   config_.warmup_s + config_.before_s);
  run->before = RunLoad(lc, &origins_, progress_, stop_, pids);
  DropRecords(&run->before);
  progress_->End(Summary(run->before));
  if (Status s = AllRunning(); !s.ok() || stop_) return s;

  // The new node: empty, its --peers naming the first node, started right before its add (it
  // pulls from the node its --peers name as soon as it runs, added or not).
  progress_->Begin(Label(index) + ": adding node4 under load", 0);
  Result<std::vector<uint16_t>> port = PickLoopbackPorts(1);
  if (!port.ok()) return port.status();
  Result<Endpoint> endpoint = ParseEndpoint("http://127.0.0.1:" + std::to_string((*port)[0]));
  if (!endpoint.ok()) return endpoint.status();
  Result<std::unique_ptr<LocalNode>> node = NewLocalNode(o, "node4", *endpoint, nodes_[0].url);
  if (!node.ok()) return node.status();
  added_ = std::move(node).value();
  const int64_t started_at = NowNs();
  if (Status s = added_->Start(); !s.ok()) return s;
  if (Status s = added_->WaitUp(Millis(30000)); !s.ok()) return s;
  pids.push_back(added_->pid());
  // The load runs on its own thread from before the POST until the new node is a voter (RunLoad
  // measures from 20 ms after it is called: the POST goes out once the window is open).
  std::atomic<bool> during_stop{false};
  LoadConfig dl = QuorumLoad();
  std::thread load([&] { run->during = RunLoad(dl, &origins_, progress_, during_stop, pids); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  Status change = AddAndWaitForVoter(started_at, &during_stop, run);
  during_stop = true;
  load.join();
  DropRecords(&run->during);
  if (!change.ok() || stop_) {
    progress_->End("failed");
    return change;
  }
  char voter[160];
  std::snprintf(voter, sizeof voter,
                "a voter %.2f s after the add, caught up %.2f s after its start (%.0f msgs/s); ",
                run->to_voter_s, run->caught_up_s, run->catchup_per_s);
  progress_->End(voter + Summary(run->during));

  lc = QuorumLoad();
  lc.duration = Seconds(config_.after_s);
  progress_->Begin(Label(index) + ": after", config_.after_s);
  run->after = RunLoad(lc, &origins_, progress_, stop_, pids);
  DropRecords(&run->after);
  progress_->End(Summary(run->after));
  if (Status s = AllRunning(); !s.ok() || stop_) return s;

  progress_->Begin(Label(index) + ": does node4 hold every message?", 0);
  CheckHeldEverywhere(run);
  progress_->End(std::to_string(run->final_messages) + " on node4, at most " +
                 std::to_string(run->others_messages) + " on the others");
  if (!run->complete && !stop_) {
    return Status::Unavailable("membership phase: node4 holds " +
                               std::to_string(run->final_messages) + " messages, another node " +
                               std::to_string(run->others_messages) +
                               " (or they still differ) well after the load stopped");
  }
  return Status::Ok();
}

}  // namespace

void MembershipReport::Summarize() {
  windows.clear();
  error_count = 0;
  std::vector<double> voter, catchup;
  for (int w = 0; w < 3; ++w) {
    MembershipWindow win;
    win.name = kWindowNames[w];
    std::vector<double> rps, p50, p99, p999, seconds;
    for (const MembershipRun& r : runs) {
      const LoadResult& l = w == 0 ? r.before : w == 1 ? r.during : r.after;
      rps.push_back(l.requests_per_s);
      p50.push_back(l.latency.p50_ms);
      p99.push_back(l.latency.p99_ms);
      p999.push_back(l.latency.p999_ms);
      seconds.push_back(l.window_s);
      for (const auto& [what, count] : l.errors) win.errors[what] += count;
      win.error_count += l.total_errors();
    }
    win.requests_per_s = SpreadOf(rps);
    win.p50_ms = SpreadOf(p50);
    win.p99_ms = SpreadOf(p99);
    win.p999_ms = SpreadOf(p999);
    win.seconds = SpreadOf(seconds);
    error_count += win.error_count;
    windows.push_back(std::move(win));
  }
  for (const MembershipRun& r : runs) {
    voter.push_back(r.to_voter_s);
    catchup.push_back(r.catchup_per_s);
  }
  to_voter_s = SpreadOf(voter);
  catchup_per_s = SpreadOf(catchup);
}

Status RunMembership(const MembershipRunOptions& options, const std::atomic<bool>& stop,
                     Progress* progress, MembershipReport* out) {
  out->runs.clear();
  Status result;
  for (int i = 0; i < out->config.runs && !stop && result.ok(); ++i) {
    const std::string root = options.root + "/membership-" + std::to_string(i + 1);
    MembershipRun run;
    {
      MembershipRunner runner(options, out->config, stop, progress);
      result = runner.Run(i, root, &run);
    }  // every node of the run stops here
    if (!options.keep_data) {
      std::error_code ec;
      fs::remove_all(root, ec);
    }
    if (result.ok() && run.voter && run.complete) out->runs.push_back(std::move(run));
  }
  out->ran = !out->runs.empty();
  if (!out->ran && out->skipped.empty()) out->skipped = result.ok() ? "interrupted" : "failed";
  out->Summarize();
  return result;
}

}  // namespace dsm::bench

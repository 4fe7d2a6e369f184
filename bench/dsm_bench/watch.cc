#include "bench/dsm_bench/watch.h"

#include <rapidjson/document.h>

#include <algorithm>

namespace dsm::bench {

uint32_t OriginTable::Id(std::string_view origin) {
  MutexLock lock(&mu_);
  auto it = ids_.find(origin);
  if (it != ids_.end()) return it->second;
  const uint32_t id = static_cast<uint32_t>(names_.size());
  names_.emplace_back(origin);
  ids_.emplace(std::string(origin), id);
  return id;
}

std::string OriginTable::Name(uint32_t id) const {
  MutexLock lock(&mu_);
  return id < names_.size() ? names_[id] : std::string();
}

ReplicationWatcher::ReplicationWatcher(std::vector<Endpoint> nodes, std::vector<bool> watch,
                                       OriginTable* origins, std::chrono::microseconds interval)
    : nodes_(std::move(nodes)),
      watch_(std::move(watch)),
      origins_(origins),
      interval_(interval),
      timelines_(nodes_.size()),
      first_answer_(nodes_.size(), -1) {}

ReplicationWatcher::~ReplicationWatcher() { Stop(); }

void ReplicationWatcher::Start() {
  stop_ = false;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (watch_[i]) threads_.emplace_back([this, i] { Poll(i); });
  }
}

void ReplicationWatcher::Stop() {
  stop_ = true;
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void ReplicationWatcher::Poll(size_t node) {
  HttpConnection conn(nodes_[node], std::chrono::milliseconds(5000));
  HttpAnswer answer;
  rapidjson::Document doc;
  std::vector<std::pair<uint32_t, uint64_t>> seen;
  while (!stop_) {
    const int64_t t0 = NowNs();
    Status s = conn.Request("GET", "/heartbeat", "", &answer);
    const int64_t t1 = NowNs();
    polls_.fetch_add(1, std::memory_order_relaxed);
    poll_ns_.fetch_add(t1 - t0, std::memory_order_relaxed);
    if (s.ok() && answer.status == 200) {
      doc.Parse(answer.body.data(), answer.body.size());
      seen.clear();
      if (!doc.HasParseError() && doc.IsObject()) {
        const rapidjson::Value& root = doc;
        auto it = root.FindMember("high_waters");
        if (it != root.MemberEnd() && it->value.IsObject()) {
          for (const auto& m : it->value.GetObject()) {
            if (!m.value.IsUint64()) continue;
            seen.emplace_back(
                origins_->Id(std::string_view(m.name.GetString(), m.name.GetStringLength())),
                m.value.GetUint64());
          }
        }
      }
      MutexLock lock(&mu_);
      if (first_answer_[node] < 0) first_answer_[node] = t1;
      for (const auto& [origin, hw] : seen) {
        Timeline& tl = timelines_[node][origin];
        if (tl.hw.empty() || hw > tl.hw.back()) {
          tl.t.push_back(t1);
          tl.hw.push_back(hw);
        }
      }
    }
    // A deadline loop: the next poll is due one interval after this answer.
    const auto due = std::chrono::steady_clock::now() + interval_;
    while (!stop_ && std::chrono::steady_clock::now() < due) {
      std::this_thread::sleep_until(due);
    }
  }
}

bool ReplicationWatcher::WaitHeld(const std::map<uint32_t, uint64_t>& need, int64_t deadline_ns,
                                  const std::atomic<bool>& stop) const {
  for (;;) {
    bool all = true;
    for (size_t n = 0; n < nodes_.size() && all; ++n) {
      if (!watch_[n]) continue;
      for (const auto& [origin, seq] : need) {
        if (HighWater(n, origin) < seq) {
          all = false;
          break;
        }
      }
    }
    if (all) return true;
    if (stop || NowNs() > deadline_ns) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

int64_t ReplicationWatcher::FirstSeen(size_t node, uint32_t origin, uint64_t origin_seq) const {
  MutexLock lock(&mu_);
  if (node >= timelines_.size()) return -1;
  auto it = timelines_[node].find(origin);
  if (it == timelines_[node].end()) return -1;
  const Timeline& tl = it->second;
  auto pos = std::lower_bound(tl.hw.begin(), tl.hw.end(), origin_seq);
  if (pos == tl.hw.end()) return -1;
  return tl.t[static_cast<size_t>(pos - tl.hw.begin())];
}

int64_t ReplicationWatcher::FirstAnswer(size_t node) const {
  MutexLock lock(&mu_);
  return node < first_answer_.size() ? first_answer_[node] : -1;
}

uint64_t ReplicationWatcher::HighWater(size_t node, uint32_t origin) const {
  MutexLock lock(&mu_);
  if (node >= timelines_.size()) return 0;
  auto it = timelines_[node].find(origin);
  if (it == timelines_[node].end() || it->second.hw.empty()) return 0;
  return it->second.hw.back();
}

double ReplicationWatcher::MeanPollMs() const {
  const uint64_t n = polls_.load();
  return n > 0 ? NsToMs(poll_ns_.load()) / static_cast<double>(n) : 0;
}

std::map<uint32_t, uint64_t> HighestPerOrigin(const std::vector<PublishRecord>& records) {
  std::map<uint32_t, uint64_t> out;
  for (const PublishRecord& r : records) {
    uint64_t& v = out[r.origin];
    v = std::max(v, r.origin_seq);
  }
  return out;
}

ReplicationResult EvaluateReplication(const std::vector<PublishRecord>& records,
                                      const ReplicationWatcher& watcher, int64_t window_start_ns) {
  ReplicationResult r;
  std::vector<int64_t> e2e;
  e2e.reserve(records.size());
  int64_t last_all = window_start_ns;
  for (const PublishRecord& rec : records) {
    ++r.requests;
    r.messages += rec.messages;
    int64_t all = rec.ack_ns;
    bool missing = false;
    for (size_t n = 0; n < watcher.nodes(); ++n) {
      if (n == rec.node) continue;
      const int64_t t = watcher.FirstSeen(n, rec.origin, rec.origin_seq);
      if (t < 0) {
        missing = true;
        break;
      }
      all = std::max(all, t);
    }
    if (missing) {
      ++r.missing;
      continue;
    }
    e2e.push_back(all - rec.send_ns);
    last_all = std::max(last_all, all);
  }
  r.e2e = Summarize(&e2e);
  if (last_all > window_start_ns && r.missing == 0) {
    r.fully_replicated_per_s =
        static_cast<double>(r.messages) * 1e9 / static_cast<double>(last_all - window_start_ns);
  }
  r.resolution_ms = static_cast<double>(watcher.interval().count()) / 1000.0 + watcher.MeanPollMs();
  return r;
}

}  // namespace dsm::bench

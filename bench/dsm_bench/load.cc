#include "bench/dsm_bench/load.h"

#include <rapidjson/document.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>

#include "bench/dsm_bench/etcd_cluster.h"

namespace dsm::bench {

namespace {

// What one client thread measured.
struct ClientResult {
  std::vector<int64_t> latency;
  std::vector<int64_t> service;
  std::vector<PublishRecord> records;
  std::map<std::string, size_t> errors;
  size_t messages = 0;
  int64_t last_ack_ns = 0;
};

void AppendMessage(std::string* body, const std::string& id, std::string_view payload) {
  body->append("{\"msg_id\":\"").append(id);
  body->append("\",\"sender\":\"bench\",\"recipient\":\"all\",\"payload\":\"");
  body->append(payload).append("\"");
}

// Reads origin and origin_seq of a /send answer (of the last result for a batch).
bool ParseAccepted(rapidjson::Document& doc, const std::string& body, bool batch,
                   std::string_view* origin, uint64_t* origin_seq) {
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError() || !doc.IsObject()) return false;
  const rapidjson::Value* v = &doc;
  if (batch) {
    auto it = v->FindMember("results");
    if (it == doc.MemberEnd() || !it->value.IsArray() || it->value.Empty()) return false;
    v = &it->value[it->value.Size() - 1];
  }
  auto o = v->FindMember("origin");
  auto s = v->FindMember("origin_seq");
  if (o == v->MemberEnd() || !o->value.IsString() || s == v->MemberEnd() || !s->value.IsUint64()) {
    return false;
  }
  *origin = std::string_view(o->value.GetString(), o->value.GetStringLength());
  *origin_seq = s->value.GetUint64();
  return true;
}

// A pool of random letters and digits; message n's payload is a window of it starting at a
// pseudo-random offset, so neighbouring messages share nothing.
class PayloadPool {
 public:
  PayloadPool(size_t payload_bytes, uint64_t seed) : bytes_(payload_bytes), state_(seed | 1) {
    static const char kAlphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    pool_.resize(kPoolBytes + payload_bytes);
    for (char& c : pool_) c = kAlphabet[Next() % (sizeof(kAlphabet) - 1)];
  }
  std::string_view Take() { return std::string_view(pool_).substr(Next() % kPoolBytes, bytes_); }

 private:
  static constexpr size_t kPoolBytes = 1 << 20;
  uint64_t Next() {  // xorshift64
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }
  size_t bytes_;
  uint64_t state_;
  std::string pool_;
};

void SleepUntilNs(int64_t t) {
  const int64_t now = NowNs();
  if (t > now) std::this_thread::sleep_for(std::chrono::nanoseconds(t - now));
}

}  // namespace

size_t LoadResult::total_errors() const {
  size_t n = 0;
  for (const auto& [what, count] : errors) n += count;
  return n;
}

LoadResult RunLoad(const LoadConfig& config, OriginTable* origins, Progress* progress,
                   const std::atomic<bool>& stop, const std::vector<pid_t>& pids) {
  const bool open_loop = config.rate > 0;
  const int64_t start = NowNs() + 20'000'000;  // lets every thread reach the start line
  const int64_t window_start = start + config.warmup.count();
  const int64_t end = config.duration.count() > 0 ? window_start + config.duration.count()
                                                  : std::numeric_limits<int64_t>::max();
  const double period_ns = open_loop ? 1e9 / config.rate : 0;
  const std::string payload(config.payload_bytes, 'x');
  const bool heartbeat = config.kind == LoadKind::kHeartbeat;
  const char* path = config.kind == LoadKind::kEtcdPut ? "/v3/kv/put" : "/send";
  const std::string etcd_value = config.kind == LoadKind::kEtcdPut ? Base64(payload) : "";
  std::atomic<uint64_t> next{0};  // open loop: next scheduled request; else: requests started
  std::vector<ClientResult> results(static_cast<size_t>(config.clients));

  auto client = [&](size_t index) {
    ClientResult& out = results[index];
    const size_t target = index % config.targets.size();
    HttpConnection conn(config.targets[target], config.timeout);
    std::optional<PayloadPool> random;
    if (config.random_payloads) random.emplace(config.payload_bytes, NowNs() + index);
    auto next_payload = [&]() -> std::string_view {
      return random ? random->Take() : std::string_view(payload);
    };
    const uint32_t node = target < config.target_nodes.size() ? config.target_nodes[target] : 0;
    const std::string prefix = config.id_prefix + "-" + std::to_string(index) + "-";
    std::string body;
    HttpAnswer answer;
    rapidjson::Document doc;
    uint64_t n = 0;
    uint32_t last_origin_id = 0;
    std::string last_origin;
    SleepUntilNs(start);
    while (!stop.load(std::memory_order_relaxed)) {
      int64_t scheduled;
      if (open_loop) {
        const uint64_t k = next.fetch_add(1);
        if (config.max_requests > 0 && k >= config.max_requests) break;
        scheduled = start + static_cast<int64_t>(static_cast<double>(k) * period_ns);
        if (scheduled >= end) break;
        SleepUntilNs(scheduled);
      } else {
        if (NowNs() >= end) break;
        if (config.max_requests > 0 && next.fetch_add(1) >= config.max_requests) break;
        scheduled = 0;  // set at the send
      }
      const int messages = heartbeat ? 0 : std::max(config.batch, 1);
      if (config.kind == LoadKind::kEtcdPut) {
        body = EtcdPutBody(prefix + std::to_string(n++), etcd_value);
      } else if (config.kind == LoadKind::kSend) {
        body.clear();
        if (config.batch > 0) {
          body.append("{\"ack\":\"").append(config.ack).append("\",\"messages\":[");
          for (int i = 0; i < config.batch; ++i) {
            if (i > 0) body.push_back(',');
            AppendMessage(&body, prefix + std::to_string(n++), next_payload());
            body.push_back('}');
          }
          body.append("]}");
        } else {
          AppendMessage(&body, prefix + std::to_string(n++), next_payload());
          body.append(",\"ack\":\"").append(config.ack).append("\"}");
        }
      }
      const int64_t t0 = NowNs();
      if (!open_loop) scheduled = t0;
      Status s = heartbeat ? conn.Request("GET", "/heartbeat", "", &answer)
                           : conn.Request("POST", path, body, &answer);
      const int64_t t1 = NowNs();
      const bool measured = scheduled >= window_start && scheduled < end;
      if (!s.ok() || answer.status != 200) {
        progress->AddError();
        if (measured) {
          ++out.errors[s.ok() ? std::to_string(answer.status)
                              : std::string(CodeName(s.code())) + ": " + s.message()];
        }
        if (!s.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      progress->AddMessages(heartbeat ? 1 : static_cast<uint64_t>(messages));
      if (!measured) continue;
      out.latency.push_back(t1 - scheduled);
      out.service.push_back(t1 - t0);
      out.messages += static_cast<size_t>(heartbeat ? 1 : messages);
      out.last_ack_ns = std::max(out.last_ack_ns, t1);
      if (config.kind != LoadKind::kSend) continue;
      std::string_view origin;
      uint64_t origin_seq = 0;
      if (!ParseAccepted(doc, answer.body, config.batch > 0, &origin, &origin_seq)) {
        ++out.errors["200 without origin/origin_seq"];
        continue;
      }
      if (origin != last_origin) {
        last_origin = std::string(origin);
        last_origin_id = origins->Id(origin);
      }
      PublishRecord rec;
      rec.send_ns = scheduled;
      rec.ack_ns = t1;
      rec.origin_seq = origin_seq;
      rec.origin = last_origin_id;
      rec.node = node;
      rec.messages = static_cast<uint32_t>(messages);
      out.records.push_back(rec);
    }
  };

  std::vector<std::thread> threads;
  threads.reserve(results.size());
  for (size_t i = 0; i < results.size(); ++i) threads.emplace_back(client, i);
  SleepUntilNs(window_start);
  const CpuSnapshot cpu_start = TakeCpuSnapshot(pids);
  for (std::thread& t : threads) t.join();
  const CpuSnapshot cpu_end = TakeCpuSnapshot(pids);

  LoadResult r;
  r.window_start_ns = window_start;
  r.window_end_ns = window_start;
  r.offered_rate = config.rate;
  std::vector<int64_t> latency, service;
  for (ClientResult& c : results) {
    r.requests += c.latency.size();
    r.messages += c.messages;
    r.window_end_ns = std::max(r.window_end_ns, c.last_ack_ns);
    latency.insert(latency.end(), c.latency.begin(), c.latency.end());
    service.insert(service.end(), c.service.begin(), c.service.end());
    r.records.insert(r.records.end(), c.records.begin(), c.records.end());
    for (const auto& [what, count] : c.errors) r.errors[what] += count;
  }
  r.window_s = static_cast<double>(r.window_end_ns - r.window_start_ns) / 1e9;
  if (r.window_s > 0) {
    r.requests_per_s = static_cast<double>(r.requests) / r.window_s;
    r.messages_per_s = static_cast<double>(r.messages) / r.window_s;
  }
  r.latency = Summarize(&latency);
  r.service = Summarize(&service);
  r.cpu = CpuBetween(cpu_start, cpu_end);
  std::sort(r.records.begin(), r.records.end(),
            [](const PublishRecord& a, const PublishRecord& b) { return a.send_ns < b.send_ns; });
  return r;
}

}  // namespace dsm::bench

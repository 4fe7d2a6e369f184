#include "bench/dsm_bench/consume.h"

#include <rapidjson/document.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <thread>

namespace dsm::bench {
namespace {

constexpr std::chrono::milliseconds kTimeout{30000};
constexpr size_t kPreloadBatch = 500;

// Sends `n` messages to `recipient` in batches. Returns false on a failed request.
bool Preload(const Endpoint& node, const std::string& recipient, size_t n, size_t payload_bytes,
             const std::string& id_prefix) {
  HttpConnection conn(node, kTimeout);
  const std::string payload(payload_bytes, 'x');
  for (size_t sent = 0; sent < n;) {
    const size_t k = std::min(kPreloadBatch, n - sent);
    std::string body = "{\"ack\":\"local\",\"messages\":[";
    for (size_t i = 0; i < k; ++i) {
      if (i > 0) body += ',';
      body += "{\"msg_id\":\"" + id_prefix + std::to_string(sent + i) +
              "\",\"sender\":\"bench\",\"recipient\":\"" + recipient + "\",\"payload\":\"" +
              payload + "\"}";
    }
    body += "]}";
    HttpAnswer a;
    if (!conn.Request("POST", "/send", body, &a).ok() || a.status != 200) return false;
    sent += k;
  }
  return true;
}

struct ClientTally {
  std::vector<int64_t> fetch_ns;
  std::vector<int64_t> ack_ns;
  size_t acked = 0;
  size_t redelivered = 0;
  size_t errors = 0;
};

// One client: fetch, ack, until `remaining` reaches 0 (shared by the clients of a run).
void Client(const Endpoint& node, const std::string& consumer, int fetch_max,
            std::atomic<int64_t>* remaining, const std::atomic<bool>& stop, ClientTally* t) {
  HttpConnection conn(node, kTimeout);
  const std::string fetch_target =
      "/consumers/" + consumer + "/messages?max=" + std::to_string(fetch_max) + "&wait_ms=200";
  const std::string ack_target = "/consumers/" + consumer + "/ack";
  while (remaining->load() > 0 && !stop) {
    HttpAnswer a;
    int64_t t0 = NowNs();
    if (!conn.Request("GET", fetch_target, "", &a).ok() || a.status != 200) {
      ++t->errors;
      continue;
    }
    t->fetch_ns.push_back(NowNs() - t0);
    rapidjson::Document doc;
    doc.Parse(a.body.c_str(), a.body.size());
    if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("messages")) {
      ++t->errors;
      continue;
    }
    const auto& msgs = doc["messages"].GetArray();
    if (msgs.Empty()) continue;
    std::string body = "{\"ack_ids\":[";
    for (rapidjson::SizeType i = 0; i < msgs.Size(); ++i) {
      if (i > 0) body += ',';
      body += '"';
      body += msgs[i]["ack_id"].GetString();
      body += '"';
      if (msgs[i]["delivery"].GetUint64() > 1) ++t->redelivered;
    }
    body += "]}";
    t0 = NowNs();
    if (!conn.Request("POST", ack_target, body, &a).ok() || a.status != 200) {
      ++t->errors;
      continue;
    }
    t->ack_ns.push_back(NowNs() - t0);
    t->acked += msgs.Size();
    remaining->fetch_sub(static_cast<int64_t>(msgs.Size()));
  }
}

}  // namespace

Status RunConsume(const Endpoint& node, const ConsumeConfig& config, const std::string& prefix,
                  const std::atomic<bool>& stop, ConsumeReport* report) {
  report->config = config;
  report->ran = true;
  for (int clients : config.clients) {
    ConsumeRun run;
    run.clients = clients;
    std::vector<int64_t> fetch_ns;
    std::vector<int64_t> ack_ns;
    for (int r = 0; r < config.runs && !stop; ++r) {
      std::string tag = prefix + "c" + std::to_string(clients) + "r" + std::to_string(r);
      for (char& ch : tag) {  // a valid consumer name and recipient
        if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_') ch = '-';
      }
      const std::string recipient = "consume-" + tag;
      if (!Preload(node, recipient, config.messages, config.payload_bytes, tag + "-")) {
        return Status::Unavailable("consume phase: preloading " + recipient + " failed");
      }
      HttpConnection admin(node, kTimeout);
      HttpAnswer a;
      const std::string consumer = "bench-" + tag;
      const std::string definition =
          "{\"recipient\":\"" + recipient + "\",\"max_in_flight\":100000,\"ack_wait_ms\":60000}";
      if (!admin.Request("PUT", "/consumers/" + consumer, definition, &a).ok() ||
          a.status != 201) {
        return Status::Unavailable("consume phase: PUT /consumers/" + consumer + " answered " +
                                   std::to_string(a.status) + " " + a.body.substr(0, 200));
      }
      std::atomic<int64_t> remaining{static_cast<int64_t>(config.messages)};
      std::vector<ClientTally> tallies(static_cast<size_t>(clients));
      std::vector<std::thread> threads;
      const int64_t started = NowNs();
      for (int i = 0; i < clients; ++i) {
        threads.emplace_back(Client, std::cref(node), consumer, config.fetch_max, &remaining,
                             std::cref(stop), &tallies[static_cast<size_t>(i)]);
      }
      for (std::thread& t : threads) t.join();
      const double seconds = static_cast<double>(NowNs() - started) / 1e9;
      size_t acked = 0;
      for (ClientTally& t : tallies) {
        acked += t.acked;
        run.redelivered += t.redelivered;
        run.errors += t.errors;
        fetch_ns.insert(fetch_ns.end(), t.fetch_ns.begin(), t.fetch_ns.end());
        ack_ns.insert(ack_ns.end(), t.ack_ns.begin(), t.ack_ns.end());
      }
      run.acked_per_s.push_back(seconds > 0 ? static_cast<double>(acked) / seconds : 0);
      (void)admin.Request("DELETE", "/consumers/" + consumer, "", &a);
    }
    if (!run.acked_per_s.empty()) {
      std::vector<double> sorted = run.acked_per_s;
      std::sort(sorted.begin(), sorted.end());
      run.median_per_s = sorted[sorted.size() / 2];
      run.min_per_s = sorted.front();
      run.max_per_s = sorted.back();
    }
    run.fetch_latency = Summarize(&fetch_ns);
    run.ack_latency = Summarize(&ack_ns);
    report->runs.push_back(std::move(run));
  }
  return Status::Ok();
}

}  // namespace dsm::bench

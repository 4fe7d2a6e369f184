#include "bench/dsm_bench/etcd_cluster.h"

#include <rapidjson/document.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>
#include <utility>

#include "common/ids.h"
#include "common/local_ports.h"

namespace dsm::bench {

namespace fs = std::filesystem;

namespace {

// What one member says in POST /v3/maintenance/status (etcd writes its uint64 ids as strings).
struct MemberStatus {
  std::string member_id;
  std::string leader;  // "0" or absent while there is none
  std::string version;
};

Result<MemberStatus> AskStatus(const Endpoint& endpoint) {
  HttpConnection conn(endpoint, Millis(2000));
  HttpAnswer answer;
  if (Status s = conn.Request("POST", "/v3/maintenance/status", "{}", &answer); !s.ok()) return s;
  if (answer.status != 200) {
    return Status::Unavailable(endpoint.url + "/v3/maintenance/status answered " +
                               std::to_string(answer.status));
  }
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseIterativeFlag>(answer.body.data(), answer.body.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return Status::Corruption(endpoint.url + ": the status answer is not a JSON object");
  }
  MemberStatus out;
  auto str = [](const rapidjson::Value& obj, const char* key) {
    auto it = obj.FindMember(key);
    return it != obj.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString())
                                                         : std::string();
  };
  out.leader = str(doc, "leader");
  out.version = str(doc, "version");
  auto header = doc.FindMember("header");
  if (header != doc.MemberEnd() && header->value.IsObject()) {
    out.member_id = str(header->value, "member_id");
  }
  if (out.member_id.empty()) {
    return Status::Corruption(endpoint.url + ": the status answer has no header.member_id");
  }
  return out;
}

}  // namespace

EtcdCluster::EtcdCluster(EtcdClusterOptions options) : options_(std::move(options)) {}

EtcdCluster::~EtcdCluster() { StopAll(); }

Status EtcdCluster::Start(Millis timeout, const std::atomic<bool>& stop) {
  const int n = options_.members;
  Result<std::vector<uint16_t>> ports = PickLoopbackPorts(2 * n);  // client ports, then peer ports
  if (!ports.ok()) return ports.status();
  std::vector<Endpoint> clients;
  std::vector<std::string> peer_urls;
  std::string initial_cluster;
  for (int i = 0; i < n; ++i) {
    Result<Endpoint> e =
        ParseEndpoint("http://127.0.0.1:" + std::to_string((*ports)[static_cast<size_t>(i)]));
    if (!e.ok()) return e.status();
    clients.push_back(*e);
    peer_urls.push_back("http://127.0.0.1:" + std::to_string((*ports)[static_cast<size_t>(n + i)]));
    if (!initial_cluster.empty()) initial_cluster += ",";
    initial_cluster += "etcd" + std::to_string(i + 1) + "=" + peer_urls.back();
  }
  const std::string token = "dsm-bench-" + RandomHex(8);
  for (int i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    const std::string name = "etcd" + std::to_string(i + 1);
    const fs::path dir = fs::path(options_.root) / name;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return Status::IOError("cannot create " + dir.string() + ": " + ec.message());
    std::vector<std::string> args = {"--name",
                                     name,
                                     "--data-dir",
                                     (dir / "data").string(),
                                     "--listen-client-urls",
                                     clients[k].url,
                                     "--advertise-client-urls",
                                     clients[k].url,
                                     "--listen-peer-urls",
                                     peer_urls[k],
                                     "--initial-advertise-peer-urls",
                                     peer_urls[k],
                                     "--initial-cluster",
                                     initial_cluster,
                                     "--initial-cluster-state",
                                     "new",
                                     "--initial-cluster-token",
                                     token,
                                     "--logger",
                                     "zap",
                                     "--log-outputs",
                                     "stderr",
                                     "--log-level",
                                     "warn"};
    members_.push_back(std::make_unique<LocalNode>(name, options_.binary, std::move(args),
                                                   (dir / "etcd.log").string(), clients[k]));
  }
  for (auto& member : members_) {
    if (Status s = member->Start(); !s.ok()) return s;
  }
  // Up when every member answers its status and all name the same leader, one of them.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Status last = Status::Unavailable("no answer yet");
  while (true) {
    if (stop) return Status::Unavailable("interrupted");
    for (auto& member : members_) {
      if (!member->Running()) {
        return Status::Unavailable(member->id() + " exited during start-up; log tail:\n" +
                                   member->LogTail());
      }
    }
    std::string leader, version;
    std::vector<std::string> ids;
    last = Status::Ok();
    for (auto& member : members_) {
      Result<MemberStatus> st = AskStatus(member->endpoint());
      if (!st.ok()) {
        last = st.status();
        break;
      }
      if (st->leader.empty() || st->leader == "0" || (!leader.empty() && st->leader != leader)) {
        last = Status::Unavailable(member->id() + " knows no leader yet");
        break;
      }
      leader = st->leader;
      version = st->version;
      ids.push_back(st->member_id);
    }
    if (last.ok()) {
      bool leader_is_member = false;
      for (const std::string& id : ids) leader_is_member |= id == leader;
      if (leader_is_member) {
        version_ = version;
        return Status::Ok();
      }
      last = Status::Unavailable("the leader named is not a member yet");
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::Timeout("the etcd cluster did not elect a leader within " +
                             std::to_string(timeout.count()) + " ms (" + last.ToString() +
                             "); log tail of " + members_[0]->id() + ":\n" +
                             members_[0]->LogTail());
    }
    std::this_thread::sleep_for(Millis(50));
  }
}

Result<Endpoint> EtcdCluster::Leader() {
  std::string leader;
  std::vector<std::pair<std::string, Endpoint>> ids;
  for (auto& member : members_) {
    Result<MemberStatus> st = AskStatus(member->endpoint());
    if (!st.ok()) continue;
    if (!st->leader.empty() && st->leader != "0") leader = st->leader;
    ids.emplace_back(st->member_id, member->endpoint());
  }
  for (const auto& [id, endpoint] : ids) {
    if (id == leader) return endpoint;
  }
  return Status::Unavailable("no etcd member names a leader that is one of the members");
}

Status EtcdCluster::Alive() {
  for (auto& member : members_) {
    if (!member->Running()) {
      return Status::Unavailable(member->id() + " exited during the run; log tail:\n" +
                                 member->LogTail());
    }
  }
  return Status::Ok();
}

void EtcdCluster::StopAll() {
  // Signal all first, so the members shut down in parallel, then reap each.
  for (auto& member : members_) {
    if (member->Running()) ::kill(member->pid(), SIGTERM);
  }
  for (auto& member : members_) member->Stop();
}

std::vector<Endpoint> EtcdCluster::endpoints() const {
  std::vector<Endpoint> out;
  for (const auto& member : members_) out.push_back(member->endpoint());
  return out;
}

std::vector<pid_t> EtcdCluster::pids() const {
  std::vector<pid_t> out;
  for (const auto& member : members_) out.push_back(member->pid());
  return out;
}

std::string FindEtcd(const std::string& configured) {
  if (!configured.empty()) return access(configured.c_str(), X_OK) == 0 ? configured : "";
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string dir = dirs.substr(start, end - start);
    if (!dir.empty()) {
      const std::string candidate = dir + "/etcd";
      std::error_code ec;
      if (access(candidate.c_str(), X_OK) == 0 && !fs::is_directory(candidate, ec)) {
        return candidate;
      }
    }
    start = end + 1;
  }
  return "";
}

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])) << 16 |
                       static_cast<uint32_t>(static_cast<uint8_t>(bytes[i + 1])) << 8 |
                       static_cast<uint32_t>(static_cast<uint8_t>(bytes[i + 2]));
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])) << 16;
    if (rest == 2) v |= static_cast<uint32_t>(static_cast<uint8_t>(bytes[i + 1])) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string EtcdPutBody(std::string_view key, std::string_view value_base64) {
  std::string body;
  body.reserve(32 + key.size() * 2 + value_base64.size());
  body.append("{\"key\":\"").append(Base64(key)).append("\",\"value\":\"");
  body.append(value_base64).append("\"}");
  return body;
}

}  // namespace dsm::bench

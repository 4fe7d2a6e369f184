#include "bench/dsm_bench/local_cluster.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>

#include "common/local_ports.h"

namespace dsm::bench {

namespace fs = std::filesystem;

bool PeersAlive(const Endpoint& endpoint) {
  HttpConnection conn(endpoint, Millis(2000));
  HttpAnswer answer;
  if (!conn.Request("GET", "/status", "", &answer).ok() || answer.status != 200) return false;
  rapidjson::Document parsed;
  parsed.Parse(answer.body.data(), answer.body.size());
  const rapidjson::Value& doc = parsed;
  if (parsed.HasParseError() || !doc.IsObject()) return false;
  auto it = doc.FindMember("peer_status");
  if (it == doc.MemberEnd() || !it->value.IsObject()) return false;
  for (const auto& peer : it->value.GetObject()) {
    if (!peer.value.IsObject()) return false;
    auto alive = peer.value.FindMember("alive");
    if (alive == peer.value.MemberEnd() || !alive->value.IsBool() || !alive->value.GetBool()) {
      return false;
    }
  }
  return true;
}

Result<uint64_t> LastSeq(const Endpoint& e) {
  HttpConnection conn(e, std::chrono::milliseconds(5000));
  HttpAnswer answer;
  Status s = conn.Request("GET", "/status", "", &answer);
  if (!s.ok()) return s;
  if (answer.status != 200) {
    return Status::Unavailable(e.url + "/status answered " + std::to_string(answer.status));
  }
  rapidjson::Document doc;
  doc.Parse(answer.body.data(), answer.body.size());
  if (doc.HasParseError() || !doc.IsObject()) return Status::Corruption("malformed /status");
  auto it = doc.FindMember("last_seq");
  if (it == doc.MemberEnd() || !it->value.IsUint64()) return Status::Corruption("no last_seq");
  return it->value.GetUint64();
}

// ---------------------------------------------------------------------------------------------
// LocalNode

LocalNode::LocalNode(std::string id, std::string binary, std::vector<std::string> args,
                     std::string log_path, Endpoint endpoint, std::string cluster_token)
    : id_(std::move(id)),
      binary_(std::move(binary)),
      args_(std::move(args)),
      log_path_(std::move(log_path)),
      endpoint_(std::move(endpoint)),
      cluster_token_(std::move(cluster_token)) {}

LocalNode::~LocalNode() { Stop(); }

Status LocalNode::Start() {
  if (pid_ > 0) return Status::InvalidArgument(id_ + " is already running");
  // Everything the child needs is prepared before fork(): after it, only async-signal-safe calls.
  std::vector<std::string> argv_strings;
  argv_strings.push_back(binary_);
  argv_strings.insert(argv_strings.end(), args_.begin(), args_.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return Status::IOError("cannot open " + log_path_ + ": " + std::strerror(errno));
  }
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    ::close(log_fd);
    if (null_fd >= 0) ::close(null_fd);
    return Status::IOError(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
  pid_ = pid;
  return Status::Ok();
}

bool LocalNode::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

Status LocalNode::WaitUp(Millis timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!Running()) {
      return Status::Unavailable(id_ + " exited during start-up; log tail:\n" + LogTail());
    }
    HttpConnection conn(endpoint_, Millis(1000));
    HttpAnswer answer;
    const std::string auth = cluster_token_.empty() ? "" : BearerHeader(cluster_token_);
    if (conn.Request("GET", "/heartbeat", "", &answer, auth).ok() && answer.status == 200) {
      return Status::Ok();
    }
    std::this_thread::sleep_for(Millis(20));
  }
  return Status::Timeout(id_ + " did not answer /heartbeat within " +
                         std::to_string(timeout.count()) + " ms; log tail:\n" + LogTail());
}

void LocalNode::Stop(Millis grace) {
  if (!Running()) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(Millis(10));
  }
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::string LocalNode::LogTail(size_t max_bytes) const {
  std::ifstream in(log_path_, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff start = size > static_cast<std::streamoff>(max_bytes)
                                   ? size - static_cast<std::streamoff>(max_bytes)
                                   : 0;
  in.seekg(start);
  std::string tail(static_cast<size_t>(size - start), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  return tail;
}

Result<std::unique_ptr<LocalNode>> NewLocalNode(const LocalClusterOptions& options,
                                                const std::string& id, const Endpoint& endpoint,
                                                const std::string& peers) {
  const fs::path dir = fs::path(options.root) / id;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::IOError("cannot create " + dir.string() + ": " + ec.message());
  std::vector<std::string> args = {"--port",
                                   std::to_string(endpoint.port),
                                   "--id",
                                   id,
                                   "--peers",
                                   peers,
                                   "--replication_mode",
                                   options.mode,
                                   "--quorum",
                                   std::to_string(options.quorum),
                                   "--data-dir",
                                   (dir / "data").string(),
                                   "--fsync",
                                   options.fsync ? "always" : "never",
                                   "--log-level",
                                   "warn"};
  if (!options.cluster_token.empty()) {
    args.push_back("--cluster-token");
    args.push_back(options.cluster_token);
  }
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  return std::make_unique<LocalNode>(id, options.node_binary, std::move(args),
                                     (dir / "node.log").string(), endpoint, options.cluster_token);
}

// ---------------------------------------------------------------------------------------------
// LocalCluster

LocalCluster::LocalCluster(LocalClusterOptions options) : options_(std::move(options)) {}

LocalCluster::~LocalCluster() { StopAll(); }

Status LocalCluster::Start(Millis timeout) {
  const int n = options_.nodes;
  std::vector<Endpoint> endpoints;
  Result<std::vector<uint16_t>> ports = PickLoopbackPorts(static_cast<size_t>(n));
  if (!ports.ok()) return ports.status();
  const bool https =
      std::any_of(options_.extra_args.begin(), options_.extra_args.end(),
                  [](const std::string& a) { return a.rfind("--tls-cert", 0) == 0; });
  for (uint16_t port : *ports) {
    Result<Endpoint> e =
        ParseEndpoint((https ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(port));
    if (!e.ok()) return e.status();
    e->tls = options_.tls;
    endpoints.push_back(*e);
  }
  for (int i = 0; i < n; ++i) {
    std::string peers;
    for (int j = 0; j < n; ++j) {
      if (j == i) continue;
      if (!peers.empty()) peers += ",";
      peers += endpoints[static_cast<size_t>(j)].url;
    }
    Result<std::unique_ptr<LocalNode>> node = NewLocalNode(
        options_, "node" + std::to_string(i + 1), endpoints[static_cast<size_t>(i)], peers);
    if (!node.ok()) return node.status();
    nodes_.push_back(std::move(node).value());
  }
  for (auto& node : nodes_) {
    if (Status s = node->Start(); !s.ok()) return s;
  }
  for (auto& node : nodes_) {
    if (Status s = node->WaitUp(timeout); !s.ok()) return s;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (auto& node : nodes_) {
    while (!PeersAlive(node->endpoint())) {
      if (std::chrono::steady_clock::now() > deadline) {
        return Status::Timeout(node->id() + " does not see all its peers alive after " +
                               std::to_string(timeout.count()) + " ms");
      }
      std::this_thread::sleep_for(Millis(50));
    }
  }
  return Status::Ok();
}

void LocalCluster::StopAll() {
  // Signal all first, so the nodes shut down in parallel, then reap each.
  for (auto& node : nodes_) {
    if (node->Running()) ::kill(node->pid(), SIGTERM);
  }
  for (auto& node : nodes_) node->Stop();
}

std::vector<Endpoint> LocalCluster::endpoints() const {
  std::vector<Endpoint> out;
  for (const auto& node : nodes_) out.push_back(node->endpoint());
  return out;
}

std::vector<pid_t> LocalCluster::pids() const {
  std::vector<pid_t> out;
  for (const auto& node : nodes_) out.push_back(node->pid());
  return out;
}

}  // namespace dsm::bench

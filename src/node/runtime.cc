#include "src/node/runtime.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <utility>

#include "src/node/listen_probe.h"

namespace dsm {
namespace {

// How often the allocator's free pages go back to the system (ReleaseFreeMemory).
constexpr std::chrono::seconds kMemoryReleaseInterval{10};

std::string JoinPeers(const std::vector<std::string>& peers) {
  std::string out = "[";
  for (size_t i = 0; i < peers.size(); ++i) {
    if (i > 0) out += ",";
    out += peers[i];
  }
  return out + "]";
}

}  // namespace

Runtime::Runtime(NodeConfig config) : config_(std::move(config)) {}

Runtime::~Runtime() { Stop(); }

Status Runtime::Start() {
  const NodeOptions& o = config_.node;
  if (!o.fsync) {
    spdlog::warn(
        "--fsync never: writes are NOT synced to disk; messages acknowledged with 200 can be LOST "
        "if the machine or the process crashes. Use only for benchmarks.");
  }

  // A node that cannot listen must not have created its data directory (and a new incarnation)
  // first: the address is checked before the store is opened.
  if (Status s = ProbeListen(o.host, o.port); !s.ok()) return s;

  RocksLogStoreOptions store_options;
  store_options.path = o.data_dir;
  store_options.node_id = o.id;
  store_options.sync = o.fsync;
  store_options.min_free_bytes = config_.min_free_disk_bytes;
  store_options.memory_budget_bytes = config_.memory_budget_bytes;
  store_options.notifier = &append_notifier_;  // wakes live readers (long-polls, streams)
  store_options.info_log = [](const std::string& line) { spdlog::info("{}", line); };
  Result<std::unique_ptr<RocksLogStore>> store = RocksLogStore::Open(store_options);
  if (!store.ok()) return store.status();
  store_ = std::move(store).value();
  durable_ = std::make_unique<DurableConsumers>(store_.get(), store_->consumer_state(), &clock_,
                                                &append_notifier_);
  if (Status s = durable_->Start(); !s.ok()) {
    Stop();
    return s;
  }

  PeerClientOptions peer_options;
  peer_options.connect_timeout = o.connect_timeout;
  peer_options.request_timeout = o.request_timeout;
  peer_options.max_payload_bytes = o.max_message_bytes;
  peer_options.sync_page_bytes = o.batch_bytes;
  peer_options.cluster_token = config_.cluster_token;
  peer_options.self_stream = store_->stream_id();
  peer_options.ca_file = config_.tls.ca_file;
  peer_options.cert_file = config_.tls.peer_cert_file;
  peer_options.key_file = config_.tls.peer_key_file;
  peers_ = std::make_unique<PeerClient>(o.peers, peer_options);

  node_ = std::make_unique<Node>(o, store_.get(), peers_.get(), &clock_);
  node_->SetEventLog([](EventLevel level, const std::string& text) {
    if (level == EventLevel::kWarning) {
      spdlog::warn("{}", text);
    } else {
      spdlog::info("{}", text);
    }
  });
  node_->SetExecutor([this](std::function<void()> task) { replication_.Post(std::move(task)); });
  node_->SetStorageExecutor(
      [this](std::function<void()> task) { storage_executor_.Post(std::move(task)); });
  node_->SetWakeup([this] { replication_.Wakeup(); });

  HttpServerOptions server_options;
  server_options.threads = config_.http_threads;
  server_options.append_notifier = &append_notifier_;
  server_options.cluster_token = config_.cluster_token;
  server_options.client_token = config_.client_token;
  server_options.max_connections = config_.max_connections;
  server_options.max_pending_quorum_writes = config_.max_pending_quorum_writes;
  server_options.max_connections_per_ip = config_.max_connections_per_ip;
  server_options.max_header_bytes = config_.max_header_bytes;
  server_options.max_inflight_body_bytes = static_cast<size_t>(config_.max_inflight_body_bytes);
  server_options.allowed_hosts = config_.allowed_hosts;
  server_options.tls = config_.tls;
  server_options.durable_consumers = durable_.get();
  server_ = std::make_unique<HttpServer>(o, node_.get(), store_.get(), &clock_, server_options);

  Status s = peers_->Start();
  if (!s.ok()) {
    Stop();
    return s;
  }
  storage_executor_.Start();
  replication_.Start([this] {
    node_->Tick();
    return node_->NextDeadline();
  });
  memory_releaser_ = std::jthread([](std::stop_token stop) { ReleaseFreeMemory(stop); });
  node_->Start();
  s = server_->Start();
  if (!s.ok()) {
    Stop();
    return s;
  }
  spdlog::info(
      "dsm-node {} listening on {}://{}:{} mode={} quorum={} peers={} data_dir={} fsync={} "
      "stream={} last_seq={}",
      o.id, config_.tls.serving() ? "https" : "http", o.host, server_->port(), ModeName(o.mode),
      o.quorum, JoinPeers(o.peers), o.data_dir, o.fsync ? "always" : "never", store_->stream_id(),
      store_->LastSeq());
  // Whether tokens are required, never the tokens themselves.
  spdlog::info(
      "cluster token {}, client token {}, client certificates {}, max connections {}, max "
      "pending quorum writes {}",
      config_.cluster_token.empty() ? "off" : "required",
      config_.tls.client_ca_file.empty() ? "off" : "required",
      config_.client_token.empty() ? "off" : "required", config_.max_connections,
      config_.max_pending_quorum_writes);
  return Status::Ok();
}

void Runtime::Stop() {
  if (node_) node_->Stop();
  if (server_) server_->Shutdown();
  replication_.Stop();
  if (peers_) peers_->Stop();
  storage_executor_.Stop();  // after the peer client: its last answers may queue log work
  if (durable_) durable_->Stop();
  server_.reset();
  node_.reset();
  peers_.reset();
  durable_.reset();  // before the store that holds its state
  store_.reset();
}

uint16_t Runtime::port() const { return server_ ? server_->port() : 0; }

const std::string& Runtime::stream_id() const {
  static const std::string kNone;
  return store_ ? store_->stream_id() : kNone;
}

// The block cache's blocks come and go in every size on every thread; glibc's allocator keeps
// what they free in its per-thread arenas, and without this the node's resident memory grew
// past its --memory-mb by the size of those free fragments (60-160 MiB at 3-5 million messages
// on a 3-node cluster, docs/operations.md "Memory"). malloc_trim(0) returns the free pages of
// every arena to the system, once per kMemoryReleaseInterval, on a thread of its own: it takes
// about a millisecond, sometimes tens, locking one arena at a time.
void Runtime::ReleaseFreeMemory(std::stop_token stop) {
  std::mutex mu;
  std::condition_variable_any wake;
  std::unique_lock lock(mu);
  while (true) {
    wake.wait_for(lock, stop, kMemoryReleaseInterval, [] { return false; });
    if (stop.stop_requested()) return;
    ::malloc_trim(0);
  }
}

}  // namespace dsm

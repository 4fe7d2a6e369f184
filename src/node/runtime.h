// Runtime: the composition root of dsm-node. It builds and connects the real implementations -
// the RocksDB log (RocksLogStore), the libcurl peer client (PeerClient), the replication core
// (Node) on the system clock, the HTTP server (HttpServer) - and owns the Node's two threads
// (src/node/serial_executor.h): the replication thread, which handles its events (peer answers,
// log completions) and runs Node::Tick() at Node::NextDeadline() or when the Node asks for it,
// and the storage thread for its log work.
//
// Shutdown order (Stop): the Node stops first, so its pending quorum waits are answered while the
// server still delivers answers; then the server (answers in flight are written), the
// replication thread, the peer client (its outstanding requests complete with "shutting down"
// into the still existing Node), the storage thread; then the Node is destroyed and the store
// closed.
//
// Thread safety: Start() and Stop() are called by the owning thread. Signals are the caller's
// business (dsm-node blocks SIGINT/SIGTERM in every thread and waits for them in main).
#pragma once

#include <cstdint>
#include <memory>
#include <stop_token>
#include <thread>

#include "core/node.h"
#include "dsm/clock.h"
#include "dsm/status.h"
#include "src/durable/durable_consumers.h"
#include "src/http/peer_client.h"
#include "src/http/server.h"
#include "src/node/command_line.h"
#include "src/node/serial_executor.h"
#include "storage/rocks_log_store.h"

namespace dsm {

class Runtime {
 public:
  explicit Runtime(NodeConfig config);
  ~Runtime();  // Stop()
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Checks that the HTTP address can be listened on (src/node/listen_probe.h: a busy port fails
  // here, before any data directory is created), then opens the data directory, starts the peer
  // client, the Node's threads, replication and the HTTP server. Errors carry a one-line reason
  // (the data directory or the address that failed); whatever was started is stopped again.
  // REQUIRES: called at most once.
  Status Start();

  // The ordered shutdown described above. Idempotent.
  void Stop();

  // The port the HTTP server listens on (after a successful Start()).
  uint16_t port() const;
  // This data directory's own stream id (after a successful Start()).
  const std::string& stream_id() const;

 private:
  const NodeConfig config_;
  SystemClock clock_;
  // Told by the store about every durable write; the server's live readers wait on it. Declared
  // before the store and the server, which use it, so it outlives both.
  AppendNotifier append_notifier_;
  std::unique_ptr<RocksLogStore> store_;
  // Durable consumers (/consumers...), on the store's "consumers" family. Stopped by the server's
  // shutdown, destroyed before the store.
  std::unique_ptr<DurableConsumers> durable_;
  std::unique_ptr<PeerClient> peers_;
  std::unique_ptr<Node> node_;
  std::unique_ptr<HttpServer> server_;
  // The replication thread: the Node's events (Node::SetExecutor) and Node::Tick() at
  // Node::NextDeadline(). Stopped after the server (which waits for answers it produces).
  SerialExecutor replication_;
  // The replication core's log work (Node::SetStorageExecutor). Stopped after the peer client
  // (its last answers may queue log work), before node_ is destroyed (Stop()).
  SerialExecutor storage_executor_;
  // Returns the allocator's free memory to the system every few seconds until `stop`.
  static void ReleaseFreeMemory(std::stop_token stop);
  std::jthread memory_releaser_;  // runs ReleaseFreeMemory; stopped and joined by its destructor
};

}  // namespace dsm

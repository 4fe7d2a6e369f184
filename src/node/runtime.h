// Runtime: the composition root of dsm-node. It builds and connects the real implementations -
// the RocksDB log (RocksLogStore), the libcurl peer client (PeerClient), the replication core
// (Node) on the system clock, the HTTP server (HttpServer) - and owns the one replication thread
// that handles the Node's completions (peer answers, log writes: Node::SetExecutor) and runs
// Node::Tick() at Node::NextDeadline() or when the Node asks for it.
//
// Shutdown order (Stop): the Node stops first, so its pending quorum waits are answered while the
// server still delivers answers; then the server (answers in flight are written), the driver
// thread, the peer client (its outstanding requests complete with "shutting down" into the still
// existing Node); then the Node is destroyed and the store closed.
//
// Thread safety: Start() and Stop() are called by the owning thread. Signals are the caller's
// business (dsm-node blocks SIGINT/SIGTERM in every thread and waits for them in main).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>

#include "common/thread_annotations.h"
#include "core/node.h"
#include "dsm/clock.h"
#include "dsm/status.h"
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

  // Opens the data directory, starts the peer client, the driver thread, replication and the
  // HTTP server. Errors carry a one-line reason (the data directory or the address that failed);
  // whatever was started is stopped again. REQUIRES: called at most once.
  Status Start();

  // The ordered shutdown described above. Idempotent.
  void Stop() LOCKS_EXCLUDED(mu_);

  // The port the HTTP server listens on (after a successful Start()).
  uint16_t port() const;
  // This data directory's own stream id (after a successful Start()).
  const std::string& stream_id() const;

 private:
  // The replication thread: runs the Node's posted completions (peer answers, log writes), then
  // Tick(), then waits until NextDeadline(), a wakeup or a new task.
  void Drive() LOCKS_EXCLUDED(mu_);
  // Queues `task` for the replication thread (or runs it at once once that thread is gone).
  void Post(std::function<void()> task) LOCKS_EXCLUDED(mu_);

  const NodeConfig config_;
  SystemClock clock_;
  // Told by the store about every durable write; the server's live readers wait on it. Declared
  // before the store and the server, which use it, so it outlives both.
  AppendNotifier append_notifier_;
  std::unique_ptr<RocksLogStore> store_;
  std::unique_ptr<PeerClient> peers_;
  std::unique_ptr<Node> node_;
  std::unique_ptr<HttpServer> server_;
  std::thread driver_;
  // The replication core's log work (Node::SetStorageExecutor). Declared after node_'s users and
  // stopped before node_ is destroyed (Stop()).
  SerialExecutor storage_executor_;

  Mutex mu_;
  // Notified by the Node's wakeup callback (its next deadline may be earlier) and by Stop().
  CondVar cv_;
  bool wakeup_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  // Completions posted by the Node (each notifies cv_); drained_ once the thread has left.
  std::deque<std::function<void()>> tasks_ GUARDED_BY(mu_);
  bool drained_ GUARDED_BY(mu_) = false;
};

}  // namespace dsm

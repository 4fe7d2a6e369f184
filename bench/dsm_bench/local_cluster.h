// LocalCluster: the dsm-node processes dsm-bench starts for itself - a full mesh on 127.0.0.1
// with ephemeral ports, one data directory and one log file per node under a root directory.
//
// Children die with the thread that spawned them (PR_SET_PDEATHSIG), so a killed dsm-bench leaves
// no node behind; spawn (Start, Restart) from the main thread only. The destructor stops every
// node (SIGTERM, then SIGKILL after a grace period) and reaps it; the root directory is the
// caller's.
//
// Thread safety: used by one thread; endpoints() and pids() return copies that any thread may
// read.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/dsm_bench/http_client.h"
#include "common/local_ports.h"
#include "dsm/status.h"

namespace dsm::bench {

using Millis = std::chrono::milliseconds;

struct LocalClusterOptions {
  std::string node_binary;  // path of dsm-node
  std::string root;         // node<i>/data and node<i>/node.log go here
  int nodes = 3;
  bool fsync = true;
  std::string mode = "sync_quorum";  // --replication_mode of every node
  int quorum = 2;
  std::vector<std::string> extra_args;  // appended to every node's command line
  // With --tls-cert among extra_args the nodes serve HTTPS and peer over https://; they are
  // verified with `tls` (its CA must also be given to the nodes: --tls-ca).
  TlsClientFiles tls;
  // --cluster-token of every node (none when empty); LocalNode presents it where it must (the
  // node answers /heartbeat only with it).
  std::string cluster_token;
};

// One dsm-node child process.
class LocalNode {
 public:
  LocalNode(std::string id, std::string binary, std::vector<std::string> args, std::string log_path,
            Endpoint endpoint, std::string cluster_token = "");
  ~LocalNode();  // Stop()
  LocalNode(const LocalNode&) = delete;
  LocalNode& operator=(const LocalNode&) = delete;

  // Spawns the process. REQUIRES: not running; called from the main thread.
  Status Start();
  // Polls GET /heartbeat until it answers 200; fails early when the process exits.
  Status WaitUp(Millis timeout);
  // SIGTERM, waits up to `grace`, then SIGKILL. No-op when not running.
  void Stop(Millis grace = Millis(10000));
  bool Running();

  const std::string& id() const { return id_; }
  const Endpoint& endpoint() const { return endpoint_; }
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  // The last `max_bytes` of the log file.
  std::string LogTail(size_t max_bytes = 2000) const;

 private:
  const std::string id_;
  const std::string binary_;
  const std::vector<std::string> args_;
  const std::string log_path_;
  const Endpoint endpoint_;
  const std::string cluster_token_;
  pid_t pid_ = -1;
};

class LocalCluster {
 public:
  explicit LocalCluster(LocalClusterOptions options);
  ~LocalCluster();

  // Starts every node, waits until each answers /heartbeat and reports all its peers alive in
  // /status. Errors name the node and carry its log tail.
  Status Start(Millis timeout);
  void StopAll();

  size_t size() const { return nodes_.size(); }
  LocalNode& node(size_t i) { return *nodes_[i]; }
  std::vector<Endpoint> endpoints() const;
  std::vector<pid_t> pids() const;
  const LocalClusterOptions& options() const { return options_; }

 private:
  const LocalClusterOptions options_;
  std::vector<std::unique_ptr<LocalNode>> nodes_;
};

// A node as LocalCluster starts them (`options`' binary, mode, quorum, fsync, extra arguments and
// token), not started yet: `id`, listening at `endpoint` (127.0.0.1), replicating with `peers`
// (comma-separated URLs), its data directory and log in <options.root>/<id>/ (created here).
Result<std::unique_ptr<LocalNode>> NewLocalNode(const LocalClusterOptions& options,
                                                const std::string& id, const Endpoint& endpoint,
                                                const std::string& peers);

// The last seq of the node at `e` (GET /status), or an error.
Result<uint64_t> LastSeq(const Endpoint& e);

// True when `endpoint`'s /status lists every peer as alive.
bool PeersAlive(const Endpoint& endpoint);

}  // namespace dsm::bench

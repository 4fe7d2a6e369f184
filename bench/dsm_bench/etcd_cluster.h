// EtcdCluster: the 3-member etcd cluster dsm-bench starts for `--compare etcd` - etcd processes
// on 127.0.0.1 with ephemeral client and peer ports, one data directory and one log file per
// member under a root directory, etcd's own defaults otherwise (its WAL is fsynced before a write
// is acknowledged; etcd has no option to turn that off). The load itself is RunLoad's
// (LoadKind::kEtcdPut) against the leader's v3 JSON gateway.
//
// Each member is a LocalNode (local_cluster.h), so the same rules hold: spawn from the main thread
// only, children die with the thread that spawned them (PR_SET_PDEATHSIG), the destructor stops
// every member (SIGTERM, then SIGKILL after a grace period) and reaps it; the root directory is
// the caller's.
//
// Thread safety: used by one thread; endpoints() and pids() return copies any thread may read.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bench/dsm_bench/http_client.h"
#include "bench/dsm_bench/local_cluster.h"
#include "dsm/status.h"

namespace dsm::bench {

struct EtcdClusterOptions {
  std::string binary;  // path of the etcd executable
  std::string root;    // <member>/data and <member>/etcd.log go here
  int members = 3;
};

class EtcdCluster {
 public:
  explicit EtcdCluster(EtcdClusterOptions options);
  ~EtcdCluster();  // StopAll()
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  // Starts every member and waits until each answers POST /v3/maintenance/status naming the same
  // leader. Errors name the member and carry its log tail; Unavailable("interrupted") when `stop`
  // is set meanwhile.
  Status Start(Millis timeout, const std::atomic<bool>& stop);
  // Asks every member's /v3/maintenance/status for the leader and returns the leader's client
  // endpoint. Errors: Unavailable when no member names a leader that is one of them.
  Result<Endpoint> Leader();
  // The etcd version the members report (from their status), empty before Start succeeded.
  const std::string& version() const { return version_; }
  // Every member still running.
  Status Alive();
  void StopAll();

  std::vector<Endpoint> endpoints() const;
  std::vector<pid_t> pids() const;

 private:
  const EtcdClusterOptions options_;
  std::vector<std::unique_ptr<LocalNode>> members_;
  std::string version_;
};

// The etcd executable to run: `configured` when it is not empty (it must be executable), else
// "etcd" searched in $PATH. Empty when there is none.
std::string FindEtcd(const std::string& configured);

// Standard base64 (RFC 4648, with padding), as etcd's JSON gateway wants keys and values.
std::string Base64(std::string_view bytes);

// The body of a put of `key` (raw) with a value already base64-encoded:
// {"key":"<base64 key>","value":"<value_base64>"}.
std::string EtcdPutBody(std::string_view key, std::string_view value_base64);

}  // namespace dsm::bench

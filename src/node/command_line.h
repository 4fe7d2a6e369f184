// The dsm-node command line: the seed prototype's options (--port, --id, --peers,
// --replication_mode, --quorum, --host) plus storage, timing and server options, parsed with CLI11
// and validated into a NodeConfig. Everything that can be judged without touching the system is
// checked here (ranges, URLs, a peer that is this node itself); the port and the data directory
// are checked when the runtime opens them. Pure functions, thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dsm/options.h"
#include "dsm/status.h"
#include "src/http/tls.h"

namespace dsm {

struct NodeConfig {
  NodeOptions node;
  int http_threads = 4;  // --http-threads
  // Shared secrets (src/http/auth.h); empty = not required. Never logged or shown.
  std::string cluster_token;             // --cluster-token or $DSM_CLUSTER_TOKEN
  std::string client_token;              // --client-token or $DSM_CLIENT_TOKEN
  int max_connections = 256;             // --max-connections (0 = unlimited)
  int max_pending_quorum_writes = 1024;  // --max-pending-quorum-writes (0 = unlimited)
  // The edge's limits (src/http/edge.h, docs/operations.md).
  int max_connections_per_ip = 64;                    // --max-connections-per-ip (0 = unlimited)
  size_t max_header_bytes = 16 << 10;                 // --max-header-bytes
  uint64_t max_inflight_body_bytes = uint64_t{128} << 20;  // --max-inflight-body-mb (0 = unlimited)
  std::vector<std::string> allowed_hosts;             // --allowed-hosts (lower case)
  uint64_t min_free_disk_bytes = uint64_t{256} << 20;  // --min-free-disk-mb (0 = no check)
  // --tls-cert, --tls-key, --tls-client-ca, --tls-ca, --tls-peer-cert, --tls-peer-key: paired
  // and consistent with the peers' schemes here; their contents are checked by
  // http::CheckTlsFiles at start-up.
  http::TlsFiles tls;
  // RocksDB's memtables and block cache together (RocksLogStoreOptions::memory_budget_bytes).
  uint64_t memory_budget_bytes = uint64_t{256} << 20;  // --memory-mb
  std::string log_level = "info";  // --log-level: trace|debug|info|warn|error|critical|off
  bool help = false;               // --help was given: print help_text and exit 0
  std::string help_text;
};

// Parses and validates argv (argv[0] is the program name). Errors: InvalidArgument with a
// one-line reason, e.g. "--quorum 5 is more than the 3 nodes of the cluster (2 peers + this one)".
Result<NodeConfig> ParseCommandLine(int argc, const char* const* argv);

// "0", or a whole number with a unit s, m, h, d or w ("12h", "7d"). `option` names the option
// in the error.
Result<std::chrono::seconds> ParseDuration(std::string_view text, std::string_view option);
// A whole number of bytes with an optional unit B, K/KiB, M/MiB, G/GiB or T/TiB (powers of 1024).
Result<uint64_t> ParseByteSize(std::string_view text, std::string_view option);

}  // namespace dsm

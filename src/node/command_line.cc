#include "src/node/command_line.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "common/peer_url.h"
#include "src/http/auth.h"
#include "storage/rocks_log_store.h"

namespace dsm {
namespace {

constexpr int64_t kMaxMessageBytesLimit = int64_t{64} << 20;
constexpr int kMaxHttpThreads = 64;
constexpr int64_t kMaxQuorum = 1000;
constexpr int64_t kMinMemoryMb = static_cast<int64_t>(kMinMemoryBudgetBytes >> 20);
constexpr int64_t kMaxMemoryMb = int64_t{1} << 20;  // 1 TiB

std::string Trim(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

Status CheckPositiveMillis(const char* name, int64_t value) {
  if (value < 1 || value > int64_t{24} * 3600 * 1000) {
    return Status::InvalidArgument(std::string(name) + " " + std::to_string(value) +
                                   " must be between 1 and 86400000 milliseconds");
  }
  return Status::Ok();
}

}  // namespace

Result<std::chrono::seconds> ParseDuration(std::string_view text, std::string_view option) {
  const auto bad = [&] {
    return Status::InvalidArgument(std::string(option) + " '" + std::string(text) +
                                   "' must be a whole number with a unit s, m, h, d or w (e.g. "
                                   "12h, 7d), or 0");
  };
  if (text == "0") return std::chrono::seconds(0);
  if (text.size() < 2) return bad();
  const char unit = text.back();
  const std::string_view digits = text.substr(0, text.size() - 1);
  if (digits.empty() || digits.size() > 9 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return bad();
  }
  int64_t per = 0;
  switch (unit) {
    case 's': per = 1; break;
    case 'm': per = 60; break;
    case 'h': per = 3600; break;
    case 'd': per = 86400; break;
    case 'w': per = 7 * 86400; break;
    default: return bad();
  }
  return std::chrono::seconds(std::stoll(std::string(digits)) * per);
}

Result<uint64_t> ParseByteSize(std::string_view text, std::string_view option) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  const std::string_view unit = text.substr(digits);
  uint64_t per = 0;
  if (unit.empty() || unit == "B") {
    per = 1;
  } else if (unit == "KiB" || unit == "K") {
    per = uint64_t{1} << 10;
  } else if (unit == "MiB" || unit == "M") {
    per = uint64_t{1} << 20;
  } else if (unit == "GiB" || unit == "G") {
    per = uint64_t{1} << 30;
  } else if (unit == "TiB" || unit == "T") {
    per = uint64_t{1} << 40;
  }
  if (digits == 0 || digits > 12 || per == 0) {
    return Status::InvalidArgument(std::string(option) + " '" + std::string(text) +
                                   "' must be a whole number of bytes, optionally with a unit K, "
                                   "M, G or T (powers of 1024; e.g. 512M, 20G), or 0");
  }
  return static_cast<uint64_t>(std::stoull(std::string(text.substr(0, digits)))) * per;
}

Result<NodeConfig> ParseCommandLine(int argc, const char* const* argv) {
  NodeConfig config;
  NodeOptions& o = config.node;

  // Values are read into wide integers and range-checked below, so that every range error reads
  // the same way.
  int64_t port = o.port;
  std::string peers;
  std::string mode = "async";
  int64_t quorum = o.quorum;
  std::string fsync = "always";
  int64_t max_message_bytes = static_cast<int64_t>(o.max_message_bytes);
  int64_t heartbeat_interval_ms = o.heartbeat_interval.count();
  int64_t heartbeat_timeout_ms = o.heartbeat_timeout.count();
  int64_t quorum_timeout_ms = o.quorum_timeout.count();
  int64_t anti_entropy_interval_ms = o.anti_entropy_interval.count();
  int64_t request_timeout_ms = o.request_timeout.count();
  int64_t push_window = static_cast<int64_t>(o.push_window);
  int64_t learner_max_lag = static_cast<int64_t>(o.learner_max_lag);
  int64_t push_window_mb = static_cast<int64_t>(o.push_window_bytes >> 20);
  int64_t http_threads = config.http_threads;
  int64_t max_connections = config.max_connections;
  int64_t max_pending_quorum_writes = config.max_pending_quorum_writes;
  int64_t min_free_disk_mb = static_cast<int64_t>(config.min_free_disk_bytes >> 20);
  int64_t memory_mb = static_cast<int64_t>(config.memory_budget_bytes >> 20);
  int64_t max_connections_per_ip = config.max_connections_per_ip;
  int64_t max_header_bytes = static_cast<int64_t>(config.max_header_bytes);
  int64_t max_inflight_body_mb = static_cast<int64_t>(config.max_inflight_body_bytes >> 20);
  std::string allowed_hosts;
  std::string retention_max_age = "0";
  int64_t retention_max_messages = 0;
  std::string retention_max_bytes = "0";
  std::string dedup_retention;
  int64_t retention_interval_ms = o.retention_interval.count();

  CLI::App app("dsm-node: one node of a durable replicated messaging cluster", "dsm-node");
  app.add_option("--port", port, "TCP port of the HTTP API")->capture_default_str();
  app.add_option("--id", o.id, "node id (letters, digits, '.', '_', '-'; at most 64)")->required();
  app.add_option(
      "--peers", peers,
      "comma-separated peer base URLs, e.g. \"http://127.0.0.1:8001,http://127.0.0.1:8002\"");
  app.add_option(
         "--replication_mode,--replication-mode", mode,
         "async: acknowledge once fsynced locally; sync_quorum: once --quorum nodes hold it")
      ->capture_default_str();
  app.add_option("--quorum", quorum,
                 "nodes (this one included) that must hold a message before a "
                 "sync_quorum acknowledgement")
      ->capture_default_str();
  app.add_option("--host", o.host, "address to listen on")->capture_default_str();
  app.add_option("--data-dir", o.data_dir, "data directory (default ./data/<id>)");
  app.add_option("--fsync", fsync,
                 "always: every acknowledged write is on disk; never: faster, but acknowledged "
                 "messages can be lost on a crash")
      ->capture_default_str();
  app.add_option("--max-message-bytes", max_message_bytes, "largest accepted payload")
      ->capture_default_str();
  app.add_option("--heartbeat-interval-ms", heartbeat_interval_ms, "heartbeat period")
      ->capture_default_str();
  app.add_option("--heartbeat-timeout-ms", heartbeat_timeout_ms,
                 "a peer without a successful exchange for this long is dead")
      ->capture_default_str();
  app.add_option("--quorum-timeout-ms", quorum_timeout_ms,
                 "a quorum write not confirmed within this answers 504")
      ->capture_default_str();
  app.add_option("--anti-entropy-interval-ms", anti_entropy_interval_ms,
                 "period of the catch-up pull from each peer")
      ->capture_default_str();
  app.add_option("--request-timeout-ms", request_timeout_ms, "deadline of one request to a peer")
      ->capture_default_str();
  app.add_option("--push-window", push_window,
                 "push batches in flight to one peer at a time (behind the first, only full "
                 "ones; 1: one at a time)")
      ->capture_default_str();
  app.add_option("--push-window-mb", push_window_mb,
                 "MiB of push batches in flight to one peer at a time (one batch always may be)")
      ->capture_default_str();
  app.add_option("--learner-max-lag", learner_max_lag,
                 "a member added by POST /cluster/members counts toward no quorum until it lacks "
                 "at most this many messages of what each live member holds")
      ->capture_default_str();
  app.add_option("--http-threads", http_threads, "HTTP server threads")->capture_default_str();
  // No default is shown for the tokens, and their values never appear in errors or logs. The
  // environment variables keep them out of the process list.
  CLI::Option* cluster_token_option = app.add_option("--cluster-token", config.cluster_token,
                 "shared secret of the cluster: sent to peers and required on /replicate, /sync "
                 "and /heartbeat (401 without it)")
      ->envname("DSM_CLUSTER_TOKEN");
  CLI::Option* client_token_option = app.add_option("--client-token", config.client_token,
                 "secret required on the client endpoints (/send, /messages, /status, ...); the "
                 "cluster token is accepted there too")
      ->envname("DSM_CLIENT_TOKEN");
  http::TlsFiles& tls = config.tls;
  app.add_option("--tls-cert", tls.cert_file,
                 "serve the API over HTTPS with this PEM certificate (chain); needs --tls-key");
  app.add_option("--tls-key", tls.key_file, "PEM private key of --tls-cert (unencrypted)");
  app.add_option("--tls-client-ca", tls.client_ca_file,
                 "require a client certificate signed by this PEM CA on every connection "
                 "(peers, clients, the dashboard); needs --tls-cert");
  app.add_option("--tls-ca", tls.ca_file,
                 "PEM CA that https:// peers' certificates must be signed by (host names are "
                 "verified too); required with https peers");
  app.add_option("--tls-peer-cert", tls.peer_cert_file,
                 "PEM client certificate presented to peers that require one; needs "
                 "--tls-peer-key");
  app.add_option("--tls-peer-key", tls.peer_key_file, "PEM private key of --tls-peer-cert");
  app.add_option("--max-connections", max_connections,
                 "open connections beyond this are answered 503 and closed (0: no limit)")
      ->capture_default_str();
  app.add_option("--max-connections-per-ip", max_connections_per_ip,
                 "open connections from one address beyond this are answered 503 and closed; "
                 "the peers' addresses are exempt (0: no limit)")
      ->capture_default_str();
  app.add_option("--max-header-bytes", max_header_bytes,
                 "request heads (request line and headers) larger than this, or with more than "
                 "100 header lines, are answered 431 and the connection is closed")
      ->capture_default_str();
  app.add_option("--max-inflight-body-mb", max_inflight_body_mb,
                 "request bodies being received by the node, counted by their declared length: "
                 "a request beyond this is answered 503 before its body is read (0: no limit)")
      ->capture_default_str();
  app.add_option("--allowed-hosts", allowed_hosts,
                 "comma-separated host names that requests may name in their Host header while "
                 "the node listens on a loopback address (besides localhost, 127.x.y.z and "
                 "[::1])");
  app.add_option("--max-pending-quorum-writes", max_pending_quorum_writes,
                 "quorum writes waiting for acknowledgements beyond this are refused with 503 "
                 "(0: no limit)")
      ->capture_default_str();
  app.add_option("--min-free-disk-mb", min_free_disk_mb,
                 "refuse new messages (503 \"disk full\") while the data directory's file system "
                 "has less free space than this (0: no check)")
      ->capture_default_str();
  app.add_option("--retention-max-age", retention_max_age,
                 "trim messages older than this (e.g. 12h, 7d; 0: no age limit) once every peer "
                 "holds them")
      ->capture_default_str();
  app.add_option("--retention-max-messages", retention_max_messages,
                 "keep at most this many messages, trimming the oldest once every peer holds "
                 "them (0: no limit)")
      ->capture_default_str();
  app.add_option("--retention-max-bytes", retention_max_bytes,
                 "keep the stored messages under this size (e.g. 20G; 0: no limit), trimming the "
                 "oldest even before every peer holds them (logged and counted)")
      ->capture_default_str();
  app.add_option("--dedup-retention", dedup_retention,
                 "a retry of a trimmed message is recognised by its msg_id until the message is "
                 "this old (default: --retention-max-age plus 1d, or 1d; 0: forever)");
  app.add_option("--retention-interval-ms", retention_interval_ms,
                 "how often retention checks the limits while nothing is to trim")
      ->capture_default_str();
  app.add_option("--memory-mb", memory_mb,
                 "memory budget of the storage engine: its memtables and block cache together "
                 "(see docs/operations.md, \"Memory\")")
      ->capture_default_str();
  app.add_option("--log-level", config.log_level,
                 "trace, debug, info, warn, error, critical or off")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    config.help = true;
    config.help_text = app.help();
    return config;
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    return Status::InvalidArgument(Trim(msg));
  }

  if (!ValidNodeId(o.id)) {
    return Status::InvalidArgument("--id '" + o.id +
                                   "' must be 1..64 letters, digits, '.', '_' or '-'");
  }
  if (port < 1 || port > 65535) {
    return Status::InvalidArgument("--port " + std::to_string(port) +
                                   " must be between 1 and 65535");
  }
  o.port = static_cast<uint16_t>(port);
  if (Trim(o.host).empty()) return Status::InvalidArgument("--host must not be empty");
  o.host = Trim(o.host);

  if (mode == "async") {
    o.mode = ReplicationMode::kAsync;
  } else if (mode == "sync_quorum") {
    o.mode = ReplicationMode::kSyncQuorum;
  } else {
    return Status::InvalidArgument("--replication_mode '" + mode +
                                   "' is unknown: use async or sync_quorum");
  }

  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return Status::InvalidArgument("--tls-cert and --tls-key must be given together");
  }
  if (tls.peer_cert_file.empty() != tls.peer_key_file.empty()) {
    return Status::InvalidArgument("--tls-peer-cert and --tls-peer-key must be given together");
  }
  if (!tls.client_ca_file.empty() && tls.cert_file.empty()) {
    return Status::InvalidArgument(
        "--tls-client-ca needs --tls-cert and --tls-key (client certificates are checked only "
        "over HTTPS)");
  }

  std::set<std::string> seen;
  size_t start = 0;
  while (start <= peers.size()) {
    size_t comma = peers.find(',', start);
    if (comma == std::string::npos) comma = peers.size();
    std::string item = Trim(std::string_view(peers).substr(start, comma - start));
    start = comma + 1;
    if (item.empty()) continue;  // "" means no peers; stray commas are harmless
    Result<std::string> url = NormalizePeerUrl(item);
    if (!url.ok()) return url.status();
    std::string scheme;
    std::string host;
    int peer_port = 0;
    SplitUrl(*url, &scheme, &host, &peer_port);
    if (scheme == "https" && config.tls.ca_file.empty()) {
      return Status::InvalidArgument("peer " + *url +
                                     " uses https: --tls-ca must name the CA that signed the "
                                     "peers' certificates");
    }
    if (IsSelf(host, peer_port, o.host, o.port)) {
      return Status::InvalidArgument("peer " + *url + " is this node itself (--host " + o.host +
                                     " --port " + std::to_string(o.port) + ")");
    }
    if (!seen.insert(*url).second) {
      return Status::InvalidArgument("peer " + *url + " is listed twice");
    }
    o.peers.push_back(*url);
  }

  const int64_t cluster = static_cast<int64_t>(o.peers.size()) + 1;
  if (quorum < 1) {
    return Status::InvalidArgument("--quorum " + std::to_string(quorum) + " must be at least 1");
  }
  // In async mode the quorum only serves requests that ask for "ack":"quorum"; a larger value
  // than the cluster is refused there (503) rather than at start-up, so that the seed's async
  // command lines (default quorum 2) run even without peers.
  if (o.mode == ReplicationMode::kSyncQuorum && quorum > cluster) {
    const size_t peers_count = o.peers.size();
    const std::string cluster_text =
        peers_count == 0 ? "the 1 node of the cluster (no peers)"
                         : "the " + std::to_string(cluster) + " nodes of the cluster (" +
                               std::to_string(peers_count) +
                               (peers_count == 1 ? " peer" : " peers") + " + this one)";
    return Status::InvalidArgument("--quorum " + std::to_string(quorum) + " is more than " +
                                   cluster_text);
  }
  if (quorum > kMaxQuorum) {
    return Status::InvalidArgument("--quorum " + std::to_string(quorum) + " must be at most " +
                                   std::to_string(kMaxQuorum));
  }
  o.quorum = static_cast<int>(quorum);

  if (o.data_dir.empty()) o.data_dir = "./data/" + o.id;

  if (fsync == "always") {
    o.fsync = true;
  } else if (fsync == "never") {
    o.fsync = false;
  } else {
    return Status::InvalidArgument("--fsync '" + fsync + "' is unknown: use always or never");
  }

  if (max_message_bytes < 1 || max_message_bytes > kMaxMessageBytesLimit) {
    return Status::InvalidArgument("--max-message-bytes " + std::to_string(max_message_bytes) +
                                   " must be between 1 and " +
                                   std::to_string(kMaxMessageBytesLimit));
  }
  o.max_message_bytes = static_cast<size_t>(max_message_bytes);

  const std::pair<const char*, int64_t> millis[] = {
      {"--heartbeat-interval-ms", heartbeat_interval_ms},
      {"--heartbeat-timeout-ms", heartbeat_timeout_ms},
      {"--quorum-timeout-ms", quorum_timeout_ms},
      {"--anti-entropy-interval-ms", anti_entropy_interval_ms},
      {"--request-timeout-ms", request_timeout_ms},
  };
  for (const auto& [name, value] : millis) {
    Status s = CheckPositiveMillis(name, value);
    if (!s.ok()) return s;
  }
  if (heartbeat_timeout_ms < heartbeat_interval_ms) {
    return Status::InvalidArgument(
        "--heartbeat-timeout-ms " + std::to_string(heartbeat_timeout_ms) +
        " must be at least --heartbeat-interval-ms " + std::to_string(heartbeat_interval_ms));
  }
  o.heartbeat_interval = std::chrono::milliseconds(heartbeat_interval_ms);
  o.heartbeat_timeout = std::chrono::milliseconds(heartbeat_timeout_ms);
  o.quorum_timeout = std::chrono::milliseconds(quorum_timeout_ms);
  o.anti_entropy_interval = std::chrono::milliseconds(anti_entropy_interval_ms);
  o.request_timeout = std::chrono::milliseconds(request_timeout_ms);
  o.connect_timeout = std::min(o.connect_timeout, o.request_timeout);

  if (push_window < 1 || push_window > 64) {
    return Status::InvalidArgument("--push-window " + std::to_string(push_window) +
                                   " must be between 1 and 64");
  }
  o.push_window = static_cast<size_t>(push_window);
  if (learner_max_lag < 0) {
    return Status::InvalidArgument("--learner-max-lag " + std::to_string(learner_max_lag) +
                                   " must be 0 or more");
  }
  o.learner_max_lag = static_cast<uint64_t>(learner_max_lag);
  if (push_window_mb < 1 || push_window_mb > 4096) {
    return Status::InvalidArgument("--push-window-mb " + std::to_string(push_window_mb) +
                                   " must be between 1 and 4096");
  }
  o.push_window_bytes = static_cast<size_t>(push_window_mb) << 20;

  Result<std::chrono::seconds> max_age = ParseDuration(retention_max_age, "--retention-max-age");
  if (!max_age.ok()) return max_age.status();
  o.retention_max_age = *max_age;
  if (retention_max_messages < 0) {
    return Status::InvalidArgument("--retention-max-messages " +
                                   std::to_string(retention_max_messages) +
                                   " must be 0 (no limit) or more");
  }
  o.retention_max_messages = static_cast<uint64_t>(retention_max_messages);
  Result<uint64_t> max_bytes = ParseByteSize(retention_max_bytes, "--retention-max-bytes");
  if (!max_bytes.ok()) return max_bytes.status();
  o.retention_max_bytes = *max_bytes;
  if (dedup_retention.empty()) {
    o.dedup_retention = o.retention_max_age + std::chrono::days(1);
  } else {
    Result<std::chrono::seconds> dedup = ParseDuration(dedup_retention, "--dedup-retention");
    if (!dedup.ok()) return dedup.status();
    o.dedup_retention = *dedup;
  }
  if (retention_interval_ms < 10 || retention_interval_ms > 3600000) {
    return Status::InvalidArgument("--retention-interval-ms " +
                                   std::to_string(retention_interval_ms) +
                                   " must be between 10 and 3600000");
  }
  o.retention_interval = std::chrono::milliseconds(retention_interval_ms);

  if (http_threads < 1 || http_threads > kMaxHttpThreads) {
    return Status::InvalidArgument("--http-threads " + std::to_string(http_threads) +
                                   " must be between 1 and " + std::to_string(kMaxHttpThreads));
  }
  config.http_threads = static_cast<int>(http_threads);

  // An empty token given on purpose would silently leave its scope open: refuse it (leaving the
  // option out is how a scope is left open).
  if (cluster_token_option->count() > 0 && config.cluster_token.empty()) {
    return Status::InvalidArgument(
        "--cluster-token must not be empty (leave the option out to run without a cluster token)");
  }
  if (client_token_option->count() > 0 && config.client_token.empty()) {
    return Status::InvalidArgument(
        "--client-token must not be empty (leave the option out to run without a client token)");
  }
  if (!config.cluster_token.empty()) {
    Status s = http::ValidateToken(config.cluster_token, "--cluster-token");
    if (!s.ok()) return s;
  }
  if (!config.client_token.empty()) {
    Status s = http::ValidateToken(config.client_token, "--client-token");
    if (!s.ok()) return s;
  }
  if (max_connections < 0 || max_connections > 1000000) {
    return Status::InvalidArgument("--max-connections " + std::to_string(max_connections) +
                                   " must be between 0 (no limit) and 1000000");
  }
  config.max_connections = static_cast<int>(max_connections);
  if (max_connections_per_ip < 0 || max_connections_per_ip > 1000000) {
    return Status::InvalidArgument("--max-connections-per-ip " +
                                   std::to_string(max_connections_per_ip) +
                                   " must be between 0 (no limit) and 1000000");
  }
  config.max_connections_per_ip = static_cast<int>(max_connections_per_ip);
  if (max_header_bytes < 1024 || max_header_bytes > (int64_t{1} << 20)) {
    return Status::InvalidArgument("--max-header-bytes " + std::to_string(max_header_bytes) +
                                   " must be between 1024 and 1048576");
  }
  config.max_header_bytes = static_cast<size_t>(max_header_bytes);
  if (max_inflight_body_mb < 0 || max_inflight_body_mb > (int64_t{1} << 20)) {
    return Status::InvalidArgument("--max-inflight-body-mb " +
                                   std::to_string(max_inflight_body_mb) +
                                   " must be between 0 (no limit) and 1048576");
  }
  config.max_inflight_body_bytes = static_cast<uint64_t>(max_inflight_body_mb) << 20;
  for (size_t start = 0; start <= allowed_hosts.size();) {
    size_t comma = allowed_hosts.find(',', start);
    if (comma == std::string::npos) comma = allowed_hosts.size();
    std::string item = Trim(std::string_view(allowed_hosts).substr(start, comma - start));
    start = comma + 1;
    if (item.empty()) continue;
    for (char& c : item) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const bool ok = std::all_of(item.begin(), item.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
             c == ':' || c == '[' || c == ']';
    });
    if (!ok || item.size() > 253) {
      return Status::InvalidArgument("--allowed-hosts: '" + item +
                                     "' is not a host name (give names without scheme or port)");
    }
    if (item.size() > 2 && item.front() == '[' && item.back() == ']') {
      item = item.substr(1, item.size() - 2);
    }
    config.allowed_hosts.push_back(item);
  }
  if (max_pending_quorum_writes < 0 || max_pending_quorum_writes > 1000000) {
    return Status::InvalidArgument("--max-pending-quorum-writes " +
                                   std::to_string(max_pending_quorum_writes) +
                                   " must be between 0 (no limit) and 1000000");
  }
  config.max_pending_quorum_writes = static_cast<int>(max_pending_quorum_writes);
  if (min_free_disk_mb < 0 || min_free_disk_mb > (int64_t{1} << 30)) {
    return Status::InvalidArgument("--min-free-disk-mb " + std::to_string(min_free_disk_mb) +
                                   " must be between 0 (no check) and 1073741824");
  }
  config.min_free_disk_bytes = static_cast<uint64_t>(min_free_disk_mb) << 20;
  if (memory_mb < kMinMemoryMb || memory_mb > kMaxMemoryMb) {
    return Status::InvalidArgument("--memory-mb " + std::to_string(memory_mb) +
                                   " must be between " + std::to_string(kMinMemoryMb) + " and " +
                                   std::to_string(kMaxMemoryMb));
  }
  config.memory_budget_bytes = static_cast<uint64_t>(memory_mb) << 20;

  static const char* const kLevels[] = {"trace", "debug",    "info", "warn",
                                        "error", "critical", "off"};
  if (std::find(std::begin(kLevels), std::end(kLevels), config.log_level) == std::end(kLevels)) {
    return Status::InvalidArgument("--log-level '" + config.log_level +
                                   "' is unknown: use trace, debug, info, warn, error, critical "
                                   "or off");
  }
  return config;
}

}  // namespace dsm

// NodeOptions: everything a dsm-node is configured with (the command line, see src/node/main.cc).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dsm {

enum class ReplicationMode { kAsync, kSyncQuorum };

const char* ModeName(ReplicationMode mode);  // "async" | "sync_quorum"

struct NodeOptions {
  // The seed prototype's options.
  std::string id;
  std::string host = "127.0.0.1";
  uint16_t port = 8000;
  std::vector<std::string> peers;  // base URLs, "http://host:port", no trailing slash
  ReplicationMode mode = ReplicationMode::kAsync;
  int quorum = 2;  // nodes (this one included) that must hold a message before a sync_quorum ack

  // Storage.
  std::string data_dir;  // default ./data/<id>
  bool fsync = true;     // false only for benchmarks
  size_t max_message_bytes = 1 << 20;

  // Replication and failure detection.
  std::chrono::milliseconds heartbeat_interval{2000};
  std::chrono::milliseconds heartbeat_timeout{6000};   // dead after this long without success
  std::chrono::milliseconds quorum_timeout{5000};      // sync_quorum: 504 after this
  std::chrono::milliseconds anti_entropy_interval{10000};
  std::chrono::milliseconds request_timeout{5000};     // one peer request
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds retry_min{50};             // push retry backoff, doubled per failure
  std::chrono::milliseconds retry_max{1000};
  size_t batch_messages = 1000;  // per /replicate push and per /sync page
  size_t batch_bytes = 4 << 20;  // approximate payload bytes per push
  // Push batches in flight to one peer at a time, and their encoded bytes (a new batch is sent
  // while fewer are in flight; the byte bound always lets one through). Behind a batch in flight
  // the next one leaves only once it is full (batch_messages positions, or cut by bytes).
  size_t push_window = 4;
  size_t push_window_bytes = 32 << 20;

  // Membership (include/dsm/membership.h): a member added by a change is a learner, counted in
  // no quorum, until it lacks at most this many messages of what each live member holds.
  uint64_t learner_max_lag = 1000;

  // Retention (0 = no limit; by default everything is kept). The oldest messages are trimmed,
  // in log order, once the log is over a limit and every peer holds them; over max_bytes they
  // are trimmed even if a peer does not (a peer then skips them, and says so).
  std::chrono::seconds retention_max_age{0};  // by the message's ts
  uint64_t retention_max_messages = 0;
  uint64_t retention_max_bytes = 0;  // the retained records as stored (LogStore::StoredBytes)
  // The msg_ids of trimmed messages are still recognised until the messages are this old
  // (0 = forever).
  std::chrono::seconds dedup_retention{0};
  std::chrono::milliseconds retention_interval{1000};  // between checks when nothing is due
  size_t retention_step_records = 10000;  // one trim step removes at most this many

  bool retention_enabled() const {
    return retention_max_age.count() > 0 || retention_max_messages > 0 || retention_max_bytes > 0;
  }
};

// Requests may be this much larger than 8 * max_message_bytes: the other fields and the JSON
// escaping of a batch of small messages.
inline constexpr size_t kRequestHeadroomBytes = 64 << 10;

// The largest request body a node with these options accepts (larger ones get 413). Peers learn
// it from the heartbeat and size their pushes under it.
inline size_t MaxRequestBytes(const NodeOptions& o) {
  return 8 * o.max_message_bytes + kRequestHeadroomBytes;
}

}  // namespace dsm

// Read-side rules shared by the LogStore implementations, so RocksLogStore and MemoryLogStore
// answer Scan and ReadOrigin identically: which messages a scan visits, and how many messages a
// ReadOrigin page holds.
//
// Value types and pure functions, thread-compatible.
#pragma once

#include <cstddef>

#include "dsm/log_store.h"
#include "dsm/message.h"

namespace dsm {

// Whether `m` passes the sender/recipient filters of `opts`.
inline bool MatchesScan(const ScanOptions& opts, const Message& m) {
  if (opts.sender && m.sender != *opts.sender) return false;
  if (opts.recipient && m.recipient != *opts.recipient) return false;
  return true;
}

// The size limits of one ReadOrigin page: at most `limit` messages and at most `max_bytes` of
// payload, except that the first message is always taken.
class ReadOriginBudget {
 public:
  ReadOriginBudget(size_t limit, size_t max_bytes) : limit_(limit), max_bytes_(max_bytes) {}

  // No further message fits.
  bool Full() const { return count_ >= limit_; }

  // Takes a message with `payload_bytes` of payload if it fits. REQUIRES: !Full().
  bool Take(size_t payload_bytes) {
    if (count_ > 0 && payload_bytes > max_bytes_ - bytes_) return false;
    ++count_;
    bytes_ = payload_bytes > max_bytes_ - bytes_ ? max_bytes_ : bytes_ + payload_bytes;
    return true;
  }

 private:
  size_t limit_;
  size_t max_bytes_;
  size_t count_ = 0;
  size_t bytes_ = 0;  // never above max_bytes_
};

}  // namespace dsm

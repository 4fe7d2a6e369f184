// Status and Result<T>: the error values that cross module boundaries. No exceptions leave a
// module; library exceptions are caught where they arise and turned into a Status.
// Value types: thread-compatible (no shared state).
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace dsm {

enum class Code {
  kOk = 0,
  kNotFound,
  kCorruption,       // data on disk or on the wire that cannot be decoded
  kIOError,          // the disk failed (a failed fsync is sticky: see LogStore)
  kInvalidArgument,  // the caller's input is wrong (maps to 400)
  kTooLarge,         // the caller's input is too big (maps to 413)
  kUnavailable,      // not enough nodes, peer unreachable, shutting down (maps to 503)
  kTimeout,          // a deadline passed; the outcome may still happen (maps to 504)
  kConflict,         // refused because it would break an invariant (e.g. a gap; maps to 409)
  kTrimmed,          // what was asked for was removed by retention (maps to 410)
};

const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  static Status InvalidArgument(std::string msg) {
    return Status(Code::kInvalidArgument, std::move(msg));
  }
  static Status TooLarge(std::string msg) { return Status(Code::kTooLarge, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  static Status Timeout(std::string msg) { return Status(Code::kTimeout, std::move(msg)); }
  static Status Conflict(std::string msg) { return Status(Code::kConflict, std::move(msg)); }
  static Status Trimmed(std::string msg) { return Status(Code::kTrimmed, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "IOError: fsync failed" or "OK".
  std::string ToString() const;

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: REQUIRES: !status.ok()

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace dsm

// SseClient: a Server-Sent Events reader for tests (GET /messages/stream). One libcurl transfer
// on its own thread parses the stream as EventSource does (fields id/event/data/retry, comment
// lines starting with ':', an empty line dispatches the event) and records what arrived, so a
// test can wait for events with a deadline. It does not reconnect: a test that wants to resume
// opens a new client with the Last-Event-ID (or resume position) it chooses.
//
// Thread safety: all methods may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"

namespace dsm::testing {

struct SseEvent {
  std::string id;     // "" when the event had no id field
  std::string event;  // "" = "message"
  std::string data;   // data lines joined with '\n'
};

class SseClient {
 public:
  // Starts reading `url` with the extra header lines `headers` ("Name: value").
  explicit SseClient(std::string url, std::vector<std::string> headers = {});
  ~SseClient();  // Close()
  SseClient(const SseClient&) = delete;
  SseClient& operator=(const SseClient&) = delete;

  // Waits until `pred` holds for the events received so far, or the stream ended, or `timeout`.
  // Returns whether pred held.
  // `pred` runs with the client's lock held: it must not call the client.
  bool WaitUntil(const std::function<bool(const std::vector<SseEvent>&)>& pred,
                 std::chrono::milliseconds timeout) LOCKS_EXCLUDED(mu_);
  // Waits for at least `n` events.
  bool WaitEvents(size_t n, std::chrono::milliseconds timeout) LOCKS_EXCLUDED(mu_);
  // Waits until the response headers arrived (true) or the transfer ended first (false).
  bool WaitConnected(std::chrono::milliseconds timeout) LOCKS_EXCLUDED(mu_);
  // Waits until the server ended the stream (or the connection broke).
  bool WaitEnded(std::chrono::milliseconds timeout) LOCKS_EXCLUDED(mu_);

  std::vector<SseEvent> Events() const LOCKS_EXCLUDED(mu_);
  // Comment lines, without the ':'.
  std::vector<std::string> Comments() const LOCKS_EXCLUDED(mu_);
  long status() const LOCKS_EXCLUDED(mu_);  // HTTP status, 0 before the headers
  std::string Header(const std::string& lower_case_name) const LOCKS_EXCLUDED(mu_);
  bool ended() const LOCKS_EXCLUDED(mu_);
  std::string error() const LOCKS_EXCLUDED(mu_);  // libcurl's error when the transfer failed
  std::string body() const LOCKS_EXCLUDED(mu_);   // everything received (for error answers)

  // Stops reading and closes the connection. Idempotent.
  void Close() LOCKS_EXCLUDED(mu_);

 private:
  static size_t OnData(char* ptr, size_t size, size_t n, void* self);
  static size_t OnHeader(char* ptr, size_t size, size_t n, void* self);
  static int OnProgress(void* self, long long, long long, long long, long long);
  void Feed(const char* data, size_t len) EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Line(std::string line) EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Transfer() LOCKS_EXCLUDED(mu_);

  const std::string url_;
  const std::vector<std::string> headers_;

  mutable Mutex mu_;
  // Notified when an event, a comment, the headers or the end arrive.
  CondVar cv_;
  std::vector<SseEvent> events_ GUARDED_BY(mu_);
  std::vector<std::string> comments_ GUARDED_BY(mu_);
  std::map<std::string, std::string> response_headers_ GUARDED_BY(mu_);
  long status_ GUARDED_BY(mu_) = 0;
  bool connected_ GUARDED_BY(mu_) = false;
  bool ended_ GUARDED_BY(mu_) = false;
  bool closing_ GUARDED_BY(mu_) = false;
  std::string error_ GUARDED_BY(mu_);
  std::string body_ GUARDED_BY(mu_);
  std::string partial_line_ GUARDED_BY(mu_);
  SseEvent pending_ GUARDED_BY(mu_);
  bool pending_has_data_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace dsm::testing

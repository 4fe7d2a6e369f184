// SseClient: a Server-Sent Events reader for tests (GET /messages/stream). One libcurl transfer
// on its own thread parses the stream as EventSource does (fields id/event/data/retry, comment
// lines starting with ':', an empty line dispatches the event) and records what arrived, so a
// test can wait for events with a deadline. It does not reconnect: a test that wants to resume
// opens a new client with the Last-Event-ID (or resume position) it chooses.
//
// Thread safety: all methods may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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
  bool WaitUntil(const std::function<bool(const std::vector<SseEvent>&)>& pred,
                 std::chrono::milliseconds timeout);
  // Waits for at least `n` events.
  bool WaitEvents(size_t n, std::chrono::milliseconds timeout);
  // Waits until the response headers arrived (true) or the transfer ended first (false).
  bool WaitConnected(std::chrono::milliseconds timeout);
  // Waits until the server ended the stream (or the connection broke).
  bool WaitEnded(std::chrono::milliseconds timeout);

  std::vector<SseEvent> Events() const;
  std::vector<std::string> Comments() const;  // comment lines, without the ':'
  long status() const;                        // HTTP status, 0 before the headers
  std::string Header(const std::string& lower_case_name) const;
  bool ended() const;
  std::string error() const;  // libcurl's error when the transfer failed
  std::string body() const;   // everything received (for error answers)

  // Stops reading and closes the connection. Idempotent.
  void Close();

 private:
  static size_t OnData(char* ptr, size_t size, size_t n, void* self);
  static size_t OnHeader(char* ptr, size_t size, size_t n, void* self);
  static int OnProgress(void* self, long long, long long, long long, long long);
  void Feed(const char* data, size_t len);  // REQUIRES: mu_ held
  void Line(std::string line);              // REQUIRES: mu_ held
  void Transfer();

  const std::string url_;
  const std::vector<std::string> headers_;

  mutable std::mutex mu_;
  // Notified when an event, a comment, the headers or the end arrive.
  std::condition_variable cv_;
  std::vector<SseEvent> events_;                         // guarded by mu_
  std::vector<std::string> comments_;                    // guarded by mu_
  std::map<std::string, std::string> response_headers_;  // guarded by mu_
  long status_ = 0;                                      // guarded by mu_
  bool connected_ = false;                               // guarded by mu_
  bool ended_ = false;                                   // guarded by mu_
  bool closing_ = false;                                 // guarded by mu_
  std::string error_;                                    // guarded by mu_
  std::string body_;                                     // guarded by mu_
  std::string partial_line_;                             // guarded by mu_
  SseEvent pending_;                                     // guarded by mu_
  bool pending_has_data_ = false;                        // guarded by mu_
  std::thread thread_;
};

}  // namespace dsm::testing

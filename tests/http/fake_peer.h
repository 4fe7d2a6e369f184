// FakePeer: a scriptable HTTP/1.1 server on 127.0.0.1 for testing the peer client. It answers
// normally (through a handler, optionally after a delay), hangs after reading a request, closes
// the connection without answering, or floods an endless chunked body; it keeps connections alive
// like a Pistache peer that was sent "Connection: keep-alive", counts accepted connections, and
// can be stopped and started again on the same port.
//
// One accept thread plus one thread per connection. Thread safety: every method may be called
// from any thread; Start/Stop from the test's thread. Stop() closes every connection, wakes
// delayed or hanging answers and joins all threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace dsm::testing {

class FakePeer {
 public:
  struct HttpRequest {
    std::string method;
    std::string path;
    std::map<std::string, std::string> headers;  // names lower-cased
    std::string body;
  };
  struct Reply {
    int status = 200;
    std::string body;
    std::chrono::milliseconds delay{0};  // wait before answering (cut short by Stop)
  };
  using Handler = std::function<Reply(const HttpRequest&)>;

  enum class Mode {
    kAnswer,  // answer through the handler
    kHang,    // read the request, never answer (until the client closes or Stop)
    kClose,   // read the request, close the connection without answering
    kFlood,   // answer 200 with an endless chunked body until the client goes away
  };

  FakePeer();
  ~FakePeer();  // Stop()

  FakePeer(const FakePeer&) = delete;
  FakePeer& operator=(const FakePeer&) = delete;

  // Listens on 127.0.0.1:`port` (0 = an ephemeral port, readable with port()). Returns false if
  // the port cannot be bound.
  bool Start(uint16_t port = 0);
  void Stop();

  uint16_t port() const;
  std::string url() const;  // "http://127.0.0.1:<port>"

  void SetHandler(Handler handler);
  void SetMode(Mode mode);

  int accepts() const;                 // connections accepted since construction
  int requests() const;                // requests read since construction
  int max_open_connections() const;    // most connections open at the same time
  std::vector<HttpRequest> received() const;  // every request read, in order

  // The default handler: fixed, valid answers for /heartbeat, /replicate and /sync.
  static Reply DefaultReply(const HttpRequest& request);

 private:
  void AcceptLoop(int listen_fd);
  void ServeConnection(int fd);
  // Reads one request from `fd` into `request`, keeping extra bytes in `buffer`. False on EOF,
  // error or a malformed request.
  bool ReadRequest(int fd, std::string& buffer, HttpRequest& request);
  // Waits until `until` or Stop(); false if stopped.
  bool WaitUntil(std::chrono::steady_clock::time_point until);

  mutable std::mutex mu_;
  std::condition_variable stop_cv_;  // notified by Stop()
  Handler handler_;
  Mode mode_ = Mode::kAnswer;
  bool stopping_ = false;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::set<int> open_fds_;
  std::thread accept_thread_;
  std::vector<std::thread> connection_threads_;
  int accepts_ = 0;
  int requests_ = 0;
  int max_open_ = 0;
  std::vector<HttpRequest> received_;
};

}  // namespace dsm::testing

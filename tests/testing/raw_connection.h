// RawConnection: a client TCP connection to a node on 127.0.0.1 that sends and reads raw bytes,
// for tests of what the HTTP edge does with requests no HTTP client library would send
// (hostile heads, smuggling spellings, pipelining, stalled bodies, many connections from one
// address). Closed on destruction.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dsm::testing {

class RawConnection {
 public:
  using Millis = std::chrono::milliseconds;

  // Connects from `source` (an address of 127.0.0.0/8, so that tests can play several client
  // machines) to 127.0.0.1:port. With a `timeout`, connecting, each send and each blocking read
  // give up after it; without one they wait. ok() says whether the connection was made.
  explicit RawConnection(uint16_t port, const char* source = "127.0.0.1",
                         Millis timeout = Millis(0));
  ~RawConnection() { Close(); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool ok() const { return fd_ >= 0; }
  void Close();

  // Sends all of `bytes`; false when the peer closed or reset first (or the send timed out).
  bool Send(const std::string& bytes);
  // Reads until `until` appears in what was read, the peer closes (*closed = true), or the
  // deadline passes.
  std::string Read(Millis timeout, const std::string& until = "", bool* closed = nullptr);
  // Whatever arrives first (empty on timeout or close).
  std::string ReadSome(Millis timeout);
  // One whole answer with a Content-Length body (or what arrived until close or the deadline).
  std::string ReadAnswer(Millis timeout, bool* closed = nullptr);

 private:
  int fd_ = -1;
};

}  // namespace dsm::testing

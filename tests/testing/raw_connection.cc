#include "tests/testing/raw_connection.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "tests/testing/process.h"

namespace dsm::testing {

using Clock = std::chrono::steady_clock;

RawConnection::RawConnection(uint16_t port, const char* source, Millis timeout)
    : fd_(ConnectLocal(port, timeout, source)) {}

void RawConnection::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool RawConnection::Send(const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

std::string RawConnection::Read(Millis timeout, const std::string& until, bool* closed) {
  std::string got;
  const auto deadline = Clock::now() + timeout;
  if (closed) *closed = false;
  while (Clock::now() < deadline) {
    if (!until.empty() && got.find(until) != std::string::npos) break;
    pollfd p{fd_, POLLIN, 0};
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(1, left.count()))) <= 0) continue;
    char buf[16384];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) {
      if (closed) *closed = true;
      break;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

std::string RawConnection::ReadSome(Millis timeout) {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return "";
  char buf[16384];
  ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::string RawConnection::ReadAnswer(Millis timeout, bool* closed) {
  std::string got = Read(timeout, "\r\n\r\n", closed);
  const size_t head_end = got.find("\r\n\r\n");
  const size_t cl = got.find("Content-Length: ");
  if (head_end == std::string::npos || cl == std::string::npos || cl > head_end) return got;
  const size_t length = std::stoul(got.substr(cl + 16));
  while (got.size() < head_end + 4 + length) {
    std::string more = Read(timeout, "", closed);
    if (more.empty()) break;
    got += more;
  }
  return got;
}

}  // namespace dsm::testing

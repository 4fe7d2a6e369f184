#include "src/node/listen_probe.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace dsm {

Status ProbeListen(const std::string& host, uint16_t port) {
  if (port == 0) return Status::Ok();
  const std::string where = host + ":" + std::to_string(port);
  auto failed = [&where](const std::string& reason) {
    return Status::Unavailable("cannot listen on " + where + ": " + reason);
  };
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return failed(::gai_strerror(rc));
  }
  int error = 0;
  bool ok = false;
  for (addrinfo* a = found; a != nullptr && !ok; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      error = errno;
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 1) == 0) {
      ok = true;
    } else {
      error = errno;
    }
    ::close(fd);
  }
  ::freeaddrinfo(found);
  if (ok) return Status::Ok();
  return failed(error != 0 ? std::strerror(error) : "no usable address");
}

}  // namespace dsm

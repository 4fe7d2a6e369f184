#include "common/local_ports.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <algorithm>
#include <random>
#include <string>

namespace dsm {
namespace {

// The first port of the kernel's ephemeral range (32768 unless configured otherwise).
uint16_t EphemeralRangeStart() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  unsigned low = 0, high = 0;
  if (in >> low >> high && low > 0 && low <= 65535) return static_cast<uint16_t>(low);
  return 32768;
}

// Binds a new socket to 127.0.0.1:`port` (0: any); the descriptor, or -1 with errno set.
int BindLoopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

}  // namespace

Result<std::vector<uint16_t>> PickLoopbackPorts(size_t n) {
  const uint16_t range_start = EphemeralRangeStart();
  const bool below_range = range_start > kLowestPickedPort + 4 * n + 100;
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> pick(kLowestPickedPort, range_start - 1);
  std::vector<int> held;
  std::vector<uint16_t> ports;
  Status failure;
  for (size_t i = 0; i < n && failure.ok(); ++i) {
    int fd = -1;
    uint16_t port = 0;
    for (int attempt = 0; below_range && fd < 0 && attempt < 1000; ++attempt) {
      port = static_cast<uint16_t>(pick(random));
      if (std::find(ports.begin(), ports.end(), port) == ports.end()) fd = BindLoopback(port);
    }
    if (fd < 0) {  // no room below the range, or nothing free there: the kernel's choice
      fd = BindLoopback(0);
      sockaddr_in addr{};
      socklen_t len = sizeof addr;
      if (fd >= 0 && ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
        port = ntohs(addr.sin_port);
      } else {
        failure = Status::IOError(std::string("cannot find a free port on 127.0.0.1: ") +
                                  std::strerror(errno));
      }
    }
    if (fd >= 0) held.push_back(fd);
    if (failure.ok()) ports.push_back(port);
  }
  for (int fd : held) ::close(fd);
  if (!failure.ok()) return failure;
  return ports;
}

}  // namespace dsm

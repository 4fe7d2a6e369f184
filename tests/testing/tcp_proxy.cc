#include "tests/testing/tcp_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <list>
#include <stdexcept>
#include <string>
#include <vector>

namespace dsm::testing {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxQueuedBytes = 1 << 20;  // per direction; reading pauses above this
constexpr size_t kReadChunk = 64 << 10;

void CloseWithReset(int fd) {
  if (fd < 0) return;
  linger lg{};
  lg.l_onoff = 1;
  lg.l_linger = 0;
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(fd);
}

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// A blocking connect to 127.0.0.1:port (immediate on loopback), then non-blocking. -1 on failure.
int ConnectUpstream(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  SetNonBlocking(fd);
  return fd;
}

struct Chunk {
  Clock::time_point release;
  std::string data;
  size_t offset = 0;
};

// One direction of a connection: bytes read from `from`, waiting to be written to `to`.
struct Direction {
  std::deque<Chunk> queue;
  size_t queued_bytes = 0;
  bool eof = false;        // `from` reached end of stream
  bool shut_down = false;  // shutdown(to, SHUT_WR) done after the queue drained

  bool HasReleased(Clock::time_point now) const {
    return !queue.empty() && queue.front().release <= now;
  }
  bool Done() const { return eof && queue.empty() && shut_down; }
};

struct Conn {
  int client = -1;
  int upstream = -1;      // -1: accepted while cut, never connected
  Direction to_upstream;  // client -> upstream
  Direction to_client;    // upstream -> client
  bool dead = false;

  void Reset() {
    CloseWithReset(client);
    CloseWithReset(upstream);
    client = upstream = -1;
    dead = true;
  }
};

// Reads what `from` has into `dir`. Returns false when the connection failed.
bool ReadInto(int from, Direction* dir, Clock::time_point release) {
  char buf[kReadChunk];
  ssize_t n = read(from, buf, sizeof(buf));
  if (n > 0) {
    dir->queue.push_back(Chunk{release, std::string(buf, static_cast<size_t>(n)), 0});
    dir->queued_bytes += static_cast<size_t>(n);
    return true;
  }
  if (n == 0) {
    dir->eof = true;
    return true;
  }
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

bool ShouldRead(short revents, const Direction& dir) {
  return (revents & POLLIN) || ((revents & POLLHUP) && !dir.eof);
}

// Writes released chunks of `dir` to `to`; shuts `to` down once an EOF has drained. Returns false
// when the connection failed.
bool Flush(int to, Direction* dir, Clock::time_point now) {
  while (dir->HasReleased(now)) {
    Chunk& c = dir->queue.front();
    ssize_t n = send(to, c.data.data() + c.offset, c.data.size() - c.offset, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    c.offset += static_cast<size_t>(n);
    dir->queued_bytes -= static_cast<size_t>(n);
    if (c.offset < c.data.size()) return true;
    dir->queue.pop_front();
  }
  if (dir->eof && dir->queue.empty() && !dir->shut_down) {
    shutdown(to, SHUT_WR);
    dir->shut_down = true;
  }
  return true;
}

}  // namespace

struct TcpProxy::Loop {
  std::list<Conn> conns;
};

TcpProxy::TcpProxy(uint16_t target_port) : target_port_(target_port) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) throw std::runtime_error("TcpProxy: socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listen_fd_, 512) != 0 ||
      getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(listen_fd_);
    throw std::runtime_error(std::string("TcpProxy: bind/listen failed: ") + strerror(errno));
  }
  listen_port_ = ntohs(addr.sin_port);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  thread_ = std::thread([this] { Run(); });
}

TcpProxy::~TcpProxy() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  Wake();
  thread_.join();
  close(listen_fd_);
  close(wake_fd_);
}

void TcpProxy::Cut(CutMode mode) {
  Apply(mode == CutMode::kReset ? State::kReset : State::kBlackhole);
}

void TcpProxy::Heal() { Apply(State::kOpen); }

void TcpProxy::SetDelay(std::chrono::milliseconds delay) {
  {
    MutexLock lock(&mu_);
    delay_ = delay;
  }
  Wake();
}

bool TcpProxy::IsCut() const {
  MutexLock lock(&mu_);
  return state_ != State::kOpen;
}

uint64_t TcpProxy::accepted() const {
  MutexLock lock(&mu_);
  return accepted_;
}

void TcpProxy::Apply(State state) {
  MutexLock lock(&mu_);
  state_ = state;
  uint64_t gen = ++requested_;
  lock.Unlock();
  Wake();
  lock.Lock();
  while (applied_ < gen && !stop_) applied_cv_.Wait(&mu_);
}

void TcpProxy::Wake() {
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;  // a full counter already means "wake up"
}

void TcpProxy::Run() {
  Loop loop;
  State current = State::kOpen;
  for (;;) {
    State state;
    std::chrono::milliseconds delay;
    {
      MutexLock lock(&mu_);
      if (stop_) break;
      state = state_;
      delay = delay_;
    }
    if (state != current) {
      for (Conn& c : loop.conns) {
        // Reset: everything goes. Healing: connections accepted while cut were never connected
        // upstream; reset them so that their clients reconnect. Blackhole: freeze in place.
        if (state == State::kReset || (state == State::kOpen && c.upstream < 0)) c.Reset();
      }
      current = state;
    }
    {
      MutexLock lock(&mu_);
      applied_ = requested_;
    }
    applied_cv_.NotifyAll();
    loop.conns.remove_if([](const Conn& c) { return c.dead; });

    // What to wait for.
    Clock::time_point now = Clock::now();
    std::vector<pollfd> fds;
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    std::vector<Conn*> polled;
    int timeout_ms = -1;
    if (current == State::kOpen) {
      for (Conn& c : loop.conns) {
        short cev = 0, uev = 0;
        if (!c.to_upstream.eof && c.to_upstream.queued_bytes < kMaxQueuedBytes) cev |= POLLIN;
        if (!c.to_client.eof && c.to_client.queued_bytes < kMaxQueuedBytes) uev |= POLLIN;
        if (c.to_client.HasReleased(now)) cev |= POLLOUT;
        if (c.to_upstream.HasReleased(now)) uev |= POLLOUT;
        for (Direction* d : {&c.to_upstream, &c.to_client}) {
          if (!d->queue.empty() && d->queue.front().release > now) {
            auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
                            d->queue.front().release - now)
                            .count() +
                        1;
            if (timeout_ms < 0 || wait < timeout_ms) timeout_ms = static_cast<int>(wait);
          }
        }
        fds.push_back({c.client, cev, 0});
        fds.push_back({c.upstream, uev, 0});
        polled.push_back(&c);
      }
    }
    int n = poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) break;

    if (fds[0].revents & POLLIN) {
      uint64_t v;
      ssize_t r = read(wake_fd_, &v, sizeof(v));
      (void)r;
    }
    if (fds[1].revents & POLLIN) {
      for (;;) {
        int cfd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0) break;
        {
          MutexLock lock(&mu_);
          ++accepted_;
        }
        if (current == State::kReset) {
          CloseWithReset(cfd);
          continue;
        }
        Conn c;
        c.client = cfd;
        if (current == State::kOpen) {
          c.upstream = ConnectUpstream(target_port_);
          if (c.upstream < 0) {  // the target refuses: so does the proxy
            CloseWithReset(cfd);
            continue;
          }
          int one = 1;
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        loop.conns.push_back(std::move(c));
      }
    }

    now = Clock::now();
    Clock::time_point release = now + delay;
    for (size_t i = 0; i < polled.size(); ++i) {
      Conn& c = *polled[i];
      const pollfd& cp = fds[2 + 2 * i];
      const pollfd& up = fds[3 + 2 * i];
      bool ok = !((cp.revents | up.revents) & (POLLERR | POLLNVAL));
      if (ok && ShouldRead(cp.revents, c.to_upstream))
        ok = ReadInto(c.client, &c.to_upstream, release);
      if (ok && ShouldRead(up.revents, c.to_client))
        ok = ReadInto(c.upstream, &c.to_client, release);
      if (ok) ok = Flush(c.upstream, &c.to_upstream, now);
      if (ok) ok = Flush(c.client, &c.to_client, now);
      if (!ok || (c.to_upstream.Done() && c.to_client.Done())) {
        if (ok) {
          close(c.client);
          close(c.upstream);
          c.client = c.upstream = -1;
          c.dead = true;
        } else {
          c.Reset();
        }
      }
    }
  }
  for (Conn& c : loop.conns) c.Reset();
  {
    MutexLock lock(&mu_);
    applied_ = requested_;
  }
  applied_cv_.NotifyAll();
}

}  // namespace dsm::testing

#include "tests/http/fake_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace dsm::testing {
namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
  }
}

bool SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

}  // namespace

FakePeer::FakePeer() : handler_(&FakePeer::DefaultReply) {}

FakePeer::~FakePeer() { Stop(); }

bool FakePeer::Start(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, 512) != 0) {
    ::close(fd);
    return false;
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
    listen_fd_ = fd;
    port_ = ntohs(addr.sin_port);
  }
  accept_thread_ = std::thread([this, fd] { AcceptLoop(fd); });
  return true;
}

void FakePeer::Stop() {
  int listen_fd;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    listen_fd = listen_fd_;
    listen_fd_ = -1;
    // Wakes the blocked accept(); the descriptor is closed once the accept thread is gone.
    if (listen_fd >= 0) ::shutdown(listen_fd, SHUT_RDWR);
  }
  stop_cv_.notify_all();
  if (accept_thread_.joinable()) accept_thread_.join();
  if (listen_fd >= 0) ::close(listen_fd);
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Wakes blocked reads and writes; each connection thread closes its own descriptor.
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(connection_threads_);
  }
  for (std::thread& t : threads) t.join();
}

uint16_t FakePeer::port() const {
  std::lock_guard<std::mutex> lock(mu_);
  return port_;
}

std::string FakePeer::url() const { return "http://127.0.0.1:" + std::to_string(port()); }

void FakePeer::SetHandler(Handler handler) {
  std::lock_guard<std::mutex> lock(mu_);
  handler_ = std::move(handler);
}

void FakePeer::SetMode(Mode mode) {
  std::lock_guard<std::mutex> lock(mu_);
  mode_ = mode;
}

int FakePeer::accepts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return accepts_;
}

int FakePeer::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

int FakePeer::max_open_connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  return max_open_;
}

std::vector<FakePeer::HttpRequest> FakePeer::received() const {
  std::lock_guard<std::mutex> lock(mu_);
  return received_;
}

FakePeer::Reply FakePeer::DefaultReply(const HttpRequest& request) {
  Reply reply;
  if (request.path == "/heartbeat") {
    reply.body =
        R"({"status":"ok","node_id":"peer1","time":1700000000.5,"stream":"peer1@00ff",)"
        R"("high_waters":{"peer1@00ff":7,"node1@abcd":3}})";
  } else if (request.path == "/replicate") {
    reply.body = R"({"status":"ok","seq":12,"high_water":9,"applied":2,"duplicates":0})";
  } else if (request.path == "/sync") {
    reply.body =
        R"({"messages":[)"
        R"({"seq":4,"msg_id":"m-4","sender":"alice","recipient":"bob","payload":"hello",)"
        R"("ts":1700000001.25,"origin":"peer1@00ff","origin_seq":2},)"
        R"({"seq":5,"msg_id":"m-5","sender":"carol","recipient":"all","payload":"",)"
        R"("ts":1700000002.0,"origin":"node1@abcd","origin_seq":3}],)"
        R"("more":true,"next":5,"last_seq":42,"stream":"peer1@00ff"})";
  } else {
    reply.status = 404;
    reply.body = R"({"status":"error","reason":"no route )" + request.path + R"("})";
  }
  return reply;
}

void FakePeer::AcceptLoop(int listen_fd) {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      if (fd >= 0) ::close(fd);
      return;
    }
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ++accepts_;
    open_fds_.insert(fd);
    max_open_ = std::max(max_open_, static_cast<int>(open_fds_.size()));
    connection_threads_.emplace_back([this, fd] { ServeConnection(fd); });
  }
}

bool FakePeer::WaitUntil(std::chrono::steady_clock::time_point until) {
  std::unique_lock<std::mutex> lock(mu_);
  stop_cv_.wait_until(lock, until, [this] { return stopping_; });
  return !stopping_;
}

void FakePeer::ServeConnection(int fd) {
  std::string buffer;
  for (;;) {
    HttpRequest request;
    if (!ReadRequest(fd, buffer, request)) break;
    Mode mode;
    Handler handler;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++requests_;
      received_.push_back(request);
      mode = mode_;
      handler = handler_;
    }
    if (mode == Mode::kHang) {
      // Never answers; reads and drops whatever comes until the client closes or Stop().
      char sink[4096];
      for (;;) {
        ssize_t n = ::recv(fd, sink, sizeof(sink), 0);
        if (n == 0 || (n < 0 && errno != EINTR)) break;
      }
      break;
    }
    if (mode == Mode::kClose) break;
    if (mode == Mode::kFlood) {
      std::string head =
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
          "Transfer-Encoding: chunked\r\n\r\n";
      std::string chunk(1 << 20, ' ');
      std::string framed = "100000\r\n" + chunk + "\r\n";
      bool ok = SendAll(fd, head);
      while (ok) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (stopping_) break;
        }
        ok = SendAll(fd, framed);
      }
      break;
    }
    Reply reply = handler(request);
    if (reply.delay.count() > 0 &&
        !WaitUntil(std::chrono::steady_clock::now() + reply.delay)) {
      break;
    }
    std::string response = "HTTP/1.1 " + std::to_string(reply.status) + " " +
                           ReasonPhrase(reply.status) +
                           "\r\nContent-Type: application/json\r\nContent-Length: " +
                           std::to_string(reply.body.size()) + "\r\n";
    bool close_after = Lower(request.headers["connection"]) != "keep-alive";
    response += close_after ? "Connection: Close\r\n\r\n" : "Connection: keep-alive\r\n\r\n";
    response += reply.body;
    if (!SendAll(fd, response) || close_after) break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  open_fds_.erase(fd);
  ::close(fd);
}

bool FakePeer::ReadRequest(int fd, std::string& buffer, HttpRequest& request) {
  char chunk[16 * 1024];
  size_t header_end;
  while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
    if (buffer.size() > kMaxHeaderBytes) return false;
    ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  std::string head = buffer.substr(0, header_end);
  buffer.erase(0, header_end + 4);
  size_t line_end = head.find("\r\n");
  std::string request_line = head.substr(0, line_end);
  size_t sp1 = request_line.find(' ');
  size_t sp2 = request_line.find(' ', sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos) return false;
  request.method = request_line.substr(0, sp1);
  request.path = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    if (end == std::string::npos) end = head.size();
    std::string line = head.substr(pos, end - pos);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      request.headers[Lower(Trim(line.substr(0, colon)))] = Trim(line.substr(colon + 1));
    }
    pos = end + 2;
  }
  size_t content_length = 0;
  auto it = request.headers.find("content-length");
  if (it != request.headers.end()) content_length = std::stoul(it->second);
  while (buffer.size() < content_length) {
    ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  request.body = buffer.substr(0, content_length);
  buffer.erase(0, content_length);
  return true;
}

}  // namespace dsm::testing

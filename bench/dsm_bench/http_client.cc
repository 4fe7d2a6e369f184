#include "bench/dsm_bench/http_client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

namespace dsm::bench {

namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// The newest OpenSSL error of this thread as text (the queue cleared).
std::string TlsError() {
  unsigned long code = 0;
  unsigned long last = 0;
  while ((code = ERR_get_error()) != 0) last = code;
  if (last == 0) return "connection closed";
  char text[256];
  ERR_error_string_n(last, text, sizeof text);
  return text;
}

}  // namespace

Result<Endpoint> ParseEndpoint(std::string_view url) {
  Endpoint e;
  std::string_view rest = url;
  constexpr std::string_view kScheme = "http://";
  constexpr std::string_view kTlsScheme = "https://";
  if (rest.substr(0, kTlsScheme.size()) == kTlsScheme) {
    e.https = true;
    rest.remove_prefix(kTlsScheme.size());
  } else if (rest.substr(0, kScheme.size()) == kScheme) {
    rest.remove_prefix(kScheme.size());
  } else {
    return Status::InvalidArgument("'" + std::string(url) + "' is not an http:// or https:// URL");
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Status::InvalidArgument("'" + std::string(url) + "' has no host:port");
  }
  unsigned port = 0;
  std::string_view port_text = rest.substr(colon + 1);
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || p != port_text.data() + port_text.size() || port == 0 || port > 65535) {
    return Status::InvalidArgument("'" + std::string(url) + "' has no valid port");
  }
  e.host = std::string(rest.substr(0, colon));
  if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']') {
    e.host = e.host.substr(1, e.host.size() - 2);
  }
  e.port = static_cast<uint16_t>(port);
  e.url = (e.https ? "https://" : "http://") + std::string(rest);
  return e;
}

std::string BearerHeader(std::string_view token) {
  return "Authorization: Bearer " + std::string(token) + "\r\n";
}

HttpConnection::HttpConnection(Endpoint endpoint, std::chrono::milliseconds timeout)
    : endpoint_(std::move(endpoint)), timeout_(timeout) {}

HttpConnection::~HttpConnection() { Close(); }

void HttpConnection::Close() {
  if (tls_ != nullptr) SSL_free(tls_);
  tls_ = nullptr;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  in_.clear();
  pos_ = 0;
}

Status HttpConnection::Connect() {
  Close();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(endpoint_.port);
  if (int rc = getaddrinfo(endpoint_.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return Status::Unavailable("cannot resolve " + endpoint_.host + ": " + gai_strerror(rc));
  }
  Status last = Status::Unavailable("no address for " + endpoint_.host);
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last = Status::Unavailable(Errno("socket"));
      continue;
    }
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout_.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout_.count() % 1000) * 1000);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      fd_ = fd;
      freeaddrinfo(res);
      if (!endpoint_.https) return Status::Ok();
      Status s = StartTls();
      if (!s.ok()) Close();
      return s;
    }
    last = Status::Unavailable(Errno(("connect to " + endpoint_.url).c_str()));
    ::close(fd);
  }
  freeaddrinfo(res);
  return last;
}

Status HttpConnection::StartTls() {
  if (!tls_context_) {
    std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_client_method()), &SSL_CTX_free);
    if (!ctx) return Status::Unavailable("cannot create a TLS context: " + TlsError());
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    const TlsClientFiles& f = endpoint_.tls;
    const int loaded = f.ca_file.empty()
                           ? SSL_CTX_set_default_verify_paths(ctx.get())
                           : SSL_CTX_load_verify_locations(ctx.get(), f.ca_file.c_str(), nullptr);
    if (loaded != 1) return Status::InvalidArgument("CA " + f.ca_file + ": " + TlsError());
    if (!f.cert_file.empty() &&
        (SSL_CTX_use_certificate_chain_file(ctx.get(), f.cert_file.c_str()) != 1 ||
         SSL_CTX_use_PrivateKey_file(ctx.get(), f.key_file.c_str(), SSL_FILETYPE_PEM) != 1)) {
      return Status::InvalidArgument("client certificate " + f.cert_file + ": " + TlsError());
    }
    tls_context_ = std::move(ctx);
  }
  tls_ = SSL_new(tls_context_.get());
  if (tls_ == nullptr) return Status::Unavailable("cannot create a TLS connection: " + TlsError());
  SSL_set_fd(tls_, fd_);
  // The certificate must name the host (an IP address or a DNS name).
  X509_VERIFY_PARAM* param = SSL_get0_param(tls_);
  if (X509_VERIFY_PARAM_set1_ip_asc(param, endpoint_.host.c_str()) != 1) {
    ERR_clear_error();
    X509_VERIFY_PARAM_set1_host(param, endpoint_.host.c_str(), 0);
    SSL_set_tlsext_host_name(tls_, endpoint_.host.c_str());
  }
  if (SSL_connect(tls_) != 1) {
    const long verify = SSL_get_verify_result(tls_);
    std::string why = verify != X509_V_OK ? X509_verify_cert_error_string(verify) : TlsError();
    return Status::Unavailable("TLS handshake with " + endpoint_.url + " failed: " + why);
  }
  return Status::Ok();
}

Status HttpConnection::Request(std::string_view method, std::string_view target,
                               std::string_view body, HttpAnswer* out, std::string_view headers) {
  const bool reused = fd_ >= 0;
  if (!reused) {
    if (Status s = Connect(); !s.ok()) return s;
  }
  bool answer_started = false;
  Status s = Exchange(method, target, body, headers, out, &answer_started);
  if (!s.ok()) {
    Close();
    if (reused && !answer_started && s.code() == Code::kUnavailable) {
      if (Status c = Connect(); !c.ok()) return c;
      s = Exchange(method, target, body, headers, out, &answer_started);
      if (!s.ok()) Close();
    }
  }
  return s;
}

Status HttpConnection::Exchange(std::string_view method, std::string_view target,
                                std::string_view body, std::string_view headers, HttpAnswer* out,
                                bool* answer_started) {
  if (pos_ > 0) {
    in_.erase(0, pos_);
    pos_ = 0;
  }
  out_.clear();
  out_.append(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: ");
  out_.append(endpoint_.host).append(":").append(std::to_string(endpoint_.port));
  out_.append("\r\nConnection: keep-alive\r\n").append(headers);
  if (!body.empty() || method == "POST") {
    out_.append("Content-Type: application/json\r\nContent-Length: ");
    out_.append(std::to_string(body.size())).append("\r\n");
  }
  out_.append("\r\n").append(body);
  if (Status s = WriteAll(out_); !s.ok()) return s;

  // Status line.
  std::string line;
  if (Status s = ReadLine(&line); !s.ok()) return s;
  *answer_started = true;
  if (line.size() < 12 || line.compare(0, 5, "HTTP/") != 0) {
    return Status::Corruption("not an HTTP status line: " + line.substr(0, 80));
  }
  out->status = std::atoi(line.c_str() + 9);
  // Headers.
  long long content_length = -1;
  bool chunked = false;
  bool close = false;
  for (;;) {
    if (Status s = ReadLine(&line); !s.ok()) return s;
    if (line.empty()) break;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string_view name = Trim(std::string_view(line).substr(0, colon));
    std::string_view value = Trim(std::string_view(line).substr(colon + 1));
    if (EqualsIgnoreCase(name, "content-length")) {
      content_length = std::atoll(std::string(value).c_str());
    } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
      chunked = value.find("chunked") != std::string_view::npos;
    } else if (EqualsIgnoreCase(name, "connection")) {
      close = EqualsIgnoreCase(value, "close");
    }
  }
  // Body.
  out->body.clear();
  if (chunked) {
    for (;;) {
      if (Status s = ReadLine(&line); !s.ok()) return s;
      const size_t n = std::strtoul(line.c_str(), nullptr, 16);
      if (n == 0) {
        // Trailers until the empty line.
        do {
          if (Status s = ReadLine(&line); !s.ok()) return s;
        } while (!line.empty());
        break;
      }
      if (Status s = ReadExact(n, &out->body); !s.ok()) return s;
      std::string crlf;
      if (Status s = ReadLine(&crlf); !s.ok()) return s;
    }
  } else if (content_length > 0) {
    if (Status s = ReadExact(static_cast<size_t>(content_length), &out->body); !s.ok()) return s;
  } else if (content_length < 0) {
    // Read until the server closes.
    for (;;) {
      out->body.append(in_, pos_, std::string::npos);
      in_.clear();
      pos_ = 0;
      Status s = Fill();
      if (!s.ok()) break;
    }
    close = true;
  }
  if (close) Close();
  return Status::Ok();
}

Status HttpConnection::WriteAll(const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = 0;
    if (tls_ != nullptr) {
      const int chunk = static_cast<int>(std::min<size_t>(data.size() - done, 1 << 30));
      n = SSL_write(tls_, data.data() + done, chunk);
      if (n <= 0) {
        const bool timed_out = SSL_get_error(tls_, static_cast<int>(n)) == SSL_ERROR_WANT_WRITE;
        ERR_clear_error();
        if (timed_out) return Status::Timeout("send timed out");
        return Status::Unavailable("TLS send to " + endpoint_.url + " failed");
      }
    } else {
      n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::Timeout("send timed out");
      return Status::Unavailable(Errno("send"));
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status HttpConnection::Fill() {
  if (pos_ > 0 && pos_ == in_.size()) {
    in_.clear();
    pos_ = 0;
  }
  char buf[64 << 10];
  for (;;) {
    ssize_t n = 0;
    if (tls_ != nullptr) {
      n = SSL_read(tls_, buf, static_cast<int>(sizeof buf));
      if (n <= 0) {
        const int error = SSL_get_error(tls_, static_cast<int>(n));
        ERR_clear_error();
        if (error == SSL_ERROR_WANT_READ) {
          return Status::Timeout("no answer from " + endpoint_.url + " within " +
                                 std::to_string(timeout_.count()) + " ms");
        }
        return Status::Unavailable("connection closed by " + endpoint_.url);
      }
    } else {
      n = ::recv(fd_, buf, sizeof buf, 0);
    }
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      return Status::Ok();
    }
    if (n == 0) return Status::Unavailable("connection closed by " + endpoint_.url);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return Status::Timeout("no answer from " + endpoint_.url + " within " +
                             std::to_string(timeout_.count()) + " ms");
    }
    return Status::Unavailable(Errno("recv"));
  }
}

Status HttpConnection::ReadLine(std::string* line) {
  for (;;) {
    const size_t eol = in_.find("\r\n", pos_);
    if (eol != std::string::npos) {
      line->assign(in_, pos_, eol - pos_);
      pos_ = eol + 2;
      return Status::Ok();
    }
    if (in_.size() - pos_ > (1 << 20)) return Status::Corruption("header line too long");
    if (Status s = Fill(); !s.ok()) return s;
  }
}

Status HttpConnection::ReadExact(size_t n, std::string* out) {
  while (in_.size() - pos_ < n) {
    // Move what is buffered to the output, so the buffer does not grow with the body.
    const size_t have = in_.size() - pos_;
    out->append(in_, pos_, have);
    n -= have;
    in_.clear();
    pos_ = 0;
    if (Status s = Fill(); !s.ok()) return s;
  }
  out->append(in_, pos_, n);
  pos_ += n;
  return Status::Ok();
}

}  // namespace dsm::bench

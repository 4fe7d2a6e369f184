// HttpConnection: a minimal HTTP/1.1 client for dsm-bench's load generators - one keep-alive
// connection on a blocking socket, one request at a time (a Pistache server drops pipelined
// requests), every request with "Connection: keep-alive" (without it Pistache closes the
// connection after each answer). Answers are read by Content-Length or chunked encoding. An
// https:// endpoint is reached over TLS (OpenSSL), its certificate and host name verified.
//
// Thread safety: an HttpConnection is used by one thread at a time; the free functions are
// thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "dsm/status.h"

struct ssl_ctx_st;
struct ssl_st;

namespace dsm::bench {

// How an https:// endpoint is verified, and the client certificate presented to it (PEM files;
// both or neither of cert_file and key_file).
struct TlsClientFiles {
  std::string ca_file;  // empty: the system's CAs
  std::string cert_file;
  std::string key_file;
};

// Where a node listens, from its base URL "http://host:port" or "https://host:port".
struct Endpoint {
  std::string url;  // without a trailing slash
  std::string host;
  uint16_t port = 0;
  bool https = false;
  TlsClientFiles tls;  // https only
};

// Parses "http[s]://host:port[/]". Errors: InvalidArgument naming the URL.
Result<Endpoint> ParseEndpoint(std::string_view url);

// The header line that presents `token` (a node's cluster or client token): "Authorization:
// Bearer <token>" and CRLF, for HttpConnection::Request's `headers`.
std::string BearerHeader(std::string_view token);

struct HttpAnswer {
  int status = 0;
  std::string body;
};

class HttpConnection {
 public:
  // Connects lazily, on the first request. `timeout` bounds connecting, each write and each read.
  HttpConnection(Endpoint endpoint, std::chrono::milliseconds timeout);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Sends one request (a body only when `body` is non-empty) and reads its answer into *out.
  // `headers` are added as they are: whole lines, each ending in CRLF (e.g. BearerHeader()).
  // A request that fails on a reused connection before any byte of the answer arrived is sent
  // once more on a new connection (the server may have closed an idle connection). Errors:
  // Unavailable (cannot connect, connection lost), Timeout, Corruption (not HTTP).
  Status Request(std::string_view method, std::string_view target, std::string_view body,
                 HttpAnswer* out, std::string_view headers = {});

  void Close();
  const Endpoint& endpoint() const { return endpoint_; }

 private:
  Status Connect();
  Status Exchange(std::string_view method, std::string_view target, std::string_view body,
                  std::string_view headers, HttpAnswer* out, bool* answer_started);
  Status WriteAll(const std::string& data);
  // Reads more bytes into in_. EOF is Unavailable("connection closed").
  Status Fill();
  // The next line of in_ from pos_ (without CRLF), reading as needed.
  Status ReadLine(std::string* line);
  Status ReadExact(size_t n, std::string* out);

  // Sets up TLS on the connected fd_ (https endpoints).
  Status StartTls();

  const Endpoint endpoint_;
  const std::chrono::milliseconds timeout_;
  int fd_ = -1;
  // https: the context (made on the first connection) and the connection's TLS state.
  std::shared_ptr<ssl_ctx_st> tls_context_;
  ssl_st* tls_ = nullptr;
  std::string out_;  // request being written (reused)
  std::string in_;   // bytes read and not consumed yet, from pos_
  size_t pos_ = 0;
};

}  // namespace dsm::bench

// HttpServer: the REST frontend of one dsm node (docs/api.md), on Pistache's Http::Endpoint and
// Rest::Router. It owns request parsing and validation, the mapping of results and Status values
// to HTTP answers (every answer, errors included, is JSON), and the streaming of long listings. It
// calls the replication core (Node) for /send, /replicate, /sync, /heartbeat and /status and reads
// the log (LogStore::Scan) for /messages and unbounded /sync listings. Live readers (long-polls,
// event streams) are served by a ConsumerHub (src/http/consumers.h), the dashboard page by
// src/http/dashboard.h.
//
// Threads: Pistache runs the handlers on `threads` event-loop threads. No handler blocks waiting
// for other nodes: /send hands its response to Node::Send's completion, which answers from
// whichever thread completes it.
//
// Thread safety: Start() and Shutdown() are called by the owning thread; port() from any thread
// once Start() returned. The Node, LogStore and Clock must outlive the server.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/node.h"
#include "dsm/clock.h"
#include "dsm/log_store.h"
#include "dsm/options.h"
#include "dsm/status.h"
#include "src/http/tls.h"
#include "storage/append_notifier.h"

namespace dsm {

class DurableConsumers;

struct HttpServerOptions {
  int threads = 4;  // Pistache event-loop threads (--http-threads)
  // A request whose headers (body) are not complete this long after it began gets 408 and the
  // connection is closed, so slow or stalled clients cannot hold connections forever. Both are
  // raised to the quorum timeout + 5 s if shorter (Pistache also applies them to a connection
  // whose answer is pending).
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds body_timeout{30000};
  // An idle keep-alive connection is closed after this long.
  std::chrono::milliseconds keepalive_timeout{60000};
  // How long Shutdown() waits for answers already handed to the network to be written.
  std::chrono::milliseconds drain_timeout{2000};
  // Shared-secret tokens (src/http/auth.h): the cluster token guards /replicate, /sync and
  // /heartbeat, the client token every other endpoint. Empty = that scope is open. Requests
  // without the right token get 401 and change nothing.
  std::string cluster_token;
  std::string client_token;
  // A connection opened while this many are open is answered 503 and closed (0 = no limit). Each
  // connection may buffer up to one request (maxRequestSize), so this also bounds that memory.
  int max_connections = 256;
  // A connection opened while this many are open from the same address is answered 503 and
  // closed (0 = no limit). The configured peers' addresses are exempt, and a few of the
  // max_connections slots are kept for them (src/http/edge.h).
  int max_connections_per_ip = 64;
  // Request heads (request line and headers) longer than this, or with more header lines than
  // max_header_lines, are answered 431 and the connection is closed.
  size_t max_header_bytes = 16 << 10;
  size_t max_header_lines = 100;
  // Bodies being read by the whole node, counted by their declared Content-Length: a request
  // whose body would take the total beyond this is answered 503 before its body is read
  // (0 = no limit).
  size_t max_inflight_body_bytes = size_t{128} << 20;
  // While the node listens on a loopback address, requests whose Host is not a loopback name are
  // refused (403) unless their host is listed here (DNS rebinding).
  std::vector<std::string> allowed_hosts;
  // A quorum /send arriving while this many wait for their quorum is refused with 503 "too many
  // pending quorum writes" before anything is written (0 = no limit).
  int max_pending_quorum_writes = 1024;
  // Live readers (GET /messages?wait_ms=, GET /messages/stream): the notifier the log reports its
  // durable writes to. nullptr = no live reads (those requests get 503). Not owned.
  AppendNotifier* append_notifier = nullptr;
  // An idle event stream writes a keep-alive comment this often (at most a third of
  // keepalive_timeout). A long-poll waits at most keepalive_timeout - 1 s.
  std::chrono::milliseconds event_keepalive{15000};
  // An event stream whose client has not taken its last chunk for this long is cut.
  std::chrono::milliseconds event_stall_timeout{60000};
  // Tests only (ConsumerOptions::attach_delay): 0 in production.
  std::chrono::microseconds event_attach_delay{0};
  // Long-polls waiting plus event streams open (/metrics: dsm_live_readers); more get 503. Each
  // holds a connection, so max_connections bounds them too.
  size_t max_live_readers = 10000;
  // HTTPS when tls.cert_file is set; with tls.client_ca_file, every connection must present a
  // client certificate signed by that CA (src/http/tls.h). The other members are the peer
  // client's.
  http::TlsFiles tls;
  // Durable consumers (/consumers...): nullptr = not enabled (those requests get 503). Not owned;
  // Shutdown() stops it (its waiting fetches are answered while answers are still delivered).
  DurableConsumers* durable_consumers = nullptr;
};

class HttpServer {
 public:
  // Listens on options.host:options.port (port 0: an ephemeral port, see port()). Requests larger
  // than 8 * options.max_message_bytes + 64 KiB are refused with 413 (JSON escaping can grow a
  // payload six times).
  HttpServer(const NodeOptions& options, Node* node, LogStore* log, Clock* clock,
             HttpServerOptions server_options = {});
  ~HttpServer();  // Shutdown()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving. Errors: Unavailable("cannot listen on H:P: <reason>") when the
  // address is in use or cannot be bound. REQUIRES: called at most once.
  Status Start();

  // Gives answers already handed to the network up to drain_timeout to be written, then stops
  // accepting connections, stops the event loops and joins their threads. Answers completed after
  // that (e.g. a late quorum outcome) are dropped, and a listing being streamed is cut off. Stop
  // the Node first so that its pending quorum waits are answered while the server still delivers
  // them. Idempotent.
  void Shutdown();

  // The bound port (useful when options.port was 0). 0 before Start().
  uint16_t port() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace dsm

// HttpServer: the REST frontend of one dsm node (docs/api.md), on Pistache's Http::Endpoint and
// Rest::Router. It owns request parsing and validation, the mapping of results and Status values
// to HTTP answers (every answer, errors included, is JSON), and the streaming of long listings. It
// calls the replication core (Node) for /send, /replicate, /sync, /heartbeat and /status and reads
// the log (LogStore::Scan) for /messages and unbounded /sync listings.
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

#include "core/node.h"
#include "dsm/clock.h"
#include "dsm/log_store.h"
#include "dsm/options.h"
#include "dsm/status.h"

namespace dsm {

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

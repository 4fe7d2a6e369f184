// HttpServer::Impl: the state the server's files share (internal to src/http). The server is
// split by concern:
//  - server.cc: the routes, the binding of handlers (token scope, HEAD, exceptions) and the
//    server's lifecycle (Start, Shutdown);
//  - client_api.cc: the client endpoints (/send, /messages, /messages/stream, /status, /metrics,
//    the dashboard, the not-found answer);
//  - peer_api.cc: the endpoints peers call (/replicate, /sync, /heartbeat);
//  - edge.cc: everything before a handler runs (connection limits, request head checks, tokens
//    on the head, protocol errors);
//  - reply.cc: how answers and streamed listings are written.
//
// Thread safety: as HttpServer (server.h); handlers run on Pistache's event-loop threads.
#pragma once

#include <pistache/endpoint.h>
#include <pistache/http.h>
#include <pistache/router.h>
#include <rapidjson/document.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/node.h"
#include "dsm/clock.h"
#include "dsm/log_store.h"
#include "dsm/options.h"
#include "src/durable/durable_consumers.h"
#include "src/http/auth.h"
#include "src/http/consumers.h"
#include "src/http/edge.h"
#include "src/http/json_codec.h"
#include "src/http/reply.h"
#include "src/http/server.h"

namespace dsm {

namespace server_internal {

// Pistache's (undecoded) query parameters, copied.
std::map<std::string, std::string> RawQuery(const Pistache::Http::Request& req);

// Parses a message (`batch` false) or an array of 1..10000 messages (`batch` true; `field` names
// it in errors), with defaults filled in: sender "unknown", recipient "all", a new UUID msg_id, and
// the node's wall clock as ts when the object has no "ts".
Result<std::vector<Message>> ParseMessages(const rapidjson::Value& v, bool batch, const char* field,
                                           json::MessageSource source, size_t max_payload_bytes,
                                           Clock* clock);

}  // namespace server_internal

struct HttpServer::Impl {
  Impl(const NodeOptions& opts, Node* n, LogStore* l, Clock* c, HttpServerOptions so)
      : options(opts), server_options(so), node(n), log(l), clock(c) {}

  using Handler = void (Impl::*)(const Pistache::Rest::Request&, const http::ReplyPtr&);

  const NodeOptions options;
  const HttpServerOptions server_options;
  Node* const node;
  LogStore* const log;
  Clock* const clock;
  const std::shared_ptr<http::Gate> gate = std::make_shared<http::Gate>();
  std::shared_ptr<Pistache::Rest::Router> router;
  std::unique_ptr<Pistache::Http::Endpoint> endpoint;  // owned by the thread calling Start/Shutdown
  std::atomic<uint16_t> bound_port{0};
  bool started = false;
  bool shut_down = false;
  const std::shared_ptr<const http::AuthPolicy> auth =
      std::make_shared<http::AuthPolicy>(server_options.cluster_token, server_options.client_token);
  // Quorum /sends handed to the Node and not answered yet (bounded by
  // server_options.max_pending_quorum_writes).
  const std::shared_ptr<std::atomic<int>> pending_quorum_writes =
      std::make_shared<std::atomic<int>>(0);
  // Live readers; null without an append notifier.
  std::unique_ptr<http::ConsumerHub> consumers;
  // Durable consumers (not owned); null when not enabled.
  DurableConsumers* const durable = server_options.durable_consumers;

  void SetUpRoutes();
  // The limits and checks of the edge (src/http/edge.h), from the options.
  http::EdgeOptions MakeEdgeOptions() const;
  // `path`: the route's registered path, whose token scope is checked again before the handler
  // runs (nullptr: no route, e.g. the not-found handler).
  Pistache::Rest::Route::Handler Bind(Handler h, const char* path = nullptr);

  // Client endpoints (client_api.cc).
  void HandleSend(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleMessages(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleStatus(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleMetrics(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleNotFound(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleStream(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleDashboard(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);

  // Durable consumer endpoints (durable_consumer_api.cc).
  void HandleConsumerPut(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleConsumerGet(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleConsumerList(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleConsumerDelete(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleConsumerFetch(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleConsumerAck(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleConsumerNak(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleConsumerDead(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  // The consumer a /consumers/{name}/... request names; false when the error was answered.
  bool ConsumerOf(const Pistache::Rest::Request& req, const http::ReplyPtr& reply,
                  std::shared_ptr<DurableConsumer>* out);

  // Peer endpoints (peer_api.cc).
  void HandleReplicate(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleSync(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
  void HandleHeartbeat(const Pistache::Rest::Request& req, const http::ReplyPtr& reply);
};

}  // namespace dsm

#include "src/http/server.h"

#include <pistache/endpoint.h>
#include <pistache/http.h>
#include <pistache/peer.h>
#include <pistache/router.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "common/metrics.h"
#include "common/thread_annotations.h"
#include "src/http/auth.h"
#include "src/http/consumers.h"
#include "src/http/dashboard.h"
#include "src/http/json_codec.h"
#include "src/http/peer_protocol.h"
#include "src/http/query.h"
#include "src/http/reply.h"
#include "src/http/request_head.h"

namespace dsm {
namespace {

namespace Http = Pistache::Http;
namespace Rest = Pistache::Rest;
using http::Gate;
using http::Listing;
using http::Reply;
using http::ReplyPtr;
using http::ScanSource;
using http::TrailerWriter;
using http::VectorSource;

constexpr size_t kMaxBatchMessages = 10000;

const std::vector<Http::Method> kAllMethods = {
    Http::Method::Options, Http::Method::Get,   Http::Method::Post,
    Http::Method::Head,    Http::Method::Put,   Http::Method::Patch,
    Http::Method::Delete,  Http::Method::Trace, Http::Method::Connect,
};

// `s` with `prefix` put before its message, same code.
Status Prefixed(const Status& s, const std::string& prefix) {
  std::string msg = prefix + s.message();
  switch (s.code()) {
    case Code::kTooLarge:
      return Status::TooLarge(std::move(msg));
    case Code::kInvalidArgument:
      return Status::InvalidArgument(std::move(msg));
    default:
      return s;
  }
}

// Copies Pistache's (undecoded) query parameters.
std::map<std::string, std::string> RawQuery(const Http::Request& req) {
  const auto& q = req.query();
  return std::map<std::string, std::string>(q.parameters_begin(), q.parameters_end());
}

// Fills the defaults of a client or peer message: sender "unknown", recipient "all", a new UUID
// msg_id, and the node's wall clock as ts when the object has no "ts".
void FillDefaults(const rapidjson::Value& obj, Clock* clock, Message* m) {
  if (m->sender.empty()) m->sender = "unknown";
  if (m->recipient.empty()) m->recipient = "all";
  if (m->msg_id.empty()) m->msg_id = NewUuid();
  if (!obj.HasMember("ts")) m->ts = clock->WallSeconds();
}

// Parses a message or an array of 1..kMaxBatchMessages messages, with defaults filled in.
Result<std::vector<Message>> ParseMessages(const rapidjson::Value& v, bool batch, const char* field,
                                           json::MessageSource source, size_t max_payload_bytes,
                                           Clock* clock) {
  std::vector<Message> msgs;
  if (!batch) {
    Result<Message> m = json::ParseMessage(v, source, max_payload_bytes);
    if (!m.ok()) return Prefixed(m.status(), field[0] ? std::string(field) + ": " : "");
    FillDefaults(v, clock, &*m);
    msgs.push_back(std::move(m).value());
    return msgs;
  }
  if (!v.IsArray() || v.Empty() || v.Size() > kMaxBatchMessages) {
    return Status::InvalidArgument(std::string("'") + field + "' must be an array of 1.." +
                                   std::to_string(kMaxBatchMessages) + " messages");
  }
  msgs.reserve(v.Size());
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    Result<Message> m = json::ParseMessage(v[i], source, max_payload_bytes);
    if (!m.ok()) {
      return Prefixed(m.status(), std::string(field) + "[" + std::to_string(i) + "]: ");
    }
    FillDefaults(v[i], clock, &*m);
    msgs.push_back(std::move(m).value());
  }
  return msgs;
}

void WriteOutcomeFields(json::Writer& w, const WriteOutcome& o, const std::string& msg_id) {
  w.Key("seq");
  w.Uint64(o.seq);
  w.Key("msg_id");
  w.String(msg_id.data(), static_cast<rapidjson::SizeType>(msg_id.size()));
  w.Key("origin");
  w.String(o.origin.data(), static_cast<rapidjson::SizeType>(o.origin.size()));
  w.Key("origin_seq");
  w.Uint64(o.origin_seq);
  w.Key("duplicate");
  w.Bool(o.kind == WriteOutcome::Kind::kDuplicate);
}

void WriteResults(json::Writer& w, const std::vector<WriteOutcome>& outcomes,
                  const std::vector<std::string>& msg_ids) {
  w.Key("results");
  w.StartArray();
  for (size_t i = 0; i < outcomes.size(); ++i) {
    w.StartObject();
    WriteOutcomeFields(w, outcomes[i], msg_ids[i]);
    w.EndObject();
  }
  w.EndArray();
}

// Answers a /send from Node::Send's outcome, on whichever thread completed it.
void AnswerSend(Reply& reply, const std::vector<std::string>& msg_ids, bool batch,
                const SendResult& r) {
  const bool has_outcomes = !r.outcomes.empty() && r.outcomes.size() == msg_ids.size();
  // Written, but the quorum wait ended without confirmation: by timeout, or because the node is
  // shutting down. Either way the message stays in the log and keeps replicating: 504.
  const bool unconfirmed =
      !r.status.ok() && has_outcomes &&
      (r.status.code() == Code::kTimeout || r.status.code() == Code::kUnavailable);
  if (r.status.ok() || unconfirmed) {
    if (!has_outcomes) {
      reply.SendError(Status::IOError("the log returned " + std::to_string(r.outcomes.size()) +
                                      " outcomes for " + std::to_string(msg_ids.size()) +
                                      " messages"));
      return;
    }
    rapidjson::StringBuffer buf;
    json::Writer w(buf);
    w.StartObject();
    if (r.status.ok()) {
      w.Key("status");
      w.String("ok");
      if (batch) {
        WriteResults(w, r.outcomes, msg_ids);
      } else {
        WriteOutcomeFields(w, r.outcomes[0], msg_ids[0]);
      }
    } else {
      // Written but not confirmed by the quorum in time: the message stays and keeps replicating.
      std::string reason = r.status.message();
      if (r.status.code() != Code::kTimeout) {
        reason += ": message " + msg_ids[0] + " is stored at seq " +
                  std::to_string(r.outcomes[0].seq) +
                  " but its quorum was not confirmed; it keeps replicating, retry with the same "
                  "msg_id";
      }
      w.Key("status");
      w.String("error");
      w.Key("reason");
      w.String(reason.data(), static_cast<rapidjson::SizeType>(reason.size()));
      w.Key("msg_id");
      w.String(msg_ids[0].data(), static_cast<rapidjson::SizeType>(msg_ids[0].size()));
      w.Key("seq");
      w.Uint64(r.outcomes[0].seq);
      if (batch) WriteResults(w, r.outcomes, msg_ids);
    }
    w.EndObject();
    reply.Send(r.status.ok() ? 200 : 504, http::BufferText(buf));
    return;
  }
  reply.SendError(r.status);
}

}  // namespace

struct HttpServer::Impl {
  Impl(const NodeOptions& opts, Node* n, LogStore* l, Clock* c, HttpServerOptions so)
      : options(opts), server_options(so), node(n), log(l), clock(c) {}

  using Handler = void (Impl::*)(const Rest::Request&, const ReplyPtr&);

  const NodeOptions options;
  const HttpServerOptions server_options;
  Node* const node;
  LogStore* const log;
  Clock* const clock;
  const std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  std::shared_ptr<Rest::Router> router;
  std::unique_ptr<Http::Endpoint> endpoint;  // owned by the thread calling Start/Shutdown
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

  void SetUpRoutes();
  // `path`: the route's registered path, whose token scope is checked again before the handler
  // runs (nullptr: no route, e.g. the not-found handler).
  Rest::Route::Handler Bind(Handler h, const char* path = nullptr);

  void HandleSend(const Rest::Request& req, const ReplyPtr& reply);
  void HandleReplicate(const Rest::Request& req, const ReplyPtr& reply);
  void HandleSync(const Rest::Request& req, const ReplyPtr& reply);
  void HandleHeartbeat(const Rest::Request& req, const ReplyPtr& reply);
  void HandleMessages(const Rest::Request& req, const ReplyPtr& reply);
  void HandleStatus(const Rest::Request& req, const ReplyPtr& reply);
  void HandleMetrics(const Rest::Request& req, const ReplyPtr& reply);
  void HandleNotFound(const Rest::Request& req, const ReplyPtr& reply);
  void HandleStream(const Rest::Request& req, const ReplyPtr& reply);
  void HandleDashboard(const Rest::Request& req, const ReplyPtr& reply);
};

namespace {

// Peer data key marking a connection that was answered with a protocol error and is being
// closed: whatever else arrives on it is ignored.
constexpr char kClosingKey[] = "dsm.closing";
// Peer data key of Http::Handler's per-connection request parser (what Pistache 0.0.5's own
// Http::Handler::onConnection stores, and Http::Handler::getParser reads).
constexpr const char* kParserKey = Http::Handler::ParserData;
// Peer data key of the connection's RequestHeadScanner.
constexpr char kHeadScannerKey[] = "dsm.head_scanner";
// Peer data key of a connection's slot in EdgeState::connections.
constexpr char kConnectionSlotKey[] = "dsm.connection_slot";

// What a request presents to authenticate (src/http/auth.h), copied out of its head. Of several
// Cookie headers Pistache keeps the raw value of the first only.
http::Credentials RequestCredentials(const Http::Request& req) {
  std::optional<std::string> authorization;
  std::optional<std::string> dsm_token;
  if (auto a = req.headers().tryGet<Http::Header::Authorization>()) authorization = a->value();
  if (auto raw = req.headers().tryGetRaw(http::kTokenHeader)) dsm_token = raw->value();
  http::Credentials credentials;
  std::optional<std::string_view> t = http::PresentedToken(authorization, dsm_token);
  if (t) credentials.header_token = std::string(*t);
  if (auto raw = req.headers().tryGetRaw(http::kCookieHeader)) credentials.cookie = raw->value();
  credentials.read = req.method() == Http::Method::Get || req.method() == Http::Method::Head;
  return credentials;
}

// The challenge of a 401 answer (Pistache writes only typed headers).
class WwwAuthenticate final : public Http::Header::Header {
 public:
  NAME("WWW-Authenticate")
  void parse(const std::string&) override {}
  void write(std::ostream& os) const override { os << "Bearer realm=\"dsm\""; }
};

// Answers 401 with a JSON error and a WWW-Authenticate challenge.
void SendUnauthorized(Http::ResponseWriter& response, const Status& why) {
  response.headers().add<WwwAuthenticate>();
  response.send(Http::Code::Unauthorized, json::ErrorBody(why.message()), MIME(Application, Json));
}

// What every clone of the EdgeHandler (one per event-loop thread) shares.
struct EdgeState {
  std::shared_ptr<const http::AuthPolicy> auth;
  int max_connections = 0;
  std::atomic<int> connections{0};  // open connections, the refused ones included
};

// The Pistache handler. It routes with the Rest::Router and keeps every answer JSON:
//  - Its onInput() replaces Http::Handler's, which is the same loop (feed the connection's parser,
//    dispatch complete requests) except for protocol errors: Pistache answers those in plain text
//    (500 with e.what() for a bad Content-Length), keeps the connection and parses the rest of the
//    bytes as new requests. Here they get a JSON 4xx and the connection is closed once the answer
//    is written.
//  - Whatever escapes routing becomes a JSON 500 instead of Pistache's text one.
class EdgeHandler final : public Http::Handler {
 public:
  HTTP_PROTOTYPE(EdgeHandler)

  EdgeHandler(std::shared_ptr<Rest::Router> router, std::shared_ptr<EdgeState> state)
      : router_(std::move(router)), state_(std::move(state)) {}

  // Connection limit: a connection beyond max_connections is answered 503 at once and closed, so
  // it costs one accept and one write; the connections already open are not disturbed.
  void onConnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    // What Http::Handler::onConnection does (it cannot be called from here: it is private).
    peer->putData(kParserKey, std::make_shared<Http::RequestParser>(getMaxRequestSize()));
    peer->putData(kHeadScannerKey, std::make_shared<http::RequestHeadScanner>(getMaxRequestSize()));
    peer->putData(http::kConnectionKey, std::make_shared<http::Connection>(transport()));
    // The slot is released when Pistache destroys the peer: exactly once per connection, however
    // the connection ends.
    const int open = state_->connections.fetch_add(1) + 1;
    peer->putData(kConnectionSlotKey, std::shared_ptr<void>(nullptr, [state = state_](void*) {
                    state->connections.fetch_sub(1);
                  }));
    if (state_->max_connections > 0 && open > state_->max_connections) {
      FailConnection(peer, Http::Version::Http11, 503,
                     "too many connections (limit " + std::to_string(state_->max_connections) +
                         "); retry later");
    }
  }

  // Runs on the connection's event-loop thread before Pistache closes the descriptor: from now on
  // no other thread writes to it (see http::Connection).
  void onDisconnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    if (std::shared_ptr<http::Connection> c = http::ConnectionOf(*peer)) c->MarkClosed();
  }

  void onInput(const char* buffer, size_t len,
               const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    if (peer->tryGetData(kClosingKey)) return;
    std::shared_ptr<Http::RequestParser> parser = getParser(peer);
    Http::Request& request = parser->request;
    auto scanner =
        std::static_pointer_cast<http::RequestHeadScanner>(peer->tryGetData(kHeadScannerKey));
    using Verdict = http::RequestHeadScanner::Verdict;
    const Verdict verdict = scanner ? scanner->Feed(std::string_view(buffer, len)) : Verdict::kOk;
    // None of these reaches Pistache's body parser (see request_head.h).
    if (verdict == Verdict::kTransferEncoding) {
      FailConnection(peer, Http::Version::Http11, 411,
                     "Transfer-Encoding is not supported in requests: send the body with a "
                     "Content-Length");
      return;
    }
    if (verdict == Verdict::kBadContentLength) {
      FailConnection(peer, Http::Version::Http11, 400,
                     "malformed HTTP request: Content-Length must be a decimal number");
      return;
    }
    if (verdict == Verdict::kTooLarge) {
      FailConnection(
          peer, Http::Version::Http11, 413,
          "request larger than the limit of " + std::to_string(getMaxRequestSize()) + " bytes");
      return;
    }
    try {
      if (!parser->feed(buffer, len)) {
        throw Http::HttpError(
            Http::Code::Request_Entity_Too_Large,
            "request larger than the limit of " + std::to_string(getMaxRequestSize()) + " bytes");
      }
      if (parser->parse() != Http::Private::State::Done) return;  // wait for more bytes
      Http::ResponseWriter response(request.version(), transport(), this, peer);
      request.copyAddress(peer->address());
      // As Pistache does: echo the client's Connection header, else ask it to close.
      auto connection = request.headers().tryGet<Http::Header::Connection>();
      response.headers().add<Http::Header::Connection>(connection ? connection->control()
                                                                  : Http::ConnectionControl::Close);
      peer->setIdle(false);
      onRequest(request, std::move(response));
      parser->reset();
      if (scanner) scanner->Reset();
    } catch (const Http::HttpError& e) {
      // Client errors keep their status (413 too large, 400 malformed); anything else the
      // parser refuses (e.g. 501 for an unknown Transfer-Encoding) is still the client's input.
      int code = e.code() >= 400 && e.code() < 500 ? e.code() : 400;
      FailConnection(peer, request.version(), code,
                     code == 413 ? e.reason() : "malformed HTTP request: " + e.reason());
      parser->reset();
    } catch (const std::exception& e) {
      FailConnection(peer, request.version(), 400,
                     std::string("malformed HTTP request: ") + e.what());
      parser->reset();
    }
  }

  void onRequest(const Http::Request& req, Http::ResponseWriter response) override {
    if (req.resource().empty()) {
      response.send(Http::Code::Bad_Request, json::ErrorBody("empty request target"),
                    MIME(Application, Json));
      return;
    }
    if (!state_->auth->open()) {
      Status allowed = state_->auth->Check(req.resource(), RequestCredentials(req));
      if (!allowed.ok()) return SendUnauthorized(response, allowed);
    }
    Http::ResponseWriter spare = response.clone();
    try {
      router_->route(req, std::move(response));
    } catch (const std::exception& e) {
      spdlog::error("routing {} failed: {}", req.resource(), e.what());
      spare.send(Http::Code::Internal_Server_Error,
                 json::ErrorBody(std::string("internal error: ") + e.what()),
                 MIME(Application, Json));
    }
  }

 private:
  // Answers a protocol error and closes the connection once the answer is written (shutting the
  // socket down makes Pistache see the end of the connection and release it).
  void FailConnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer, Http::Version version,
                      int code, const std::string& reason) {
    if (peer->tryGetData(kClosingKey)) return;
    peer->putData(kClosingKey, std::make_shared<int>(0));
    Http::ResponseWriter response(version, transport(), this, peer);
    response.headers().add<Http::Header::Connection>(Http::ConnectionControl::Close);
    std::weak_ptr<Pistache::Tcp::Peer> weak = peer;
    auto close = [weak] {
      if (auto p = weak.lock()) ::shutdown(p->fd(), SHUT_RDWR);
    };
    response.send(static_cast<Http::Code>(code), json::ErrorBody(reason), MIME(Application, Json))
        .then([close](ssize_t) { close(); }, [close](std::exception_ptr) { close(); });
  }

  std::shared_ptr<Rest::Router> router_;
  std::shared_ptr<EdgeState> state_;
};

}  // namespace

Rest::Route::Handler HttpServer::Impl::Bind(Handler h, const char* path) {
  return [this, h, path](const Rest::Request& req, Http::ResponseWriter writer) {
    if (path != nullptr && !auth->open()) {
      // The route's own path decides its scope, whatever spelling of it the router matched.
      Status allowed = auth->Check(path, RequestCredentials(req));
      if (!allowed.ok()) {
        SendUnauthorized(writer, allowed);
        return Rest::Route::Result::Ok;
      }
    }
    auto reply = std::make_shared<Reply>(std::move(writer), req.version(), gate);
    try {
      (this->*h)(req, reply);
    } catch (const std::exception& e) {
      spdlog::error("{} {} failed: {}", Http::methodString(req.method()), req.resource(), e.what());
      reply->Send(500, json::ErrorBody(std::string("internal error: ") + e.what()));
    } catch (...) {
      spdlog::error("{} {} failed with an unknown exception", Http::methodString(req.method()),
                    req.resource());
      reply->Send(500, json::ErrorBody("internal error"));
    }
    return Rest::Route::Result::Ok;
  };
}

void HttpServer::Impl::SetUpRoutes() {
  router = std::make_shared<Rest::Router>();
  struct RouteSpec {
    const char* path;
    Http::Method method;
    Handler handler;
  };
  const RouteSpec routes[] = {
      {"/send", Http::Method::Post, &Impl::HandleSend},
      {"/replicate", Http::Method::Post, &Impl::HandleReplicate},
      {"/sync", Http::Method::Post, &Impl::HandleSync},
      {"/heartbeat", Http::Method::Get, &Impl::HandleHeartbeat},
      {"/messages", Http::Method::Get, &Impl::HandleMessages},
      {"/status", Http::Method::Get, &Impl::HandleStatus},
      {"/metrics", Http::Method::Get, &Impl::HandleMetrics},
      {"/messages/stream", Http::Method::Get, &Impl::HandleStream},
      {"/", Http::Method::Get, &Impl::HandleDashboard},
      {"/dashboard", Http::Method::Get, &Impl::HandleDashboard},
      {"/dashboard/app.js", Http::Method::Get, &Impl::HandleDashboard},
      {"/dashboard/style.css", Http::Method::Get, &Impl::HandleDashboard},
  };
  for (const RouteSpec& r : routes) {
    router->addRoute(r.method, r.path, Bind(r.handler, r.path));
    // Every other method gets a JSON 405. Registering all of them also keeps the router from
    // inserting into its method table while serving (it is shared by the event-loop threads).
    const std::vector<Http::Method> allow = {r.method};
    const std::string reason = std::string("method not allowed on ") + r.path +
                               " (allowed: " + Http::methodString(r.method) + ")";
    for (Http::Method m : kAllMethods) {
      if (m == r.method) continue;
      router->addRoute(
          m, r.path, [this, allow, reason](const Rest::Request& req, Http::ResponseWriter writer) {
            Reply(std::move(writer), req.version(), gate)
                .Send(405, json::ErrorBody(reason), &allow);
            return Rest::Route::Result::Ok;
          });
    }
  }
  router->addNotFoundHandler(Bind(&Impl::HandleNotFound));
}

void HttpServer::Impl::HandleNotFound(const Rest::Request& req, const ReplyPtr& reply) {
  std::string resource = req.resource().substr(0, 200);
  reply->SendError(Status::NotFound(std::string("no such endpoint: ") +
                                    Http::methodString(req.method()) + " " + resource));
}

void HttpServer::Impl::HandleSend(const Rest::Request& req, const ReplyPtr& reply) {
  Result<rapidjson::Document> doc = json::Parse(req.body());
  if (!doc.ok()) return reply->SendError(doc.status());
  if (!doc->IsObject()) {
    return reply->SendError(Status::InvalidArgument(
        "the body must be a JSON object: a message or {\"messages\":[...]}"));
  }
  AckMode ack = AckMode::kDefault;
  if (auto it = doc->FindMember("ack"); it != doc->MemberEnd()) {
    std::string_view v = it->value.IsString()
                             ? std::string_view(it->value.GetString(), it->value.GetStringLength())
                             : std::string_view();
    if (v == "local") {
      ack = AckMode::kLocal;
    } else if (v == "quorum") {
      ack = AckMode::kQuorum;
    } else {
      return reply->SendError(Status::InvalidArgument("'ack' must be \"local\" or \"quorum\""));
    }
  }
  auto batch_it = doc->FindMember("messages");
  const bool batch = batch_it != doc->MemberEnd();
  Result<std::vector<Message>> msgs =
      ParseMessages(batch ? batch_it->value : *doc, batch, batch ? "messages" : "",
                    json::MessageSource::kClient, options.max_message_bytes, clock);
  if (!msgs.ok()) return reply->SendError(msgs.status());

  // Quorum writes wait in memory for their acknowledgements: beyond the bound, refuse them before
  // anything is written. The slot is released when the answer is given (or its completion dropped).
  std::shared_ptr<void> quorum_slot;
  const bool quorum = ack == AckMode::kQuorum ||
                      (ack == AckMode::kDefault && options.mode == ReplicationMode::kSyncQuorum);
  if (quorum && server_options.max_pending_quorum_writes > 0) {
    const int limit = server_options.max_pending_quorum_writes;
    if (pending_quorum_writes->fetch_add(1) >= limit) {
      pending_quorum_writes->fetch_sub(1);
      return reply->SendError(Status::Unavailable("too many pending quorum writes (limit " +
                                                  std::to_string(limit) + "); retry later"));
    }
    quorum_slot = std::shared_ptr<void>(
        nullptr, [pending = pending_quorum_writes](void*) { pending->fetch_sub(1); });
  }

  std::vector<std::string> msg_ids;
  msg_ids.reserve(msgs->size());
  for (const Message& m : *msgs) msg_ids.push_back(m.msg_id);
  // Node::Send answers now or later from another thread; this thread goes back to serving.
  node->Send(std::move(msgs).value(), ack,
             [reply, msg_ids = std::move(msg_ids), batch,
              quorum_slot = std::move(quorum_slot)](SendResult r) mutable {
               quorum_slot.reset();
               try {
                 AnswerSend(*reply, msg_ids, batch, r);
               } catch (const std::exception& e) {
                 reply->Send(500, json::ErrorBody(std::string("internal error: ") + e.what()));
               }
             });
}

void HttpServer::Impl::HandleReplicate(const Rest::Request& req, const ReplyPtr& reply) {
  Result<rapidjson::Document> doc = json::Parse(req.body());
  if (!doc.ok()) return reply->SendError(doc.status());
  const char* kShape = "the body must be {\"msg\":{...}} or {\"msgs\":[...]}";
  if (!doc->IsObject()) return reply->SendError(Status::InvalidArgument(kShape));
  auto batch_it = doc->FindMember("msgs");
  auto single_it = doc->FindMember("msg");
  const bool batch = batch_it != doc->MemberEnd();
  if (!batch && single_it == doc->MemberEnd()) {
    return reply->SendError(Status::InvalidArgument(kShape));
  }
  Result<std::vector<Message>> msgs =
      ParseMessages(batch ? batch_it->value : single_it->value, batch, batch ? "msgs" : "msg",
                    json::MessageSource::kPeer, options.max_message_bytes, clock);
  if (!msgs.ok()) return reply->SendError(msgs.status());

  // Kept to describe a gap after the messages have been handed over.
  std::vector<std::pair<std::string, uint64_t>> positions;
  positions.reserve(msgs->size());
  for (const Message& m : *msgs) positions.emplace_back(m.origin, m.origin_seq);

  Result<ReplicateResult> r = node->Replicate(std::move(msgs).value());
  if (!r.ok()) return reply->SendError(r.status());
  if (r->outcomes.size() != positions.size()) {
    return reply->SendError(Status::IOError("the log returned " +
                                            std::to_string(r->outcomes.size()) + " outcomes for " +
                                            std::to_string(positions.size()) + " messages"));
  }

  const http::PeerAnswer answer = http::ReplicateAnswer(*r, positions, node->stream_id(), batch);
  reply->Send(answer.status, answer.body);
}

void HttpServer::Impl::HandleSync(const Rest::Request& req, const ReplyPtr& reply) {
  Result<http::SyncRequest> parsed = http::ParseSyncRequest(req.body());
  if (!parsed.ok()) return reply->SendError(parsed.status());
  const uint64_t since = parsed->since;
  const std::optional<size_t> limit = parsed->limit;
  const std::optional<std::string>& origin = parsed->origin;
  const std::map<std::string, uint64_t>& have = parsed->have;

  if (origin) {
    // One origin stream, by origin_seq: positions since+1, since+2, ... (a stream is held as a
    // gap-free prefix), at most `limit` of them (kMaxListingLimit without one).
    Result<SyncPage> page =
        node->SyncStream(*origin, since, limit.value_or(http::kMaxListingLimit));
    if (!page.ok()) return reply->SendError(page.status());
    const uint64_t next = since + page->messages.size();
    TrailerWriter trailer = [more = page->more, next, last_seq = page->last_seq,
                             stream = page->stream,
                             origin = *origin](json::Writer& w, size_t, uint64_t) {
      http::WriteSyncTrailer(w, more, next, last_seq, stream);
      w.Key("origin");
      w.String(origin.data(), static_cast<rapidjson::SizeType>(origin.size()));
    };
    return Listing::Run(reply, std::make_unique<VectorSource>(std::move(page->messages)),
                        std::move(trailer));
  }
  if (limit || !have.empty()) {
    Result<SyncPage> page = node->Sync(since, limit.value_or(http::kMaxListingLimit), have);
    if (!page.ok()) return reply->SendError(page.status());
    TrailerWriter trailer = [more = page->more, next = page->next, last_seq = page->last_seq,
                             stream = page->stream](json::Writer& w, size_t, uint64_t) {
      http::WriteSyncTrailer(w, more, next, last_seq, stream);
    };
    return Listing::Run(reply, std::make_unique<VectorSource>(std::move(page->messages)),
                        std::move(trailer));
  }
  // Everything after `since`, streamed.
  ScanOptions scan;
  scan.after = since;
  auto source = std::make_unique<ScanSource>(log, scan, std::nullopt);
  const uint64_t last_seq = source->last();
  TrailerWriter trailer = [since, last_seq, stream = log->stream_id()](
                              json::Writer& w, size_t count, uint64_t last) {
    // The node's last seq, or the last one streamed if appends landed meanwhile; never `since`.
    const uint64_t next = count > 0 ? last : since;
    http::WriteSyncTrailer(w, false, next, count > 0 ? std::max(last_seq, last) : last_seq, stream);
  };
  Listing::Run(reply, std::move(source), std::move(trailer));
}

void HttpServer::Impl::HandleStream(const Rest::Request& req, const ReplyPtr& reply) {
  if (!consumers) return reply->SendError(Status::Unavailable("live reads are not enabled"));
  consumers->Stream(req, reply);
}

void HttpServer::Impl::HandleDashboard(const Rest::Request& req, const ReplyPtr& reply) {
  http::ServeDashboard(req.resource(), *reply);
}

void HttpServer::Impl::HandleMessages(const Rest::Request& req, const ReplyPtr& reply) {
  if (http::IsLiveListing(RawQuery(req))) {
    // A long-poll (wait_ms) or a read from a resume position: src/http/consumers.h.
    if (!consumers) return reply->SendError(Status::Unavailable("live reads are not enabled"));
    return consumers->Poll(req, reply);
  }
  Result<http::ListingQuery> q = http::ParseListingQuery(RawQuery(req));
  if (!q.ok()) return reply->SendError(q.status());
  ScanOptions scan;
  scan.after = q->after;
  scan.sender = q->sender;
  scan.recipient = q->recipient;
  auto source = std::make_unique<ScanSource>(log, scan, q->limit);
  TrailerWriter trailer;
  if (q->limit) {
    // Paging fields only with a limit (a listing without one is everything).
    const ScanSource* src = source.get();  // owned by the listing that calls the trailer
    trailer = [src, after = q->after](json::Writer& w, size_t count, uint64_t last) {
      w.Key("more");
      w.Bool(src->more());
      w.Key("next");
      w.Uint64(count > 0 ? last : after);
    };
  } else {
    trailer = [](json::Writer&, size_t, uint64_t) {};
  }
  Listing::Run(reply, std::move(source), std::move(trailer));
}

void HttpServer::Impl::HandleHeartbeat(const Rest::Request&, const ReplyPtr& reply) {
  const http::PeerAnswer answer = http::HeartbeatAnswer(node->Heartbeat());
  reply->Send(answer.status, answer.body);
}

void HttpServer::Impl::HandleMetrics(const Rest::Request&, const ReplyPtr& reply) {
  MetricsWriter w;
  node->WriteMetrics(w);
  if (consumers) {
    w.Family("dsm_live_readers", "gauge", "Long-polls waiting plus event streams open.");
    w.Sample("dsm_live_readers", static_cast<double>(consumers->active()));
  }
  reply->SendAs(200, w.text(), Http::Mime::MediaType::fromString("text/plain; version=0.0.4"));
}

void HttpServer::Impl::HandleStatus(const Rest::Request&, const ReplyPtr& reply) {
  NodeStatus st = node->GetStatus();
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  auto str = [&w](const std::string& s) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  };
  w.StartObject();
  w.Key("node_id");
  str(st.node_id);
  w.Key("port");
  w.Uint(bound_port.load());
  w.Key("peers");
  w.StartArray();
  for (const std::string& url : options.peers) str(url);
  w.EndArray();
  w.Key("peer_status");
  w.StartObject();
  for (const PeerStatus& p : st.peers) {
    w.Key(p.url.data(), static_cast<rapidjson::SizeType>(p.url.size()));
    w.StartObject();
    w.Key("alive");
    w.Bool(p.alive);
    w.Key("last_ok");
    w.Double(p.last_ok);
    w.Key("consecutive_failures");
    w.Int(p.consecutive_failures);
    w.Key("push_cursor");
    w.Uint64(p.push_cursor);
    w.Key("lag_messages");
    w.Uint64(p.lag_messages);
    w.Key("lag_seconds");
    w.Double(p.lag_seconds);
    w.Key("stream");
    str(p.stream);
    w.Key("push_problem");
    str(p.push_problem);
    w.Key("pull_problem");
    str(p.pull_problem);
    w.Key("pull_cursor");
    w.StartObject();
    w.Key("stream");
    str(p.pull_cursor.peer_stream);
    w.Key("seq");
    w.Uint64(p.pull_cursor.seq);
    w.EndObject();
    w.EndObject();
  }
  w.EndObject();
  w.Key("replication_mode");
  w.String(ModeName(st.mode));
  w.Key("quorum");
  w.Int(st.quorum);
  w.Key("stream");
  str(st.stream);
  w.Key("last_seq");
  w.Uint64(st.last_seq);
  w.Key("own_high_water");
  w.Uint64(st.own_high_water);
  w.Key("writable");
  w.Bool(st.write_health.ok());
  if (!st.write_health.ok()) {
    w.Key("write_error");
    str(st.write_health.ToString());
  }
  w.EndObject();
  reply->Send(200, http::BufferText(buf));
}

HttpServer::HttpServer(const NodeOptions& options, Node* node, LogStore* log, Clock* clock,
                       HttpServerOptions server_options)
    : impl_(std::make_shared<Impl>(options, node, log, clock, server_options)) {}

HttpServer::~HttpServer() { Shutdown(); }

Status HttpServer::Start() {
  Impl& d = *impl_;
  const std::string where = d.options.host + ":" + std::to_string(d.options.port);
  if (d.started) return Status::InvalidArgument("the server was already started");
  d.started = true;
  if (d.server_options.append_notifier != nullptr) {
    // A waiting long-poll or an open stream is an idle connection for Pistache, closed after
    // keepalive_timeout without a write: waits end and keep-alives are written well before.
    using Ms = std::chrono::milliseconds;
    const Ms keepalive = d.server_options.keepalive_timeout;
    http::ConsumerOptions co;
    co.max_wait = std::clamp<Ms>(keepalive - Ms(1000), Ms(0), Ms(http::kMaxWaitMs));
    co.keepalive_interval =
        std::max<Ms>(Ms(10), std::min(d.server_options.event_keepalive, keepalive / 3));
    co.max_consumers = d.server_options.max_live_readers;
    co.stall_timeout = d.server_options.event_stall_timeout;
    co.attach_delay = d.server_options.event_attach_delay;
    d.consumers =
        std::make_unique<http::ConsumerHub>(d.log, d.server_options.append_notifier, d.gate, co);
  }
  try {
    d.SetUpRoutes();
    Pistache::Address addr(d.options.host, Pistache::Port(d.options.port));
    auto endpoint = std::make_unique<Http::Endpoint>(addr);
    // Pistache applies the header timeout to a connection whose answer is still pending (its
    // parser waits for the next request line), so it must outlast the longest quorum wait.
    const auto pending_answer = d.options.quorum_timeout + std::chrono::seconds(5);
    const auto header_timeout =
        std::max<std::chrono::milliseconds>(d.server_options.header_timeout, pending_answer);
    const auto body_timeout =
        std::max<std::chrono::milliseconds>(d.server_options.body_timeout, pending_answer);
    auto opts = Http::Endpoint::options()
                    .threads(std::max(1, d.server_options.threads))
                    .threadsName("dsm-http")
                    .flags(Pistache::Tcp::Options::ReuseAddr)
                    .maxRequestSize(MaxRequestBytes(d.options))
                    .headerTimeout(header_timeout)
                    .bodyTimeout(body_timeout)
                    .keepaliveTimeout(d.server_options.keepalive_timeout);
    endpoint->init(opts);
    auto edge_state = std::make_shared<EdgeState>();
    edge_state->auth = d.auth;
    edge_state->max_connections = d.server_options.max_connections;
    endpoint->setHandler(std::make_shared<EdgeHandler>(d.router, std::move(edge_state)));
    endpoint->serveThreaded();
    d.bound_port = static_cast<uint16_t>(endpoint->getPort());
    d.endpoint = std::move(endpoint);
  } catch (const std::exception& e) {
    return Status::Unavailable("cannot listen on " + where + ": " + e.what());
  }
  return Status::Ok();
}

void HttpServer::Shutdown() {
  Impl& d = *impl_;
  if (d.shut_down || !d.endpoint) return;
  d.shut_down = true;
  Gate& gate = *d.gate;
  gate.stopping = true;
  // Waiting long-polls get their (empty) pages now, while answers are still delivered.
  if (d.consumers) d.consumers->Stop();
  gate.CutStreams();
  {
    // Answers already handed over (e.g. quorum waits the stopped Node just failed) get written.
    MutexLock lock(&gate.settle_mu);
    const auto until = std::chrono::steady_clock::now() + d.server_options.drain_timeout;
    while (gate.in_flight != 0) {
      if (!gate.settled.WaitUntil(&gate.settle_mu, until)) break;
    }
  }
  {
    MutexLock lock(&gate.mu);
    gate.closed = true;
  }
  d.endpoint->shutdown();
  d.endpoint.reset();  // joins the event-loop threads
}

uint16_t HttpServer::port() const { return impl_->bound_port.load(); }

}  // namespace dsm

#include "src/http/server.h"

#include <malloc.h>
#include <netdb.h>
#include <pistache/endpoint.h>
#include <pistache/http.h>
#include <pistache/peer.h>
#include <pistache/router.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/ids.h"
#include "src/http/edge.h"
#include "src/http/json_codec.h"
#include "src/http/reply.h"
#include "src/http/server_impl.h"
#include "src/http/tls.h"

namespace dsm {

namespace Http = Pistache::Http;
namespace Rest = Pistache::Rest;
using http::Gate;
using http::Reply;
using http::ReplyPtr;

namespace server_internal {
namespace {

constexpr size_t kMaxBatchMessages = 10000;

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

// Fills the defaults of a client or peer message: sender "unknown", recipient "all", a new UUID
// msg_id, and the node's wall clock as ts when the object has no "ts".
void FillDefaults(const rapidjson::Value& obj, Clock* clock, Message* m) {
  if (m->sender.empty()) m->sender = "unknown";
  if (m->recipient.empty()) m->recipient = "all";
  if (m->msg_id.empty()) m->msg_id = NewUuid();
  if (!obj.HasMember("ts")) m->ts = clock->WallSeconds();
}

}  // namespace

std::map<std::string, std::string> RawQuery(const Http::Request& req) {
  const auto& q = req.query();
  return std::map<std::string, std::string>(q.parameters_begin(), q.parameters_end());
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

}  // namespace server_internal

namespace {

const std::vector<Http::Method> kAllMethods = {
    Http::Method::Options, Http::Method::Get,   Http::Method::Post,
    Http::Method::Head,    Http::Method::Put,   Http::Method::Patch,
    Http::Method::Delete,  Http::Method::Trace, Http::Method::Connect,
};

}  // namespace

Rest::Route::Handler HttpServer::Impl::Bind(Handler h, const char* path) {
  return [this, h, path](const Rest::Request& req, Http::ResponseWriter writer) {
    if (path != nullptr && !auth->open()) {
      // The route's own path decides its scope, whatever spelling of it the router matched.
      Status allowed = auth->Check(path, http::RequestCredentials(req));
      if (!allowed.ok()) {
        http::SendUnauthorized(writer, allowed);
        return Rest::Route::Result::Ok;
      }
    }
    const bool head_only = req.method() == Http::Method::Head;
    auto reply = std::make_shared<Reply>(std::move(writer), req.version(), gate, head_only);
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
      {"/heartbeat", Http::Method::Post, &Impl::HandleHeartbeat},
      {"/messages", Http::Method::Get, &Impl::HandleMessages},
      {"/status", Http::Method::Get, &Impl::HandleStatus},
      {"/metrics", Http::Method::Get, &Impl::HandleMetrics},
      {"/messages/stream", Http::Method::Get, &Impl::HandleStream},
      {"/consumers", Http::Method::Get, &Impl::HandleConsumerList},
      {"/consumers/:name", Http::Method::Put, &Impl::HandleConsumerPut},
      {"/consumers/:name", Http::Method::Get, &Impl::HandleConsumerGet},
      {"/consumers/:name", Http::Method::Delete, &Impl::HandleConsumerDelete},
      {"/consumers/:name/messages", Http::Method::Get, &Impl::HandleConsumerFetch},
      {"/consumers/:name/ack", Http::Method::Post, &Impl::HandleConsumerAck},
      {"/consumers/:name/nak", Http::Method::Post, &Impl::HandleConsumerNak},
      {"/consumers/:name/dead", Http::Method::Get, &Impl::HandleConsumerDead},
      {"/cluster", Http::Method::Get, &Impl::HandleCluster},
      {"/cluster/members", Http::Method::Post, &Impl::HandleMemberAdd},
      {"/cluster/members/:id", Http::Method::Delete, &Impl::HandleMemberRemove},
      {"/", Http::Method::Get, &Impl::HandleDashboard},
      {"/dashboard", Http::Method::Get, &Impl::HandleDashboard},
      {"/dashboard/app.js", Http::Method::Get, &Impl::HandleDashboard},
      {"/dashboard/style.css", Http::Method::Get, &Impl::HandleDashboard},
  };
  // The methods of each path (a path may have several, e.g. /consumers/:name).
  std::map<std::string, std::vector<Http::Method>> methods_of;
  for (const RouteSpec& r : routes) {
    router->addRoute(r.method, r.path, Bind(r.handler, r.path));
    methods_of[r.path].push_back(r.method);
    // HEAD on a GET endpoint answers as GET does, without the body (Reply::head_only).
    if (r.method == Http::Method::Get) {
      router->addRoute(Http::Method::Head, r.path, Bind(r.handler, r.path));
      methods_of[r.path].push_back(Http::Method::Head);
    }
  }
  for (const auto& [path, methods] : methods_of) {
    // A named copy: a lambda cannot capture a structured binding (C++20 as clang 14 reads it).
    const std::vector<Http::Method> allow = methods;
    std::string allowed_text;
    for (Http::Method m : allow) {
      if (!allowed_text.empty()) allowed_text += ", ";
      allowed_text += Http::methodString(m);
    }
    // Every other method gets a JSON 405. Registering all of them also keeps the router from
    // inserting into its method table while serving (it is shared by the event-loop threads).
    const std::string reason =
        std::string("method not allowed on ") + path + " (allowed: " + allowed_text + ")";
    for (Http::Method m : kAllMethods) {
      if (std::find(allow.begin(), allow.end(), m) != allow.end()) continue;
      router->addRoute(
          m, path, [this, allow, reason](const Rest::Request& req, Http::ResponseWriter writer) {
            Reply(std::move(writer), req.version(), gate, req.method() == Http::Method::Head)
                .Send(405, json::ErrorBody(reason), &allow);
            return Rest::Route::Result::Ok;
          });
    }
  }
  router->addNotFoundHandler(Bind(&Impl::HandleNotFound));
}

namespace {

// The numeric addresses of `url`'s host ("http[s]://host:port"), as accepted connections show
// them.
std::vector<std::string> AddressesOf(const std::string& url) {
  std::string_view rest = url;
  if (const size_t scheme_end = rest.find("://"); scheme_end != std::string_view::npos) {
    rest.remove_prefix(scheme_end + 3);
  }
  int port = 0;
  std::optional<std::string> host = http::AuthorityHost(rest, &port);
  if (!host) return {};
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host->c_str(), nullptr, &hints, &found) != 0) return {*host};
  std::vector<std::string> out;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    char text[NI_MAXHOST];
    if (::getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof(text), nullptr, 0,
                      NI_NUMERICHOST) == 0) {
      out.emplace_back(text);
    }
  }
  ::freeaddrinfo(found);
  return out;
}

}  // namespace

http::EdgeOptions HttpServer::Impl::MakeEdgeOptions() const {
  http::EdgeOptions o;
  o.auth = auth;
  o.max_request_bytes = MaxRequestBytes(options);
  o.max_header_bytes = server_options.max_header_bytes;
  o.max_header_lines = server_options.max_header_lines;
  o.max_inflight_body_bytes = server_options.max_inflight_body_bytes;
  o.max_connections = server_options.max_connections;
  o.max_connections_per_ip = server_options.max_connections_per_ip;
  for (const std::string& url : options.peers) {
    for (std::string& a : AddressesOf(url)) o.peer_addresses.push_back(std::move(a));
  }
  // Room for each peer's keep-alive connections (the peer client holds a few per peer), at most
  // half of the slots.
  o.reserved_peer_connections = std::min<int>(server_options.max_connections / 2,
                                              static_cast<int>(options.peers.size()) * 4);
  o.check_host = http::IsLoopbackHost(options.host);
  for (const std::string& h : server_options.allowed_hosts) {
    std::string lower = h;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    o.allowed_hosts.push_back(std::move(lower));
  }
  return o;
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
  // Large request buffers (bodies of up to MaxRequestBytes) are given back to the system as soon
  // as they are freed: a fixed mmap threshold stops glibc from raising it after the first such
  // buffer, which would keep every later one in the heap after a burst (see also EdgeConnection's
  // malloc_trim, src/http/edge.cc). Process-wide; the node is the only user of this allocator.
  // 1 MiB, not lower: the buffers of a batch of 1000 messages (a body, its JSON, a push, a
  // RocksDB write batch) are a few hundred KiB, and mapping each of them anew slowed batch
  // publish by up to a third (dsm-bench --phases batch).
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
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
    // The edge refuses a head over max_header_bytes and a body over MaxRequestBytes before
    // Pistache's parser sees them: its own limit (on head and body together) never comes first.
    auto opts = Http::Endpoint::options()
                    .threads(std::max(1, d.server_options.threads))
                    .threadsName("dsm-http")
                    .flags(Pistache::Tcp::Options::ReuseAddr)
                    .maxRequestSize(MaxRequestBytes(d.options) + d.server_options.max_header_bytes)
                    .headerTimeout(header_timeout)
                    .bodyTimeout(body_timeout)
                    .keepaliveTimeout(d.server_options.keepalive_timeout);
    endpoint->init(opts);
    const http::TlsFiles& tls = d.server_options.tls;
    if (tls.serving()) {
      http::EnableDeferredTlsHandshakes();
      endpoint->useSSL(tls.cert_file, tls.key_file);
      if (!tls.client_ca_file.empty()) endpoint->useSSLAuth(tls.client_ca_file);
    }
    endpoint->setHandler(http::MakeEdgeHandler(d.router, d.MakeEdgeOptions()));
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
  if (d.durable) d.durable->Stop();
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
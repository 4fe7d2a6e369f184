#include "src/http/edge.h"

#include <malloc.h>
#include <pistache/peer.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"
#include "src/http/json_codec.h"
#include "src/http/reply.h"
#include "src/http/request_head.h"

namespace dsm::http {

namespace Http = Pistache::Http;
namespace Rest = Pistache::Rest;

namespace {

// Peer data key marking a connection that was answered with a protocol error and is being
// closed: whatever else arrives on it is ignored.
constexpr char kClosingKey[] = "dsm.closing";
// Peer data key of Http::Handler's per-connection request parser (what Pistache 0.0.5's own
// Http::Handler::onConnection stores, and Http::Handler::getParser reads).
constexpr const char* kParserKey = Http::Handler::ParserData;
// Peer data key of the connection's EdgeConnection.
constexpr char kEdgeConnectionKey[] = "dsm.edge";

// A body at least this large (declared) is followed by a malloc_trim once it is freed, at most
// once per kTrimInterval: glibc keeps freed heap memory otherwise.
constexpr uint64_t kTrimAfterBytes = 1 << 20;
constexpr std::chrono::milliseconds kTrimInterval{1000};

// The challenge of a 401 answer (Pistache writes only typed headers).
class WwwAuthenticate final : public Http::Header::Header {
 public:
  NAME("WWW-Authenticate")
  void parse(const std::string&) override {}
  void write(std::ostream& os) const override { os << "Bearer realm=\"dsm\""; }
};

// Marks the connection's answer as given (see Connection::BeginAnswer).
void EndAnswer(const std::shared_ptr<Pistache::Tcp::Peer>& peer) {
  if (std::shared_ptr<Connection> c = ConnectionOf(*peer)) c->EndAnswer();
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A header value quoted in an error: at most 100 bytes, bytes outside printable ASCII as '?' (so
// the JSON answer stays valid UTF-8 whatever the client sent).
std::string Shorten(std::string_view s) {
  std::string out(s.substr(0, 100));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  }
  return s.size() <= 100 ? out : out + "...";
}

}  // namespace

bool IsLoopbackHost(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string h = Lower(host);
  if (h == "localhost" || h == "localhost." || h == "::1" || h == "0:0:0:0:0:0:0:1") return true;
  // 127.0.0.0/8 as a dotted quad.
  if (h.rfind("127.", 0) != 0) return false;
  int parts = 0;
  size_t i = 0;
  while (i <= h.size()) {
    size_t dot = h.find('.', i);
    if (dot == std::string::npos) dot = h.size();
    std::string_view part = std::string_view(h).substr(i, dot - i);
    if (part.empty() || part.size() > 3 ||
        !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoi(std::string(part)) > 255) {
      return false;
    }
    ++parts;
    i = dot + 1;
  }
  return parts == 4;
}

std::optional<std::string> AuthorityHost(std::string_view authority, int* port) {
  *port = 0;
  std::string_view host = authority;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = authority.substr(1, close - 1);
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port_text = rest.substr(1);
    }
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port_text = authority.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return std::nullopt;  // IPv6 needs brackets
  }
  if (host.empty()) return std::nullopt;
  for (char c : host) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
                    c == '_' || c == ':';
    if (!ok) return std::nullopt;
  }
  if (!port_text.empty()) {
    if (port_text.size() > 5 ||
        !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    *port = std::stoi(std::string(port_text));
    if (*port < 1 || *port > 65535) return std::nullopt;
  }
  return Lower(host);
}

bool SameOrigin(std::string_view origin, std::string_view host_header) {
  int default_port = 0;
  if (origin.rfind("http://", 0) == 0) {
    default_port = 80;
    origin.remove_prefix(7);
  } else if (origin.rfind("https://", 0) == 0) {
    default_port = 443;
    origin.remove_prefix(8);
  } else {
    return false;  // "null", another scheme, garbage
  }
  int origin_port = 0;
  int host_port = 0;
  std::optional<std::string> a = AuthorityHost(origin, &origin_port);
  std::optional<std::string> b = AuthorityHost(host_header, &host_port);
  if (!a || !b) return false;
  if (origin_port == 0) origin_port = default_port;
  if (host_port == 0) host_port = default_port;
  return *a == *b && origin_port == host_port;
}

Credentials RequestCredentials(const Http::Request& req) {
  std::optional<std::string> authorization;
  std::optional<std::string> dsm_token;
  if (auto a = req.headers().tryGet<Http::Header::Authorization>()) authorization = a->value();
  if (auto raw = req.headers().tryGetRaw(kTokenHeader)) dsm_token = raw->value();
  Credentials credentials;
  std::optional<std::string_view> t = PresentedToken(authorization, dsm_token);
  if (t) credentials.header_token = std::string(*t);
  if (auto raw = req.headers().tryGetRaw(kCookieHeader)) credentials.cookie = raw->value();
  credentials.read = req.method() == Http::Method::Get || req.method() == Http::Method::Head;
  return credentials;
}

void SendUnauthorized(Http::ResponseWriter& response, const Status& why) {
  std::shared_ptr<Pistache::Tcp::Peer> peer = response.getPeer();
  if (peer) {
    peer->putData(kClosingKey, std::make_shared<int>(0));
    EndAnswer(peer);
  }
  response.headers().add<WwwAuthenticate>();
  response.headers().add<Http::Header::Connection>(Http::ConnectionControl::Close);
  std::weak_ptr<Pistache::Tcp::Peer> weak = peer;
  auto close = [weak] {
    if (auto p = weak.lock()) ShutdownConnection(p);
  };
  response.send(Http::Code::Unauthorized, json::ErrorBody(why.message()), MIME(Application, Json))
      .then([close](ssize_t) { close(); }, [close](std::exception_ptr) { close(); });
}

namespace {

// What every clone of the EdgeHandler (one per event-loop thread) shares.
struct EdgeState {
  explicit EdgeState(EdgeOptions o) : options(std::move(o)) {}

  const EdgeOptions options;
  std::atomic<int> connections{0};  // admitted, not yet destroyed; and one being decided
  std::atomic<uint64_t> inflight_body_bytes{0};
  std::atomic<int64_t> last_trim_ms{0};

  // The open connections of each address other than a peer's, oldest first.
  struct AddressSlot {
    uint64_t id;
    std::shared_ptr<Connection> connection;
    int fd;
    bool evicted = false;  // shut down to make room: no longer counted
  };
  // Lock order: mu before a Connection's own mutex (Admit asks connections whether they are
  // answering); nothing holding a Connection's mutex takes mu.
  Mutex mu;
  std::unordered_map<std::string, std::vector<AddressSlot>> per_address GUARDED_BY(mu);
  uint64_t next_slot_id GUARDED_BY(mu) = 0;

  // Registers connection `id` of `address`. When the address then holds more than `cap` counted
  // connections, the oldest of them that is not waiting for its answer (idle, or still sending
  // its request: the connections a slow or idle client holds) is chosen to be shut down
  // (*victim); if every one is waiting for an answer, false: the new connection is refused and
  // not registered (under the same lock, so no other connection can choose it as its victim).
  bool Admit(const std::string& address, std::shared_ptr<Connection> connection, int fd,
             uint64_t* id, std::optional<AddressSlot>* victim) LOCKS_EXCLUDED(mu) {
    MutexLock lock(&mu);
    std::vector<AddressSlot>& slots = per_address[address];
    *id = next_slot_id++;
    slots.push_back(AddressSlot{*id, std::move(connection), fd});
    const int counted = static_cast<int>(std::count_if(
        slots.begin(), slots.end(), [](const AddressSlot& a) { return !a.evicted; }));
    if (counted <= options.max_connections_per_ip) return true;
    for (size_t i = 0; i + 1 < slots.size(); ++i) {
      AddressSlot& a = slots[i];
      if (a.evicted || a.connection->answering()) continue;
      a.evicted = true;
      *victim = a;
      return true;
    }
    slots.pop_back();
    if (slots.empty()) per_address.erase(address);
    return false;
  }
  void Release(const std::string& address, uint64_t id) LOCKS_EXCLUDED(mu) {
    MutexLock lock(&mu);
    auto it = per_address.find(address);
    if (it == per_address.end()) return;
    std::erase_if(it->second, [id](const AddressSlot& a) { return a.id == id; });
    if (it->second.empty()) per_address.erase(it);
  }

  bool IsPeerAddress(const std::string& address) const {
    return std::find(options.peer_addresses.begin(), options.peer_addresses.end(), address) !=
           options.peer_addresses.end();
  }

  // Gives freed memory back to the system, at most once per kTrimInterval.
  void MaybeTrim() {
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
    int64_t last = last_trim_ms.load();
    if (now - last < kTrimInterval.count()) return;
    if (!last_trim_ms.compare_exchange_strong(last, now)) return;
    ::malloc_trim(0);
  }
};

// One connection as the edge sees it.
struct EdgeConnection {
  EdgeConnection(std::shared_ptr<EdgeState> s, const RequestHeadScanner::Limits& limits)
      : state(std::move(s)), scanner(limits) {}
  ~EdgeConnection() { ReleaseBody(); }

  // The declared body of the current request no longer counts against the node's budget.
  void ReleaseBody() {
    if (body_bytes == 0) return;
    state->inflight_body_bytes.fetch_sub(body_bytes);
    if (body_bytes >= 2 * kTrimAfterBytes) state->MaybeTrim();
    body_bytes = 0;
  }

  const std::shared_ptr<EdgeState> state;
  RequestHeadScanner scanner;
  uint64_t body_bytes = 0;  // counted in EdgeState::inflight_body_bytes
  // Set once an error answer is written (CloseAfterError): input arriving after this time shuts
  // the connection down.
  std::optional<std::chrono::steady_clock::time_point> linger_until;
};

// How long a connection answered with an error while its client may still be sending keeps
// reading, and dropping, what arrives (CloseAfterError).
constexpr std::chrono::milliseconds kLinger{2000};

// Closes a connection whose error answer has just been written while its client may still be
// sending its request (a body refused on its head, a malformed request). The write side is shut
// at once, so the client reads the answer and then the end of the connection; what it still
// sends is read and dropped by onInput, until it closes, and what arrives kLinger after the
// answer shuts both sides. A client that goes silent without closing is closed as an idle
// keep-alive connection is. Shutting both sides at once, as before, made the kernel answer the
// next bytes of the body with a reset, which discards the answer at a client that writes its
// whole request before it reads (Python's http.client does). Runs on the event loop (the answer
// is written there: Fail).
void CloseAfterError(const std::weak_ptr<Pistache::Tcp::Peer>& weak) {
  std::shared_ptr<Pistache::Tcp::Peer> peer = weak.lock();
  if (!peer) return;
  auto conn = std::static_pointer_cast<EdgeConnection>(peer->tryGetData(kEdgeConnectionKey));
  std::shared_ptr<Connection> c = ConnectionOf(*peer);
  if (!conn || !c) return ShutdownConnection(peer);
  conn->ReleaseBody();  // what is still read is dropped: the body budget is free again
  conn->linger_until = std::chrono::steady_clock::now() + kLinger;
  const int fd = peer->fd();
  c->IfOpen([fd] { ::shutdown(fd, SHUT_WR); });
}

// A refusal decided on a request head.
struct Refusal {
  int code;
  std::string reason;
};

// The checks made once a request's head is complete, before its body is read.
std::optional<Refusal> CheckHead(EdgeState& state, EdgeConnection& conn) {
  const EdgeOptions& o = state.options;
  const RequestHead& head = conn.scanner.head();
  // DNS rebinding: a page of another site, resolved to this loopback address, names its own host.
  if (o.check_host && head.host) {
    int port = 0;
    std::optional<std::string> host = AuthorityHost(*head.host, &port);
    const bool allowed =
        host && (IsLoopbackHost(*host) ||
                 std::find(o.allowed_hosts.begin(), o.allowed_hosts.end(), *host) !=
                     o.allowed_hosts.end());
    if (!allowed) {
      return Refusal{403, "Host '" + Shorten(*head.host) +
                              "' is not a name of this node (it listens on a loopback address; "
                              "--allowed-hosts lists other names)"};
    }
  }
  // Cross-site requests: a browser names the page's site in Origin.
  // (Browsers always send Host; a request with an Origin and no Host is not same-origin.)
  if (head.origin) {
    if (!head.host || !SameOrigin(*head.origin, *head.host)) {
      return Refusal{403, "cross-site request refused: Origin '" + Shorten(*head.origin) +
                              "' is not this node"};
    }
  }
  if (!o.auth->open()) {
    std::optional<std::string_view> token = PresentedToken(head.authorization, head.dsm_token);
    Credentials credentials;
    if (token) credentials.header_token = std::string(*token);
    credentials.cookie = head.cookie;
    credentials.read = head.method == "GET" || head.method == "HEAD";
    const std::string_view target = head.target;
    const std::string_view path = target.substr(0, target.find('?'));
    Status allowed = o.auth->Check(path, credentials);
    if (!allowed.ok()) return Refusal{401, allowed.message()};
  }
  if (head.content_length > 0 && o.max_inflight_body_bytes > 0) {
    // While Pistache reads a body it holds it twice (the bytes received and the request's body),
    // so a body counts twice its length.
    const uint64_t cost = 2 * head.content_length;
    const uint64_t before = state.inflight_body_bytes.fetch_add(cost);
    if (before + cost > o.max_inflight_body_bytes) {
      state.inflight_body_bytes.fetch_sub(cost);
      return Refusal{503, "too many request bodies in flight (limit " +
                              std::to_string(o.max_inflight_body_bytes >> 20) +
                              " MiB for the node); retry later"};
    }
    conn.body_bytes = cost;
  }
  return std::nullopt;
}

// The Pistache handler. It routes with the Rest::Router and keeps every answer JSON. Its onInput()
// replaces Http::Handler's, which is the same loop (feed the connection's parser, dispatch
// complete requests) but for what the header of this file lists.
class EdgeHandler final : public Http::Handler {
 public:
  HTTP_PROTOTYPE(EdgeHandler)

  EdgeHandler(std::shared_ptr<Rest::Router> router, std::shared_ptr<EdgeState> state)
      : router_(std::move(router)), state_(std::move(state)) {}

  void onConnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    const EdgeOptions& o = state_->options;
    ReleaseRefused();
    // What Http::Handler::onConnection does (it cannot be called from here: it is private). Every
    // peer needs its parser, refused ones too: Pistache's idle check reads each peer's, on the
    // event loop, and a peer without one throws there (the node would stop).
    peer->putData(kParserKey, std::make_shared<Http::RequestParser>(getMaxRequestSize()));
    // Connection limits. Beyond max_connections a new connection is answered 503 at once and
    // closed, so it costs one accept and one write; the connections already open are not
    // disturbed. Beyond max_connections_per_ip for one address, that address's oldest connection
    // not waiting for an answer is shut down instead (so a client holding idle or half-sent
    // connections cannot keep a newer one of the same address out), and the new connection is
    // refused only when all of them wait for answers. A refused connection stops counting at
    // once and carries nothing but its parser (whatever it sends is ignored: onInput finds no
    // EdgeConnection); an admitted one gives its slots back when Pistache destroys the peer:
    // exactly once per connection, however it ends.
    std::string address;
    try {
      address = peer->address().host();
    } catch (const std::exception&) {
      // Counted under "" (no address).
    }
    const bool is_peer = state_->IsPeerAddress(address);
    const int open = state_->connections.fetch_add(1) + 1;
    if (o.max_connections > 0) {
      const int limit = is_peer ? o.max_connections
                                : o.max_connections - o.reserved_peer_connections;
      if (open > limit) {
        state_->connections.fetch_sub(1);
        return Refuse(peer,
                      "too many connections (limit " + std::to_string(o.max_connections) +
                          (is_peer ? ""
                                   : ", of which " + std::to_string(o.reserved_peer_connections) +
                                         " are kept for cluster peers") +
                          "); retry later");
      }
    }
    auto connection = std::make_shared<Connection>(transport());
    const bool per_address = o.max_connections_per_ip > 0 && !is_peer;
    uint64_t slot_id = 0;
    std::optional<EdgeState::AddressSlot> victim;
    if (per_address && !state_->Admit(address, connection, peer->fd(), &slot_id, &victim)) {
      state_->connections.fetch_sub(1);
      return Refuse(peer, "too many connections from " + address + " (limit " +
                              std::to_string(o.max_connections_per_ip) +
                              " per address, all waiting for answers); retry later");
    }
    peer->putData("dsm.connection_slot", std::shared_ptr<void>(nullptr, [state = state_, address,
                                                                        per_address,
                                                                        slot_id](void*) {
                    state->connections.fetch_sub(1);
                    if (per_address) state->Release(address, slot_id);
                  }));
    RequestHeadScanner::Limits limits;
    limits.max_head_bytes = o.max_header_bytes;
    limits.max_header_lines = o.max_header_lines;
    limits.max_body_bytes = o.max_request_bytes;
    peer->putData(kEdgeConnectionKey, std::make_shared<EdgeConnection>(state_, limits));
    peer->putData(kConnectionKey, std::move(connection));
    if (victim) {
      spdlog::info("closing the oldest idle connection from {} to make room (more than {} "
                   "connections from one address)",
                   address, o.max_connections_per_ip);
      const int fd = victim->fd;
      victim->connection->IfOpen([fd] { ::shutdown(fd, SHUT_RDWR); });
    }
  }

  // Runs on the connection's event-loop thread before Pistache closes the descriptor: from now on
  // no other thread writes to it (see http::Connection).
  void onDisconnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    if (std::shared_ptr<Connection> c = ConnectionOf(*peer)) c->MarkClosed();
    // Free a partly read body now (the peer may outlive this call) and give the memory back.
    auto conn = std::static_pointer_cast<EdgeConnection>(peer->tryGetData(kEdgeConnectionKey));
    if (conn && conn->body_bytes > 0) {
      try {
        getParser(peer)->reset();
      } catch (const std::exception&) {
      }
      conn->ReleaseBody();
    }
  }

  void onInput(const char* buffer, size_t len,
               const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    auto conn = std::static_pointer_cast<EdgeConnection>(peer->tryGetData(kEdgeConnectionKey));
    if (peer->tryGetData(kClosingKey)) {
      // Dropped; past the linger after an error answer, the connection is shut down.
      if (conn && conn->linger_until && std::chrono::steady_clock::now() > *conn->linger_until) {
        ShutdownConnection(peer);
      }
      return;
    }
    std::shared_ptr<Connection> connection = ConnectionOf(*peer);
    if (!conn || !connection) return;
    RequestHeadScanner& scanner = conn->scanner;
    if (!scanner.started() && connection->answering()) {
      // A request sent before the previous answer arrived: no answer can be given to it without
      // being taken for the pending one. Closing tells the client that it was not served.
      spdlog::info("closing a connection from {}: a request arrived before the previous answer "
                   "(pipelining is not supported)",
                   peer->address().host());
      peer->putData(kClosingKey, std::make_shared<int>(0));
      ShutdownConnection(peer);
      return;
    }
    using Verdict = RequestHeadScanner::Verdict;
    const Verdict verdict = scanner.Feed(std::string_view(buffer, len));
    switch (verdict) {
      case Verdict::kNeedMore:
      case Verdict::kBody:
        break;
      case Verdict::kHead:
        if (std::optional<Refusal> refusal = CheckHead(*state_, *conn)) {
          return Fail(peer, HeadVersion(scanner), refusal->code, refusal->reason,
                      refusal->code == 401);
        }
        break;
      case Verdict::kPipelined:
        return Fail(peer, HeadVersion(scanner), 400,
                    "pipelined requests are not supported: send the next request once the "
                    "previous one is answered");
      case Verdict::kBadRequest:
        return Fail(peer, Http::Version::Http11, 400, "malformed HTTP request: " + scanner.reason());
      case Verdict::kHeadTooLarge:
        return Fail(peer, Http::Version::Http11, 431, scanner.reason());
      case Verdict::kTransferEncoding:
        return Fail(peer, Http::Version::Http11, 411,
                    "Transfer-Encoding is not supported in requests: send the body with a "
                    "Content-Length");
      case Verdict::kTooLarge:
        return Fail(peer, Http::Version::Http11, 413,
                    "request larger than the limit of " +
                        std::to_string(state_->options.max_request_bytes) + " bytes");
    }

    std::shared_ptr<Http::RequestParser> parser = getParser(peer);
    Http::Request& request = parser->request;
    try {
      if (!parser->feed(buffer, len)) {
        throw Http::HttpError(
            Http::Code::Request_Entity_Too_Large,
            "request larger than the limit of " +
                std::to_string(state_->options.max_request_bytes) + " bytes");
      }
      if (parser->parse() != Http::Private::State::Done) {
        // The scanner and the parser agree on where a request ends; if the parser wants more of
        // a complete request, it would wait for bytes that are not coming.
        if (scanner.complete()) throw Http::HttpError(Http::Code::Bad_Request, "incomplete request");
        return;  // wait for more bytes
      }
      if (!scanner.complete()) throw Http::HttpError(Http::Code::Bad_Request, "request ends early");
      Http::ResponseWriter response(request.version(), transport(), this, peer);
      request.copyAddress(peer->address());
      // As Pistache does: echo the client's Connection header, else ask it to close. The answer
      // closes the connection when it says so (src/http/reply.h).
      auto connection_header = request.headers().tryGet<Http::Header::Connection>();
      response.headers().add<Http::Header::Connection>(
          connection_header ? connection_header->control() : Http::ConnectionControl::Close);
      peer->setIdle(false);
      connection->BeginAnswer();
      onRequest(request, std::move(response));
      parser->reset();
      scanner.Reset();
      conn->ReleaseBody();
    } catch (const Http::HttpError& e) {
      // Client errors keep their status (413 too large, 400 malformed); anything else the
      // parser refuses (e.g. 501 for an unknown Transfer-Encoding) is still the client's input.
      int code = e.code() >= 400 && e.code() < 500 ? e.code() : 400;
      Fail(peer, request.version(), code,
           code == 413 ? e.reason() : "malformed HTTP request: " + e.reason());
      parser->reset();
    } catch (const std::exception& e) {
      Fail(peer, request.version(), 400, std::string("malformed HTTP request: ") + e.what());
      parser->reset();
    }
  }

  void onRequest(const Http::Request& req, Http::ResponseWriter response) override {
    std::shared_ptr<Pistache::Tcp::Peer> peer = response.getPeer();
    if (req.resource().empty()) {
      if (peer) EndAnswer(peer);
      response.send(Http::Code::Bad_Request, json::ErrorBody("empty request target"),
                    MIME(Application, Json));
      return;
    }
    if (!state_->options.auth->open()) {
      Status allowed = state_->options.auth->Check(req.resource(), RequestCredentials(req));
      if (!allowed.ok()) return SendUnauthorized(response, allowed);
    }
    Http::ResponseWriter spare = response.clone();
    try {
      router_->route(req, std::move(response));
    } catch (const std::exception& e) {
      spdlog::error("routing {} failed: {}", req.resource(), e.what());
      if (peer) EndAnswer(peer);
      spare.send(Http::Code::Internal_Server_Error,
                 json::ErrorBody(std::string("internal error: ") + e.what()),
                 MIME(Application, Json));
    }
  }

 private:
  static Http::Version HeadVersion(const RequestHeadScanner& scanner) {
    return scanner.head().version == "HTTP/1.0" ? Http::Version::Http10 : Http::Version::Http11;
  }

  // Refuses a new connection (onConnection, before Pistache watches its socket): 503 with
  // `reason`, then the socket is shut down. The answer is written here, straight to the socket,
  // not through Pistache's write queue as Fail's are: a queued answer waits for the socket's
  // "writable" event, and Pistache's event loop takes an event that says "readable and writable"
  // for "readable" only. The client of a refused connection sends its request at once, so that
  // event was common: the 503 was never written and the client waited on an open connection for
  // as long as it cared to. A new socket's send buffer is empty: the answer goes out whole. Over
  // TLS nothing can be written before the client's handshake, which runs in the first read: the
  // connection is only shut down (with the queue, the write failed for the same reason).
  // The refused peer is then held (refused_) until this event loop is the last to hold it.
  // Pistache's listener thread keeps a reference while it hands a connection over, and a
  // refused one can be closed and dropped by the event loop before the listener lets go: the
  // listener would then free the peer, and what the event loop put in it, on its own thread -
  // correct, since the library orders the two with atomics, but invisible to ThreadSanitizer,
  // which reports a race. Freed here, the peer is ordered by the event loop's own thread.
  void Refuse(const std::shared_ptr<Pistache::Tcp::Peer>& peer, const std::string& reason) {
    refused_.push_back(peer);
    if (peer->ssl() == nullptr) {
      Http::Header::Collection headers;
      headers.add<Http::Header::Connection>(Http::ConnectionControl::Close);
      headers.add<Http::Header::ContentType>(MIME(Application, Json));
      const std::string answer = AnswerBytes(Http::Version::Http11, Http::Code::Service_Unavailable,
                                             headers, json::ErrorBody(reason), false);
      (void)::send(peer->fd(), answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    ShutdownConnection(peer);
  }

  // Answers a protocol error and closes the connection once the answer is written
  // (CloseAfterError; shutting the socket down makes Pistache see the end of the connection and
  // release it).
  void Fail(const std::shared_ptr<Pistache::Tcp::Peer>& peer, Http::Version version, int code,
            const std::string& reason, bool challenge = false) {
    if (peer->tryGetData(kClosingKey)) return;
    peer->putData(kClosingKey, std::make_shared<int>(0));
    Http::ResponseWriter response(version, transport(), this, peer);
    response.headers().add<Http::Header::Connection>(Http::ConnectionControl::Close);
    if (challenge) response.headers().add<WwwAuthenticate>();
    std::weak_ptr<Pistache::Tcp::Peer> weak = peer;
    response.send(static_cast<Http::Code>(code), json::ErrorBody(reason), MIME(Application, Json))
        .then([weak](ssize_t) { CloseAfterError(weak); },
              [weak](std::exception_ptr) { CloseAfterError(weak); });
    // Written now, not when the event loop next sees the socket writable: Pistache takes an
    // event that is readable and writable at once for readable only, and the client may still be
    // sending (a body refused on its head), so that event could be the only kind it gets until
    // the body ends, and none after.
    transport()->flush();
  }

  // Drops the refused peers that only this event loop still holds (see Refuse); beyond
  // kMaxHeldRefused the oldest is dropped whoever else holds it.
  void ReleaseRefused() {
    std::erase_if(refused_, [](const std::shared_ptr<Pistache::Tcp::Peer>& p) {
      return p.use_count() == 1;
    });
    if (refused_.size() > kMaxHeldRefused) refused_.erase(refused_.begin());
  }

  static constexpr size_t kMaxHeldRefused = 1024;

  std::shared_ptr<Rest::Router> router_;
  std::shared_ptr<EdgeState> state_;
  // Peers refused by onConnection, each clone (one per event loop) its own.
  std::vector<std::shared_ptr<Pistache::Tcp::Peer>> refused_;
};

}  // namespace

std::shared_ptr<Http::Handler> MakeEdgeHandler(std::shared_ptr<Rest::Router> router,
                                               EdgeOptions options) {
  return std::make_shared<EdgeHandler>(std::move(router),
                                       std::make_shared<EdgeState>(std::move(options)));
}

}  // namespace dsm::http

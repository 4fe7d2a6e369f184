// Fuzz target: HTTP request handling of the node's server, end to end. The input is written as
// is to a fresh loopback connection of a real HttpServer, set up as dsm-node sets it up (a real
// Node in async mode on the in-memory log, no peers, live reads and durable consumers on), and
// the answer, if one begins within 50 ms, is read to its end (an event stream: to the end of its
// head). Whatever the bytes, the server must answer with HTTP (or close), never with a 5xx, never
// crash or hang, and keep serving: every input reaches the request parser, routing, the query
// decoding and every handler's body parsing (/send, /replicate, /sync, long-polls, event streams,
// durable consumers, ...).
//
// Connection timeouts are short (a long-poll waits at most 1 s, a stream whose client left is cut
// within seconds), so what inputs leave behind on the server side is released quickly and the
// connection limit is never reached by the fuzzer's own traffic.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "core/node.h"
#include "dsm/clock.h"
#include "fuzz/fuzz_target.h"
#include "src/durable/durable_consumers.h"
#include "src/http/server.h"
#include "storage/append_notifier.h"
#include "tests/testing/memory_consumer_state.h"
#include "tests/testing/memory_log_store.h"

namespace {

using Steady = std::chrono::steady_clock;

// A transport for a node without peers: never called.
class NoPeers final : public dsm::Transport {
 public:
  void AddPeer(size_t, const std::string&) override {}
  void Heartbeat(size_t, std::optional<dsm::Membership>,
                 std::function<void(dsm::Result<dsm::HeartbeatReply>)> done) override {
    done(dsm::Status::Unavailable("no peers"));
  }
  void Replicate(size_t, std::vector<dsm::Message>, dsm::PushSkip,
                 std::function<void(dsm::Result<dsm::ReplicateReply>)> done) override {
    done(dsm::Status::Unavailable("no peers"));
  }
  void Sync(size_t, uint64_t, size_t, std::map<std::string, uint64_t>,
            std::function<void(dsm::Result<dsm::SyncReply>)> done) override {
    done(dsm::Status::Unavailable("no peers"));
  }
  void SyncStream(size_t, std::string, uint64_t, size_t,
                  std::function<void(dsm::Result<dsm::SyncReply>)> done) override {
    done(dsm::Status::Unavailable("no peers"));
  }
};

struct Target {
  dsm::SystemClock clock;
  dsm::AppendNotifier notifier;  // wakes live readers, as in dsm-node
  dsm::MemoryLogStore store{"fuzz", "0123456789abcdef"};
  NoPeers transport;
  dsm::MemoryConsumerState consumer_state;
  std::unique_ptr<dsm::DurableConsumers> durable;  // /consumers/{name}/..., as in dsm-node
  std::unique_ptr<dsm::Node> node;
  std::unique_ptr<dsm::HttpServer> server;
  uint16_t port = 0;

  Target() {
    signal(SIGPIPE, SIG_IGN);
    store.SetAppendNotifier(&notifier);
    dsm::NodeOptions o;
    o.id = "fuzz";
    o.port = 0;
    o.max_message_bytes = 4096;
    node = std::make_unique<dsm::Node>(o, &store, &transport, &clock);
    // No limit on the consumers the inputs create: "too many consumers" is a 503 by design.
    dsm::DurableConsumersOptions dco;
    dco.max_consumers = 1 << 30;
    durable = std::make_unique<dsm::DurableConsumers>(&store, &consumer_state, &clock, &notifier,
                                                      dco);
    DSM_FUZZ_CHECK(durable->Start().ok(), "the durable consumers did not start");
    dsm::HttpServerOptions so;
    so.threads = 1;
    so.append_notifier = &notifier;
    so.durable_consumers = durable.get();
    so.keepalive_timeout = std::chrono::seconds(2);  // long-polls wait at most 1 s
    so.event_stall_timeout = std::chrono::seconds(5);
    server = std::make_unique<dsm::HttpServer>(o, node.get(), &store, &clock, so);
    dsm::Status s = server->Start();
    DSM_FUZZ_CHECK(s.ok(), "the server did not start");
    port = server->port();
    node->Start();
  }
};

// Created once, never destroyed (its threads serve every input).
Target& TheTarget() {
  static Target* t = new Target();
  return *t;
}

// Connects to the server. Fails loudly when the server no longer accepts connections.
int Connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  DSM_FUZZ_CHECK(fd >= 0, "socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::fprintf(stderr, "connect: %s\n", std::strerror(errno));
    DSM_FUZZ_CHECK(false, "the server refused a connection");
  }
  return fd;
}

// True when `got` holds one complete HTTP answer (headers, then Content-Length bytes or the end
// of a chunked body), or the head of an event stream (which does not end by itself).
bool CompleteAnswer(const std::string& got) {
  const size_t head_end = got.find("\r\n\r\n");
  if (head_end == std::string::npos) return false;
  const size_t event_stream = got.find("Content-Type: text/event-stream");
  if (event_stream != std::string::npos && event_stream < head_end) return true;
  const size_t cl = got.find("Content-Length: ");
  if (cl != std::string::npos && cl < head_end) {
    return got.size() >= head_end + 4 + std::strtoul(got.c_str() + cl + 16, nullptr, 10);
  }
  return got.find("\r\n0\r\n\r\n", head_end) != std::string::npos;
}

// Sends `in` and returns the server's answer: empty when none began within `first_byte` (the
// request is incomplete and the server rightly waits for more; the connection is then closed).
// The connection is not half-closed: Pistache drops a request whose connection reached EOF.
// Aborts when an answer that began does not complete (or the server does not close) in 20 s.
std::string Exchange(uint16_t port, const uint8_t* data, size_t size,
                     std::chrono::milliseconds first_byte) {
  int fd = Connect(port);
  size_t sent = 0;
  while (sent < size) {
    ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server closed early (e.g. after a protocol error): fine
    sent += static_cast<size_t>(n);
  }
  std::string got;
  const auto start = Steady::now();
  const auto deadline = start + std::chrono::seconds(20);
  for (;;) {
    if (got.empty() && Steady::now() - start > first_byte) break;
    DSM_FUZZ_CHECK(Steady::now() < deadline, "an answer began but did not end within 20 s");
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5) <= 0) continue;
    char buf[16384];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    if (got.size() < (1 << 20)) got.append(buf, static_cast<size_t>(n));
    if (CompleteAnswer(got)) break;
  }
  close(fd);
  return got;
}

// The (first) answer's status is below 500. Only the status line is read: bodies may quote
// anything earlier inputs stored.
void CheckNoServerError(const std::string& answer) {
  if (answer.size() >= 12 && answer[8] == ' ' && answer[9] == '5') {
    std::fprintf(stderr, "server answered: %.300s\n", answer.c_str());
    DSM_FUZZ_CHECK(false, "the server answered a 5xx to client input");
  }
}

// True when the server answers GET /heartbeat with 200, the answer beginning within `wait`.
bool Heartbeat(uint16_t port, std::chrono::milliseconds wait) {
  static const char kProbe[] = "GET /heartbeat HTTP/1.1\r\nHost: localhost\r\n\r\n";
  const std::string answer =
      Exchange(port, reinterpret_cast<const uint8_t*>(kProbe), sizeof(kProbe) - 1, wait);
  if (answer.rfind("HTTP/1.1 200", 0) == 0) return true;
  std::fprintf(stderr, "heartbeat answer: %.300s\n", answer.c_str());
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Target& t = TheTarget();
  std::string answer = Exchange(t.port, data, size, std::chrono::milliseconds(50));
  if (!answer.empty() && answer.rfind("HTTP/1.", 0) != 0) {
    std::fprintf(stderr, "server wrote: %.300s\n", answer.c_str());
    DSM_FUZZ_CHECK(false, "the server wrote something that is not an HTTP answer");
  }
  CheckNoServerError(answer);
  // The server still serves. A second, longer chance before concluding it does not: a loaded
  // machine delays answers, and a server thread that met a sanitizer error may still be writing
  // its report (symbolizing a stack takes seconds), which then ends the process with the real
  // finding instead of this one.
  static unsigned calls = 0;
  if (++calls % 64 == 0 && !Heartbeat(t.port, std::chrono::seconds(10))) {
    DSM_FUZZ_CHECK(Heartbeat(t.port, std::chrono::seconds(15)), "the server stopped answering");
  }
  return 0;
}

// Resource limits of the HTTP server over real sockets: the connection limit (excess connections
// are answered 503 and closed while the open ones keep being served), slow clients (stalled
// headers or body get 408 and are closed; others are served meanwhile), the bound on quorum
// writes waiting in memory (503 beyond it, nothing written), and bounded listings.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "core/node.h"
#include "src/http/server.h"
#include "tests/testing/fake_transport.h"
#include "tests/testing/manual_clock.h"
#include "tests/testing/memory_log_store.h"
#include "tests/testing/process.h"
#include "tests/testing/raw_connection.h"

namespace dsm {
namespace {

using testing::HttpResponse;
using testing::Millis;
using testing::WaitFor;

constexpr Millis kWait{20000};

// A raw client connection that can also ask for a heartbeat.
class RawConn : public testing::RawConnection {
 public:
  explicit RawConn(uint16_t port, const char* from = "127.0.0.1")
      : RawConnection(port, from, Millis(5000)) {}
  // One keep-alive GET /heartbeat on this connection; returns the status line's code or 0.
  int Heartbeat() {
    if (!Send("GET /heartbeat HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")) return 0;
    const std::string r = ReadAnswer(Millis(10000));
    return r.rfind("HTTP/1.1 ", 0) == 0 ? std::atoi(r.c_str() + 9) : 0;
  }
};

class LimitsTest : public ::testing::Test {
 protected:
  void Start(HttpServerOptions so, ReplicationMode mode = ReplicationMode::kAsync,
             size_t peers = 0) {
    NodeOptions o;
    o.id = "node1";
    o.port = 0;
    o.mode = mode;
    o.quorum = 2;
    for (size_t i = 0; i < peers; ++i) o.peers.push_back("http://127.0.0.1:" + std::to_string(1 + i));
    o.max_message_bytes = 1000;
    o.quorum_timeout = Millis(100);  // the server's header/body timeouts are at least this + 5 s
    node_ = std::make_unique<Node>(o, &store_, &transport_, &clock_);
    so.threads = 2;
    server_ = std::make_unique<HttpServer>(o, node_.get(), &store_, &clock_, so);
    Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
    url_ = "http://127.0.0.1:" + std::to_string(server_->port());
    node_->Start();
  }

  void TearDown() override {
    if (node_) node_->Stop();
    if (server_) server_->Shutdown();
  }

  // Starts the server with room for `n` connections and fills it: `n` keep-alive connections,
  // each seen accepted and counted (one heartbeat answered).
  std::vector<std::unique_ptr<RawConn>> StartFull(int n) {
    HttpServerOptions so;
    so.max_connections = n;
    Start(so);
    std::vector<std::unique_ptr<RawConn>> conns;
    for (int i = 0; i < n; ++i) {
      conns.push_back(std::make_unique<RawConn>(server_->port()));
      EXPECT_TRUE(conns.back()->ok());
      EXPECT_EQ(conns.back()->Heartbeat(), 200) << "connection " << i;
    }
    return conns;
  }

  HttpResponse Post(const std::string& path, const std::string& body) {
    return testing::HttpPost(url_ + path, body, kWait);
  }

  ManualClock clock_;
  MemoryLogStore store_{"node1", "inc1"};
  FakeTransport transport_;
  std::unique_ptr<Node> node_;
  std::unique_ptr<HttpServer> server_;
  std::string url_;
};

TEST_F(LimitsTest, ConnectionsBeyondTheLimitAreRefusedWithoutStarvingOpenOnes) {
  std::vector<std::unique_ptr<RawConn>> conns = StartFull(4);
  ASSERT_FALSE(HasFailure());
  // The fifth: 503 JSON, then closed.
  {
    RawConn extra(server_->port());
    ASSERT_TRUE(extra.ok());
    extra.Send("GET /heartbeat HTTP/1.1\r\nHost: localhost\r\n\r\n");
    bool closed = false;
    std::string r = extra.Read(kWait, "", &closed);
    EXPECT_EQ(r.rfind("HTTP/1.1 503", 0), 0u) << r;
    EXPECT_NE(r.find("too many connections"), std::string::npos) << r;
    EXPECT_TRUE(closed);
  }
  // The open connections are still served.
  for (auto& c : conns) EXPECT_EQ(c->Heartbeat(), 200);
  // A slot freed is a slot available again.
  conns[0]->Close();
  EXPECT_TRUE(WaitFor([&] { return testing::HttpGet(url_ + "/heartbeat", kWait).status == 200; },
                      kWait, Millis(20)));
}

// A refused client sends its request at once, usually before the refusal is written: each one
// must still get its 503 and see the connection closed, never wait for an answer that does not
// come (Pistache handles a socket that is readable and writable in one event as readable only,
// so a refusal queued behind Pistache's write queue could be left unsent).
TEST_F(LimitsTest, EveryRefusedConnectionIsAnsweredEvenWhenItsRequestArrivesFirst) {
  std::vector<std::unique_ptr<RawConn>> held = StartFull(2);
  ASSERT_FALSE(HasFailure());
  // Refused clients on several threads while the held connections keep the event loops busy:
  // the requests then often arrive while a loop is between accepting and writing. They connect
  // from 127.0.0.2: their hundreds of ephemeral ports must not collide with the ports other tests
  // running meanwhile picked to listen on at 127.0.0.1.
  constexpr int kThreads = 6;
  constexpr int kAttempts = 60;
  std::atomic<bool> stop{false};
  std::vector<std::future<std::string>> refused;
  for (int t = 0; t < kThreads; ++t) {
    refused.push_back(std::async(std::launch::async, [&, t]() -> std::string {
      for (int i = 0; i < kAttempts && !stop; ++i) {
        testing::RawConnection extra(server_->port(), "127.0.0.2", Millis(5000));
        if (!extra.ok()) return "could not connect";
        extra.Send("GET /heartbeat HTTP/1.1\r\nHost: localhost\r\n\r\n");
        bool closed = false;
        const std::string r = extra.Read(Millis(10000), "", &closed);
        const bool refused = r.rfind("HTTP/1.1 503", 0) == 0 &&
                             r.find("too many connections") != std::string::npos;
        if (!refused || !closed) {
          stop = true;
          return "thread " + std::to_string(t) + ", attempt " + std::to_string(i) + ": " +
                 (r.empty() ? "no answer" : r) + (closed ? " (closed)" : " (left open)");
        }
      }
      return "";
    }));
  }
  bool busy = true;
  while (busy) {
    busy = false;
    for (auto& f : refused) busy = busy || f.wait_for(Millis(0)) != std::future_status::ready;
    for (auto& c : held) EXPECT_EQ(c->Heartbeat(), 200);
  }
  for (auto& f : refused) EXPECT_EQ(f.get(), "");
}

// A connection over the node's limit is refused before anything else is decided: it must not
// first take the place of its address's idle connection (which the per-address cap would shut
// down to make room) and then be refused anyway, leaving its client with neither.
TEST_F(LimitsTest, AConnectionOverTheNodeLimitTakesNoPlaceOfItsAddress) {
  HttpServerOptions so;
  so.max_connections = 3;
  so.max_connections_per_ip = 1;
  Start(so);
  RawConn idle(server_->port(), "127.0.0.1");
  RawConn second(server_->port(), "127.0.0.2");
  RawConn third(server_->port(), "127.0.0.3");
  for (RawConn* c : {&idle, &second, &third}) {
    ASSERT_TRUE(c->ok());
    ASSERT_EQ(c->Heartbeat(), 200);
  }
  RawConn extra(server_->port(), "127.0.0.1");
  ASSERT_TRUE(extra.ok());
  extra.Send("GET /heartbeat HTTP/1.1\r\nHost: localhost\r\n\r\n");
  bool closed = false;
  const std::string r = extra.Read(kWait, "", &closed);
  EXPECT_EQ(r.rfind("HTTP/1.1 503", 0), 0u) << r;
  EXPECT_NE(r.find("too many connections (limit 3"), std::string::npos) << r;
  EXPECT_TRUE(closed);
  EXPECT_EQ(idle.Heartbeat(), 200) << "the idle connection of 127.0.0.1 was closed for a refused one";
}

// A body refused on its head (413) is still read, and dropped, to its end: a client that writes
// its whole request before reading gets the answer and the end of the connection, not a reset
// in the middle of its body that would discard the answer.
TEST_F(LimitsTest, AClientThatSendsABodyRefusedOnItsHeadReadsTheAnswer) {
  Start(HttpServerOptions{});
  constexpr size_t kBody = 8 << 20;  // far over the limit, and more than the sockets buffer
  RawConn c(server_->port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.Send("POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     "Content-Length: " +
                     std::to_string(kBody) + "\r\n\r\n"));
  EXPECT_TRUE(c.Send(std::string(kBody, 'a'))) << "the node reset the connection under the body";
  bool closed = false;
  const std::string r = c.Read(kWait, "", &closed);
  EXPECT_EQ(r.rfind("HTTP/1.1 413", 0), 0u) << r;
  EXPECT_NE(r.find("{\"status\":\"error\",\"reason\":\"request larger than the limit"),
            std::string::npos)
      << r;
  EXPECT_TRUE(closed);
}

// Reading and dropping after an error answer is bounded: a client that goes on sending long after
// it has been answered is cut off.
TEST_F(LimitsTest, AClientStillSendingLongAfterAnErrorAnswerIsCutOff) {
  Start(HttpServerOptions{});
  RawConn c(server_->port());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.Send("POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100000000000\r\n\r\n"));
  EXPECT_EQ(c.Read(kWait, "}").rfind("HTTP/1.1 413", 0), 0u);
  const std::string chunk(16 << 10, 'a');
  EXPECT_TRUE(WaitFor([&] { return !c.Send(chunk); }, kWait, Millis(20)))
      << "still reading what the client sends 20 s after its answer";
}

TEST_F(LimitsTest, StalledHeadersAndBodiesAreAnswered408AndClosed) {
  HttpServerOptions so;
  so.header_timeout = Millis(200);
  so.body_timeout = Millis(200);
  Start(so);
  RawConn slow_headers(server_->port());
  RawConn slow_body(server_->port());
  ASSERT_TRUE(slow_headers.ok() && slow_body.ok());
  ASSERT_TRUE(slow_headers.Send("POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Ty"));
  ASSERT_TRUE(slow_body.Send(
      "POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
      "Content-Length: 100\r\n\r\n{\"payload\":"));

  // Meanwhile other clients are served.
  EXPECT_EQ(testing::HttpGet(url_ + "/heartbeat", kWait).status, 200);

  for (RawConn* c : {&slow_headers, &slow_body}) {
    bool closed = false;
    std::string r = c->Read(Millis(60000), "", &closed);
    EXPECT_EQ(r.rfind("HTTP/1.1 408", 0), 0u) << r;
    EXPECT_TRUE(closed) << r;
  }
  EXPECT_EQ(store_.LastSeq(), 0u);
}

TEST_F(LimitsTest, SilentAndIdleConnectionsAreClosed) {
  HttpServerOptions so;
  so.keepalive_timeout = Millis(300);
  Start(so);
  RawConn silent(server_->port());  // connects and never sends a byte
  RawConn idle(server_->port());    // one request, then nothing
  ASSERT_TRUE(silent.ok() && idle.ok());
  ASSERT_EQ(idle.Heartbeat(), 200);
  for (RawConn* c : {&silent, &idle}) {
    bool closed = false;
    std::string r = c->Read(Millis(60000), "", &closed);
    EXPECT_TRUE(closed) << r;
  }
}

TEST_F(LimitsTest, QuorumWritesBeyondTheBoundAre503AndWriteNothing) {
  HttpServerOptions so;
  so.max_pending_quorum_writes = 2;
  Start(so, ReplicationMode::kSyncQuorum, /*peers=*/1);  // the peer never answers: writes wait
  std::vector<std::future<HttpResponse>> waiting;
  for (int i = 0; i < 2; ++i) {
    waiting.push_back(std::async(std::launch::async, [this, i] {
      return Post("/send", R"({"payload":"p","msg_id":"w)" + std::to_string(i) + "\"}");
    }));
  }
  ASSERT_TRUE(WaitFor([&] { return store_.LastSeq() == 2; }, kWait));

  HttpResponse refused = Post("/send", R"({"payload":"p","msg_id":"w-over"})");
  ASSERT_EQ(refused.status, 503) << refused.Describe();
  EXPECT_NE(refused.Str("reason").find("too many pending quorum writes"), std::string::npos)
      << refused.Describe();
  EXPECT_EQ(store_.LastSeq(), 2u);  // nothing written for it
  // Local acknowledgements do not wait in memory: not bounded.
  HttpResponse local = Post("/send", R"({"payload":"p","msg_id":"w-local","ack":"local"})");
  EXPECT_EQ(local.status, 200) << local.Describe();

  // The waiting writes time out (504); their slots are free again.
  clock_.Advance(std::chrono::milliseconds(101));
  node_->Tick();
  for (auto& f : waiting) EXPECT_EQ(f.get().status, 504);
  auto again = std::async(std::launch::async,
                          [this] { return Post("/send", R"({"payload":"p","msg_id":"w-again"})"); });
  ASSERT_TRUE(WaitFor([&] { return store_.LastSeq() == 4; }, kWait));
  clock_.Advance(std::chrono::milliseconds(101));
  node_->Tick();
  EXPECT_EQ(again.get().status, 504);
}

TEST_F(LimitsTest, ListingsArePagedAndLimitsBounded) {
  Start(HttpServerOptions{});
  for (int i = 0; i < 25; ++i) {
    ASSERT_EQ(Post("/send", R"({"payload":"p"})").status, 200);
  }
  HttpResponse page = testing::HttpGet(url_ + "/messages?limit=10", kWait);
  ASSERT_EQ(page.status, 200) << page.Describe();
  EXPECT_EQ(page.json["messages"].Size(), 10u);
  EXPECT_TRUE(page.json["more"].GetBool());
  EXPECT_EQ(page.Int("next"), 10);
  HttpResponse last = testing::HttpGet(url_ + "/messages?limit=10&after=20", kWait);
  ASSERT_EQ(last.status, 200) << last.Describe();
  EXPECT_EQ(last.json["messages"].Size(), 5u);
  EXPECT_FALSE(last.json["more"].GetBool());
  // A page larger than the server's maximum is refused rather than served unbounded.
  HttpResponse huge = testing::HttpGet(url_ + "/messages?limit=100000000", kWait);
  EXPECT_EQ(huge.status, 400) << huge.Describe();
  HttpResponse sync = Post("/sync", R"({"since":0,"limit":100000000})");
  EXPECT_EQ(sync.status, 400) << sync.Describe();
}

}  // namespace
}  // namespace dsm

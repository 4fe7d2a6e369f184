// PeerClient against FakePeer on 127.0.0.1: round trips, error mapping, dead, hung, closing and
// restarting peers, keep-alive reuse, the per-host connection limit, shutdown with requests in
// flight, and re-entrant completions.
#include "src/http/peer_client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "src/http/json_codec.h"
#include "tests/http/fake_peer.h"

namespace dsm {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::FakePeer;
using SteadyClock = std::chrono::steady_clock;

// Generous bound for anything that should happen "soon": far above any real latency, so that
// only a request that never settles fails the test.
constexpr milliseconds kSettleWait{30000};

// Collects the completion of one request: how often it ran, on which thread, and the result.
template <typename T>
class Outcome {
 public:
  Outcome() : state_(std::make_shared<State>()) {}

  std::function<void(Result<T>)> Callback() {
    return [state = state_](Result<T> result) {
      std::lock_guard<std::mutex> lock(state->mu);
      ++state->calls;
      state->thread = std::this_thread::get_id();
      state->result.emplace(std::move(result));
      state->cv.notify_all();
    };
  }

  // Waits until the completion ran; false if it did not within `timeout`.
  bool Wait(milliseconds timeout = kSettleWait) {
    std::unique_lock<std::mutex> lock(state_->mu);
    return state_->cv.wait_for(lock, timeout, [this] { return state_->calls > 0; });
  }

  int calls() const {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->calls;
  }
  std::thread::id thread() const {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->thread;
  }
  // REQUIRES: the completion ran.
  Result<T> result() const {
    std::lock_guard<std::mutex> lock(state_->mu);
    return *state_->result;
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;  // notified by each completion
    int calls = 0;
    std::thread::id thread;
    std::optional<Result<T>> result;
  };
  std::shared_ptr<State> state_;
};

// Counts completions of many requests.
class Tally {
 public:
  void Record(const Status& status) {
    std::lock_guard<std::mutex> lock(mu_);
    ++settled_;
    if (status.ok()) ++ok_;
    codes_.push_back(status.code());
    messages_.push_back(status.message());
    cv_.notify_all();
  }
  bool WaitFor(int n, milliseconds timeout = kSettleWait) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return settled_ >= n; });
  }
  int settled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return settled_;
  }
  int ok() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ok_;
  }
  std::vector<Code> codes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return codes_;
  }
  std::vector<std::string> messages() const {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;  // notified by each Record()
  int settled_ = 0;
  int ok_ = 0;
  std::vector<Code> codes_;
  std::vector<std::string> messages_;
};

// Waits until `pred` holds, checking every few milliseconds; false after `timeout`.
template <typename Pred>
bool WaitUntil(Pred pred, milliseconds timeout = kSettleWait) {
  auto deadline = SteadyClock::now() + timeout;
  while (!pred()) {
    if (SteadyClock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return true;
}

// A 127.0.0.1 port with nothing listening on it (bound once to pick it, then released).
uint16_t UnusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

Message MakeMessage(uint64_t origin_seq) {
  Message m;
  m.msg_id = "m-" + std::to_string(origin_seq);
  m.sender = "alice";
  m.recipient = "bob";
  m.payload = "payload \"" + std::to_string(origin_seq) + "\"\n";
  m.ts = 1700000000.0 + static_cast<double>(origin_seq);
  m.origin = "node1@abcd";
  m.origin_seq = origin_seq;
  return m;
}

PeerClientOptions FastOptions() {
  PeerClientOptions options;
  options.connect_timeout = milliseconds(5000);
  options.request_timeout = milliseconds(20000);
  return options;
}

class PeerClientTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(peer_.Start()); }

  std::unique_ptr<PeerClient> StartClient(PeerClientOptions options = FastOptions()) {
    auto client = std::make_unique<PeerClient>(std::vector<std::string>{peer_.url()}, options);
    EXPECT_TRUE(client->Start().ok());
    return client;
  }

  FakePeer peer_;
};

TEST_F(PeerClientTest, HeartbeatRoundTrip) {
  auto client = StartClient();
  Outcome<HeartbeatReply> out;
  client->Heartbeat(0, out.Callback());
  ASSERT_TRUE(out.Wait());
  Result<HeartbeatReply> r = out.result();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->node_id, "peer1");
  EXPECT_DOUBLE_EQ(r->time, 1700000000.5);
  EXPECT_EQ(r->stream, "peer1@00ff");
  EXPECT_EQ(r->high_waters, (std::map<std::string, uint64_t>{{"peer1@00ff", 7}, {"node1@abcd", 3}}));
  EXPECT_NE(out.thread(), std::this_thread::get_id());

  std::vector<FakePeer::HttpRequest> got = peer_.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].method, "GET");
  EXPECT_EQ(got[0].path, "/heartbeat");
  EXPECT_EQ(got[0].headers["connection"], "keep-alive");
  EXPECT_EQ(got[0].headers.count("expect"), 0u);
  EXPECT_EQ(got[0].headers.count("x-dsm-stream"), 0u);  // no self_stream given
}

// With self_stream, every request names this node's stream (the peer acts on it in a heartbeat).
TEST_F(PeerClientTest, EveryRequestNamesThisNodesStream) {
  PeerClientOptions options = FastOptions();
  options.self_stream = "node1@abcd";
  auto client = StartClient(options);
  Outcome<HeartbeatReply> hb;
  client->Heartbeat(0, hb.Callback());
  ASSERT_TRUE(hb.Wait());
  Outcome<ReplicateReply> pushed;
  client->Replicate(0, {MakeMessage(1)}, pushed.Callback());
  ASSERT_TRUE(pushed.Wait());
  std::vector<FakePeer::HttpRequest> got = peer_.received();
  ASSERT_EQ(got.size(), 2u);
  for (FakePeer::HttpRequest& r : got) {
    EXPECT_EQ(r.headers["x-dsm-stream"], "node1@abcd") << r.method << " " << r.path;
  }
}

// Peers are reached directly, whatever proxy the environment names (here one that is down).
TEST_F(PeerClientTest, ProxiesOfTheEnvironmentAreNotUsed) {
  const std::string dead_proxy = "http://127.0.0.1:" + std::to_string(UnusedPort());
  struct ProxyEnvironment {
    const char* const names[4] = {"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"};
    explicit ProxyEnvironment(const std::string& url) {
      for (const char* v : names) ::setenv(v, url.c_str(), 1);
    }
    ~ProxyEnvironment() {
      for (const char* v : names) ::unsetenv(v);
    }
  } proxy(dead_proxy);
  auto client = StartClient();
  Outcome<HeartbeatReply> out;
  client->Heartbeat(0, out.Callback());
  ASSERT_TRUE(out.Wait());
  ASSERT_TRUE(out.result().ok()) << out.result().status().ToString();
  std::vector<FakePeer::HttpRequest> got = peer_.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].path, "/heartbeat");
}

TEST_F(PeerClientTest, ReplicateRoundTrip) {
  auto client = StartClient();
  std::vector<Message> msgs = {MakeMessage(1), MakeMessage(2)};
  Outcome<ReplicateReply> out;
  client->Replicate(0, msgs, out.Callback());
  ASSERT_TRUE(out.Wait());
  Result<ReplicateReply> r = out.result();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->high_water, 9u);
  EXPECT_FALSE(r->gap);

  std::vector<FakePeer::HttpRequest> got = peer_.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].method, "POST");
  EXPECT_EQ(got[0].path, "/replicate");
  EXPECT_EQ(got[0].headers["content-type"], "application/json");
  EXPECT_EQ(got[0].headers["connection"], "keep-alive");
  EXPECT_EQ(got[0].headers.count("expect"), 0u);
  EXPECT_EQ(got[0].body, json::EncodeReplicateRequest(msgs));
  Result<rapidjson::Document> doc = json::Parse(got[0].body);
  ASSERT_TRUE(doc.ok());
  ASSERT_TRUE((*doc)["msgs"].IsArray());
  EXPECT_EQ((*doc)["msgs"].Size(), 2u);
}

TEST_F(PeerClientTest, LargeReplicateBodyIsSentWhole) {
  auto client = StartClient();
  std::vector<Message> msgs;
  for (uint64_t i = 1; i <= 200; ++i) {
    msgs.push_back(MakeMessage(i));
    msgs.back().payload = std::string(4000, 'x');
  }
  Outcome<ReplicateReply> out;
  client->Replicate(0, msgs, out.Callback());
  ASSERT_TRUE(out.Wait());
  ASSERT_TRUE(out.result().ok()) << out.result().status().ToString();
  std::vector<FakePeer::HttpRequest> got = peer_.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, json::EncodeReplicateRequest(msgs));
}

TEST_F(PeerClientTest, SyncRoundTrip) {
  auto client = StartClient();
  Outcome<SyncReply> out;
  const std::map<std::string, uint64_t> have = {{"node1@abcd", 12}, {"peer1@00ff", 1}};
  client->Sync(0, 3, 2, have, out.Callback());
  ASSERT_TRUE(out.Wait());
  Result<SyncReply> r = out.result();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stream, "peer1@00ff");
  EXPECT_TRUE(r->more);
  EXPECT_EQ(r->last_seq, 42u);
  EXPECT_EQ(r->next, 5u);
  ASSERT_EQ(r->messages.size(), 2u);
  EXPECT_EQ(r->messages[0].seq, 4u);
  EXPECT_EQ(r->messages[0].msg_id, "m-4");
  EXPECT_EQ(r->messages[0].sender, "alice");
  EXPECT_EQ(r->messages[0].recipient, "bob");
  EXPECT_EQ(r->messages[0].payload, "hello");
  EXPECT_DOUBLE_EQ(r->messages[0].ts, 1700000001.25);
  EXPECT_EQ(r->messages[0].origin, "peer1@00ff");
  EXPECT_EQ(r->messages[0].origin_seq, 2u);
  EXPECT_EQ(r->messages[1].seq, 5u);
  EXPECT_EQ(r->messages[1].origin, "node1@abcd");

  std::vector<FakePeer::HttpRequest> got = peer_.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].method, "POST");
  EXPECT_EQ(got[0].path, "/sync");
  EXPECT_EQ(got[0].headers["content-type"], "application/json");
  EXPECT_EQ(got[0].body,
            R"({"since":3,"limit":2,"have":{"node1@abcd":12,"peer1@00ff":1}})");
}

TEST_F(PeerClientTest, SyncStreamRoundTrip) {
  peer_.SetHandler([](const FakePeer::HttpRequest&) {
    return FakePeer::Reply{
        200,
        R"({"messages":[{"seq":17,"msg_id":"m-9","sender":"s","recipient":"r","payload":"p",)"
        R"("ts":5.5,"origin":"node1@abcd","origin_seq":9}],)"
        R"("more":false,"next":9,"last_seq":20,"stream":"peer1@00ff","origin":"node1@abcd"})"};
  });
  auto client = StartClient();
  Outcome<SyncReply> out;
  client->SyncStream(0, "node1@abcd", 8, 50, out.Callback());
  ASSERT_TRUE(out.Wait());
  Result<SyncReply> r = out.result();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stream, "peer1@00ff");
  EXPECT_FALSE(r->more);
  EXPECT_EQ(r->last_seq, 20u);
  ASSERT_EQ(r->messages.size(), 1u);
  EXPECT_EQ(r->messages[0].seq, 17u);
  EXPECT_EQ(r->messages[0].origin, "node1@abcd");
  EXPECT_EQ(r->messages[0].origin_seq, 9u);

  std::vector<FakePeer::HttpRequest> got = peer_.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].method, "POST");
  EXPECT_EQ(got[0].path, "/sync");
  EXPECT_EQ(got[0].headers["content-type"], "application/json");
  Result<rapidjson::Document> doc = json::Parse(got[0].body);
  ASSERT_TRUE(doc.ok()) << got[0].body;
  ASSERT_TRUE(doc->IsObject());
  ASSERT_TRUE((*doc)["origin"].IsString());
  EXPECT_EQ(std::string((*doc)["origin"].GetString()), "node1@abcd");
  ASSERT_TRUE((*doc)["since"].IsUint64());
  EXPECT_EQ((*doc)["since"].GetUint64(), 8u);
  ASSERT_TRUE((*doc)["limit"].IsUint64());
  EXPECT_EQ((*doc)["limit"].GetUint64(), 50u);
}

TEST_F(PeerClientTest, ReplicateGapAnswerIsAnOkReplyWithGap) {
  peer_.SetHandler([](const FakePeer::HttpRequest&) {
    return FakePeer::Reply{409,
                           R"({"status":"error","reason":"gap in stream node1@abcd: expected )"
                           R"(origin_seq 4, got 6","high_water":3})"};
  });
  auto client = StartClient();
  Outcome<ReplicateReply> out;
  client->Replicate(0, {MakeMessage(6)}, out.Callback());
  ASSERT_TRUE(out.Wait());
  Result<ReplicateReply> r = out.result();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->gap);
  EXPECT_EQ(r->high_water, 3u);
}

TEST_F(PeerClientTest, HttpErrorsBecomeTheirStatus) {
  struct Case {
    int http_status;
    Code code;
  };
  const Case cases[] = {
      {500, Code::kIOError},
      {503, Code::kUnavailable},
      {400, Code::kInvalidArgument},
      {413, Code::kTooLarge},
  };
  auto client = StartClient();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.http_status);
    peer_.SetHandler([&c](const FakePeer::HttpRequest&) {
      return FakePeer::Reply{c.http_status,
                             R"({"status":"error","reason":"storage failure: disk on fire"})"};
    });
    Outcome<ReplicateReply> replicate;
    client->Replicate(0, {MakeMessage(1)}, replicate.Callback());
    Outcome<HeartbeatReply> heartbeat;
    client->Heartbeat(0, heartbeat.Callback());
    Outcome<SyncReply> sync;
    client->Sync(0, 0, 10, {}, sync.Callback());
    ASSERT_TRUE(replicate.Wait());
    ASSERT_TRUE(heartbeat.Wait());
    ASSERT_TRUE(sync.Wait());
    for (const Status& s : {replicate.result().status(), heartbeat.result().status(),
                            sync.result().status()}) {
      EXPECT_EQ(s.code(), c.code) << s.ToString();
      EXPECT_EQ(s.message(), "storage failure: disk on fire");
    }
  }
}

TEST_F(PeerClientTest, MalformedReplyIsAnError) {
  peer_.SetHandler([](const FakePeer::HttpRequest&) {
    return FakePeer::Reply{200, "this is not json"};
  });
  auto client = StartClient();
  Outcome<HeartbeatReply> out;
  client->Heartbeat(0, out.Callback());
  ASSERT_TRUE(out.Wait());
  EXPECT_FALSE(out.result().ok());
}

TEST_F(PeerClientTest, UnknownPeerIndexSettlesLaterWithInvalidArgument) {
  auto client = StartClient();
  Outcome<HeartbeatReply> out;
  client->Heartbeat(7, out.Callback());
  ASSERT_TRUE(out.Wait());
  EXPECT_EQ(out.result().status().code(), Code::kInvalidArgument);
  EXPECT_NE(out.thread(), std::this_thread::get_id());
}

TEST(PeerClientStandaloneTest, PeerDownIsUnavailableFast) {
  PeerClientOptions options;
  // Deadlines far above the wait below: only a refused connection settles in time.
  options.connect_timeout = milliseconds(60000);
  options.request_timeout = milliseconds(120000);
  PeerClient client({"http://127.0.0.1:" + std::to_string(UnusedPort())}, options);
  ASSERT_TRUE(client.Start().ok());
  Outcome<HeartbeatReply> heartbeat;
  Outcome<ReplicateReply> replicate;
  client.Heartbeat(0, heartbeat.Callback());
  client.Replicate(0, {MakeMessage(1)}, replicate.Callback());
  ASSERT_TRUE(heartbeat.Wait());
  ASSERT_TRUE(replicate.Wait());
  EXPECT_EQ(heartbeat.result().status().code(), Code::kUnavailable)
      << heartbeat.result().status().ToString();
  EXPECT_EQ(replicate.result().status().code(), Code::kUnavailable)
      << replicate.result().status().ToString();
  EXPECT_NE(heartbeat.result().status().message().find("127.0.0.1"), std::string::npos);
}

TEST_F(PeerClientTest, HungPeerTimesOutAtTheDeadline) {
  peer_.SetMode(FakePeer::Mode::kHang);
  PeerClientOptions options;
  options.connect_timeout = milliseconds(5000);
  options.request_timeout = milliseconds(300);
  auto client = StartClient(options);
  auto start = SteadyClock::now();
  Outcome<ReplicateReply> out;
  client->Replicate(0, {MakeMessage(1)}, out.Callback());
  ASSERT_TRUE(out.Wait(options.request_timeout + kSettleWait));
  auto elapsed = SteadyClock::now() - start;
  Status s = out.result().status();
  EXPECT_EQ(s.code(), Code::kTimeout) << s.ToString();
  // libcurl never ends a transfer before its deadline.
  EXPECT_GE(elapsed, options.request_timeout / 2);
  EXPECT_EQ(out.calls(), 1);
  EXPECT_GE(peer_.requests(), 1);
}

TEST_F(PeerClientTest, HungPeerTimesOutEveryQueuedRequest) {
  // More requests than connections: some wait inside libcurl for a connection that never frees.
  peer_.SetMode(FakePeer::Mode::kHang);
  PeerClientOptions options;
  options.request_timeout = milliseconds(300);
  options.max_host_connections = 2;
  auto client = StartClient(options);
  Tally tally;
  constexpr int kRequests = 10;
  for (int i = 0; i < kRequests; ++i) {
    client->Heartbeat(0, [&tally](Result<HeartbeatReply> r) { tally.Record(r.status()); });
  }
  ASSERT_TRUE(tally.WaitFor(kRequests, options.request_timeout + kSettleWait));
  int timeouts = 0;
  for (Code code : tally.codes()) {
    // Timeout for those sent, Unavailable for those that never got a connection.
    EXPECT_TRUE(code == Code::kTimeout || code == Code::kUnavailable) << CodeName(code);
    if (code == Code::kTimeout) ++timeouts;
  }
  EXPECT_GE(timeouts, 1);
}

TEST_F(PeerClientTest, ClosedConnectionIsUnavailable) {
  peer_.SetMode(FakePeer::Mode::kClose);
  auto client = StartClient();
  Outcome<SyncReply> out;
  client->Sync(0, 0, 100, {}, out.Callback());
  ASSERT_TRUE(out.Wait());
  EXPECT_EQ(out.result().status().code(), Code::kUnavailable) << out.result().status().ToString();
}

TEST_F(PeerClientTest, OversizedReplyIsCutOff) {
  peer_.SetMode(FakePeer::Mode::kFlood);
  PeerClientOptions options = FastOptions();
  options.request_timeout = milliseconds(120000);  // far away: the size limit must end it
  auto client = StartClient(options);
  Outcome<HeartbeatReply> out;
  client->Heartbeat(0, out.Callback());
  ASSERT_TRUE(out.Wait(milliseconds(60000)));
  EXPECT_EQ(out.result().status().code(), Code::kTooLarge) << out.result().status().ToString();
}

TEST_F(PeerClientTest, PeerRestartReconnects) {
  auto client = StartClient();
  uint16_t port = peer_.port();
  {
    Outcome<HeartbeatReply> out;
    client->Heartbeat(0, out.Callback());
    ASSERT_TRUE(out.Wait());
    ASSERT_TRUE(out.result().ok()) << out.result().status().ToString();
  }
  peer_.Stop();
  {
    Outcome<HeartbeatReply> out;
    client->Heartbeat(0, out.Callback());
    ASSERT_TRUE(out.Wait());
    EXPECT_EQ(out.result().status().code(), Code::kUnavailable)
        << out.result().status().ToString();
  }
  ASSERT_TRUE(peer_.Start(port));
  {
    Outcome<ReplicateReply> out;
    client->Replicate(0, {MakeMessage(1)}, out.Callback());
    ASSERT_TRUE(out.Wait());
    EXPECT_TRUE(out.result().ok()) << out.result().status().ToString();
  }
  // A restart between two requests: the pooled keep-alive connection is dead and must not be
  // the reason for a failure.
  int accepts_before = peer_.accepts();
  peer_.Stop();
  ASSERT_TRUE(peer_.Start(port));
  {
    Outcome<SyncReply> out;
    client->Sync(0, 0, 10, {}, out.Callback());
    ASSERT_TRUE(out.Wait());
    EXPECT_TRUE(out.result().ok()) << out.result().status().ToString();
  }
  EXPECT_GT(peer_.accepts(), accepts_before);
}

TEST_F(PeerClientTest, SequentialRequestsReuseOneConnection) {
  auto client = StartClient();
  constexpr int kRequests = 30;
  for (int i = 0; i < kRequests; ++i) {
    SCOPED_TRACE(i);
    switch (i % 3) {
      case 0: {
        Outcome<HeartbeatReply> out;
        client->Heartbeat(0, out.Callback());
        ASSERT_TRUE(out.Wait());
        ASSERT_TRUE(out.result().ok()) << out.result().status().ToString();
        break;
      }
      case 1: {
        Outcome<ReplicateReply> out;
        client->Replicate(0, {MakeMessage(i)}, out.Callback());
        ASSERT_TRUE(out.Wait());
        ASSERT_TRUE(out.result().ok()) << out.result().status().ToString();
        break;
      }
      default: {
        Outcome<SyncReply> out;
        client->Sync(0, i, 100, {}, out.Callback());
        ASSERT_TRUE(out.Wait());
        ASSERT_TRUE(out.result().ok()) << out.result().status().ToString();
        break;
      }
    }
  }
  EXPECT_EQ(peer_.requests(), kRequests);
  EXPECT_EQ(peer_.accepts(), 1);
}

TEST_F(PeerClientTest, ManyConcurrentRequestsToASlowPeerAllSettle) {
  peer_.SetHandler([](const FakePeer::HttpRequest& request) {
    FakePeer::Reply reply = FakePeer::DefaultReply(request);
    reply.delay = milliseconds(10);
    return reply;
  });
  PeerClientOptions options;
  options.max_host_connections = 4;
  options.request_timeout = milliseconds(60000);
  auto client = StartClient(options);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::vector<std::atomic<int>> calls(kThreads * kPerThread);
  Tally tally;
  std::vector<std::thread> issuers;
  for (int t = 0; t < kThreads; ++t) {
    issuers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        int id = t * kPerThread + i;
        auto record = [&, id](const Status& s) {
          calls[id].fetch_add(1);
          tally.Record(s);
        };
        switch (id % 4) {
          case 3:
            client->SyncStream(0, "node1@abcd", id, 10,
                               [record](Result<SyncReply> r) { record(r.status()); });
            break;
          case 0:
            client->Heartbeat(0, [record](Result<HeartbeatReply> r) { record(r.status()); });
            break;
          case 1:
            client->Replicate(0, {MakeMessage(id + 1)},
                              [record](Result<ReplicateReply> r) { record(r.status()); });
            break;
          default:
            client->Sync(0, id, 10, {}, [record](Result<SyncReply> r) { record(r.status()); });
            break;
        }
      }
    });
  }
  for (std::thread& t : issuers) t.join();
  ASSERT_TRUE(tally.WaitFor(kThreads * kPerThread, options.request_timeout + kSettleWait));
  for (size_t i = 0; i < calls.size(); ++i) EXPECT_EQ(calls[i].load(), 1) << "request " << i;
  for (Code code : tally.codes()) {
    EXPECT_TRUE(code == Code::kOk || code == Code::kTimeout) << CodeName(code);
  }
  EXPECT_GT(tally.ok(), 0);
  if (tally.ok() == kThreads * kPerThread) {
    // No connection was dropped by a timeout, so the peer never saw more than the limit at once.
    EXPECT_LE(peer_.max_open_connections(), options.max_host_connections);
  }
  client->Stop();
  EXPECT_EQ(tally.settled(), kThreads * kPerThread);
}

TEST_F(PeerClientTest, StopSettlesEverythingInFlight) {
  peer_.SetMode(FakePeer::Mode::kHang);
  PeerClientOptions options;
  options.request_timeout = milliseconds(120000);  // far away: Stop must not wait for it
  options.max_host_connections = 4;
  auto client = StartClient(options);
  Tally tally;
  constexpr int kRequests = 50;
  for (int i = 0; i < kRequests; ++i) {
    if (i % 2 == 0) {
      client->Heartbeat(0, [&tally](Result<HeartbeatReply> r) { tally.Record(r.status()); });
    } else {
      client->Replicate(0, {MakeMessage(i + 1)},
                        [&tally](Result<ReplicateReply> r) { tally.Record(r.status()); });
    }
  }
  // Some requests are at the peer, the rest wait for a connection.
  ASSERT_TRUE(WaitUntil([&] { return peer_.requests() >= 4; }));
  EXPECT_EQ(tally.settled(), 0);

  auto start = SteadyClock::now();
  client->Stop();
  EXPECT_LT(SteadyClock::now() - start, seconds(60));
  ASSERT_EQ(tally.settled(), kRequests);  // all of them, before Stop returned
  for (size_t i = 0; i < tally.codes().size(); ++i) {
    EXPECT_EQ(tally.codes()[i], Code::kUnavailable);
    EXPECT_EQ(tally.messages()[i], "shutting down");
  }

  // After Stop: settled at once, on the calling thread.
  Outcome<SyncReply> late;
  client->Sync(0, 0, 1, {}, late.Callback());
  EXPECT_EQ(late.calls(), 1);
  EXPECT_EQ(late.thread(), std::this_thread::get_id());
  EXPECT_EQ(late.result().status().code(), Code::kUnavailable);
  EXPECT_EQ(late.result().status().message(), "shutting down");

  client->Stop();  // idempotent
  EXPECT_EQ(tally.settled(), kRequests);
  EXPECT_FALSE(client->Start().ok());
}

TEST_F(PeerClientTest, CompletionMayIssueTheNextRequest) {
  auto client = StartClient();
  // A chain: each completion issues the next request from the loop thread.
  constexpr int kChain = 20;
  std::mutex mu;
  std::condition_variable cv;  // notified when the chain ends
  int done = 0;
  std::vector<Status> statuses;
  std::function<void(int)> issue = [&](int i) {
    client->Replicate(0, {MakeMessage(i + 1)}, [&, i](Result<ReplicateReply> r) {
      bool last = i + 1 == kChain;
      {
        std::lock_guard<std::mutex> lock(mu);
        statuses.push_back(r.status());
        if (last) ++done;
      }
      if (last) {
        cv.notify_all();
      } else {
        issue(i + 1);
      }
    });
  };
  issue(0);
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, kSettleWait, [&] { return done == 1; }));
  }
  client->Stop();
  ASSERT_EQ(statuses.size(), static_cast<size_t>(kChain));
  for (const Status& s : statuses) EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(peer_.requests(), kChain);
}

TEST_F(PeerClientTest, StopFromACompletionDoesNotDeadlock) {
  auto client = StartClient();
  Outcome<HeartbeatReply> first;
  auto callback = first.Callback();
  client->Heartbeat(0, [&client, callback](Result<HeartbeatReply> r) {
    client->Stop();  // on the loop thread: ends the loop after this completion
    callback(std::move(r));
  });
  ASSERT_TRUE(first.Wait());
  EXPECT_TRUE(first.result().ok());
  client->Stop();  // joins
  Outcome<HeartbeatReply> late;
  client->Heartbeat(0, late.Callback());
  EXPECT_EQ(late.calls(), 1);
}

TEST_F(PeerClientTest, RequestsToSeveralPeersGoToTheRightOne) {
  FakePeer other;
  ASSERT_TRUE(other.Start());
  other.SetHandler([](const FakePeer::HttpRequest&) {
    return FakePeer::Reply{
        200, R"({"status":"ok","node_id":"peer2","time":1.0,"stream":"peer2@01","high_waters":{}})"};
  });
  PeerClient client({peer_.url(), other.url() + "/"}, FastOptions());
  ASSERT_TRUE(client.Start().ok());
  Outcome<HeartbeatReply> a;
  Outcome<HeartbeatReply> b;
  client.Heartbeat(0, a.Callback());
  client.Heartbeat(1, b.Callback());
  ASSERT_TRUE(a.Wait());
  ASSERT_TRUE(b.Wait());
  ASSERT_TRUE(a.result().ok()) << a.result().status().ToString();
  ASSERT_TRUE(b.result().ok()) << b.result().status().ToString();
  EXPECT_EQ(a.result()->node_id, "peer1");
  EXPECT_EQ(b.result()->node_id, "peer2");
  ASSERT_EQ(other.received().size(), 1u);
  EXPECT_EQ(other.received()[0].path, "/heartbeat");
}

TEST(PeerClientStandaloneTest, DestructionWithoutStartIsSafe) {
  { PeerClient client({"http://127.0.0.1:1"}, PeerClientOptions{}); }
  Outcome<HeartbeatReply> out;
  {
    PeerClient client({"http://127.0.0.1:1"}, PeerClientOptions{});
    client.Heartbeat(0, out.Callback());
    EXPECT_EQ(out.calls(), 0);  // never inside the call
  }
  EXPECT_EQ(out.calls(), 1);
  EXPECT_EQ(out.result().status().code(), Code::kUnavailable);
  EXPECT_EQ(out.result().status().message(), "shutting down");
}

TEST_F(PeerClientTest, RequestsQueuedBeforeStartRunAfterIt) {
  PeerClient client({peer_.url()}, FastOptions());
  Outcome<HeartbeatReply> out;
  client.Heartbeat(0, out.Callback());
  EXPECT_EQ(out.calls(), 0);
  ASSERT_TRUE(client.Start().ok());
  EXPECT_TRUE(client.Start().ok());  // idempotent
  ASSERT_TRUE(out.Wait());
  EXPECT_TRUE(out.result().ok()) << out.result().status().ToString();
}

}  // namespace
}  // namespace dsm

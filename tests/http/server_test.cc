// HttpServer in-process, over real sockets: a real Node on an in-memory log, a FakeTransport
// whose peer requests the test answers by hand, and a ManualClock, so that quorum outcomes,
// timeouts and failures happen exactly when the test decides. Covers the seed's endpoints, the
// answer to every kind of bad input, streamed listings, the /send answer from another thread
// (the server thread is never blocked by a quorum wait), a /replicate answered once its batch is
// durable (the server thread is never blocked by its write), shutdown with a pending quorum wait,
// and a port already in use.
#include "src/http/server.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/node.h"
#include "src/http/json_codec.h"
#include "src/http/peer_protocol.h"
#include "tests/testing/fake_transport.h"
#include "tests/testing/forwarding_log_store.h"
#include "tests/testing/manual_clock.h"
#include "tests/testing/memory_log_store.h"
#include "tests/testing/process.h"

namespace dsm {
namespace {

using dsm::testing::HttpGet;
using dsm::testing::HttpPost;
using dsm::testing::HttpRequest;
using dsm::testing::HttpResponse;
using dsm::testing::Millis;
using dsm::testing::WaitFor;

constexpr size_t kMaxMessageBytes = 1000;
constexpr Millis kWait{10000};  // generous deadline for conditions

class ServerTest : public ::testing::Test {
 protected:
  // Starts the Node and the server. `peers` fake peers (answered through transport_).
  void StartServer(ReplicationMode mode = ReplicationMode::kAsync, int quorum = 2, size_t peers = 0,
                   int http_threads = 2, LogStore* server_log = nullptr) {
    NodeOptions o;
    o.id = "node1";
    o.host = "127.0.0.1";
    o.port = 0;
    o.mode = mode;
    o.quorum = quorum;
    for (size_t i = 0; i < peers; ++i)
      o.peers.push_back("http://127.0.0.1:" + std::to_string(1 + i));
    o.max_message_bytes = kMaxMessageBytes;
    node_ = std::make_unique<Node>(o, node_log_ ? node_log_ : &store_, &transport_, &clock_);
    HttpServerOptions so;
    so.threads = http_threads;
    server_ = std::make_unique<HttpServer>(o, node_.get(), server_log ? server_log : &store_,
                                           &clock_, so);
    Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_NE(server_->port(), 0);
    url_ = "http://127.0.0.1:" + std::to_string(server_->port());
    node_->Start();
    node_->Tick();  // the first heartbeats go out (to transport_)
  }

  // Answers every pending heartbeat with success: the peers are alive.
  void PeersAlive() {
    HeartbeatReply hb;
    hb.node_id = "peer";
    hb.time = clock_.WallSeconds();
    hb.stream = "peer@1";
    transport_.AnswerHeartbeats(hb);
  }

  void TearDown() override {
    if (node_) node_->Stop();
    if (server_) server_->Shutdown();
  }

  HttpResponse Get(const std::string& path) { return HttpGet(url_ + path, kWait); }
  HttpResponse Post(const std::string& path, const std::string& body) {
    return HttpPost(url_ + path, body, kWait);
  }

  ManualClock clock_;
  MemoryLogStore store_{"node1", "inc1"};
  LogStore* node_log_ = nullptr;  // the Node's log when set (store_ otherwise)
  FakeTransport transport_;
  std::unique_ptr<Node> node_;
  std::unique_ptr<HttpServer> server_;
  std::string url_;
};

Message Msg(const std::string& id, const std::string& sender, const std::string& recipient,
            const std::string& payload) {
  Message m;
  m.msg_id = id;
  m.sender = sender;
  m.recipient = recipient;
  m.payload = payload;
  m.ts = 1.5;
  return m;
}

// ---------------------------------------------------------------------------------------------
// The seed's endpoints.

TEST_F(ServerTest, SeedEndpoints) {
  StartServer();
  HttpResponse hb = Get("/heartbeat");
  ASSERT_EQ(hb.status, 200) << hb.Describe();
  ASSERT_TRUE(hb.json_ok);
  EXPECT_EQ(hb.Str("status"), "ok");
  EXPECT_EQ(hb.Str("node_id"), "node1");
  EXPECT_TRUE(hb.json["time"].IsNumber());
  EXPECT_EQ(hb.Str("stream"), "node1@inc1");
  EXPECT_EQ(hb.headers["content-type"], "application/json");

  HttpResponse sent = Post("/send", R"({"sender":"user1","recipient":"user2","payload":"Hello"})");
  ASSERT_EQ(sent.status, 200) << sent.Describe();
  EXPECT_EQ(sent.Str("status"), "ok");
  EXPECT_EQ(sent.Int("seq"), 1);
  EXPECT_EQ(sent.Str("msg_id").size(), 36u);  // a generated UUID
  EXPECT_EQ(sent.Str("origin"), "node1@inc1");
  EXPECT_EQ(sent.Int("origin_seq"), 1);
  EXPECT_FALSE(sent.json["duplicate"].GetBool());

  // Defaults and a client-given ts.
  HttpResponse bare = Post("/send", R"({"payload":"x","msg_id":"m2","ts":12.25})");
  ASSERT_EQ(bare.status, 200) << bare.Describe();
  EXPECT_EQ(bare.Int("seq"), 2);

  // The same msg_id again: the original seq, nothing appended.
  HttpResponse again = Post("/send", R"({"payload":"other","msg_id":"m2"})");
  ASSERT_EQ(again.status, 200) << again.Describe();
  EXPECT_EQ(again.Int("seq"), 2);
  EXPECT_TRUE(again.json["duplicate"].GetBool());

  HttpResponse list = Get("/messages");
  ASSERT_EQ(list.status, 200) << list.Describe();
  const rapidjson::Value& msgs = list.json["messages"];
  ASSERT_EQ(msgs.Size(), 2u);
  EXPECT_EQ(msgs[0]["seq"].GetUint64(), 1u);
  EXPECT_EQ(std::string(msgs[0]["sender"].GetString()), "user1");
  EXPECT_EQ(std::string(msgs[0]["recipient"].GetString()), "user2");
  EXPECT_EQ(std::string(msgs[0]["payload"].GetString()), "Hello");
  EXPECT_EQ(msgs[0]["ts"].GetDouble(), clock_.WallSeconds());
  EXPECT_EQ(std::string(msgs[1]["sender"].GetString()), "unknown");
  EXPECT_EQ(std::string(msgs[1]["recipient"].GetString()), "all");
  EXPECT_EQ(msgs[1]["ts"].GetDouble(), 12.25);
  EXPECT_FALSE(list.json.HasMember("more"));  // no limit: everything, no paging fields

  HttpResponse status = Get("/status");
  ASSERT_EQ(status.status, 200) << status.Describe();
  EXPECT_EQ(status.Str("node_id"), "node1");
  EXPECT_EQ(status.Int("port"), server_->port());
  EXPECT_TRUE(status.json["peers"].IsArray());
  EXPECT_TRUE(status.json["peer_status"].IsObject());
  EXPECT_EQ(status.Str("replication_mode"), "async");
  EXPECT_EQ(status.Int("quorum"), 2);
  EXPECT_EQ(status.Int("last_seq"), 2);
  EXPECT_TRUE(status.json["writable"].GetBool());
  EXPECT_FALSE(status.json.HasMember("write_error"));

  HttpResponse sync = Post("/sync", R"({"since":1})");
  ASSERT_EQ(sync.status, 200) << sync.Describe();
  ASSERT_EQ(sync.json["messages"].Size(), 1u);
  EXPECT_EQ(sync.json["messages"][0]["seq"].GetUint64(), 2u);
  EXPECT_FALSE(sync.json["more"].GetBool());
  EXPECT_EQ(sync.Int("next"), 2);
  EXPECT_EQ(sync.Int("last_seq"), 2);
  EXPECT_EQ(sync.Str("stream"), "node1@inc1");
}

// `last_seq` is the node's last seq, whatever `since` asks for: a puller (or an operator) asking
// from beyond the end of the log must not read its own `since` back as the node's length.
TEST_F(ServerTest, SyncBeyondTheLogAnswersTheNodesLastSeq) {
  StartServer();
  for (int i = 1; i <= 13; ++i) {
    HttpResponse sent = Post("/send", R"({"payload":"p","ack":"local"})");
    ASSERT_EQ(sent.status, 200) << sent.Describe();
  }
  struct Case {
    const char* what;
    std::string body;
    uint64_t next;
  };
  const std::string own = store_.stream_id();
  for (const Case& c : {
           Case{"streamed, beyond the end", R"({"since":100})", 100},
           Case{"paged, beyond the end", R"({"since":100,"limit":10})", 100},
           Case{"paged with have, beyond the end",
                R"({"since":100,"limit":10,"have":{")" + own + R"(":1}})", 100},
           Case{"streamed, at the end", R"({"since":13})", 13},
           Case{"paged, at the end", R"({"since":13,"limit":10})", 13},
           Case{"streamed, inside", R"({"since":5})", 13},
           Case{"paged, inside", R"({"since":5,"limit":3})", 8},
       }) {
    SCOPED_TRACE(c.what);
    HttpResponse r = Post("/sync", c.body);
    ASSERT_EQ(r.status, 200) << r.Describe();
    EXPECT_EQ(r.Int("last_seq"), 13) << r.body;
    EXPECT_EQ(r.Int("next"), static_cast<int64_t>(c.next)) << r.body;
    EXPECT_EQ(r.json["more"].GetBool(), c.next < 13) << r.body;
  }
}

TEST_F(ServerTest, StatusShowsPeersAndWriteFailure) {
  StartServer(ReplicationMode::kSyncQuorum, 2, 1);
  PeersAlive();
  HttpResponse st = Get("/status");
  ASSERT_EQ(st.status, 200) << st.Describe();
  EXPECT_EQ(st.Str("replication_mode"), "sync_quorum");
  const rapidjson::Value& peer = st.json["peer_status"]["http://127.0.0.1:1"];
  ASSERT_TRUE(peer.IsObject()) << st.body;
  EXPECT_TRUE(peer["alive"].GetBool());
  EXPECT_EQ(peer["last_ok"].GetDouble(), clock_.WallSeconds());
  EXPECT_EQ(peer["consecutive_failures"].GetInt(), 0);
  for (const char* field : {"push_cursor", "lag_messages", "lag_seconds", "pull_cursor"}) {
    EXPECT_TRUE(peer.HasMember(field)) << field;
  }

  store_.FailWrites(Status::IOError("fsync failed"));
  HttpResponse sent = Post("/send", R"({"payload":"p","ack":"local"})");
  EXPECT_EQ(sent.status, 500) << sent.Describe();
  EXPECT_EQ(sent.Str("reason"), "storage failure: fsync failed");
  st = Get("/status");
  EXPECT_FALSE(st.json["writable"].GetBool());
  EXPECT_EQ(st.Str("write_error"), "IOError: fsync failed");
}

// ---------------------------------------------------------------------------------------------
// Bad input: a clear JSON error, nothing stored.

TEST_F(ServerTest, BadRequestsGetClearErrorsAndStoreNothing) {
  StartServer();
  struct Case {
    const char* name;
    const char* method;
    std::string path;
    std::optional<std::string> body;
    long status;
    std::string reason;  // exact reason; empty = only the status is checked
  };
  const std::string big_payload(kMaxMessageBytes + 1, 'x');
  const Case cases[] = {
      {"invalid json", "POST", "/send", "{", 400,
       "invalid JSON at offset 1: Missing a name for object member."},
      {"empty body", "POST", "/send", "", 400, "invalid JSON at offset 0: The document is empty."},
      {"json array", "POST", "/send", "[]", 400,
       "the body must be a JSON object: a message or {\"messages\":[...]}"},
      {"payload object", "POST", "/send", R"({"payload":{"x":1}})", 400,
       "'payload' must be a string"},
      {"sender number", "POST", "/send", R"({"sender":5})", 400,
       "'sender' must be a string of 1..256 bytes"},
      {"empty msg_id", "POST", "/send", R"({"msg_id":""})", 400,
       "'msg_id' must be a string of 1..256 bytes"},
      {"ts string", "POST", "/send", R"({"ts":"yesterday"})", 400,
       "'ts' must be a finite number (seconds since the epoch)"},
      {"bad ack", "POST", "/send", R"({"payload":"p","ack":"maybe"})", 400,
       "'ack' must be \"local\" or \"quorum\""},
      {"empty batch", "POST", "/send", R"({"messages":[]})", 400,
       "'messages' must be an array of 1..10000 messages"},
      {"batch not array", "POST", "/send", R"({"messages":"x"})", 400,
       "'messages' must be an array of 1..10000 messages"},
      {"bad message in batch", "POST", "/send", R"({"messages":[{"payload":"ok"},{"payload":1}]})",
       400, "messages[1]: 'payload' must be a string"},
      {"payload over the limit", "POST", "/send", "{\"payload\":\"" + big_payload + "\"}", 413,
       "'payload' is 1001 bytes, more than the limit of 1000"},
      {"payload over the limit in batch", "POST", "/send",
       "{\"messages\":[{\"payload\":\"a\"},{\"payload\":\"" + big_payload + "\"}]}", 413,
       "messages[1]: 'payload' is 1001 bytes, more than the limit of 1000"},
      {"invalid utf-8", "POST", "/send", "{\"payload\":\"\xff\xfe\"}", 400, ""},
      {"nul byte", "POST", "/send", std::string("{\"payload\":\"p\"\0}", 16), 400,
       "invalid JSON at offset 14: NUL byte"},
      {"deep nesting", "POST", "/send",  // as deep as this server's request limit allows
       "{\"payload\":" + std::string(30000, '[') + std::string(30000, ']') + "}", 400,
       "'payload' must be a string"},
      {"body over the request limit", "POST", "/send",
       "{\"payload\":\"" + std::string(8 * kMaxMessageBytes + 70000, 'x') + "\"}", 413,
       "request larger than the limit of " + std::to_string(8 * kMaxMessageBytes + 65536) +
           " bytes"},
      {"replicate no msg", "POST", "/replicate", "{}", 400,
       "the body must be {\"msg\":{...}} or {\"msgs\":[...]}"},
      {"replicate empty msg", "POST", "/replicate", R"({"msg":{}})", 400,
       "msg: 'msg_id' is required"},
      {"replicate msg not object", "POST", "/replicate", R"({"msg":5})", 400,
       "msg: a message must be a JSON object"},
      {"replicate bad id", "POST", "/replicate", R"({"msg":{"msg_id":5,"payload":"p"}})", 400,
       "msg: 'msg_id' must be a string of 1..256 bytes"},
      {"replicate empty batch", "POST", "/replicate", R"({"msgs":[]})", 400,
       "'msgs' must be an array of 1..10000 messages"},
      {"replicate half origin", "POST", "/replicate",
       R"({"msgs":[{"msg_id":"a","origin":"n2@x"}]})", 400,
       "msgs[0]: 'origin' and 'origin_seq' must be given together"},
      {"sync since string", "POST", "/sync", R"({"since":"abc"})", 400,
       "'since' must be a non-negative integer"},
      {"sync since negative", "POST", "/sync", R"({"since":-5})", 400,
       "'since' must be a non-negative integer"},
      {"sync limit zero", "POST", "/sync", R"({"since":0,"limit":0})", 400,
       "'limit' must be an integer from 1 to 10000"},
      {"sync limit too big", "POST", "/sync", R"({"limit":10001})", 400,
       "'limit' must be an integer from 1 to 10000"},
      {"sync invalid json", "POST", "/sync", R"({"since":)", 400, ""},
      {"sync array", "POST", "/sync", "[]", 400, "the body must be {\"since\":N,\"limit\":M}"},
      {"sync origin number", "POST", "/sync", R"({"origin":5})", 400,
       "'origin' must be a string of 1..256 bytes"},
      {"sync origin empty", "POST", "/sync", R"({"origin":""})", 400,
       "'origin' must be a string of 1..256 bytes"},
      {"sync have array", "POST", "/sync", R"({"since":0,"limit":5,"have":[1]})", 400,
       "'have' must be an object of at most 4096 origin streams (1..256 bytes each) mapped to "
       "non-negative integers"},
      {"sync have negative", "POST", "/sync", R"({"since":0,"limit":5,"have":{"a@1":-1}})", 400,
       "'have' must be an object of at most 4096 origin streams (1..256 bytes each) mapped to "
       "non-negative integers"},
      {"sync have empty origin", "POST", "/sync", R"({"have":{"":1}})", 400,
       "'have' must be an object of at most 4096 origin streams (1..256 bytes each) mapped to "
       "non-negative integers"},
      {"messages limit=abc", "GET", "/messages?limit=abc", std::nullopt, 400,
       "'limit' must be an integer from 1 to 10000"},
      {"messages limit=0", "GET", "/messages?limit=0", std::nullopt, 400,
       "'limit' must be an integer from 1 to 10000"},
      {"messages after=-3", "GET", "/messages?after=-3", std::nullopt, 400,
       "'after' must be a non-negative integer"},
      {"messages bad escape", "GET", "/messages?sender=%zz", std::nullopt, 400,
       "invalid percent-encoding in 'sender'"},
      {"unknown route", "GET", "/nope", std::nullopt, 404, "no such endpoint: GET /nope"},
      {"unknown route post", "POST", "/nope/deeper", "{}", 404,
       "no such endpoint: POST /nope/deeper"},
      {"get on send", "GET", "/send", std::nullopt, 405,
       "method not allowed on /send (allowed: POST)"},
      {"put on heartbeat", "PUT", "/heartbeat", "{}", 405,
       "method not allowed on /heartbeat (allowed: GET, HEAD, POST)"},
      {"heartbeat without a membership", "POST", "/heartbeat", "{}", 400,
       "the body must be {\"membership\": {...}}"},
      {"delete on messages", "DELETE", "/messages", std::nullopt, 405,
       "method not allowed on /messages (allowed: GET, HEAD)"},
      {"put on sync", "PUT", "/sync", "{}", 405, "method not allowed on /sync (allowed: POST)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    HttpRequest req;
    req.method = c.method;
    req.url = url_ + c.path;
    req.body = c.body;
    req.timeout = kWait;
    HttpResponse r = testing::Http(req);
    EXPECT_EQ(r.status, c.status) << r.Describe();
    EXPECT_TRUE(r.IsError()) << r.Describe();
    EXPECT_EQ(r.headers["content-type"], "application/json");
    if (!c.reason.empty()) {
      EXPECT_EQ(r.Str("reason"), c.reason);
    }
    if (c.status == 405) {
      EXPECT_EQ(r.headers["allow"], c.path == "/send" || c.path == "/sync" ? "POST"
                                    : c.path == "/heartbeat"                ? "GET, HEAD, POST"
                                                                            : "GET, HEAD");
    }
  }
  EXPECT_EQ(store_.LastSeq(), 0u);
  EXPECT_EQ(Get("/heartbeat").status, 200);
}

TEST_F(ServerTest, ProtocolErrorsGetJson4xxAndTheConnectionCloses) {
  StartServer();
  struct Case {
    const char* name;
    std::string bytes;
    const char* status_line;  // expected start of the answer; nullptr = any 4xx or none
    const char* reason_part;
  };
  const Case cases[] = {
      {"negative content-length", "POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n{}",
       "HTTP/1.1 400", "malformed HTTP request"},
      {"2^64 content-length",
       "POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: 18446744073709551616\r\n\r\n{}",
       "HTTP/1.1 400", "malformed HTTP request"},
      {"non-numeric content-length",  // Pistache ignores the header: an empty body
       "POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n{}", "HTTP/1.1 400", ""},
      {"unknown method", "BREW /send HTTP/1.1\r\nHost: localhost\r\n\r\n", "HTTP/1.1 400",
       "malformed HTTP request"},
      {"unsupported transfer-encoding",
       "POST /send HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n{}", "HTTP/1.1 4", ""},
      {"header over the head limit",
       "GET /heartbeat HTTP/1.1\r\nHost: localhost\r\nX-A: " + std::string(200000, 'a') + "\r\n\r\n",
       "HTTP/1.1 431", "request head larger than the limit of 16384 bytes"},
      {"more than 100 header lines",
       "GET /heartbeat HTTP/1.1\r\nHost: localhost\r\n" + [] {
         std::string lines;
         for (int i = 0; i < 100; ++i) lines += "X-Hn: v\r\n";
         return lines;
       }() + "\r\n",
       "HTTP/1.1 431", "more than 100 header lines"},
      {"body over the request limit",
       "POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\n\r\n{}",
       "HTTP/1.1 413", "request larger than the limit"},
      {"bad request line", "GARBAGE\r\n\r\n", "HTTP/1.1 400", "malformed request line"},
      {"two content-lengths",
       "POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
       "HTTP/1.1 400", "several Content-Length headers"},
      {"space before a colon",
       "POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length : 2\r\n\r\n{}", "HTTP/1.1 400",
       "whitespace in a header name"},
      {"pipelined", "GET /heartbeat HTTP/1.1\r\nHost: localhost\r\n\r\nGET /status HTTP/1.1\r\n\r\n",
       "HTTP/1.1 400", "pipelined requests are not supported"},
      {"garbage", std::string(4096, '\x01') + "\xff\xfe garbage", nullptr, ""},
      {"http/0.9", "GET /\r\n", nullptr, ""},
      {"truncated body", "POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{\"p",
       nullptr, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    // Reads until the server closes the connection (or the deadline for cases without answer).
    std::string answer = testing::RawExchange(server_->port(), c.bytes, Millis(1000));
    if (c.status_line != nullptr) {
      EXPECT_EQ(answer.rfind(c.status_line, 0), 0u) << answer.substr(0, 300);
      EXPECT_NE(answer.find("Content-Type: application/json"), std::string::npos) << answer;
      EXPECT_NE(answer.find("{\"status\":\"error\",\"reason\":\""), std::string::npos) << answer;
      EXPECT_NE(answer.find(c.reason_part), std::string::npos) << answer;
      // One answer, then the connection is closed: the rest of the bytes is not parsed.
      EXPECT_EQ(answer.find("HTTP/1.1", 1), std::string::npos) << answer;
    } else if (!answer.empty()) {
      EXPECT_EQ(answer.rfind("HTTP/1.1 4", 0), 0u) << answer.substr(0, 300);
    }
    HttpResponse hb = Get("/heartbeat");
    EXPECT_EQ(hb.status, 200) << hb.Describe();
  }
  EXPECT_EQ(store_.LastSeq(), 0u);
}

// ---------------------------------------------------------------------------------------------
// /replicate.

TEST_F(ServerTest, ReplicateSeedFormBatchesDuplicatesAndGaps) {
  StartServer();
  const std::string direct =
      R"({"msg":{"msg_id":"direct-1","sender":"system","recipient":"all","payload":"p","ts":1.5}})";
  HttpResponse r = Post("/replicate", direct);
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.body, R"({"status":"ok","seq":1})");
  r = Post("/replicate", direct);  // stored once; the original seq
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.Int("seq"), 1);

  const std::string batch =
      R"({"msgs":[{"msg_id":"a","payload":"1","ts":1,"origin":"node2@x","origin_seq":1},)"
      R"({"msg_id":"b","payload":"2","ts":2,"origin":"node2@x","origin_seq":2}]})";
  r = Post("/replicate", batch);
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.Int("seq"), 3);
  EXPECT_EQ(r.Int("high_water"), 2);
  EXPECT_EQ(r.Int("applied"), 2);
  EXPECT_EQ(r.Int("duplicates"), 0);

  r = Post("/replicate", batch);
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.Int("applied"), 0);
  EXPECT_EQ(r.Int("duplicates"), 2);

  r = Post("/replicate",
           R"({"msgs":[{"msg_id":"c","payload":"3","ts":3,"origin":"node2@x","origin_seq":5}]})");
  EXPECT_EQ(r.status, 409) << r.Describe();
  EXPECT_TRUE(r.IsError());
  EXPECT_EQ(r.Str("reason"), "gap in stream node2@x: expected origin_seq 3, got 5");
  EXPECT_EQ(r.Int("high_water"), 2);
  // The peer client reads that answer as a gap to rewind from.
  Result<ReplicateReply> decoded = json::DecodeReplicateReply(r.status, r.body);
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(decoded->gap);
  EXPECT_EQ(decoded->high_water, 2u);
  EXPECT_EQ(store_.LastSeq(), 3u);

  // /sync of one origin stream, by origin_seq (the repair path of the replication core).
  r = Post("/sync", R"({"origin":"node2@x","since":0})");
  ASSERT_EQ(r.status, 200) << r.Describe();
  ASSERT_EQ(r.json["messages"].Size(), 2u);
  EXPECT_EQ(std::string(r.json["messages"][0]["msg_id"].GetString()), "a");
  EXPECT_EQ(r.json["messages"][1]["origin_seq"].GetUint64(), 2u);
  EXPECT_FALSE(r.json["more"].GetBool());
  EXPECT_EQ(r.Int("next"), 2);
  EXPECT_EQ(r.Str("origin"), "node2@x");
  r = Post("/sync", R"({"origin":"node2@x","since":0,"limit":1})");
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.json["messages"].Size(), 1u);
  EXPECT_TRUE(r.json["more"].GetBool());
  EXPECT_EQ(r.Int("next"), 1);
  r = Post("/sync", R"({"origin":"nobody@z","since":0})");
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.json["messages"].Size(), 0u);
  EXPECT_FALSE(r.json["more"].GetBool());

  // A pull that says how far it holds each stream gets only the rest; `next` passes the others.
  // The log: seq 1 direct-1 (adopted: this node's stream), 2 a and 3 b (node2@x 1 and 2).
  const std::string own = store_.stream_id();
  r = Post("/sync", R"({"since":0,"limit":10,"have":{"node2@x":1,")" + own + R"(":1}})");
  ASSERT_EQ(r.status, 200) << r.Describe();
  ASSERT_EQ(r.json["messages"].Size(), 1u);
  EXPECT_EQ(std::string(r.json["messages"][0]["msg_id"].GetString()), "b");
  EXPECT_EQ(r.Int("next"), 3);
  EXPECT_FALSE(r.json["more"].GetBool());
  r = Post("/sync", R"({"since":0,"limit":10,"have":{"node2@x":2,")" + own + R"(":1}})");
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.json["messages"].Size(), 0u);
  EXPECT_EQ(r.Int("next"), 3);
  EXPECT_FALSE(r.json["more"].GetBool());
}

// A batch carries one origin stream (docs/api.md): one mixing streams, or messages with and
// without an origin, is refused with 400 and stores nothing; a batch of messages without origin
// (to adopt) is fine.
TEST_F(ServerTest, ReplicateRefusesABatchOfSeveralOrigins) {
  StartServer();
  struct Case {
    const char* what;
    const char* body;
    const char* reason;
  };
  for (const Case& c : {
           Case{"two streams",
                R"({"msgs":[{"msg_id":"a","payload":"1","origin":"node2@x","origin_seq":1},)"
                R"({"msg_id":"b","payload":"2","origin":"node3@y","origin_seq":1}]})",
                "a batch carries messages of one origin stream: msgs[1] has origin node3@y, "
                "msgs[0] node2@x"},
           Case{"a stream, then none",
                R"({"msgs":[{"msg_id":"a","payload":"1","origin":"node2@x","origin_seq":1},)"
                R"({"msg_id":"b","payload":"2"}]})",
                "a batch carries messages of one origin stream: msgs[1] has origin none, "
                "msgs[0] node2@x"},
           Case{"none, then a stream",
                R"({"msgs":[{"msg_id":"a","payload":"1"},{"msg_id":"b","payload":"2"},)"
                R"({"msg_id":"c","payload":"3","origin":"node2@x","origin_seq":1}]})",
                "a batch carries messages of one origin stream: msgs[2] has origin node2@x, "
                "msgs[0] none"},
       }) {
    SCOPED_TRACE(c.what);
    HttpResponse r = Post("/replicate", c.body);
    EXPECT_EQ(r.status, 400) << r.Describe();
    EXPECT_TRUE(r.IsError()) << r.Describe();
    EXPECT_EQ(r.Str("reason"), c.reason);
    EXPECT_EQ(store_.LastSeq(), 0u);
  }
  HttpResponse r = Post("/replicate", R"({"msgs":[{"msg_id":"a","payload":"1"},)"
                                      R"({"msg_id":"b","payload":"2"}]})");
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.Int("applied"), 2);
  EXPECT_EQ(store_.LastSeq(), 2u);
}

// ---------------------------------------------------------------------------------------------
// Listings.

TEST_F(ServerTest, LargeListingsAreStreamedAndPagesAreConsistent) {
  StartServer();
  constexpr size_t kCount = 3000;
  const std::string payload = "payload with \"quotes\", \\ and \xc3\xa9 " + std::string(900, 'p');
  std::vector<Message> batch;
  for (size_t i = 1; i <= kCount; ++i) {
    batch.push_back(Msg("m" + std::to_string(i), i % 3 == 0 ? "user 1" : "user+2",
                        i % 2 == 0 ? "r/a" : "rb", payload));
    if (batch.size() == 500) {
      ASSERT_TRUE(store_.Append(std::move(batch)).ok());
      batch.clear();
    }
  }

  HttpResponse all = Get("/messages");
  ASSERT_EQ(all.status, 200) << all.Describe();
  EXPECT_EQ(all.headers["transfer-encoding"], "chunked");
  ASSERT_TRUE(all.json_ok) << all.body.substr(0, 200);
  const rapidjson::Value& msgs = all.json["messages"];
  ASSERT_EQ(msgs.Size(), kCount);
  for (rapidjson::SizeType i = 0; i < msgs.Size(); ++i) {
    ASSERT_EQ(msgs[i]["seq"].GetUint64(), i + 1);
  }
  EXPECT_EQ(std::string(msgs[7]["payload"].GetString()), payload);

  // Paging with limit / next / more visits every message exactly once.
  uint64_t after = 0;
  size_t seen = 0;
  for (int pages = 0; pages < 100; ++pages) {
    HttpResponse page = Get("/messages?limit=700&after=" + std::to_string(after));
    ASSERT_EQ(page.status, 200) << page.Describe();
    const rapidjson::Value& m = page.json["messages"];
    for (rapidjson::SizeType i = 0; i < m.Size(); ++i) {
      ASSERT_EQ(m[i]["seq"].GetUint64(), after + i + 1);
    }
    seen += m.Size();
    EXPECT_EQ(static_cast<uint64_t>(page.Int("next")), after + m.Size());
    after = static_cast<uint64_t>(page.Int("next"));
    if (!page.json["more"].GetBool()) break;
  }
  EXPECT_EQ(seen, kCount);
  HttpResponse past = Get("/messages?limit=5&after=99999");
  ASSERT_EQ(past.status, 200);
  EXPECT_EQ(past.json["messages"].Size(), 0u);
  EXPECT_FALSE(past.json["more"].GetBool());
  EXPECT_EQ(past.Int("next"), 99999);

  // Filters, percent-decoded ('+' is a space, %2B a plus).
  HttpResponse by_sender = Get("/messages?sender=user+1");
  ASSERT_EQ(by_sender.status, 200) << by_sender.Describe();
  EXPECT_EQ(by_sender.json["messages"].Size(), kCount / 3);
  HttpResponse by_plus = Get("/messages?sender=user%2B2&recipient=r%2Fa&limit=10000");
  ASSERT_EQ(by_plus.status, 200) << by_plus.Describe();
  size_t expected = 0;
  for (size_t i = 1; i <= kCount; ++i) expected += (i % 3 != 0 && i % 2 == 0) ? 1 : 0;
  EXPECT_EQ(by_plus.json["messages"].Size(), expected);
  EXPECT_FALSE(by_plus.json["more"].GetBool());

  // /sync without a limit streams everything; with one it pages by this node's seq.
  HttpResponse sync_all = Post("/sync", R"({"since":10})");
  ASSERT_EQ(sync_all.status, 200) << sync_all.Describe();
  EXPECT_EQ(sync_all.headers["transfer-encoding"], "chunked");
  EXPECT_EQ(sync_all.json["messages"].Size(), kCount - 10);
  EXPECT_FALSE(sync_all.json["more"].GetBool());
  EXPECT_EQ(sync_all.Int("next"), static_cast<int64_t>(kCount));
  EXPECT_EQ(sync_all.Int("last_seq"), static_cast<int64_t>(kCount));
  HttpResponse sync_page = Post("/sync", R"({"since":10,"limit":100})");
  ASSERT_EQ(sync_page.status, 200) << sync_page.Describe();
  EXPECT_EQ(sync_page.json["messages"].Size(), 100u);
  EXPECT_TRUE(sync_page.json["more"].GetBool());
  EXPECT_EQ(sync_page.Int("next"), 110);
  // The peer client decodes it.
  Result<SyncReply> decoded = json::DecodeSyncReply(200, sync_page.body, kMaxMessageBytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->messages.front().seq, 11u);
  EXPECT_EQ(decoded->stream, "node1@inc1");
}

// Reads from `fd` until `done(text so far)` holds, the peer closes, or the deadline passes.
std::string ReadUntil(int fd, const std::function<bool(const std::string&)>& done,
                      Millis timeout = kWait) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(got)) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[65536];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

bool SendAll(int fd, const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// The body of a complete chunked answer (`raw` starts with the status line), or nullopt.
std::optional<std::string> Dechunk(const std::string& raw) {
  size_t pos = raw.find("\r\n\r\n");
  if (pos == std::string::npos) return std::nullopt;
  pos += 4;
  std::string body;
  for (;;) {
    size_t eol = raw.find("\r\n", pos);
    if (eol == std::string::npos) return std::nullopt;
    size_t size = std::stoul(raw.substr(pos, eol - pos), nullptr, 16);
    pos = eol + 2;
    if (size == 0) return raw.compare(pos, 2, "\r\n") == 0 ? std::optional(body) : std::nullopt;
    if (pos + size + 2 > raw.size()) return std::nullopt;
    body.append(raw, pos, size);
    pos += size + 2;
  }
}

// The server's view of the log: forwards to another store and counts the messages its scans
// visit, to show how far ahead of a client a listing reads.
class CountingLogStore final : public ForwardingLogStore {
 public:
  using ForwardingLogStore::ForwardingLogStore;
  size_t visited() const { return visited_.load(); }

  Status Scan(const ScanOptions& opts, const MessageVisitor& visit) const override {
    return base_->Scan(opts, [&](const Message& m) {
      ++visited_;
      return visit(m);
    });
  }

 private:
  mutable std::atomic<size_t> visited_{0};
};

class ListingTest : public ServerTest {
 protected:
  // A log of `count` messages of about 1 KB: a listing of several MB.
  void FillLog(size_t count) {
    std::vector<Message> batch;
    for (size_t i = 1; i <= count; ++i) {
      batch.push_back(Msg("m" + std::to_string(i), "s", "r", std::string(1000, 'p')));
      if (batch.size() == 500 || i == count) {
        ASSERT_TRUE(store_.Append(std::move(batch)).ok());
        batch.clear();
      }
    }
  }
};

TEST_F(ListingTest, SlowReaderDoesNotHoldTheServerAndGetsTheWholeListing) {
  CountingLogStore counting(&store_);
  StartServer(ReplicationMode::kAsync, 2, 0, /*http_threads=*/1, &counting);
  constexpr size_t kCount = 20000;  // about 21 MB of JSON
  FillLog(kCount);
  int fd = testing::ConnectLocal(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "GET /messages HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"));
  std::string raw = ReadUntil(fd, [](const std::string& got) { return got.size() > 1000; });
  ASSERT_EQ(raw.rfind("HTTP/1.1 200", 0), 0u) << raw.substr(0, 200);
  EXPECT_NE(raw.find("Transfer-Encoding: chunked"), std::string::npos);

  // With its only thread free, the server keeps answering while the reader stalls.
  for (int i = 0; i < 3; ++i) {
    HttpResponse hb = Get("/heartbeat");
    EXPECT_EQ(hb.status, 200) << hb.Describe();
  }
  // The listing reads the log only as fast as the client takes it: while the client reads
  // nothing, the server has read little more than what the socket buffers hold (a few MB at most
  // on loopback, not the 21 MB).
  EXPECT_LT(counting.visited(), kCount / 2);

  raw += ReadUntil(fd, [](const std::string& got) {
    return got.size() >= 5 && got.compare(got.size() - 5, 5, "0\r\n\r\n") == 0;
  });
  std::optional<std::string> body = Dechunk(raw);
  ASSERT_TRUE(body.has_value()) << "incomplete chunked answer of " << raw.size() << " bytes";
  Result<rapidjson::Document> doc = json::Parse(*body);
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  const rapidjson::Value& msgs = (*doc)["messages"];
  ASSERT_EQ(msgs.Size(), kCount);
  for (rapidjson::SizeType i = 0; i < msgs.Size(); ++i)
    ASSERT_EQ(msgs[i]["seq"].GetUint64(), i + 1);

  // The connection is reusable after the streamed answer.
  ASSERT_TRUE(SendAll(fd, "GET /heartbeat HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"));
  std::string again = ReadUntil(fd, [](const std::string& got) {
    return got.find("\"status\":\"ok\"") != std::string::npos;
  });
  EXPECT_EQ(again.rfind("HTTP/1.1 200", 0), 0u) << again.substr(0, 200);
  close(fd);
}

TEST_F(ListingTest, ShutdownCutsAStalledListing) {
  StartServer();
  FillLog(20000);  // more than the socket buffers hold: the listing stalls
  int fd = testing::ConnectLocal(server_->port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, "GET /messages HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  std::string raw = ReadUntil(fd, [](const std::string& got) { return got.size() > 1000; });
  ASSERT_EQ(raw.rfind("HTTP/1.1 200", 0), 0u) << raw.substr(0, 200);
  node_->Stop();
  server_->Shutdown();  // returns although the client reads nothing
  raw += ReadUntil(fd, [](const std::string&) { return false; });  // until the server closes
  EXPECT_FALSE(Dechunk(raw).has_value()) << "a cut listing must not look complete";
  close(fd);
}

// ---------------------------------------------------------------------------------------------
// Quorum writes: answered later, from another thread; the server keeps serving meanwhile.

TEST_F(ServerTest, QuorumSendIsAnsweredLaterWithoutBlockingTheServer) {
  // One HTTP thread: if the pending /send held it, nothing else could be answered.
  StartServer(ReplicationMode::kSyncQuorum, 2, 1, /*http_threads=*/1);
  PeersAlive();
  auto pending = std::async(std::launch::async, [this] {
    return Post("/send", R"({"sender":"a","recipient":"b","payload":"q","msg_id":"q1"})");
  });
  ASSERT_TRUE(WaitFor([&] { return transport_.pending_replicates() > 0; }, kWait));
  HttpResponse hb = Get("/heartbeat");
  EXPECT_EQ(hb.status, 200) << hb.Describe();
  EXPECT_EQ(pending.wait_for(std::chrono::seconds(0)), std::future_status::timeout);

  FakeTransport::ReplicateCall push = transport_.TakeReplicate();
  ASSERT_EQ(push.msgs.size(), 1u);
  EXPECT_EQ(push.msgs[0].msg_id, "q1");
  ReplicateReply ack;
  ack.high_water = push.msgs.back().origin_seq;
  push.done(ack);  // the peer holds it: the quorum of 2 is reached, on this thread

  HttpResponse sent = pending.get();
  ASSERT_EQ(sent.status, 200) << sent.Describe();
  EXPECT_EQ(sent.Str("msg_id"), "q1");
  EXPECT_EQ(sent.Int("seq"), 1);
}

TEST(PeerProtocolTest, WhatAStreamIdLooksLike) {
  for (const char* ok : {"node1@4aa8b75e1d62bfbf", "a@b", "n.o_d-e@0", "x@Y"}) {
    EXPECT_TRUE(http::ValidStreamId(ok)) << ok;
  }
  const std::string longest = std::string(64, 'n') + "@" + std::string(63, 'f');
  EXPECT_TRUE(http::ValidStreamId(longest));
  for (const std::string& bad :
       {std::string(), std::string("node1"), std::string("@1"), std::string("node1@"),
        std::string("a@b@c"), std::string("node 1@2"), std::string("node1@2\r\nX: y"),
        std::string("n\xc3\xa9@1"), std::string("a@b", 4), longest + "f"}) {
    EXPECT_FALSE(http::ValidStreamId(bad)) << bad;
  }
}

// A peer's heartbeat names its stream in X-Dsm-Stream (src/http/peer_client.cc): a push to it
// that backs off after failing is retried at once. A malformed name is ignored.
TEST_F(ServerTest, AHeartbeatNamingAPeersStreamRetriesItsPushAtOnce) {
  StartServer(ReplicationMode::kAsync, 2, 1);
  PeersAlive();  // the peer's stream is "peer@1"
  HttpResponse sent = Post("/send", R"({"payload":"p","msg_id":"h1"})");
  ASSERT_EQ(sent.status, 200) << sent.Describe();
  ASSERT_TRUE(WaitFor([&] { return transport_.pending_replicates() > 0; }, kWait));
  transport_.TakeReplicate().done(Status::Unavailable("refused"));
  ASSERT_EQ(transport_.pending_replicates(), 0u);

  HttpRequest req;
  req.url = url_ + "/heartbeat";
  for (const char* bad : {"X-Dsm-Stream: peer 1", "X-Dsm-Stream: peer@1@2", "X-Dsm-Stream: @1"}) {
    req.headers = {bad};
    HttpResponse hb = testing::Http(req);
    EXPECT_EQ(hb.status, 200) << bad << ": " << hb.Describe();
  }
  EXPECT_EQ(transport_.pending_replicates(), 0u);  // the clock has not moved

  req.headers = {"X-Dsm-Stream: peer@1"};
  HttpResponse hb = testing::Http(req);
  EXPECT_EQ(hb.status, 200) << hb.Describe();
  EXPECT_EQ(hb.Str("node_id"), "node1");
  ASSERT_TRUE(WaitFor([&] { return transport_.pending_replicates() > 0; }, kWait));
  EXPECT_EQ(transport_.TakeReplicate().msgs[0].msg_id, "h1");
}

// A log whose pushed batches are held until the test releases them, as a slow disk holds their
// fsync: ApplyAsync keeps the batch, Apply (a caller that waits for its write) waits.
class HeldApplyLog final : public ForwardingLogStore {
 public:
  using ForwardingLogStore::ForwardingLogStore;

  Result<std::vector<WriteOutcome>> Apply(std::vector<Message> msgs, const std::string& peer_url,
                                          const PullCursor* cursor) override {
    {
      std::unique_lock lock(mu_);
      ++arrived_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return released_; });
    }
    return base_->Apply(std::move(msgs), peer_url, cursor);
  }
  void ApplyAsync(std::vector<Message> msgs, AppendDone done) override {
    {
      std::lock_guard lock(mu_);
      ++arrived_;
      cv_.notify_all();
      if (!released_) {
        held_.emplace_back(std::move(msgs), std::move(done));
        return;
      }
    }
    done(base_->Apply(std::move(msgs)));
  }

  // Whether a batch reached the log within `deadline`.
  bool WaitArrived(Millis deadline) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, deadline, [&] { return arrived_ > 0; });
  }
  // Writes every held batch (completing it on this thread) and lets later ones through.
  void Release() {
    std::vector<std::pair<std::vector<Message>, AppendDone>> held;
    {
      std::lock_guard lock(mu_);
      released_ = true;
      held.swap(held_);
      cv_.notify_all();
    }
    for (auto& [msgs, done] : held) done(base_->Apply(std::move(msgs)));
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  bool released_ = false;
  std::vector<std::pair<std::vector<Message>, AppendDone>> held_;
};

class HeldApplyTest : public ServerTest {
 protected:
  void SetUp() override { node_log_ = &held_; }
  void TearDown() override {
    held_.Release();  // nothing may stay held: the Node waits for its writes when destroyed
    ServerTest::TearDown();
    node_.reset();
  }
  HeldApplyLog held_{&store_};
};

// A push is answered once its batch is durable, from the thread that completes the write: the
// event loop that read it goes on serving its other connections meanwhile.
TEST_F(HeldApplyTest, ReplicateIsAnsweredOnceDurableWithoutBlockingTheServer) {
  // One HTTP thread: if the pending /replicate held it, nothing else could be answered.
  StartServer(ReplicationMode::kAsync, 2, 0, /*http_threads=*/1);
  auto pending = std::async(std::launch::async, [this] {
    return Post("/replicate",
                R"({"msgs":[{"msg_id":"p1","payload":"1","ts":1,"origin":"node2@x","origin_seq":1}]})");
  });
  ASSERT_TRUE(held_.WaitArrived(kWait));
  HttpResponse hb = HttpGet(url_ + "/heartbeat", Millis(5000));
  EXPECT_EQ(hb.status, 200) << "the server stopped serving while a push's write was held: "
                            << hb.Describe();
  HttpResponse sent = Post("/send", R"({"sender":"a","recipient":"b","payload":"s","msg_id":"s1"})");
  EXPECT_EQ(sent.status, 200) << sent.Describe();
  // Not answered before its batch is durable.
  EXPECT_EQ(pending.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  EXPECT_EQ(store_.HighWater("node2@x"), 0u);

  held_.Release();
  HttpResponse pushed = pending.get();
  ASSERT_EQ(pushed.status, 200) << pushed.Describe();
  EXPECT_EQ(pushed.Int("applied"), 1);
  EXPECT_EQ(pushed.Int("high_water"), 1);
  EXPECT_EQ(store_.HighWater("node2@x"), 1u);
}

TEST_F(ServerTest, QuorumTimeoutAnswers504WithMsgIdAndSeq) {
  StartServer(ReplicationMode::kSyncQuorum, 2, 1);
  PeersAlive();
  auto pending = std::async(std::launch::async, [this] {
    return Post("/send", R"({"messages":[{"payload":"a","msg_id":"t1"},{"payload":"b"}]})");
  });
  ASSERT_TRUE(WaitFor([&] { return transport_.pending_replicates() > 0; }, kWait));
  clock_.Advance(std::chrono::milliseconds(5001));
  node_->Tick();
  HttpResponse r = pending.get();
  ASSERT_EQ(r.status, 504) << r.Describe();
  EXPECT_TRUE(r.IsError());
  EXPECT_EQ(r.Str("msg_id"), "t1");
  EXPECT_EQ(r.Int("seq"), 1);
  EXPECT_NE(r.Str("reason").find("t1"), std::string::npos) << r.Str("reason");
  ASSERT_TRUE(r.json["results"].IsArray());
  EXPECT_EQ(r.json["results"].Size(), 2u);
  EXPECT_EQ(store_.LastSeq(), 2u);  // written; it keeps replicating
}

TEST_F(ServerTest, QuorumRefusedUpFrontAnswers503AndWritesNothing) {
  StartServer(ReplicationMode::kSyncQuorum, 2, 1);
  // The peer never answers: dead once the heartbeat timeout passed.
  clock_.Advance(std::chrono::milliseconds(6001));
  node_->Tick();
  HttpResponse r = Post("/send", R"({"payload":"p","msg_id":"no-quorum-1"})");
  ASSERT_EQ(r.status, 503) << r.Describe();
  EXPECT_EQ(r.body, R"({"status":"error","reason":"replication quorum not achieved"})");
  EXPECT_EQ(store_.LastSeq(), 0u);
  // "ack":"local" overrides the mode for one request.
  r = Post("/send", R"({"payload":"p","msg_id":"local-1","ack":"local"})");
  EXPECT_EQ(r.status, 200) << r.Describe();
}

TEST_F(ServerTest, AnswerAfterTheClientLeftIsHarmless) {
  StartServer(ReplicationMode::kSyncQuorum, 2, 1);
  PeersAlive();
  HttpRequest req;
  req.method = "POST";
  req.url = url_ + "/send";
  req.body = R"({"payload":"p","msg_id":"gone-1"})";
  req.timeout = Millis(300);  // the client gives up while the quorum is awaited
  auto pending = std::async(std::launch::async, [req] { return testing::Http(req); });
  ASSERT_TRUE(WaitFor([&] { return transport_.pending_replicates() > 0; }, kWait));
  EXPECT_EQ(pending.get().status, 0);
  FakeTransport::ReplicateCall push = transport_.TakeReplicate();
  ReplicateReply ack;
  ack.high_water = push.msgs.back().origin_seq;
  push.done(ack);  // answers a connection that is gone
  EXPECT_EQ(Get("/heartbeat").status, 200);
}

TEST_F(ServerTest, ShutdownAnswersPendingQuorumWaits) {
  StartServer(ReplicationMode::kSyncQuorum, 2, 1);
  PeersAlive();
  auto pending = std::async(
      std::launch::async, [this] { return Post("/send", R"({"payload":"p","msg_id":"stop-1"})"); });
  ASSERT_TRUE(WaitFor([&] { return transport_.pending_replicates() > 0; }, kWait));
  node_->Stop();
  server_->Shutdown();
  HttpResponse r = pending.get();
  ASSERT_EQ(r.status, 504) << r.Describe();  // stored, not confirmed
  EXPECT_EQ(r.Str("msg_id"), "stop-1");
  EXPECT_EQ(r.Int("seq"), 1);
  EXPECT_NE(r.Str("reason").find("shutting down"), std::string::npos) << r.Str("reason");
  // Stopped: nothing listens any more.
  EXPECT_EQ(HttpGet(url_ + "/heartbeat", Millis(2000)).status, 0);
}

TEST_F(ServerTest, PortInUseIsAnErrorNotAnException) {
  StartServer();
  NodeOptions o;
  o.id = "node1";
  o.port = server_->port();
  HttpServer second(o, node_.get(), &store_, &clock_);
  Status s = second.Start();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("cannot listen on 127.0.0.1:" + std::to_string(o.port)),
            std::string::npos)
      << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos);
  EXPECT_EQ(Get("/heartbeat").status, 200);  // the first server is unaffected
}

}  // namespace
}  // namespace dsm

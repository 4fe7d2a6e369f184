// The HTTP API of one real dsm-node (docs/api.md): every endpoint, every error case, abuse on raw
// sockets, restart durability, shutdown and command-line errors. Most tests share one node started
// for the suite (with --max-message-bytes 65536); tests that restart or reconfigure a node start
// their own. Every bad request must get its documented error and store nothing.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/testing/process.h"

namespace dsm::testing {
namespace {

using std::chrono::milliseconds;

constexpr size_t kMaxMessageBytes = 65536;

std::string Rand() {
  static std::mt19937_64 rng(std::random_device{}());
  return std::to_string(rng() % 1000000000);
}

std::string Repeat(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

// {"msg_id":..,"sender":..,"recipient":..,"payload":..} with the given values (empty = omitted).
std::string MessageJson(const std::string& msg_id, const std::string& sender,
                        const std::string& recipient, const std::string& payload,
                        const std::string& extra = "") {
  std::string s = "{";
  auto add = [&](const char* k, const std::string& v) {
    if (v.empty()) return;
    if (s.size() > 1) s += ",";
    s += "\"" + std::string(k) + "\":" + JsonQuote(v);
  };
  add("msg_id", msg_id);
  add("sender", sender);
  add("recipient", recipient);
  add("payload", payload);
  if (!extra.empty()) s += (s.size() > 1 ? "," : "") + extra;
  return s + "}";
}

std::vector<std::string> StartArgs(uint16_t port, const std::string& id, const std::string& dir) {
  return {"--port",
          std::to_string(port),
          "--id",
          id,
          "--peers",
          "",
          "--data-dir",
          dir,
          "--heartbeat-interval-ms",
          "200",
          "--heartbeat-timeout-ms",
          "800",
          "--anti-entropy-interval-ms",
          "1000"};
}

const rapidjson::Value& Messages(const HttpResponse& r) {
  static const rapidjson::Value kEmpty(rapidjson::kArrayType);
  if (!r.json_ok || !r.json.IsObject() || !r.json.HasMember("messages") ||
      !r.json["messages"].IsArray()) {
    return kEmpty;
  }
  return r.json["messages"];
}

std::string Field(const rapidjson::Value& m, const char* name) {
  if (!m.IsObject() || !m.HasMember(name) || !m[name].IsString()) return "";
  return m[name].GetString();
}

uint64_t UField(const rapidjson::Value& m, const char* name) {
  if (!m.IsObject() || !m.HasMember(name) || !m[name].IsUint64()) return UINT64_MAX;
  return m[name].GetUint64();
}

class ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    uint16_t port = FreePort();
    std::vector<std::string> args = StartArgs(port, "solo", dir_->Sub("data"));
    args.insert(args.end(), {"--max-message-bytes", std::to_string(kMaxMessageBytes)});
    node_ = new NodeProcess("solo", BinaryPath("dsm-node"), args, dir_->Sub("solo.log"), port);
    start_status_ = new Status(node_->StartAndWait());
  }
  static void TearDownTestSuite() {
    delete node_;
    delete start_status_;
    delete dir_;
    node_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(start_status_->ok()) << start_status_->message();
    ASSERT_TRUE(node_->Running()) << "the shared node died; log tail:\n" << node_->LogTail();
  }

  static NodeProcess& node() { return *node_; }

  // The node's last_seq from /status (== number of stored messages: seqs are dense).
  static uint64_t LastSeq() {
    HttpResponse r = node_->Get("/status");
    EXPECT_EQ(r.status, 200) << r.Describe();
    if (!r.json_ok || !r.json.IsObject() || !r.json.HasMember("last_seq")) return UINT64_MAX;
    return r.json["last_seq"].GetUint64();
  }
  static std::string Stream() {
    HttpResponse r = node_->Get("/heartbeat");
    return r.Str("stream");
  }
  // Nothing was stored after seq `last`: /status and the listing agree.
  static void ExpectNothingStoredAfter(uint64_t last) {
    EXPECT_EQ(LastSeq(), last) << "a bad request stored something";
    HttpResponse l = node_->Get("/messages?after=" + std::to_string(last));
    EXPECT_EQ(l.status, 200) << l.Describe();
    EXPECT_EQ(Messages(l).Size(), 0u)
        << "a bad request stored something: " << l.body.substr(0, 300);
  }
  static HttpResponse Send(const std::string& body) { return node_->Post("/send", body); }
  // GET /messages filtered by one sender (percent-encoded here).
  static HttpResponse BySender(const std::string& sender, const std::string& extra = "") {
    return node_->Get("/messages?sender=" + UrlEncode(sender) + extra, milliseconds(60000));
  }

  static TempDir* dir_;
  static NodeProcess* node_;
  static Status* start_status_;
};

TempDir* ApiTest::dir_ = nullptr;
NodeProcess* ApiTest::node_ = nullptr;
Status* ApiTest::start_status_ = nullptr;

// ---------------------------------------------------------------------------------------------
// Seed endpoints.

TEST_F(ApiTest, Heartbeat) {
  HttpResponse r = node().Get("/heartbeat");
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.Str("status"), "ok");
  EXPECT_EQ(r.Str("node_id"), "solo");
  ASSERT_TRUE(r.json.HasMember("time") && r.json["time"].IsNumber()) << r.body;
  double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_NEAR(r.json["time"].GetDouble(), now, 300.0);
  EXPECT_EQ(r.Str("stream").rfind("solo@", 0), 0u) << r.body;
  ASSERT_TRUE(r.json.HasMember("high_waters") && r.json["high_waters"].IsObject()) << r.body;
}

TEST_F(ApiTest, Status) {
  HttpResponse r = node().Get("/status");
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.Str("node_id"), "solo");
  EXPECT_EQ(r.Int("port"), node().Port());
  ASSERT_TRUE(r.json.HasMember("peers") && r.json["peers"].IsArray()) << r.body;
  EXPECT_EQ(r.json["peers"].Size(), 0u);
  ASSERT_TRUE(r.json.HasMember("peer_status") && r.json["peer_status"].IsObject()) << r.body;
  EXPECT_EQ(r.Str("replication_mode"), "async");
  EXPECT_EQ(r.Int("quorum"), 2);
  EXPECT_EQ(r.Str("stream"), Stream());
  ASSERT_TRUE(r.json.HasMember("last_seq") && r.json["last_seq"].IsUint64()) << r.body;
  ASSERT_TRUE(r.json.HasMember("own_high_water") && r.json["own_high_water"].IsUint64());
  ASSERT_TRUE(r.json.HasMember("writable") && r.json["writable"].IsBool()) << r.body;
  EXPECT_TRUE(r.json["writable"].GetBool());
  EXPECT_FALSE(r.json.HasMember("write_error"));
}

TEST_F(ApiTest, SendFillsDefaults) {
  uint64_t before = LastSeq();
  HttpResponse r = Send(R"({"payload":"defaults please"})");
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.Str("status"), "ok");
  EXPECT_EQ(r.Int("seq"), static_cast<int64_t>(before + 1));
  std::string id = r.Str("msg_id");
  // A UUID v4: 8-4-4-4-12 lowercase hex digits, version 4.
  ASSERT_EQ(id.size(), 36u) << id;
  EXPECT_EQ(id[8], '-');
  EXPECT_EQ(id[14], '4');
  EXPECT_EQ(r.Str("origin"), Stream());
  EXPECT_GE(r.Int("origin_seq"), 1);
  ASSERT_TRUE(r.json.HasMember("duplicate") && r.json["duplicate"].IsBool());
  EXPECT_FALSE(r.json["duplicate"].GetBool());

  HttpResponse l = node().Get("/messages?after=" + std::to_string(before));
  ASSERT_EQ(l.status, 200) << l.Describe();
  ASSERT_EQ(Messages(l).Size(), 1u) << l.body;
  const rapidjson::Value& m = Messages(l)[0];
  EXPECT_EQ(Field(m, "msg_id"), id);
  EXPECT_EQ(Field(m, "sender"), "unknown");
  EXPECT_EQ(Field(m, "recipient"), "all");
  EXPECT_EQ(Field(m, "payload"), "defaults please");
  EXPECT_EQ(UField(m, "seq"), before + 1);
  ASSERT_TRUE(m.HasMember("ts") && m["ts"].IsNumber());
  EXPECT_GT(m["ts"].GetDouble(), 1.6e9);
}

TEST_F(ApiTest, SendKeepsGivenFields) {
  std::string id = "given-" + Rand();
  HttpResponse r = Send(MessageJson(id, "alice", "bob", "héllo \"wörld\"\n\t\\", "\"ts\":1234.5"));
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.Str("msg_id"), id);
  HttpResponse l = BySender("alice");
  ASSERT_EQ(l.status, 200);
  bool found = false;
  for (const auto& m : Messages(l).GetArray()) {
    if (Field(m, "msg_id") != id) continue;
    found = true;
    EXPECT_EQ(Field(m, "recipient"), "bob");
    EXPECT_EQ(Field(m, "payload"), "héllo \"wörld\"\n\t\\");
    EXPECT_DOUBLE_EQ(m["ts"].GetDouble(), 1234.5);
    EXPECT_EQ(UField(m, "seq"), static_cast<uint64_t>(r.Int("seq")));
  }
  EXPECT_TRUE(found);
}

TEST_F(ApiTest, PayloadAtTheLimitIsStoredWhole) {
  std::string payload(kMaxMessageBytes, 'p');
  std::string sender = "limit-" + Rand();
  HttpResponse r = Send(MessageJson("", sender, "", payload));
  ASSERT_EQ(r.status, 200) << r.Describe();
  HttpResponse l = BySender(sender);
  ASSERT_EQ(Messages(l).Size(), 1u);
  EXPECT_EQ(Field(Messages(l)[0], "payload"), payload);
}

TEST_F(ApiTest, EscapedNulAndUnicodeRoundTrip) {
  // "\u0000" is valid JSON: either refused with 400 or stored and returned exactly.
  std::string sender = "nul-" + Rand();
  HttpResponse r = Send("{\"sender\":\"" + sender + "\",\"payload\":\"a\\u0000b \\ud83d\\ude00\"}");
  if (r.status == 400) {
    EXPECT_TRUE(r.IsError()) << r.body;
    return;
  }
  ASSERT_EQ(r.status, 200) << r.Describe();
  HttpResponse l = BySender(sender);
  ASSERT_EQ(Messages(l).Size(), 1u);
  const rapidjson::Value& p = Messages(l)[0]["payload"];
  EXPECT_EQ(std::string(p.GetString(), p.GetStringLength()),
            std::string("a\0b \xF0\x9F\x98\x80", 8));
}

TEST_F(ApiTest, DuplicateMsgIdAnswersTheOriginalSeqAndStoresOnce) {
  std::string id = "dup-" + Rand();
  std::string sender = "dupper-" + Rand();
  HttpResponse a = Send(MessageJson(id, sender, "r", "first"));
  ASSERT_EQ(a.status, 200) << a.Describe();
  uint64_t after_first = LastSeq();
  HttpResponse b = Send(MessageJson(id, sender, "r", "second, different"));
  ASSERT_EQ(b.status, 200) << b.Describe();
  EXPECT_EQ(b.Int("seq"), a.Int("seq"));
  EXPECT_EQ(b.Str("origin"), a.Str("origin"));
  EXPECT_EQ(b.Int("origin_seq"), a.Int("origin_seq"));
  ASSERT_TRUE(b.json.HasMember("duplicate") && b.json["duplicate"].IsBool());
  EXPECT_TRUE(b.json["duplicate"].GetBool());
  EXPECT_EQ(LastSeq(), after_first);
  HttpResponse l = BySender(sender);
  ASSERT_EQ(Messages(l).Size(), 1u) << l.body;
  EXPECT_EQ(Field(Messages(l)[0], "payload"), "first");
}

TEST_F(ApiTest, BatchSend) {
  std::string sender = "batch-" + Rand();
  std::string id = "b-" + Rand();
  std::string body = "{\"messages\":[" + MessageJson(id + "-1", sender, "x", "one") + "," +
                     MessageJson(id + "-2", sender, "y", "two") + "," +
                     MessageJson(id + "-1", sender, "x", "one again") + "," +
                     MessageJson("", sender, "", "three") + "]}";
  uint64_t before = LastSeq();
  HttpResponse r = Send(body);
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.Str("status"), "ok");
  ASSERT_TRUE(r.json.HasMember("results") && r.json["results"].IsArray()) << r.body;
  const auto& res = r.json["results"];
  ASSERT_EQ(res.Size(), 4u);
  EXPECT_EQ(UField(res[0], "seq"), before + 1);
  EXPECT_EQ(UField(res[1], "seq"), before + 2);
  EXPECT_EQ(UField(res[2], "seq"), before + 1);  // duplicate inside the batch
  EXPECT_TRUE(res[2]["duplicate"].GetBool());
  EXPECT_FALSE(res[0]["duplicate"].GetBool());
  EXPECT_EQ(UField(res[3], "seq"), before + 3);
  EXPECT_EQ(Field(res[3], "msg_id").size(), 36u);
  EXPECT_EQ(LastSeq(), before + 3);
  HttpResponse l = BySender(sender);
  ASSERT_EQ(Messages(l).Size(), 3u);
  EXPECT_EQ(Field(Messages(l)[2], "payload"), "three");
}

TEST_F(ApiTest, AckOverride) {
  // A lone node with the default quorum of 2 can never reach a quorum: "ack":"quorum" is refused
  // up front and writes nothing; "ack":"local" is acknowledged after the local fsync.
  uint64_t before = LastSeq();
  std::string id = "ackq-" + Rand();
  HttpResponse q = Send(MessageJson(id, "acker", "", "p", "\"ack\":\"quorum\""));
  EXPECT_EQ(q.status, 503) << q.Describe();
  EXPECT_EQ(q.Str("reason"), "replication quorum not achieved");
  EXPECT_EQ(LastSeq(), before);
  HttpResponse l = Send(MessageJson(id, "acker", "", "p", "\"ack\":\"local\""));
  EXPECT_EQ(l.status, 200) << l.Describe();
  EXPECT_EQ(LastSeq(), before + 1);
}

// ---------------------------------------------------------------------------------------------
// Bad input: each case gets its documented error and stores nothing.

struct BadCase {
  std::string name;
  std::string method;
  std::string path;
  std::optional<std::string> body;
  std::set<long> allowed;  // accepted statuses
};

std::string WithNul(std::string s, size_t pos) {
  s.insert(pos, 1, '\0');
  return s;
}

std::vector<BadCase> BadCases() {
  const std::set<long> k400 = {400}, k413 = {413}, k404 = {404}, k405 = {405};
  std::string too_big_payload(kMaxMessageBytes + 1, 'x');
  std::string batch_10001 = "{\"messages\":[" + Repeat("{},", 10000) + "{}]}";
  std::string deep = "{\"payload\":" + Repeat("[", 100000) + Repeat("]", 100000) + "}";
  std::string deep_obj =
      "{\"payload\":" + Repeat("{\"a\":", 20000) + "1" + Repeat("}", 20000) + "}";
  return {
      // /send bodies
      {"invalid json", "POST", "/send", "{", k400},
      {"empty body", "POST", "/send", "", k400},
      {"json array", "POST", "/send", "[]", k400},
      {"json string", "POST", "/send", "\"hi\"", k400},
      {"json null", "POST", "/send", "null", k400},
      {"trailing garbage", "POST", "/send", "{\"payload\":\"p\"} xyz", k400},
      {"two values", "POST", "/send", "{\"payload\":\"p\"}{\"payload\":\"q\"}", k400},
      {"payload object", "POST", "/send", R"({"sender":"a","payload":{"x":1}})", k400},
      {"payload number", "POST", "/send", R"({"payload":5})", k400},
      {"payload null", "POST", "/send", R"({"payload":null})", k400},
      {"sender number", "POST", "/send", R"({"sender":5,"payload":"p"})", k400},
      {"recipient array", "POST", "/send", R"({"recipient":["a"],"payload":"p"})", k400},
      {"msg_id number", "POST", "/send", R"({"msg_id":7,"payload":"p"})", k400},
      {"ts string", "POST", "/send", R"({"payload":"p","ts":"yesterday"})", k400},
      {"ts overflow", "POST", "/send", R"({"payload":"p","ts":1e400})", k400},
      {"ack bogus", "POST", "/send", R"({"payload":"p","ack":"maybe"})", k400},
      {"ack number", "POST", "/send", R"({"payload":"p","ack":1})", k400},
      {"empty msg_id", "POST", "/send", R"({"msg_id":"","payload":"p"})", k400},
      {"empty sender", "POST", "/send", R"({"sender":"","payload":"p"})", k400},
      {"empty recipient", "POST", "/send", R"({"recipient":"","payload":"p"})", k400},
      {"msg_id 257 bytes", "POST", "/send", MessageJson(std::string(257, 'i'), "", "", "p"), k400},
      {"msg_id 10 KB", "POST", "/send", MessageJson(std::string(10000, 'i'), "", "", "p"), k400},
      {"sender 257 bytes", "POST", "/send", MessageJson("", std::string(257, 's'), "", "p"), k400},
      {"recipient 257 bytes", "POST", "/send", MessageJson("", "", std::string(257, 'r'), "p"),
       k400},
      {"invalid utf-8 payload", "POST", "/send",
       std::string("{\"sender\":\"a\",\"payload\":\"") + "\xff\xfe\xfd" + "\"}", k400},
      {"invalid utf-8 sender", "POST", "/send",
       std::string("{\"sender\":\"a") + "\xc3\x28" + "\",\"payload\":\"p\"}", k400},
      {"overlong utf-8", "POST", "/send", std::string("{\"payload\":\"") + "\xc0\xaf" + "\"}",
       k400},
      {"lone surrogate escape", "POST", "/send", R"({"payload":"\ud800"})", k400},
      {"raw nul between members", "POST", "/send",
       WithNul("{\"sender\":\"a\",\"payload\":\"p\"}", 13), k400},
      {"raw nul inside a string", "POST", "/send", WithNul("{\"payload\":\"pq\"}", 13), k400},
      {"control char inside a string", "POST", "/send", "{\"payload\":\"a\nb\"}", k400},
      {"deep nesting 100000", "POST", "/send", deep, k400},
      {"deep object nesting", "POST", "/send", deep_obj, k400},
      {"payload over --max-message-bytes", "POST", "/send",
       MessageJson("", "", "", too_big_payload), k413},
      {"body over the request limit", "POST", "/send",
       MessageJson("", "", "", std::string(4 << 20, 'x')), k413},
      // /send batches
      {"batch empty", "POST", "/send", R"({"messages":[]})", k400},
      {"batch not an array", "POST", "/send", R"({"messages":{"payload":"p"}})", k400},
      {"batch element not an object", "POST", "/send", R"({"messages":[{"payload":"p"},5]})", k400},
      {"batch with one bad message", "POST", "/send",
       R"({"messages":[{"payload":"good"},{"payload":"good too"},{"sender":7}]})", k400},
      {"batch with one oversized message", "POST", "/send",
       "{\"messages\":[{\"payload\":\"good\"}," + MessageJson("", "", "", too_big_payload) + "]}",
       k413},
      {"batch of 10001", "POST", "/send", batch_10001, {400, 413}},
      // /replicate
      {"replicate invalid json", "POST", "/replicate", "{\"msg\":", k400},
      {"replicate no msg", "POST", "/replicate", "{}", k400},
      {"replicate empty msg", "POST", "/replicate", R"({"msg":{}})", k400},
      {"replicate msg not an object", "POST", "/replicate", R"({"msg":"m"})", k400},
      {"replicate msg_id number", "POST", "/replicate", R"({"msg":{"msg_id":5,"payload":"p"}})",
       k400},
      {"replicate empty batch", "POST", "/replicate", R"({"msgs":[]})", k400},
      {"replicate origin without origin_seq", "POST", "/replicate",
       R"({"msg":{"msg_id":"r-x1","origin":"o@1","payload":"p"}})", k400},
      {"replicate origin_seq without origin", "POST", "/replicate",
       R"({"msg":{"msg_id":"r-x2","origin_seq":1,"payload":"p"}})", k400},
      {"replicate negative origin_seq", "POST", "/replicate",
       R"({"msg":{"msg_id":"r-x3","origin":"o@1","origin_seq":-1,"payload":"p"}})", k400},
      {"replicate origin_seq string", "POST", "/replicate",
       R"({"msg":{"msg_id":"r-x4","origin":"o@1","origin_seq":"1","payload":"p"}})", k400},
      {"replicate payload too big", "POST", "/replicate",
       "{\"msg\":" + MessageJson("r-x5", "", "", too_big_payload) + "}", k413},
      {"replicate batch with a bad message", "POST", "/replicate",
       R"({"msgs":[{"msg_id":"r-x6","payload":"p"},{"payload":"no id"}]})", k400},
      // /sync
      {"sync invalid json", "POST", "/sync", "{\"since\":", k400},
      {"sync since string", "POST", "/sync", R"({"since":"abc"})", k400},
      {"sync since negative", "POST", "/sync", R"({"since":-5})", k400},
      {"sync since fraction", "POST", "/sync", R"({"since":1.5})", k400},
      {"sync limit 0", "POST", "/sync", R"({"since":0,"limit":0})", k400},
      {"sync limit 10001", "POST", "/sync", R"({"since":0,"limit":10001})", k400},
      {"sync body array", "POST", "/sync", "[]", k400},
      // /messages queries
      {"messages limit=abc", "GET", "/messages?limit=abc", std::nullopt, k400},
      {"messages limit=0", "GET", "/messages?limit=0", std::nullopt, k400},
      {"messages limit=-1", "GET", "/messages?limit=-1", std::nullopt, k400},
      {"messages limit=10001", "GET", "/messages?limit=10001", std::nullopt, k400},
      {"messages after=-3", "GET", "/messages?after=-3", std::nullopt, k400},
      {"messages after=abc", "GET", "/messages?after=abc", std::nullopt, k400},
      {"messages after=1.5", "GET", "/messages?after=1.5", std::nullopt, k400},
      {"messages after=2^64", "GET", "/messages?after=18446744073709551616", std::nullopt, k400},
      {"messages bad percent escape", "GET", "/messages?sender=%zz", std::nullopt, k400},
      {"messages sender invalid utf-8", "GET", "/messages?sender=%ff%fe", std::nullopt, k400},
      // routes and methods
      {"unknown route GET", "GET", "/nope", std::nullopt, k404},
      {"unknown route POST", "POST", "/nope", "{}", k404},
      {"unknown nested route", "GET", "/messages/1/x", std::nullopt, k404},
      {"GET /send", "GET", "/send", std::nullopt, k405},
      {"GET /replicate", "GET", "/replicate", std::nullopt, k405},
      {"GET /sync", "GET", "/sync", std::nullopt, k405},
      {"PUT /heartbeat", "PUT", "/heartbeat", "{}", k405},
      {"POST /status", "POST", "/status", "{}", k405},
      {"PUT /messages", "PUT", "/messages", "{}", k405},
      {"DELETE /messages", "DELETE", "/messages", std::nullopt, k405},
  };
}

TEST_F(ApiTest, BadInputGetsAClearErrorAndStoresNothing) {
  uint64_t before = LastSeq();
  for (const BadCase& c : BadCases()) {
    SCOPED_TRACE(c.name);
    HttpRequest req;
    req.method = c.method;
    req.url = node().Url() + c.path;
    req.body = c.body;
    req.timeout = milliseconds(20000);
    HttpResponse r = Http(req);
    EXPECT_TRUE(c.allowed.count(r.status)) << c.name << ": " << r.Describe();
    EXPECT_TRUE(r.IsError()) << c.name << ": not a JSON error: " << r.Describe();
    if (r.status == 405) {
      EXPECT_FALSE(r.headers["allow"].empty()) << c.name << ": 405 without an Allow header";
    }
    ASSERT_TRUE(node().Running()) << c.name << " killed the node";
  }
  ExpectNothingStoredAfter(before);
}

TEST_F(ApiTest, WrongMethodNamesTheAllowedOnes) {
  HttpResponse r = node().Get("/send");
  ASSERT_EQ(r.status, 405) << r.Describe();
  EXPECT_NE(r.headers["allow"].find("POST"), std::string::npos) << r.headers["allow"];
  HttpRequest req;
  req.method = "POST";
  req.url = node().Url() + "/messages";
  req.body = "{}";
  HttpResponse p = Http(req);
  ASSERT_EQ(p.status, 405) << p.Describe();
  EXPECT_NE(p.headers["allow"].find("GET"), std::string::npos) << p.headers["allow"];
}

// The answer's bytes: the status line repeats the request's HTTP version, the headers include
// the media type, the connection control and (for a 405) Allow, and Content-Length is the
// body's exact size.
TEST_F(ApiTest, AnswersAreWholeHttpMessages) {
  struct Case {
    std::string name;
    std::string request;
    std::string status_line;
    std::vector<std::string> headers;  // lower-cased "name: value" lines the answer must have
  };
  const std::vector<Case> cases = {
      {"HTTP/1.0 without Connection", "GET /heartbeat HTTP/1.0\r\nHost: localhost\r\n\r\n",
       "HTTP/1.0 200 OK", {"content-type: application/json", "connection: close"}},
      {"HTTP/1.1 keep-alive",
       "GET /heartbeat HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n",
       "HTTP/1.1 200 OK", {"content-type: application/json", "connection: keep-alive"}},
      {"405", "PUT /heartbeat HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
       "HTTP/1.1 405 Method Not Allowed",
       {"content-type: application/json", "allow: get, head, post"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string answer = RawExchange(node().Port(), c.request, milliseconds(1000));
    const size_t head_end = answer.find("\r\n\r\n");
    ASSERT_NE(head_end, std::string::npos) << answer;
    std::string head = answer.substr(0, head_end);
    const std::string body = answer.substr(head_end + 4);
    EXPECT_EQ(head.substr(0, head.find("\r\n")), c.status_line);
    std::transform(head.begin(), head.end(), head.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    for (const std::string& h : c.headers) {
      EXPECT_NE(head.find("\r\n" + h + "\r\n"), std::string::npos) << h << " missing in\n" << head;
    }
    EXPECT_NE(head.find("\r\ncontent-length: " + std::to_string(body.size())), std::string::npos)
        << head << "\n(body of " << body.size() << " bytes)";
    EXPECT_EQ(body.front(), '{') << body;
    EXPECT_EQ(body.back(), '}') << body;
  }
}

// Raw bytes on the socket: the answer, if any, is a 4xx (never a 5xx), the connection may simply
// close, and the node keeps answering and stores nothing.
TEST_F(ApiTest, RawSocketAbuse) {
  uint64_t before = LastSeq();
  std::mt19937 rng(static_cast<unsigned>(TestSeed()));
  std::string garbage(4096, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  struct RawCase {
    std::string name;
    std::string bytes;
    bool valid_http = false;  // a well-formed request: a 2xx answer is fine too
  };
  std::vector<RawCase> cases = {
      {"garbage bytes", garbage},
      {"truncated body",
       "POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
       "Content-Length: 1000\r\n\r\n{\"payload\":"},
      {"large header",
       "GET /heartbeat HTTP/1.1\r\nHost: localhost\r\nX-A: " + std::string(200000, 'a') + "\r\n\r\n", true},
      {"many headers",
       "GET /heartbeat HTTP/1.1\r\nHost: localhost\r\n" + Repeat("X-B: b\r\n", 20000) + "\r\n", true},
      {"header over the request limit",
       "GET /heartbeat HTTP/1.1\r\nHost: localhost\r\nX-A: " + std::string(2 << 20, 'a') + "\r\n\r\n"},
      {"negative content-length", "POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n{}"},
      {"2^64 content-length",
       "POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: 18446744073709551616\r\n\r\n{}"},
      {"non-numeric content-length",
       "POST /send HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n{}"},
      {"bad chunked body",
       "POST /send HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
       "zz\r\n{}\r\n0\r\n\r\n"},
      {"header without colon", "GET /heartbeat HTTP/1.1\r\nHost x\r\nbroken\r\n\r\n"},
      {"bad date and cookie headers",
       "GET /heartbeat HTTP/1.1\r\nHost: \x01\x02\r\nDate: not a date\r\nCookie: ===;;\r\n\r\n"},
      {"http/0.9", "GET /\r\n"},
      {"binary request line", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11)},
      {"only CRLFs", Repeat("\r\n", 5000)},
  };
  for (const RawCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::string answer = RawExchange(node().Port(), c.bytes, milliseconds(1500));
    if (!answer.empty() && answer.rfind("HTTP/", 0) == 0) {
      char klass = answer.substr(answer.find(' ') + 1, 3)[0];
      EXPECT_TRUE(klass == '4' || (c.valid_http && klass == '2'))
          << c.name << " answered " << answer.substr(0, 200);
    }
    HttpResponse hb = node().Get("/heartbeat", milliseconds(5000));
    ASSERT_EQ(hb.status, 200) << c.name << ": node stopped answering: " << hb.Describe();
  }
  ExpectNothingStoredAfter(before);
}

TEST_F(ApiTest, HalfOpenConnectionsDoNotStarveOthers) {
  struct Fds {
    std::vector<int> v;
    ~Fds() {
      for (int fd : v) close(fd);
    }
  } fds;
  const std::string partial = "POST /send HTTP/1.1\r\nHost: localhost\r\n";
  // All from 127.0.0.1: beyond --max-connections-per-ip (64) each new connection closes the
  // oldest idle or half-sent one of that address, so the requests below still get in.
  for (int i = 0; i < 200; ++i) {
    int fd = ConnectLocal(node().Port());
    ASSERT_GE(fd, 0);
    fds.v.push_back(fd);
    if (i % 2) {  // half of them stall inside the headers, half never send a byte
      ASSERT_GT(send(fd, partial.data(), partial.size(), MSG_NOSIGNAL), 0);
    }
  }
  HttpResponse hb = node().Get("/heartbeat", milliseconds(5000));
  EXPECT_EQ(hb.status, 200) << hb.Describe();
  HttpResponse s = Send(R"({"sender":"half-open","payload":"still works"})");
  EXPECT_EQ(s.status, 200) << s.Describe();
}

// ---------------------------------------------------------------------------------------------
// Listings.

TEST_F(ApiTest, MessagesPaging) {
  std::string sender = "pager-" + Rand();
  std::string body = "{\"messages\":[";
  for (int i = 0; i < 25; ++i) {
    body += (i ? "," : "") + MessageJson("", sender, "r", "m" + std::to_string(i));
  }
  ASSERT_EQ(Send(body + "]}").status, 200);

  std::vector<std::string> payloads;
  uint64_t after = 0;
  std::vector<size_t> page_sizes;
  for (int page = 0; page < 10; ++page) {
    HttpResponse r = BySender(sender, "&limit=10&after=" + std::to_string(after));
    ASSERT_EQ(r.status, 200) << r.Describe();
    ASSERT_TRUE(r.json.HasMember("more") && r.json["more"].IsBool()) << r.body;
    ASSERT_TRUE(r.json.HasMember("next") && r.json["next"].IsUint64()) << r.body;
    const auto& msgs = Messages(r);
    page_sizes.push_back(msgs.Size());
    for (const auto& m : msgs.GetArray()) {
      EXPECT_GT(UField(m, "seq"), after);
      payloads.push_back(Field(m, "payload"));
    }
    uint64_t next = r.json["next"].GetUint64();
    if (msgs.Size() > 0) {
      EXPECT_EQ(next, UField(msgs[msgs.Size() - 1], "seq"));
    } else {
      EXPECT_EQ(next, after);
    }
    after = next;
    if (!r.json["more"].GetBool()) break;
  }
  EXPECT_EQ(page_sizes, (std::vector<size_t>{10, 10, 5}));
  ASSERT_EQ(payloads.size(), 25u);
  for (int i = 0; i < 25; ++i) EXPECT_EQ(payloads[i], "m" + std::to_string(i));

  // Past the end: nothing, no more, next stays.
  HttpResponse end = BySender(sender, "&limit=10&after=" + std::to_string(after));
  EXPECT_EQ(Messages(end).Size(), 0u);
  EXPECT_FALSE(end.json["more"].GetBool());
  EXPECT_EQ(end.json["next"].GetUint64(), after);
}

TEST_F(ApiTest, MessagesAfterAndLimitWithoutFilters) {
  ASSERT_EQ(Send(R"({"messages":[{"payload":"a"},{"payload":"b"},{"payload":"c"}]})").status, 200);
  uint64_t last = LastSeq();
  HttpResponse r = node().Get("/messages?after=" + std::to_string(last - 3) + "&limit=2");
  ASSERT_EQ(r.status, 200) << r.Describe();
  ASSERT_EQ(Messages(r).Size(), 2u);
  EXPECT_EQ(UField(Messages(r)[0], "seq"), last - 2);
  EXPECT_EQ(UField(Messages(r)[1], "seq"), last - 1);
  EXPECT_TRUE(r.json["more"].GetBool());
  HttpResponse tail = node().Get("/messages?after=" + std::to_string(last - 1));
  ASSERT_EQ(Messages(tail).Size(), 1u);
  EXPECT_EQ(Field(Messages(tail)[0], "payload"), "c");
  HttpResponse none = node().Get("/messages?after=" + std::to_string(last + 1000));
  ASSERT_EQ(none.status, 200);
  EXPECT_EQ(Messages(none).Size(), 0u);
  HttpResponse max = node().Get("/messages?limit=10000&after=" + std::to_string(last - 1));
  EXPECT_EQ(max.status, 200);
}

TEST_F(ApiTest, FiltersWithPercentEncodedValues) {
  std::string tag = Rand();
  std::string sender = "s p&c=d/é?#+" + tag;
  std::string r1 = "r ü%1-" + tag, r2 = "r2/" + tag;
  for (const auto& [rcpt, payload] :
       std::vector<std::pair<std::string, std::string>>{{r1, "one"}, {r2, "two"}, {r1, "three"}}) {
    ASSERT_EQ(Send(MessageJson("", sender, rcpt, payload)).status, 200);
  }
  ASSERT_EQ(Send(MessageJson("", "other-" + tag, r1, "four")).status, 200);

  HttpResponse s = BySender(sender);
  ASSERT_EQ(s.status, 200) << s.Describe();
  ASSERT_EQ(Messages(s).Size(), 3u) << s.body;
  for (const auto& m : Messages(s).GetArray()) EXPECT_EQ(Field(m, "sender"), sender);

  HttpResponse sr = BySender(sender, "&recipient=" + UrlEncode(r1));
  ASSERT_EQ(Messages(sr).Size(), 2u) << sr.body;
  EXPECT_EQ(Field(Messages(sr)[0], "payload"), "one");
  EXPECT_EQ(Field(Messages(sr)[1], "payload"), "three");

  HttpResponse r = node().Get("/messages?recipient=" + UrlEncode(r1));
  ASSERT_EQ(Messages(r).Size(), 3u) << r.body;
  HttpResponse paged = node().Get("/messages?limit=1&recipient=" + UrlEncode(r1));
  ASSERT_EQ(Messages(paged).Size(), 1u);
  EXPECT_TRUE(paged.json["more"].GetBool());
  HttpResponse nobody = node().Get("/messages?sender=" + UrlEncode("nobody-" + tag));
  ASSERT_EQ(nobody.status, 200);
  EXPECT_EQ(Messages(nobody).Size(), 0u);
}

TEST_F(ApiTest, StreamedFullListingOf20000Messages) {
  std::string sender = "bulk-" + Rand();
  for (int b = 0; b < 20; ++b) {
    std::string body = "{\"messages\":[";
    for (int i = 0; i < 1000; ++i) {
      body +=
          (i ? "," : "") + MessageJson("", sender, "all", "bulk " + std::to_string(b * 1000 + i));
    }
    HttpResponse r = Send(body + "]}");
    ASSERT_EQ(r.status, 200) << r.Describe();
  }
  uint64_t last = LastSeq();
  ASSERT_GE(last, 20000u);

  HttpResponse all = node().Get("/messages", milliseconds(120000));
  ASSERT_EQ(all.status, 200) << all.Describe();
  ASSERT_TRUE(all.json_ok) << "the streamed listing is not valid JSON (" << all.body.size()
                           << " bytes)";
  EXPECT_EQ(all.headers["transfer-encoding"], "chunked");
  LogCheck c = CheckLog(Messages(all));
  EXPECT_TRUE(c.Clean()) << c.Summary();
  EXPECT_EQ(c.msg_ids.size(), last);

  HttpResponse mine = BySender(sender);
  ASSERT_EQ(Messages(mine).Size(), 20000u);
  for (rapidjson::SizeType i = 0; i < 20000; i += 997) {
    EXPECT_EQ(Field(Messages(mine)[i], "payload"), "bulk " + std::to_string(i));
  }
}

TEST_F(ApiTest, SyncListsByLocalSeq) {
  ASSERT_EQ(Send(R"({"messages":[{"payload":"s1"},{"payload":"s2"},{"payload":"s3"}]})").status,
            200);
  uint64_t last = LastSeq();
  HttpResponse all = node().Post("/sync", R"({"since":0})", milliseconds(60000));
  ASSERT_EQ(all.status, 200) << all.Describe();
  EXPECT_EQ(Messages(all).Size(), last);
  EXPECT_EQ(all.Str("stream"), Stream());
  EXPECT_EQ(all.Int("last_seq"), static_cast<int64_t>(last));
  ASSERT_TRUE(all.json.HasMember("more") && all.json["more"].IsBool());
  EXPECT_FALSE(all.json["more"].GetBool());
  LogCheck c = CheckLog(Messages(all));
  EXPECT_TRUE(c.Clean()) << c.Summary();

  HttpResponse since = node().Post("/sync", "{\"since\":" + std::to_string(last - 2) + "}");
  ASSERT_EQ(Messages(since).Size(), 2u);
  EXPECT_EQ(UField(Messages(since)[0], "seq"), last - 1);
  EXPECT_EQ(Field(Messages(since)[1], "payload"), "s3");
  HttpResponse empty_body_default = node().Post("/sync", "{}", milliseconds(60000));
  EXPECT_EQ(empty_body_default.status, 200) << empty_body_default.Describe();
  EXPECT_EQ(Messages(empty_body_default).Size(), last);

  // Paging reassembles exactly the /messages listing.
  std::vector<std::string> paged;
  uint64_t cursor = 0;
  for (int i = 0; i < 1000; ++i) {
    HttpResponse p = node().Post(
        "/sync", "{\"since\":" + std::to_string(cursor) + ",\"limit\":4000}", milliseconds(60000));
    ASSERT_EQ(p.status, 200) << p.Describe();
    for (const auto& m : Messages(p).GetArray()) paged.push_back(Field(m, "msg_id"));
    ASSERT_TRUE(p.json.HasMember("next") && p.json["next"].IsUint64()) << p.body.substr(0, 200);
    cursor = p.json["next"].GetUint64();
    if (!p.json["more"].GetBool()) break;
  }
  EXPECT_EQ(paged, c.msg_ids);
  HttpResponse small = node().Post("/sync", R"({"since":0,"limit":7})");
  ASSERT_EQ(Messages(small).Size(), std::min<uint64_t>(7, last));
  EXPECT_EQ(small.json["more"].GetBool(), last > 7);
}

TEST_F(ApiTest, ReplicateSingleIsAdoptedAndIdempotent) {
  std::string id = "direct-" + Rand();
  std::string body =
      "{\"msg\":" +
      MessageJson(id, "system", "all", "Direct replication test", "\"ts\":1700000000.25") + "}";
  uint64_t before = LastSeq();
  HttpResponse a = node().Post("/replicate", body);
  ASSERT_EQ(a.status, 200) << a.Describe();
  EXPECT_EQ(a.Str("status"), "ok");
  EXPECT_EQ(a.Int("seq"), static_cast<int64_t>(before + 1));
  HttpResponse b = node().Post("/replicate", body);
  ASSERT_EQ(b.status, 200) << b.Describe();
  EXPECT_EQ(b.Int("seq"), a.Int("seq"));
  EXPECT_EQ(LastSeq(), before + 1);
  HttpResponse l = BySender("system");
  bool found = false;
  for (const auto& m : Messages(l).GetArray()) {
    if (Field(m, "msg_id") != id) continue;
    found = true;
    EXPECT_EQ(Field(m, "origin"), Stream());  // without an origin, the node adopts it
    EXPECT_DOUBLE_EQ(m["ts"].GetDouble(), 1700000000.25);
  }
  EXPECT_TRUE(found);
  // The same msg_id through /send is a duplicate too.
  HttpResponse s = Send(MessageJson(id, "system", "all", "again"));
  EXPECT_EQ(s.Int("seq"), a.Int("seq"));
}

TEST_F(ApiTest, ReplicateBatchOfAStreamAndGaps) {
  std::string origin = "peerx@" + Rand();
  auto msg = [&](int os) {
    return MessageJson(
        origin + "-m" + std::to_string(os), "peer", "all", "p" + std::to_string(os),
        "\"ts\":1.0,\"origin\":" + JsonQuote(origin) + ",\"origin_seq\":" + std::to_string(os));
  };
  uint64_t before = LastSeq();
  std::string batch = "{\"msgs\":[" + msg(1) + "," + msg(2) + "," + msg(3) + "]}";
  HttpResponse r = node().Post("/replicate", batch);
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.Int("high_water"), 3);
  EXPECT_EQ(r.Int("applied"), 3);
  EXPECT_EQ(r.Int("duplicates"), 0);
  EXPECT_EQ(r.Int("seq"), static_cast<int64_t>(before + 3));
  EXPECT_EQ(LastSeq(), before + 3);

  HttpResponse again = node().Post("/replicate", batch);
  ASSERT_EQ(again.status, 200) << again.Describe();
  EXPECT_EQ(again.Int("applied"), 0);
  EXPECT_EQ(again.Int("duplicates"), 3);
  EXPECT_EQ(again.Int("high_water"), 3);
  EXPECT_EQ(LastSeq(), before + 3);

  // A gap is refused with 409 and how far the node has the stream.
  HttpResponse gap = node().Post("/replicate", "{\"msgs\":[" + msg(5) + "]}");
  ASSERT_EQ(gap.status, 409) << gap.Describe();
  EXPECT_TRUE(gap.IsError());
  EXPECT_NE(gap.Str("reason").find("gap"), std::string::npos) << gap.body;
  EXPECT_EQ(gap.Int("high_water"), 3);
  EXPECT_EQ(LastSeq(), before + 3);

  // In a batch, what precedes the gap is applied, nothing after it.
  HttpResponse partial =
      node().Post("/replicate", "{\"msgs\":[" + msg(4) + "," + msg(6) + "," + msg(7) + "]}");
  ASSERT_EQ(partial.status, 409) << partial.Describe();
  EXPECT_EQ(partial.Int("high_water"), 4);
  EXPECT_EQ(LastSeq(), before + 4);

  // The seed's single form with an origin obeys the same rule.
  HttpResponse single = node().Post("/replicate", "{\"msg\":" + msg(5) + "}");
  ASSERT_EQ(single.status, 200) << single.Describe();
  EXPECT_EQ(single.Int("seq"), static_cast<int64_t>(before + 5));
  EXPECT_EQ(LastSeq(), before + 5);
  HttpResponse hb = node().Get("/heartbeat");
  ASSERT_TRUE(hb.json.HasMember("high_waters"));
  ASSERT_TRUE(hb.json["high_waters"].HasMember(origin.c_str())) << hb.body;
  EXPECT_EQ(hb.json["high_waters"][origin.c_str()].GetUint64(), 5u);

  HttpResponse fresh_gap = node().Post(
      "/replicate", "{\"msg\":" +
                        MessageJson("y-" + Rand(), "peer", "all", "p",
                                    "\"origin\":\"peery@" + Rand() + "\",\"origin_seq\":2") +
                        "}");
  EXPECT_EQ(fresh_gap.status, 409) << fresh_gap.Describe();
  EXPECT_EQ(fresh_gap.Int("high_water"), 0);
}

TEST_F(ApiTest, ReplicatedMsgIdKnownUnderAnotherOriginOnlyTakesThePosition) {
  std::string id = "known-" + Rand();
  ASSERT_EQ(Send(MessageJson(id, "k", "all", "original")).status, 200);
  uint64_t before = LastSeq();
  std::string origin = "peerz@" + Rand();
  HttpResponse r = node().Post(
      "/replicate", "{\"msgs\":[" +
                        MessageJson(id, "k", "all", "copy",
                                    "\"origin\":" + JsonQuote(origin) + ",\"origin_seq\":1") +
                        "]}");
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.Int("high_water"), 1);
  EXPECT_EQ(r.Int("duplicates"), 1);
  EXPECT_EQ(LastSeq(), before);
  HttpResponse l = BySender("k");
  ASSERT_EQ(Messages(l).Size(), 1u);
  EXPECT_EQ(Field(Messages(l)[0], "payload"), "original");
}

// ---------------------------------------------------------------------------------------------
// Nodes of their own: restart, shutdown, command line.

// The whole listing, as text, message by message.
std::vector<std::string> ListingRows(NodeProcess& n) {
  HttpResponse r = n.Get("/messages", milliseconds(60000));
  EXPECT_EQ(r.status, 200) << r.Describe();
  std::vector<std::string> rows;
  for (const auto& m : Messages(r).GetArray()) {
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    m.Accept(w);
    rows.push_back(buf.GetString());
  }
  return rows;
}

TEST(NodeLifecycleTest, KillNineThenRestartKeepsEveryMessageAndSeq) {
  TempDir dir;
  uint16_t port = FreePort();
  NodeProcess n("solo", BinaryPath("dsm-node"), StartArgs(port, "solo", dir.Sub("data")),
                dir.Sub("solo.log"), port);
  ASSERT_TRUE(n.StartAndWait().ok()) << n.LogTail();
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(n.Post("/send", MessageJson("keep-" + std::to_string(i), "u", "v",
                                          "payload " + std::to_string(i)))
                  .status,
              200);
  }
  ASSERT_EQ(
      n.Post("/replicate",
             R"({"msgs":[{"msg_id":"rp-1","payload":"r","origin":"peerq@1","origin_seq":1}]})")
          .status,
      200);
  std::vector<std::string> before = ListingRows(n);
  ASSERT_EQ(before.size(), 31u);
  HttpResponse hb = n.Get("/heartbeat");
  std::string stream = hb.Str("stream");

  for (int round = 0; round < 3; ++round) {
    ExitInfo e = n.Kill();
    EXPECT_EQ(e.signal, SIGKILL);
    ASSERT_TRUE(n.StartAndWait().ok()) << n.LogTail();
    EXPECT_EQ(ListingRows(n), before) << "round " << round;
    HttpResponse hb2 = n.Get("/heartbeat");
    EXPECT_EQ(hb2.Str("stream"), stream);
    EXPECT_EQ(hb2.json["high_waters"]["peerq@1"].GetUint64(), 1u);
  }
  // The log continues where it stopped; old msg_ids are still known.
  HttpResponse next = n.Post("/send", MessageJson("keep-new", "u", "v", "new"));
  ASSERT_EQ(next.status, 200) << next.Describe();
  EXPECT_EQ(next.Int("seq"), 32);
  EXPECT_EQ(next.Int("origin_seq"), 31);  // 30 sent + 1 new; the replicated one is peerq's
  HttpResponse old = n.Post("/send", MessageJson("keep-7", "u", "v", "again"));
  EXPECT_EQ(old.Int("seq"), 8);
  EXPECT_TRUE(old.json["duplicate"].GetBool());
}

TEST(NodeLifecycleTest, SigtermExitsZeroAndKeepsData) {
  TempDir dir;
  uint16_t port = FreePort();
  NodeProcess n("solo", BinaryPath("dsm-node"), StartArgs(port, "solo", dir.Sub("data")),
                dir.Sub("solo.log"), port);
  ASSERT_TRUE(n.StartAndWait().ok()) << n.LogTail();
  ASSERT_EQ(n.Post("/send", MessageJson("term-1", "u", "v", "p")).status, 200);
  ExitInfo e = n.Terminate(milliseconds(15000));
  EXPECT_TRUE(e.exited) << e.ToString();
  EXPECT_EQ(e.exit_code, 0) << n.LogTail();
  ASSERT_TRUE(n.StartAndWait().ok()) << n.LogTail();
  std::vector<std::string> rows = ListingRows(n);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_NE(rows[0].find("term-1"), std::string::npos);
  // SIGINT (Ctrl-C) too.
  kill(n.Pid(), SIGINT);
  auto e2 = n.WaitExit(milliseconds(15000));
  ASSERT_TRUE(e2.has_value());
  EXPECT_TRUE(e2->exited && e2->exit_code == 0) << e2->ToString();
}

TEST(NodeLifecycleTest, SameNodeIdOnASecondDataDirStartsAnotherStream) {
  // Two data directories of one node id are two incarnations: their streams differ.
  TempDir dir;
  uint16_t port = FreePort();
  NodeProcess a("a", BinaryPath("dsm-node"), StartArgs(port, "n", dir.Sub("one")), dir.Sub("a.log"),
                port);
  ASSERT_TRUE(a.StartAndWait().ok()) << a.LogTail();
  std::string s1 = a.Get("/heartbeat").Str("stream");
  a.Kill();
  NodeProcess b("b", BinaryPath("dsm-node"), StartArgs(port, "n", dir.Sub("two")), dir.Sub("b.log"),
                port);
  ASSERT_TRUE(b.StartAndWait().ok()) << b.LogTail();
  std::string s2 = b.Get("/heartbeat").Str("stream");
  EXPECT_EQ(s1.rfind("n@", 0), 0u);
  EXPECT_EQ(s2.rfind("n@", 0), 0u);
  EXPECT_NE(s1, s2);
}

struct OptionCase {
  std::string name;
  std::vector<std::string> args;  // after the base arguments
};

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

TEST(CommandLineTest, OptionErrorsExitNonZeroWithOneLine) {
  TempDir dir;
  const std::string two_peers = "http://127.0.0.1:1,http://127.0.0.1:2";
  std::vector<OptionCase> cases = {
      {"quorum 0", {"--peers", two_peers, "--replication_mode", "sync_quorum", "--quorum", "0"}},
      {"quorum above peers+1",
       {"--peers", two_peers, "--replication_mode", "sync_quorum", "--quorum", "4"}},
      {"negative quorum",
       {"--peers", two_peers, "--replication_mode", "sync_quorum", "--quorum", "-1"}},
      {"bad mode", {"--replication_mode", "eventually"}},
      {"bad fsync", {"--fsync", "sometimes"}},
      {"malformed peer url", {"--peers", "not a url"}},
      {"peer url without port", {"--peers", "http://127.0.0.1"}},
      {"peer url with a bad port", {"--peers", "http://127.0.0.1:99999"}},
      {"peer url with another scheme", {"--peers", "ftp://127.0.0.1:8001"}},
      {"peer is this node", {"--port", "45123", "--peers", "http://127.0.0.1:45123"}},
      {"peer listed twice", {"--peers", "http://127.0.0.1:1,http://127.0.0.1:1"}},
      {"port out of range", {"--port", "70000"}},
      {"port not a number", {"--port", "eighty"}},
      {"zero heartbeat interval", {"--heartbeat-interval-ms", "0"}},
      {"heartbeat timeout below the interval",
       {"--heartbeat-interval-ms", "1000", "--heartbeat-timeout-ms", "500"}},
      {"max message bytes not a number", {"--max-message-bytes", "lots"}},
      {"zero http threads", {"--http-threads", "0"}},
      {"bad log level", {"--log-level", "loud"}},
      {"bad node id", {"--id", "no spaces/please"}},
  };
  int i = 0;
  for (const OptionCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<std::string> argv = {BinaryPath("dsm-node"), "--data-dir",
                                     dir.Sub("d" + std::to_string(i++))};
    auto has = [&](const char* opt) {
      return std::find(c.args.begin(), c.args.end(), opt) != c.args.end();
    };
    if (!has("--port")) argv.insert(argv.end(), {"--port", std::to_string(FreePort())});
    if (!has("--id")) argv.insert(argv.end(), {"--id", "opt"});
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    RunResult r = RunToExit(argv, milliseconds(20000));
    EXPECT_FALSE(r.timed_out) << c.name << ": still running (it accepted the option)";
    EXPECT_TRUE(r.exit.exited && r.exit.exit_code != 0) << c.name << ": " << r.exit.ToString();
    std::vector<std::string> lines = Lines(r.err);
    EXPECT_EQ(lines.size(), 1u) << c.name << ": stderr was:\n" << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.Sub("d" + std::to_string(i - 1))))
        << c.name << ": created the data directory before refusing the options";
  }
}

TEST(CommandLineTest, UnknownOptionFails) {
  TempDir dir;
  RunResult r = RunToExit({BinaryPath("dsm-node"), "--port", std::to_string(FreePort()), "--id",
                           "x", "--data-dir", dir.Sub("d"), "--no-such-option", "1"});
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code != 0) << r.exit.ToString();
  EXPECT_FALSE(r.err.empty());
}

TEST(CommandLineTest, HelpListsEveryOption) {
  RunResult r = RunToExit({BinaryPath("dsm-node"), "--help"});
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 0) << r.exit.ToString();
  for (const char* opt :
       {"--port", "--id", "--peers", "--replication_mode", "--quorum", "--host", "--data-dir",
        "--fsync", "--max-message-bytes", "--heartbeat-interval-ms", "--heartbeat-timeout-ms",
        "--quorum-timeout-ms", "--anti-entropy-interval-ms", "--request-timeout-ms",
        "--http-threads", "--log-level"}) {
    EXPECT_NE(r.out.find(opt), std::string::npos) << opt << " missing from --help";
  }
}

// Starting must fail with a non-zero exit and a one-line reason on stderr that names the problem
// (contains one of `keywords`, case-insensitive).
void ExpectStartFails(const std::vector<std::string>& argv,
                      const std::vector<std::string>& keywords) {
  RunResult r = RunToExit(argv, milliseconds(20000));
  EXPECT_FALSE(r.timed_out) << "still running";
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code != 0) << r.exit.ToString();
  std::vector<std::string> lines = Lines(r.err);
  ASSERT_FALSE(lines.empty()) << "nothing on stderr";
  std::string last = lines.back();
  std::string lower;
  for (char ch : last)
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
  bool named = false;
  for (const std::string& k : keywords) named = named || lower.find(k) != std::string::npos;
  EXPECT_TRUE(named) << "the last stderr line does not name the problem (" << keywords[0]
                     << "...):\n"
                     << r.err;
  EXPECT_EQ(lines.size(), 1u) << "stderr was:\n" << r.err;
}

TEST(CommandLineTest, PortInUse) {
  TempDir dir;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  uint16_t port = ntohs(addr.sin_port);
  ExpectStartFails({BinaryPath("dsm-node"), "--port", std::to_string(port), "--id", "x", "--peers",
                    "", "--data-dir", dir.Sub("parent/d")},
                   {std::to_string(port), "in use"});
  // A failed start creates nothing: no data directory (with a new incarnation), not even its
  // parent. The same with the default data directory, ./data/<id> under the working directory.
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("parent"))) << "a failed start created its data dir";
  RunResult r = RunToExit(
      {BinaryPath("dsm-node"), "--port", std::to_string(port), "--id", "x", "--peers", ""},
      milliseconds(20000), dir.path());
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 1) << r.exit.ToString() << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("data"))) << "a failed start created ./data";
  close(fd);
}

TEST(CommandLineTest, UnwritableDataDir) {
  TempDir dir;
  std::ofstream(dir.Sub("file")) << "not a directory";
  ExpectStartFails({BinaryPath("dsm-node"), "--port", std::to_string(FreePort()), "--id", "x",
                    "--peers", "", "--data-dir", dir.Sub("file/data")},
                   {"file/data", "directory", "data dir"});
}

TEST(CommandLineTest, DataDirOfAnotherNode) {
  TempDir dir;
  uint16_t port = FreePort();
  {
    NodeProcess a("alpha", BinaryPath("dsm-node"), StartArgs(port, "alpha", dir.Sub("d")),
                  dir.Sub("a.log"), port);
    ASSERT_TRUE(a.StartAndWait().ok()) << a.LogTail();
    ASSERT_EQ(a.Post("/send", R"({"payload":"alpha's"})").status, 200);
    ExitInfo e = a.Terminate();
    EXPECT_EQ(e.exit_code, 0);
  }
  ExpectStartFails({BinaryPath("dsm-node"), "--port", std::to_string(FreePort()), "--id", "beta",
                    "--peers", "", "--data-dir", dir.Sub("d")},
                   {"alpha", "beta"});
  // The directory is untouched: its owner starts on it as before.
  NodeProcess again("alpha", BinaryPath("dsm-node"), StartArgs(port, "alpha", dir.Sub("d")),
                    dir.Sub("a2.log"), port);
  ASSERT_TRUE(again.StartAndWait().ok()) << again.LogTail();
  EXPECT_EQ(ListingRows(again).size(), 1u);
}

TEST(CommandLineTest, SecondNodeOnALiveDataDirFails) {
  TempDir dir;
  uint16_t port = FreePort();
  NodeProcess a("a", BinaryPath("dsm-node"), StartArgs(port, "a", dir.Sub("d")), dir.Sub("a.log"),
                port);
  ASSERT_TRUE(a.StartAndWait().ok()) << a.LogTail();
  RunResult r = RunToExit({BinaryPath("dsm-node"), "--port", std::to_string(FreePort()), "--id",
                           "a", "--peers", "", "--data-dir", dir.Sub("d")},
                          milliseconds(20000));
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code != 0) << r.exit.ToString();
  EXPECT_FALSE(r.err.empty());
  EXPECT_EQ(a.Get("/heartbeat").status, 200);
}

}  // namespace
}  // namespace dsm::testing

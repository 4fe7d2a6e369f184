// Durable consumers on real dsm-node processes (README contract 13, docs/api.md "Durable
// consumers"):
//  - clients fetch and acknowledge in a loop while the node is killed with SIGKILL at random
//    moments and restarted: no message acknowledged (200 "acked") is delivered again, none is
//    skipped, and first deliveries come in log order;
//  - a consumer moved to another node by its origin position skips nothing;
//  - bad input on every endpoint gets a clear 4xx JSON error and changes nothing.
// Random choices print their seed; DSM_TEST_SEED=<n> replays them.
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/process.h"

namespace dsm::testing {
namespace {

constexpr Millis kWait{60000};

HttpResponse Call(const std::string& method, const std::string& url,
                  std::optional<std::string> body = std::nullopt) {
  HttpRequest req;
  req.method = method;
  req.url = url;
  req.body = std::move(body);
  return Http(req);
}

std::string SendBody(const std::string& id, const std::string& recipient) {
  return "{\"msg_id\":" + JsonQuote(id) + ",\"sender\":\"w\",\"recipient\":" +
         JsonQuote(recipient) + ",\"payload\":\"p\"}";
}

// The session field of an ack id ("<uid>.<session>.<seq>.<delivery>").
uint64_t SessionOf(const std::string& ack_id) {
  const size_t a = ack_id.find('.');
  return std::stoull(ack_id.substr(a + 1, ack_id.find('.', a + 1) - a - 1));
}

struct Got {
  uint64_t seq = 0;
  std::string msg_id;
  std::string origin;
  uint64_t origin_seq = 0;
  uint64_t delivery = 0;
  std::string ack_id;
};

// One fetch: the deliveries, or nullopt when the node did not answer 200.
std::optional<std::vector<Got>> Fetch(const std::string& url, const std::string& consumer,
                                      int max, int wait_ms) {
  HttpResponse r = HttpGet(url + "/consumers/" + consumer + "/messages?max=" +
                               std::to_string(max) + "&wait_ms=" + std::to_string(wait_ms),
                           Millis(wait_ms + 5000));
  if (r.status != 200 || !r.json_ok) return std::nullopt;
  std::vector<Got> out;
  for (const auto& m : r.json["messages"].GetArray()) {
    Got g;
    g.seq = m["seq"].GetUint64();
    g.msg_id = m["msg_id"].GetString();
    g.origin = m["origin"].GetString();
    g.origin_seq = m["origin_seq"].GetUint64();
    g.delivery = m["delivery"].GetUint64();
    g.ack_id = m["ack_id"].GetString();
    out.push_back(std::move(g));
  }
  return out;
}

// Acks `got`; returns the msg_ids the node answered "acked" for (empty when no 200).
std::vector<std::string> Ack(const std::string& url, const std::string& consumer,
                             const std::vector<Got>& got) {
  if (got.empty()) return {};
  std::string body = "{\"ack_ids\":[";
  for (size_t i = 0; i < got.size(); ++i) body += (i ? "," : "") + JsonQuote(got[i].ack_id);
  body += "]}";
  HttpResponse r = HttpPost(url + "/consumers/" + consumer + "/ack", body, Millis(5000));
  std::vector<std::string> acked;
  if (r.status != 200 || !r.json_ok) return acked;
  const auto& results = r.json["results"].GetArray();
  for (rapidjson::SizeType i = 0; i < results.Size() && i < got.size(); ++i) {
    if (std::string(results[i]["result"].GetString()) == "acked") acked.push_back(got[i].msg_id);
  }
  return acked;
}

// The msg_ids of `recipient`'s messages in `url`'s log, in log order.
std::vector<std::string> RecipientLog(const std::string& url, const std::string& recipient) {
  HttpResponse r = HttpGet(url + "/messages?recipient=" + recipient, Millis(30000));
  std::vector<std::string> out;
  if (r.status != 200 || !r.json_ok) return out;
  for (const auto& m : r.json["messages"].GetArray()) out.push_back(m["msg_id"].GetString());
  return out;
}

NodeProcess MakeNode(const TempDir& dir, const std::string& id) {
  const uint16_t port = FreePort();
  return NodeProcess(id, BinaryPath("dsm-node"),
                     {"--port", std::to_string(port), "--id", id, "--peers", "", "--data-dir",
                      dir.Sub(id + "-data")},
                     dir.Sub(id + ".log"), port);
}

// What the clients saw, shared between their threads.
class Ledger {
 public:
  // Records a delivery; false (with *why) when it breaks a promise.
  bool Delivered(int client, const Got& g, std::string* why) {
    std::lock_guard lock(mu_);
    if (acked_.count(g.msg_id) != 0) {
      *why = "acknowledged message " + g.msg_id + " delivered again (delivery " +
             std::to_string(g.delivery) + ")";
      return false;
    }
    // First deliveries of one session reach one client in log order.
    auto& [session, last] = first_[client];
    const uint64_t s = SessionOf(g.ack_id);
    if (s != session) {
      session = s;
      last = 0;
    }
    if (g.delivery == 1) {
      if (g.seq <= last) {
        *why = "first delivery of seq " + std::to_string(g.seq) + " after seq " +
               std::to_string(last);
        return false;
      }
      last = g.seq;
    }
    ++deliveries_;
    delivered_.insert(g.msg_id);
    return true;
  }
  void Acked(const std::vector<std::string>& ids) {
    std::lock_guard lock(mu_);
    for (const std::string& id : ids) {
      if (!acked_.insert(id).second) duplicate_acks_.push_back(id);
    }
  }
  std::set<std::string> acked() {
    std::lock_guard lock(mu_);
    return acked_;
  }
  std::vector<std::string> duplicate_acks() {
    std::lock_guard lock(mu_);
    return duplicate_acks_;
  }
  size_t deliveries() {
    std::lock_guard lock(mu_);
    return deliveries_;
  }
  std::set<std::string> delivered() {
    std::lock_guard lock(mu_);
    return delivered_;
  }

 private:
  std::mutex mu_;
  std::set<std::string> acked_;      // answered "acked"
  std::set<std::string> delivered_;  // delivered at least once
  std::vector<std::string> duplicate_acks_;
  std::map<int, std::pair<uint64_t, uint64_t>> first_;  // client -> (session, last first seq)
  size_t deliveries_ = 0;
};

TEST(DurableConsumersProcessTest, Kill9DuringDeliveriesAndAcksNeitherRepeatsNorSkips) {
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  TempDir dir;
  NodeProcess node = MakeNode(dir, "n1");
  ASSERT_TRUE(node.StartAndWait().ok());
  // Messages before the consumer exists, and others (another recipient) in between.
  std::set<std::string> sent_ok;
  for (int i = 0; i < 400; ++i) {
    const std::string id = "pre-" + std::to_string(i);
    ASSERT_EQ(node.Post("/send", SendBody(id, i % 4 == 0 ? "other" : "jobs")).status, 200);
  }
  HttpResponse put = Call("PUT", node.Url() + "/consumers/work",
                          std::string("{\"recipient\":\"jobs\",\"ack_wait_ms\":1500}"));
  ASSERT_EQ(put.status, 201) << put.Describe();

  std::atomic<bool> stop_clients{false};
  std::atomic<bool> stop_writer{false};
  Ledger ledger;
  std::mutex problems_mu;
  std::vector<std::string> problems;
  auto client = [&](int id) {
    std::mt19937_64 crng(seed + static_cast<uint64_t>(id));
    while (!stop_clients) {
      std::optional<std::vector<Got>> got = Fetch(node.Url(), "work", 1 + crng() % 20, 300);
      if (!got) {
        std::this_thread::sleep_for(Millis(20));  // the node is down: pacing only
        continue;
      }
      std::vector<Got> to_ack;
      for (const Got& g : *got) {
        std::string why;
        if (!ledger.Delivered(id, g, &why)) {
          std::lock_guard lock(problems_mu);
          problems.push_back(why);
        }
        // Some deliveries are dropped as by a client that dies: they come back after ack_wait.
        if (crng() % 10 != 0) to_ack.push_back(g);
      }
      ledger.Acked(Ack(node.Url(), "work", to_ack));
    }
  };
  // New messages keep arriving while the node is killed.
  std::thread writer([&] {
    for (int i = 0; !stop_writer; ++i) {
      HttpPost(node.Url() + "/send", SendBody("live-" + std::to_string(i), "jobs"), Millis(2000));
      std::this_thread::sleep_for(Millis(5));  // pacing only
    }
  });
  std::thread c1(client, 1);
  std::thread c2(client, 2);
  for (int k = 0; k < 6; ++k) {
    std::this_thread::sleep_for(Millis(150 + rng() % 600));
    node.Kill();
    ASSERT_TRUE(node.StartAndWait().ok());
  }
  stop_writer = true;
  writer.join();
  // Drain until the node has every message of the recipient acknowledged: nothing pending,
  // nothing in flight. (An acknowledgement made durable just before a SIGKILL may never have
  // been answered: the client does not know it, the node does, and does not deliver it again.)
  const std::vector<std::string> expected = RecipientLog(node.Url(), "jobs");
  ASSERT_FALSE(expected.empty());
  auto done = [&] {
    HttpResponse r = node.Get("/consumers/work", Millis(3000));
    if (r.status != 200 || !r.json_ok) return false;
    const auto& c = r.json["consumer"];
    return c["pending"].GetUint64() == 0 && c["in_flight"].GetUint64() == 0 &&
           c["ack_pending"].GetUint64() == 0 && c["pending_exact"].GetBool();
  };
  const bool drained = WaitFor(done, kWait, Millis(100));
  stop_clients = true;
  c1.join();
  c2.join();
  EXPECT_TRUE(drained) << ledger.acked().size() << " of " << expected.size() << " acknowledged";
  for (const std::string& p : problems) ADD_FAILURE() << p;
  EXPECT_TRUE(ledger.duplicate_acks().empty())
      << "acknowledged twice: " << ledger.duplicate_acks().front();
  const std::set<std::string> acked = ledger.acked();
  const std::set<std::string> delivered = ledger.delivered();
  for (const std::string& id : expected) {
    EXPECT_EQ(delivered.count(id), 1u) << id << " was skipped (never delivered)";
  }
  for (const std::string& id : delivered) {
    EXPECT_TRUE(std::find(expected.begin(), expected.end(), id) != expected.end())
        << id << " is not a message of the consumer's recipient";
  }
  EXPECT_GE(acked.size() + 10, expected.size()) << "few acknowledgements were answered";
  EXPECT_GT(ledger.deliveries(), expected.size()) << "no redelivery happened";
  std::cout << expected.size() << " messages, " << ledger.deliveries() << " deliveries, "
            << acked.size() << " acknowledged with an answer, across 6 SIGKILLs\n";
  // The node agrees: nothing pending, nothing in flight, the floor at the log's end.
  HttpResponse info = node.Get("/consumers/work");
  ASSERT_EQ(info.status, 200);
  EXPECT_EQ(info.json["consumer"]["pending"].GetUint64(), 0u) << info.body;
  EXPECT_EQ(info.json["consumer"]["in_flight"].GetUint64(), 0u) << info.body;
}

std::vector<NodeSpec> Pair() { return {{"a", {1}, "async", 2, {}}, {"b", {0}, "async", 2, {}}}; }

TEST(DurableConsumersProcessTest, AConsumerMovedByItsOriginPositionSkipsNothing) {
  TestCluster cluster(Pair());
  ASSERT_TRUE(cluster.StartAll().ok());
  NodeProcess& a = cluster.node(0);
  NodeProcess& b = cluster.node(1);
  std::vector<std::string> ids;
  for (int i = 0; i < 300; ++i) {
    const std::string id = "m" + std::to_string(i);
    ASSERT_EQ((i % 3 == 0 ? b : a).Post("/send", SendBody(id, "jobs")).status, 200);
    ids.push_back(id);
    // a's log starts with b's first message, so the floor below always names both streams
    // (b's pushes to a begin only once b heard a, which may be after a's first 120 messages).
    if (i == 0) {
      ASSERT_TRUE(cluster.WaitConverged(ids, kWait));
    }
  }
  ASSERT_TRUE(cluster.WaitConverged(ids, kWait));
  ASSERT_EQ(Call("PUT", a.Url() + "/consumers/mover", std::string("{\"recipient\":\"jobs\"}")).status,
            201);
  // On a: 180 delivered; all but a few acknowledged (so the floor stops below the end of what
  // was delivered, with acknowledgements above it).
  std::set<std::string> acked_on_a;
  std::optional<std::vector<Got>> got = Fetch(a.Url(), "mover", 180, 0);
  ASSERT_TRUE(got && got->size() == 180);
  std::vector<Got> to_ack;
  for (size_t i = 0; i < got->size(); ++i) {
    if (i != 120 && i != 150) to_ack.push_back((*got)[i]);
  }
  for (const std::string& id : Ack(a.Url(), "mover", to_ack)) acked_on_a.insert(id);
  ASSERT_EQ(acked_on_a.size(), 178u);
  HttpResponse pos = a.Get("/consumers/mover");
  ASSERT_EQ(pos.status, 200);
  const auto& origins = pos.json["consumer"]["position"]["origins"];
  ASSERT_TRUE(origins.IsObject() && origins.MemberCount() == 2) << pos.body;
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  origins.Accept(w);
  const std::string start = buf.GetString();
  // On b, from a's position: everything not acknowledged below a's floor comes, in b's order.
  HttpResponse put = Call("PUT", b.Url() + "/consumers/mover",
                          "{\"recipient\":\"jobs\",\"start\":" + start + "}");
  ASSERT_EQ(put.status, 201) << put.Describe();
  std::set<std::string> on_b;
  for (;;) {
    std::optional<std::vector<Got>> more = Fetch(b.Url(), "mover", 100, 0);
    ASSERT_TRUE(more);
    if (more->empty()) break;
    for (const Got& g : *more) EXPECT_TRUE(on_b.insert(g.msg_id).second) << g.msg_id;
    ASSERT_EQ(Ack(b.Url(), "mover", *more).size(), more->size());
  }
  for (const std::string& id : ids) {
    EXPECT_TRUE(acked_on_a.count(id) != 0 || on_b.count(id) != 0) << id << " was skipped";
  }
  // What a had delivered but not acknowledged comes again on b.
  EXPECT_EQ(on_b.count((*got)[120].msg_id), 1u);
  EXPECT_EQ(on_b.count((*got)[150].msg_id), 1u);
  EXPECT_LT(on_b.size(), 300u - 100u) << "the position should cover a's acknowledged prefix";
}

TEST(DurableConsumersProcessTest, AWaitingFetchIsAnsweredByANewMessageAndByARedelivery) {
  TempDir dir;
  NodeProcess node = MakeNode(dir, "n1");
  ASSERT_TRUE(node.StartAndWait().ok());
  ASSERT_EQ(Call("PUT", node.Url() + "/consumers/w",
                 std::string("{\"recipient\":\"jobs\",\"ack_wait_ms\":300}"))
                .status,
            201);
  // Nothing there yet: the fetch waits (up to 30 s) and a matching send answers it - well before
  // its wait ends (a fetch answered only at its deadline would find the message too).
  constexpr Millis kWell{20000};
  std::future<std::optional<std::vector<Got>>> waited =
      std::async(std::launch::async, [&] { return Fetch(node.Url(), "w", 5, 30000); });
  ASSERT_TRUE(WaitFor([&] {
    HttpResponse m = node.Get("/metrics");
    return m.body.find("dsm_consumer_waiting_fetches 1") != std::string::npos;
  }, kWait));
  ASSERT_EQ(node.Post("/send", SendBody("other-1", "other")).status, 200);  // not selected
  ASSERT_EQ(node.Post("/send", SendBody("job-1", "jobs")).status, 200);
  ASSERT_EQ(waited.wait_for(kWell), std::future_status::ready) << "the send did not wake it";
  std::optional<std::vector<Got>> got = waited.get();
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].msg_id, "job-1");
  // Not acknowledged: a fetch waiting meanwhile gets it again once ack_wait_ms (300 ms) passed.
  std::future<std::optional<std::vector<Got>>> again =
      std::async(std::launch::async, [&] { return Fetch(node.Url(), "w", 5, 30000); });
  ASSERT_EQ(again.wait_for(kWell), std::future_status::ready) << "the redelivery did not wake it";
  got = again.get();
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].msg_id, "job-1");
  EXPECT_EQ((*got)[0].delivery, 2u);
}

TEST(DurableConsumersProcessTest, BadInputGetsAClearErrorAndChangesNothing) {
  TempDir dir;
  NodeProcess node = MakeNode(dir, "n1");
  ASSERT_TRUE(node.StartAndWait().ok());
  for (int i = 0; i < 5; ++i) ASSERT_EQ(node.Post("/send", SendBody("m" + std::to_string(i), "jobs")).status, 200);
  ASSERT_EQ(Call("PUT", node.Url() + "/consumers/c", std::string("{\"recipient\":\"jobs\"}")).status,
            201);
  std::optional<std::vector<Got>> got = Fetch(node.Url(), "c", 2, 0);
  ASSERT_TRUE(got && got->size() == 2);
  const std::string id0 = (*got)[0].ack_id;
  auto state = [&] {
    HttpResponse r = node.Get("/consumers");
    return r.body;
  };
  const std::string before = state();
  std::string many = "{\"ack_ids\":[";
  for (int i = 0; i < 1001; ++i) many += std::string(i ? "," : "") + JsonQuote(id0);
  many += "]}";
  struct Case {
    const char* method;
    std::string path;
    std::optional<std::string> body;
    long status;
  };
  const std::string other_uid = "ffffffff" + id0.substr(8);
  const std::vector<Case> cases = {
      {"PUT", "/consumers/bad.name", "{}", 400},
      {"PUT", "/consumers/" + std::string(65, 'x'), "{}", 400},
      {"PUT", "/consumers/new1", "{", 400},
      {"PUT", "/consumers/new1", "[1]", 400},
      {"PUT", "/consumers/new1", "{\"recipent\":\"jobs\"}", 400},
      {"PUT", "/consumers/new1", "{\"recipient\":5}", 400},
      {"PUT", "/consumers/new1", "{\"recipient\":\"\"}", 400},
      {"PUT", "/consumers/new1", "{\"ack_wait_ms\":0}", 400},
      {"PUT", "/consumers/new1", "{\"ack_wait_ms\":\"5\"}", 400},
      {"PUT", "/consumers/new1", "{\"max_in_flight\":-1}", 400},
      {"PUT", "/consumers/new1", "{\"max_deliveries\":1.5}", 400},
      {"PUT", "/consumers/new1", "{\"start\":\"last\"}", 400},
      {"PUT", "/consumers/new1", "{\"start\":999999}", 400},
      {"PUT", "/consumers/new1", "{\"start\":{\"o\":\"x\"}}", 400},
      {"PUT", "/consumers/new1", "\xff\xfe", 400},
      {"PUT", "/consumers/c", "{\"recipient\":\"other\"}", 409},
      {"GET", "/consumers/nope", std::nullopt, 404},
      {"DELETE", "/consumers/nope", std::nullopt, 404},
      {"GET", "/consumers/nope/messages", std::nullopt, 404},
      {"GET", "/consumers/c/messages?max=0", std::nullopt, 400},
      {"GET", "/consumers/c/messages?max=1001", std::nullopt, 400},
      {"GET", "/consumers/c/messages?max=x", std::nullopt, 400},
      {"GET", "/consumers/c/messages?wait_ms=-5", std::nullopt, 400},
      {"GET", "/consumers/c/dead?limit=0", std::nullopt, 400},
      {"POST", "/consumers/nope/ack", "{\"ack_ids\":[\"" + id0 + "\"]}", 404},
      {"POST", "/consumers/c/ack", "", 400},
      {"POST", "/consumers/c/ack", "{\"ack_ids\":[]}", 400},
      {"POST", "/consumers/c/ack", "{\"ack_ids\":\"" + id0 + "\"}", 400},
      {"POST", "/consumers/c/ack", "{\"ack_ids\":[1]}", 400},
      {"POST", "/consumers/c/ack", "{\"ids\":[\"" + id0 + "\"]}", 400},
      {"POST", "/consumers/c/ack", many, 400},
      {"POST", "/consumers/c/ack", "{\"ack_ids\":[\"" + id0 + "\",\"garbage\"]}", 400},
      {"POST", "/consumers/c/ack", "{\"ack_ids\":[\"" + id0 + "\",\"" + other_uid + "\"]}", 400},
      {"POST", "/consumers/c/ack", "{\"ack_ids\":[\"" + id0.substr(0, 9) + "1.4.1\"]}", 400},
      {"POST", "/consumers/c/ack", "{\"ack_ids\":[\"" + id0 + "\"],\"delay_ms\":5}", 400},
      {"POST", "/consumers/c/nak", "{\"ack_ids\":[\"" + id0 + "\"],\"delay_ms\":-1}", 400},
      {"POST", "/consumers/c/nak", "{\"ack_ids\":[\"" + id0 + "\"],\"delay_ms\":\"1\"}", 400},
      {"PATCH", "/consumers/c", "{}", 405},
      {"POST", "/consumers", "{}", 405},
  };
  for (const Case& c : cases) {
    HttpResponse r = Call(c.method, node.Url() + c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path << " " << c.body.value_or("")
                                  << " -> " << r.Describe();
    EXPECT_TRUE(r.IsError()) << c.method << " " << c.path << " -> " << r.Describe();
  }
  // HEAD on the fetch endpoint hands nothing out.
  const std::string head = RawExchange(
      node.Port(), "HEAD /consumers/c/messages?max=3 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  EXPECT_EQ(state(), before) << "bad input changed a consumer";
  EXPECT_EQ(node.Get("/consumers/new1").status, 404);
  // The node is fine and the delivery still acknowledgeable.
  EXPECT_EQ(Ack(node.Url(), "c", {(*got)[0]}).size(), 1u);
}

}  // namespace
}  // namespace dsm::testing

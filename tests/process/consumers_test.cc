// A reader following one recipient live, through the event stream of real dsm-node processes,
// while writers send to every node and nodes are killed with SIGKILL and restarted:
//  - on one node, reconnecting after each restart of that node with Last-Event-ID (seqs are
//    stable across restarts of a node);
//  - across nodes, reconnecting to another node each time the one it reads from is killed, with
//    the `resume` position it built from the events it got ({origin: highest origin_seq}).
// Either way, once writers stop and the cluster converges, the reader must have received every
// message of that recipient exactly once (the set equals the recipient's messages in the
// converged log, which holds every acknowledged one), each origin's messages in origin order.
// This is exactly what docs/api.md promises. Random choices print their seed; DSM_TEST_SEED=<n>
// replays them.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/process.h"
#include "tests/testing/sse_client.h"

namespace dsm::testing {
namespace {

constexpr Millis kWait{60000};  // generous deadline for conditions
constexpr char kRecipient[] = "alice";

std::vector<NodeSpec> FullMesh3() {
  std::vector<NodeSpec> specs(3);
  for (int i = 0; i < 3; ++i) {
    specs[i].id = "n" + std::to_string(i + 1);
    for (int j = 0; j < 3; ++j) {
      if (j != i) specs[i].peers.push_back(j);
    }
  }
  return specs;
}

// Sends messages to the nodes in turn until stopped: two of three to kRecipient. A send that
// fails is never retried on another node (that would store one msg_id under two origins), so a
// message is either acknowledged by one node, or uncertain (that node may hold it).
class Writer {
 public:
  Writer(TestCluster& cluster, uint64_t seed) : cluster_(cluster), seed_(seed) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Writer() { Stop(); }

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::set<std::string> acked() {
    std::lock_guard lock(mu_);
    return acked_;
  }
  size_t sent() const { return sent_.load(); }

 private:
  void Run() {
    std::mt19937_64 rng(seed_);
    for (uint64_t i = 0; !stop_; ++i) {
      const size_t node = rng() % cluster_.size();
      const bool for_recipient = rng() % 3 != 0;
      const std::string id = "w" + std::to_string(seed_ % 1000) + "-" + std::to_string(i);
      const std::string body = "{\"msg_id\":" + JsonQuote(id) + ",\"sender\":\"writer\"," +
                               "\"recipient\":\"" + (for_recipient ? kRecipient : "bob") +
                               "\",\"payload\":" + JsonQuote("payload " + id) + "}";
      HttpResponse r = HttpPost(cluster_.node(node).Url() + "/send", body, Millis(3000));
      ++sent_;
      if (r.status == 200 && for_recipient) {
        std::lock_guard lock(mu_);
        acked_.insert(id);
      }
      std::this_thread::sleep_for(Millis(3));  // pacing only
    }
  }

  TestCluster& cluster_;
  const uint64_t seed_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> sent_{0};
  std::mutex mu_;
  std::set<std::string> acked_;  // guarded by mu_: acknowledged messages to kRecipient
  std::thread thread_;
};

// What the reader received, and the positions it resumes from.
struct Delivery {
  std::string msg_id;
  std::string origin;
  uint64_t origin_seq = 0;
  uint64_t seq = 0;  // on the node it came from
  size_t node = 0;
};

class Follower {
 public:
  explicit Follower(TestCluster& cluster) : cluster_(cluster) {}

  // Reads from node `i`: after `after` (a seq of that node; used when `same_node`), or from the
  // resume position built so far.
  void Open(size_t i, bool same_node) {
    Drain();
    sse_.reset();
    node_ = i;
    consumed_ = 0;
    std::string url = cluster_.node(i).Url() + "/messages/stream?recipient=" + kRecipient;
    std::vector<std::string> headers;
    if (same_node) {
      headers.push_back("Last-Event-ID: " + std::to_string(last_seq_));
    } else {
      url += "&resume=" + UrlEncode(ResumeJson());
    }
    sse_ = std::make_unique<SseClient>(url, headers);
    ++connections_;
  }

  // Takes the events received since the last call.
  void Drain() {
    if (!sse_) return;
    std::vector<SseEvent> events = sse_->Events();
    for (; consumed_ < events.size(); ++consumed_) {
      rapidjson::Document d;
      d.Parse(events[consumed_].data.c_str());
      ASSERT_TRUE(d.IsObject()) << events[consumed_].data;
      Delivery x;
      x.msg_id = d["msg_id"].GetString();
      x.origin = d["origin"].GetString();
      x.origin_seq = d["origin_seq"].GetUint64();
      x.seq = d["seq"].GetUint64();
      x.node = node_;
      EXPECT_EQ(std::string(d["recipient"].GetString()), kRecipient);
      EXPECT_EQ(events[consumed_].id, std::to_string(x.seq));
      if (!ids_.insert(x.msg_id).second)
        repeats_.push_back(x.msg_id + " (again from node " + std::to_string(node_) + ")");
      uint64_t& pos = position_[x.origin];
      if (x.origin_seq <= pos) {
        order_problems_.push_back(x.origin + "#" + std::to_string(x.origin_seq) + " after #" +
                                  std::to_string(pos));
      }
      pos = std::max(pos, x.origin_seq);
      last_seq_ = x.seq;
      got_.push_back(std::move(x));
    }
  }

  // Waits until `n` more events than now arrived on the current connection.
  bool WaitMore(size_t n, Millis timeout) {
    Drain();
    const size_t target = got_.size() + n;
    const bool ok = WaitFor(
        [&] {
          Drain();
          return got_.size() >= target;
        },
        timeout, Millis(20));
    return ok;
  }

  std::string ResumeJson() const {
    std::string json = "{";
    for (const auto& [origin, seq] : position_) {
      if (json.size() > 1) json += ",";
      json += JsonQuote(origin) + ":" + std::to_string(seq);
    }
    return json + "}";
  }

  const std::set<std::string>& ids() const { return ids_; }
  const std::vector<std::string>& repeats() const { return repeats_; }
  const std::vector<std::string>& order_problems() const { return order_problems_; }
  size_t received() const { return got_.size(); }
  int connections() const { return connections_; }

 private:
  TestCluster& cluster_;
  std::unique_ptr<SseClient> sse_;
  size_t node_ = 0;
  size_t consumed_ = 0;
  uint64_t last_seq_ = 0;  // seq of the last event, on node_
  std::vector<Delivery> got_;
  std::set<std::string> ids_;
  std::map<std::string, uint64_t> position_;
  std::vector<std::string> repeats_;
  std::vector<std::string> order_problems_;
  int connections_ = 0;
};

// The recipient's msg_ids in node `i`'s log.
std::set<std::string> RecipientIds(TestCluster& c, size_t i) {
  HttpResponse r = c.node(i).Get(std::string("/messages?recipient=") + kRecipient, kWait);
  std::set<std::string> ids;
  EXPECT_EQ(r.status, 200) << r.Describe();
  if (!r.json_ok || !r.json.HasMember("messages")) return ids;
  for (const auto& m : r.json["messages"].GetArray()) ids.insert(m["msg_id"].GetString());
  return ids;
}

// Stops the writer, waits until every node holds every acknowledged message and the nodes agree,
// then until the follower has received the recipient's whole log; checks exactly-once and order.
void ExpectReceivedEverythingOnce(TestCluster& c, Writer& writer, Follower& follower) {
  writer.Stop();
  const std::set<std::string> acked = writer.acked();
  ASSERT_TRUE(c.WaitConverged(std::vector<std::string>(acked.begin(), acked.end()), kWait))
      << "the cluster did not converge on the acknowledged messages";
  std::set<std::string> expected;
  ASSERT_TRUE(WaitFor(
      [&] {
        expected = RecipientIds(c, 0);
        return expected == RecipientIds(c, 1) && expected == RecipientIds(c, 2);
      },
      kWait, Millis(250)))
      << "the nodes hold different messages for " << kRecipient;
  for (const std::string& id : acked) ASSERT_TRUE(expected.count(id)) << id;
  const bool complete = WaitFor(
      [&] {
        follower.Drain();
        return follower.ids().size() >= expected.size();
      },
      kWait, Millis(50));
  follower.Drain();
  EXPECT_TRUE(complete) << "received " << follower.ids().size() << " of " << expected.size();
  std::vector<std::string> missing, unexpected;
  for (const std::string& id : expected) {
    if (!follower.ids().count(id)) missing.push_back(id);
  }
  for (const std::string& id : follower.ids()) {
    if (!expected.count(id)) unexpected.push_back(id);
  }
  EXPECT_TRUE(missing.empty()) << missing.size() << " missed, e.g. " << missing.front();
  EXPECT_TRUE(unexpected.empty()) << unexpected.size() << " unknown, e.g. " << unexpected.front();
  EXPECT_TRUE(follower.repeats().empty())
      << follower.repeats().size() << " repeated, e.g. " << follower.repeats().front();
  EXPECT_TRUE(follower.order_problems().empty()) << follower.order_problems().front();
  std::cout << "follower: " << follower.received() << " events over " << follower.connections()
            << " connections; " << expected.size() << " messages to " << kRecipient << " ("
            << acked.size() << " acknowledged), writer sent " << writer.sent() << "\n";
}

TEST(ConsumersProcessTest, FollowsARecipientOnOneNodeAcrossItsRestarts) {
  const uint64_t seed = TestSeed();
  TestCluster c(FullMesh3());
  ASSERT_TRUE(c.StartAll().ok());
  Writer writer(c, seed);
  Follower follower(c);
  follower.Open(1, /*same_node=*/true);  // Last-Event-ID 0: from the start
  for (int round = 0; round < 4; ++round) {
    ASSERT_TRUE(follower.WaitMore(25, kWait)) << "round " << round;
    c.node(1).Kill();  // the node the reader reads from
    follower.Drain();
    ASSERT_TRUE(c.node(1).StartAndWait().ok());
    follower.Open(1, /*same_node=*/true);
  }
  ASSERT_TRUE(follower.WaitMore(25, kWait));
  ExpectReceivedEverythingOnce(c, writer, follower);
}

TEST(ConsumersProcessTest, FollowsARecipientAcrossNodesWithResumePositions) {
  const uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  TestCluster c(FullMesh3());
  ASSERT_TRUE(c.StartAll().ok());
  Writer writer(c, seed);
  Follower follower(c);
  size_t reading = 0;
  follower.Open(reading, /*same_node=*/false);  // empty resume position: from the start
  for (int round = 0; round < 6; ++round) {
    ASSERT_TRUE(follower.WaitMore(25, kWait)) << "round " << round;
    // Kill the node the reader reads from; read on from another running node with the
    // position built so far; restart the killed one later.
    c.node(reading).Kill();
    follower.Drain();
    std::vector<size_t> others;
    for (size_t i = 0; i < c.size(); ++i) {
      if (i != reading && c.node(i).Running()) others.push_back(i);
    }
    ASSERT_FALSE(others.empty());
    const size_t killed = reading;
    reading = others[rng() % others.size()];
    follower.Open(reading, /*same_node=*/false);
    ASSERT_TRUE(follower.WaitMore(10, kWait)) << "round " << round << " on node " << reading;
    ASSERT_TRUE(c.node(killed).StartAndWait().ok());
  }
  ASSERT_TRUE(follower.WaitMore(25, kWait));
  ExpectReceivedEverythingOnce(c, writer, follower);
}

}  // namespace
}  // namespace dsm::testing

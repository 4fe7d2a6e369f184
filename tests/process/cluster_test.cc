// Clusters of real dsm-node processes: the seed prototype's scenario end to end, kill -9 of
// random nodes under concurrent load (async and sync_quorum), network partitions and one-way cuts
// through TCP proxies, and a wiped node rebuilding its log. After every scenario the nodes must
// converge: every acknowledged msg_id on every node exactly once, seqs dense, each origin stream
// gap-free and in order. Random choices print their seed; DSM_TEST_SEED=<n> replays them.
#include <gtest/gtest.h>

#include <atomic>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/process.h"
#include "tests/testing/tcp_proxy.h"

namespace dsm::testing {
namespace {

using std::chrono::milliseconds;

const char kQuorumRefused[] = "replication quorum not achieved";

std::string SendBody(const std::string& msg_id, const std::string& sender,
                     const std::string& payload) {
  return "{\"msg_id\":" + JsonQuote(msg_id) + ",\"sender\":" + JsonQuote(sender) +
         ",\"recipient\":\"r\",\"payload\":" + JsonQuote(payload) + "}";
}

HttpResponse SendTo(NodeProcess& n, const std::string& msg_id,
                    milliseconds timeout = milliseconds(10000)) {
  return n.Post("/send", SendBody(msg_id, "tester", "payload of " + msg_id), timeout);
}

std::set<std::string> IdsOf(NodeProcess& n) {
  LogCheck c = FetchAndCheckLog(n.Url());
  return std::set<std::string>(c.msg_ids.begin(), c.msg_ids.end());
}

bool Holds(NodeProcess& n, const std::string& msg_id) { return IdsOf(n).count(msg_id) > 0; }

// Waits until every node holds exactly the same msg_ids, a superset of `must`; then checks each
// node's log. Reports what differs when it does not happen.
void ExpectConvergedAndClean(TestCluster& c, const std::set<std::string>& must,
                             milliseconds timeout = milliseconds(60000)) {
  std::vector<std::set<std::string>> sets(c.size());
  bool converged = WaitFor(
      [&] {
        for (size_t i = 0; i < c.size(); ++i) sets[i] = IdsOf(c.node(i));
        for (size_t i = 0; i < c.size(); ++i) {
          if (sets[i] != sets[0]) return false;
        }
        for (const std::string& id : must) {
          if (!sets[0].count(id)) return false;
        }
        return true;
      },
      timeout, milliseconds(250));
  if (!converged) {
    for (size_t i = 0; i < c.size(); ++i) {
      size_t missing = 0;
      std::string example;
      for (const std::string& id : must) {
        if (!sets[i].count(id)) {
          if (!missing++) example = id;
        }
      }
      ADD_FAILURE() << c.spec(i).id << " holds " << sets[i].size() << " messages; " << missing
                    << " acknowledged ones missing (e.g. '" << example << "')";
    }
  }
  for (size_t i = 0; i < c.size(); ++i) {
    LogCheck lc = FetchAndCheckLog(c.node(i).Url());
    EXPECT_TRUE(lc.Clean()) << c.spec(i).id << ": " << lc.Summary();
    EXPECT_EQ(lc.msg_ids.size(),
              std::set<std::string>(lc.msg_ids.begin(), lc.msg_ids.end()).size());
    HttpResponse st = c.node(i).Get("/status");
    EXPECT_EQ(st.Int("last_seq"), static_cast<int64_t>(lc.msg_ids.size())) << c.spec(i).id;
  }
}

NodeSpec Spec(const std::string& id, std::vector<int> peers, const std::string& mode = "async",
              int quorum = 2) {
  NodeSpec s;
  s.id = id;
  s.peers = std::move(peers);
  s.mode = mode;
  s.quorum = quorum;
  return s;
}

std::vector<NodeSpec> FullMesh(int n, const std::string& mode, int quorum) {
  std::vector<NodeSpec> specs;
  for (int i = 0; i < n; ++i) {
    std::vector<int> peers;
    for (int j = 0; j < n; ++j) {
      if (j != i) peers.push_back(j);
    }
    specs.push_back(Spec("n" + std::to_string(i + 1), peers, mode, quorum));
  }
  return specs;
}

bool AllPeersAlive(TestCluster& c) {
  for (size_t i = 0; i < c.size(); ++i) {
    for (int j : c.spec(i).peers) {
      if (!c.PeerAliveIs(i, static_cast<size_t>(j), true)) return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// The seed prototype's README topology and Postman scenario.

TEST(ClusterTest, SeedScenario) {
  TestCluster c({Spec("node1", {1, 2}), Spec("node2", {0, 2}), Spec("node3", {0, 1}),
                 Spec("node4", {0, 1, 2}, "sync_quorum", 3)});
  ASSERT_TRUE(c.StartAll().ok());
  NodeProcess &n1 = c.node(0), &n2 = c.node(1), &n3 = c.node(2), &n4 = c.node(3);

  // Health.
  HttpResponse st = n1.Get("/status");
  ASSERT_EQ(st.status, 200) << st.Describe();
  EXPECT_EQ(st.Str("node_id"), "node1");
  EXPECT_EQ(st.Str("replication_mode"), "async");
  ASSERT_TRUE(st.json["peers"].IsArray());
  EXPECT_EQ(st.json["peers"].Size(), 2u);
  HttpResponse st4 = n4.Get("/status");
  EXPECT_EQ(st4.Str("replication_mode"), "sync_quorum");
  EXPECT_EQ(st4.Int("quorum"), 3);
  for (size_t i = 0; i < 4; ++i) {
    HttpResponse hb = c.node(i).Get("/heartbeat");
    EXPECT_EQ(hb.status, 200);
    EXPECT_EQ(hb.Str("node_id"), c.spec(i).id);
  }

  // Basic replication.
  HttpResponse s1 =
      n1.Post("/send",
              R"({"sender":"user1","recipient":"user2","payload":"Hello from the seed scenario"})");
  ASSERT_EQ(s1.status, 200) << s1.Describe();
  std::string m1 = s1.Str("msg_id");
  ASSERT_FALSE(m1.empty());
  EXPECT_TRUE(WaitFor([&] { return Holds(n2, m1); }, milliseconds(10000)));
  EXPECT_TRUE(WaitFor([&] { return Holds(n3, m1); }, milliseconds(10000)));
  HttpResponse l2 = n2.Get("/messages?sender=user1");
  ASSERT_TRUE(l2.json_ok && l2.json["messages"].Size() >= 1) << l2.Describe();
  const auto& row = l2.json["messages"][0];
  EXPECT_EQ(std::string(row["recipient"].GetString()), "user2");
  EXPECT_EQ(std::string(row["payload"].GetString()), "Hello from the seed scenario");
  EXPECT_EQ(std::string(row["origin"].GetString()), s1.Str("origin"));

  // Failure detection and recovery.
  EXPECT_TRUE(WaitFor([&] { return c.PeerAliveIs(0, 1, true); }, milliseconds(10000)));
  n2.Kill();
  EXPECT_TRUE(WaitFor([&] { return c.PeerAliveIs(0, 1, false); }, milliseconds(10000)))
      << "node1 did not mark node2 dead";
  HttpResponse s2 = n1.Post(
      "/send",
      R"({"sender":"user1","recipient":"user2","payload":"Message sent during node2 failure"})");
  ASSERT_EQ(s2.status, 200) << s2.Describe();
  std::string m2 = s2.Str("msg_id");
  ASSERT_TRUE(n2.StartAndWait().ok());
  EXPECT_TRUE(WaitFor([&] { return Holds(n2, m2); }, milliseconds(15000)))
      << "node2 did not recover the message it missed";
  EXPECT_TRUE(Holds(n2, m1));
  EXPECT_TRUE(WaitFor([&] { return c.PeerAliveIs(0, 1, true); }, milliseconds(10000)));

  // Quorum success: at the ack, at least Q-1 = 2 peers already hold the message.
  ASSERT_TRUE(WaitFor(
      [&] {
        return c.PeerAliveIs(3, 0, true) && c.PeerAliveIs(3, 1, true) && c.PeerAliveIs(3, 2, true);
      },
      milliseconds(10000)));
  HttpResponse s3 = n4.Post(
      "/send",
      R"({"sender":"user1","recipient":"user2","payload":"Quorum success - all nodes available"})");
  ASSERT_EQ(s3.status, 200) << s3.Describe();
  std::string m3 = s3.Str("msg_id");
  int holders = Holds(n1, m3) + Holds(n2, m3) + Holds(n3, m3);
  EXPECT_GE(holders, 2) << "acknowledged with quorum 3 but only " << holders << " peers hold it";

  // Quorum refusal: nothing written anywhere.
  n2.Kill();
  n3.Kill();
  EXPECT_TRUE(WaitFor([&] { return c.PeerAliveIs(3, 1, false) && c.PeerAliveIs(3, 2, false); },
                      milliseconds(10000)));
  HttpResponse refused = n4.Post(
      "/send",
      R"({"sender":"user1","recipient":"user2","payload":"Should fail - not enough nodes","msg_id":"no-quorum-1"})");
  EXPECT_EQ(refused.status, 503) << refused.Describe();
  EXPECT_EQ(refused.Str("status"), "error");
  EXPECT_EQ(refused.Str("reason"), kQuorumRefused);
  EXPECT_FALSE(Holds(n4, "no-quorum-1"));
  EXPECT_FALSE(Holds(n1, "no-quorum-1"));

  // Direct replicate, twice: stored once.
  std::string direct =
      R"({"msg":{"msg_id":"direct-test-123","sender":"system","recipient":"all","payload":"Direct replication test","ts":1700000000.0}})";
  HttpResponse d1 = n1.Post("/replicate", direct);
  HttpResponse d2 = n1.Post("/replicate", direct);
  EXPECT_EQ(d1.status, 200) << d1.Describe();
  EXPECT_EQ(d2.status, 200) << d2.Describe();
  EXPECT_EQ(d1.Int("seq"), d2.Int("seq"));

  // A repeated msg_id answers the same seq and is stored once.
  HttpResponse i1 =
      n1.Post("/send", R"({"sender":"u","recipient":"v","payload":"x","msg_id":"idem-1"})");
  HttpResponse i2 =
      n1.Post("/send", R"({"sender":"u","recipient":"v","payload":"x","msg_id":"idem-1"})");
  ASSERT_EQ(i1.status, 200);
  ASSERT_EQ(i2.status, 200);
  EXPECT_EQ(i1.Int("seq"), i2.Int("seq"));

  // /sync by the node's own seq.
  HttpResponse sync = n1.Post("/sync", R"({"since":0})");
  ASSERT_EQ(sync.status, 200);
  LogCheck sc = CheckLog(sync.json["messages"]);
  EXPECT_TRUE(sc.Clean()) << sc.Summary();
  ASSERT_GE(sc.msg_ids.size(), 4u);
  HttpResponse since = n1.Post("/sync", R"({"since":2})");
  ASSERT_EQ(since.status, 200);
  EXPECT_EQ(since.json["messages"].Size(), sc.msg_ids.size() - 2);
  EXPECT_EQ(since.json["messages"][0]["seq"].GetUint64(), 3u);

  // Everything comes back together.
  ASSERT_TRUE(c.StartStopped().ok());
  ExpectConvergedAndClean(c, {m1, m2, m3, "direct-test-123", "idem-1"});
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_FALSE(Holds(c.node(i), "no-quorum-1")) << c.spec(i).id << " holds a refused message";
  }
}

// ---------------------------------------------------------------------------------------------
// kill -9 under load.

// Client threads sending unique msg_ids to random nodes until stopped. Each msg_id is sent once.
class Senders {
 public:
  Senders(TestCluster& c, int threads, uint64_t seed) {
    std::vector<std::string> urls;
    for (size_t i = 0; i < c.size(); ++i) urls.push_back(c.node(i).Url());
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, urls, t, seed] { Run(urls, t, seed + t); });
    }
  }
  ~Senders() { Stop(); }

  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  std::set<std::string> acked, refused, unknown;
  std::vector<std::string> unexpected;
  std::map<long, int> codes;

 private:
  void Run(std::vector<std::string> urls, int t, uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (int k = 0; !stop_; ++k) {
      std::string id = "load-" + std::to_string(t) + "-" + std::to_string(k);
      const std::string& url = urls[rng() % urls.size()];
      HttpResponse r =
          HttpPost(url + "/send", SendBody(id, "s" + std::to_string(t), "p"), milliseconds(8000));
      {
        std::lock_guard<std::mutex> lock(mu_);
        codes[r.status]++;
        if (r.status == 200 && r.Str("status") == "ok" && r.Str("msg_id") == id) {
          acked.insert(id);
        } else if (r.status == 503 && r.Str("reason") == kQuorumRefused) {
          refused.insert(id);
        } else if (r.status == 0 || r.status == 503 || r.status == 504) {
          unknown.insert(id);  // killed mid-request, shutting down, or quorum timed out
        } else {
          unexpected.push_back(id + ": " + r.Describe());
        }
      }
      // Do not hammer a node that is down.
      if (r.status != 200) std::this_thread::sleep_for(milliseconds(20));
    }
  }

  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

void KillUnderLoad(const std::string& mode, int quorum) {
  uint64_t seed = TestSeed();
  std::mt19937_64 rng(seed);
  TestCluster c(FullMesh(3, mode, quorum));
  ASSERT_TRUE(c.StartAll().ok());
  ASSERT_TRUE(WaitFor([&] { return AllPeersAlive(c); }, milliseconds(15000)));

  int kills = 0;
  {
    Senders senders(c, 3, seed);
    auto end = std::chrono::steady_clock::now() + milliseconds(8000);
    while (std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(milliseconds(300 + rng() % 900));
      size_t victim = rng() % c.size();
      c.node(victim).Kill();
      ++kills;
      std::this_thread::sleep_for(milliseconds(rng() % 500));
      Status s = c.node(victim).StartAndWait();
      ASSERT_TRUE(s.ok()) << s.message();
    }
    senders.Stop();
    std::cerr << "[ load ] mode " << mode << ": kills " << kills << ", acked "
              << senders.acked.size() << ", refused " << senders.refused.size() << ", unknown "
              << senders.unknown.size() << "; codes:";
    for (auto [code, n] : senders.codes) std::cerr << " " << code << "x" << n;
    std::cerr << std::endl;
    for (const std::string& u : senders.unexpected) ADD_FAILURE() << "unexpected answer " << u;
    EXPECT_GE(senders.acked.size(), 20u) << "too little was acknowledged to test anything";

    ASSERT_TRUE(c.StartStopped().ok());
    ExpectConvergedAndClean(c, senders.acked);
    for (size_t i = 0; i < c.size(); ++i) {
      std::set<std::string> ids = IdsOf(c.node(i));
      for (const std::string& id : senders.refused) {
        EXPECT_FALSE(ids.count(id)) << c.spec(i).id << " holds refused message " << id;
      }
    }
  }
}

TEST(ClusterTest, KillNineUnderLoadAsync) { KillUnderLoad("async", 2); }

TEST(ClusterTest, KillNineUnderLoadSyncQuorum) { KillUnderLoad("sync_quorum", 2); }

// ---------------------------------------------------------------------------------------------
// Partitions and one-way cuts through TCP proxies.

ClusterOptions WithProxies() {
  ClusterOptions o;
  o.use_proxies = true;
  return o;
}

TEST(ClusterTest, AsyncWritesOnBothSidesOfAPartitionConverge) {
  TestCluster c(FullMesh(3, "async", 2), WithProxies());
  ASSERT_TRUE(c.StartAll().ok());
  ASSERT_TRUE(WaitFor([&] { return AllPeersAlive(c); }, milliseconds(15000)));
  std::set<std::string> all;
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(SendTo(c.node(i), "pre-" + std::to_string(i)).status, 200);
    all.insert("pre-" + std::to_string(i));
  }
  ASSERT_TRUE(c.WaitConverged({all.begin(), all.end()}, milliseconds(30000)));

  c.Partition({0}, {1, 2});
  std::vector<std::string> left, right;
  for (int k = 0; k < 10; ++k) {
    std::string l = "left-" + std::to_string(k), r = "right-" + std::to_string(k);
    HttpResponse a = SendTo(c.node(0), l);
    HttpResponse b = SendTo(c.node(1 + k % 2), r);
    EXPECT_EQ(a.status, 200) << a.Describe();
    EXPECT_EQ(b.status, 200) << b.Describe();
    left.push_back(l);
    right.push_back(r);
  }
  EXPECT_TRUE(c.WaitConverged(right, milliseconds(30000), {1, 2}));
  EXPECT_TRUE(WaitFor([&] { return c.PeerAliveIs(0, 1, false) && c.PeerAliveIs(1, 0, false); },
                      milliseconds(10000)));
  // Nothing crossed the cut.
  std::set<std::string> on0 = IdsOf(c.node(0)), on1 = IdsOf(c.node(1));
  for (const std::string& r : right) EXPECT_FALSE(on0.count(r)) << r << " crossed the partition";
  for (const std::string& l : left) EXPECT_FALSE(on1.count(l)) << l << " crossed the partition";

  c.HealAll();
  all.insert(left.begin(), left.end());
  all.insert(right.begin(), right.end());
  ExpectConvergedAndClean(c, all);
  EXPECT_TRUE(WaitFor([&] { return AllPeersAlive(c); }, milliseconds(15000)));
}

TEST(ClusterTest, QuorumWritesOnAnIsolatedNodeAreNeverAcknowledged) {
  TestCluster c(FullMesh(3, "sync_quorum", 2), WithProxies());
  ASSERT_TRUE(c.StartAll().ok());
  ASSERT_TRUE(WaitFor([&] { return AllPeersAlive(c); }, milliseconds(15000)));
  std::set<std::string> acked;
  for (size_t i = 0; i < 3; ++i) {
    std::string id = "warm-" + std::to_string(i);
    HttpResponse r = SendTo(c.node(i), id);
    ASSERT_EQ(r.status, 200) << r.Describe();
    acked.insert(id);
  }

  c.Partition({0}, {1, 2});
  // Before and after node 0's failure detector notices, its quorum writes fail: 504 while it
  // still believes in its peers (the write stays and replicates later), 503 once it knows.
  std::set<std::string> refused;
  std::map<std::string, int64_t> timed_out;  // msg_id -> seq reported by the 504
  bool knows = false;
  for (int k = 0; k < 20 && !knows; ++k) {
    std::string id = "iso-" + std::to_string(k);
    HttpResponse r = SendTo(c.node(0), id);
    if (r.status == 503) {
      EXPECT_EQ(r.Str("reason"), kQuorumRefused);
      refused.insert(id);
    } else if (r.status == 504) {
      EXPECT_TRUE(r.IsError());
      EXPECT_EQ(r.Str("msg_id"), id) << r.body;
      EXPECT_GT(r.Int("seq"), 0) << r.body;
      timed_out[id] = r.Int("seq");
    } else {
      ADD_FAILURE() << "a quorum write on an isolated node answered " << r.Describe();
    }
    knows = c.PeerAliveIs(0, 1, false) && c.PeerAliveIs(0, 2, false);
  }
  std::cerr << "[ isolated ] " << timed_out.size() << " writes timed out (504), " << refused.size()
            << " refused (503) before node 0 knew" << std::endl;
  ASSERT_TRUE(WaitFor([&] { return c.PeerAliveIs(0, 1, false) && c.PeerAliveIs(0, 2, false); },
                      milliseconds(10000)));
  HttpResponse r = SendTo(c.node(0), "iso-known");
  EXPECT_EQ(r.status, 503) << r.Describe();
  EXPECT_EQ(r.Str("reason"), kQuorumRefused);
  refused.insert("iso-known");

  // The majority side goes on; each ack means both majority nodes hold the message already.
  for (int k = 0; k < 10; ++k) {
    std::string id = "major-" + std::to_string(k);
    size_t to = 1 + k % 2, other = 1 + (k + 1) % 2;
    HttpResponse a = SendTo(c.node(to), id);
    ASSERT_EQ(a.status, 200) << a.Describe();
    acked.insert(id);
    EXPECT_TRUE(Holds(c.node(other), id)) << id << " acknowledged but not on the other node";
    EXPECT_FALSE(Holds(c.node(0), id)) << id << " crossed the partition";
  }

  c.HealAll();
  std::set<std::string> must = acked;
  for (const auto& [id, seq] : timed_out) must.insert(id);
  ExpectConvergedAndClean(c, must);
  for (size_t i = 0; i < 3; ++i) {
    std::set<std::string> ids = IdsOf(c.node(i));
    for (const std::string& id : refused) {
      EXPECT_FALSE(ids.count(id)) << c.spec(i).id << " holds refused message " << id;
    }
  }
  // Retrying a timed-out write is safe: the original seq, now acknowledged.
  ASSERT_TRUE(WaitFor([&] { return AllPeersAlive(c); }, milliseconds(15000)));
  for (const auto& [id, seq] : timed_out) {
    HttpResponse again = SendTo(c.node(0), id);
    EXPECT_EQ(again.status, 200) << again.Describe();
    EXPECT_EQ(again.Int("seq"), seq);
    EXPECT_TRUE(again.json_ok && again.json["duplicate"].GetBool()) << again.body;
  }
}

TEST(ClusterTest, OneWayCutStillConvergesThroughPulls) {
  // Node 0 cannot open connections to anybody, but its peers can reach it: they must pull its
  // messages (/sync) while it keeps receiving theirs (/replicate).
  TestCluster c(FullMesh(3, "async", 2), WithProxies());
  ASSERT_TRUE(c.StartAll().ok());
  c.Link(0, 1).Cut();
  c.Link(0, 2).Cut();
  std::set<std::string> all;
  for (int k = 0; k < 10; ++k) {
    for (size_t i : {0, 1}) {
      std::string id = "oneway-" + std::to_string(i) + "-" + std::to_string(k);
      ASSERT_EQ(SendTo(c.node(i), id).status, 200);
      all.insert(id);
    }
  }
  ExpectConvergedAndClean(c, all, milliseconds(30000));
  EXPECT_EQ(c.Link(1, 0).IsCut(), false);
  EXPECT_GT(c.Link(1, 0).accepted(), 0u);
  c.HealAll();
}

TEST(ClusterTest, ProxyDelayDoesNotBreakQuorumWrites) {
  TestCluster c(FullMesh(3, "sync_quorum", 2), WithProxies());
  ASSERT_TRUE(c.StartAll().ok());
  ASSERT_TRUE(WaitFor([&] { return AllPeersAlive(c); }, milliseconds(15000)));
  for (size_t i = 0; i < 3; ++i) {
    for (int j : c.spec(i).peers) c.Link(i, static_cast<size_t>(j)).SetDelay(milliseconds(50));
  }
  std::set<std::string> acked;
  for (int k = 0; k < 10; ++k) {
    std::string id = "slow-" + std::to_string(k);
    HttpResponse r = SendTo(c.node(k % 3), id);
    ASSERT_EQ(r.status, 200) << r.Describe();
    acked.insert(id);
  }
  ExpectConvergedAndClean(c, acked);
}

// ---------------------------------------------------------------------------------------------
// A node whose data directory is lost.

TEST(ClusterTest, WipedNodeRebuildsItsLogAndStartsANewStream) {
  TestCluster c(FullMesh(3, "async", 2));
  ASSERT_TRUE(c.StartAll().ok());
  std::set<std::string> all;
  for (size_t i = 0; i < 3; ++i) {
    for (int k = 0; k < 20; ++k) {
      std::string id = "w-" + std::to_string(i) + "-" + std::to_string(k);
      ASSERT_EQ(SendTo(c.node(i), id).status, 200);
      all.insert(id);
    }
  }
  ExpectConvergedAndClean(c, all);
  std::string old_stream = c.node(2).Get("/heartbeat").Str("stream");
  ASSERT_FALSE(old_stream.empty());

  c.node(2).Kill();
  RemoveTree(c.DataDir(2));
  ASSERT_TRUE(c.node(2).StartAndWait().ok());
  EXPECT_TRUE(c.WaitConverged({all.begin(), all.end()}, milliseconds(30000), {2}))
      << "the wiped node did not get its log back";
  std::string new_stream = c.node(2).Get("/heartbeat").Str("stream");
  EXPECT_NE(new_stream, old_stream);
  EXPECT_EQ(new_stream.rfind("n3@", 0), 0u) << new_stream;

  for (int k = 0; k < 10; ++k) {
    std::string id = "reborn-" + std::to_string(k);
    HttpResponse r = SendTo(c.node(2), id);
    ASSERT_EQ(r.status, 200) << r.Describe();
    EXPECT_EQ(r.Str("origin"), new_stream);
    EXPECT_EQ(r.Int("origin_seq"), k + 1);
    all.insert(id);
  }
  ExpectConvergedAndClean(c, all);
  // The peers hold both incarnations' streams, each complete.
  LogCheck on0 = FetchAndCheckLog(c.node(0).Url());
  EXPECT_EQ(on0.origin_high[old_stream], 20u);
  EXPECT_EQ(on0.origin_high[new_stream], 10u);
}

// The value of the metric sample `sample` (name and labels, e.g.
// dsm_malloc_bytes{state="free"}) in a /metrics text; -1 if absent.
double Sample(const std::string& metrics, const std::string& sample) {
  const std::string key = "\n" + sample + " ";
  size_t at = metrics.find(key);
  return at == std::string::npos ? -1 : std::stod(metrics.substr(at + key.size()));
}

// The value of one sample of GET /metrics, e.g. Metric(node, "dsm_peer_alive", url); -1 if absent.
double Metric(const NodeProcess& node, const std::string& name, const std::string& peer) {
  HttpResponse r = node.Get("/metrics");
  if (r.status != 200) return -1;
  return Sample(r.body, name + "{peer=\"" + peer + "\"}");
}

// An operator watches a killed node's absence and its catch-up in /metrics.
TEST(ClusterTest, MetricsShowADeadPeerAndItsCatchUp) {
  TestCluster c(FullMesh(3, "async", 2));
  ASSERT_TRUE(c.StartAll().ok());
  const std::string url0 = c.PeerUrl(2, 0);  // how node 2 names node 0
  const std::string url2 = c.PeerUrl(0, 2);  // how node 0 names node 2
  ASSERT_TRUE(WaitFor([&] { return Metric(c.node(0), "dsm_peer_alive", url2) == 1; },
                      milliseconds(20000)));
  c.node(2).Kill();
  ASSERT_TRUE(WaitFor([&] { return Metric(c.node(0), "dsm_peer_alive", url2) == 0; },
                      milliseconds(20000)))
      << "node 0 never reported node 2 dead in /metrics";
  std::vector<std::string> ids;
  for (int k = 0; k < 50; ++k) {
    ids.push_back("metrics-" + std::to_string(k));
    ASSERT_EQ(SendTo(c.node(0), ids.back()).status, 200);
  }
  EXPECT_EQ(Metric(c.node(0), "dsm_peer_lag_messages", url2), 50);
  ASSERT_TRUE(c.node(2).StartAndWait().ok());
  EXPECT_TRUE(WaitFor([&] { return Metric(c.node(0), "dsm_peer_lag_messages", url2) == 0; },
                      milliseconds(30000)))
      << "node 0 still reports lag for node 2";
  EXPECT_TRUE(WaitFor(
      [&] {
        double cursor = Metric(c.node(2), "dsm_peer_pull_cursor", url0);
        return cursor > 0 && cursor == Metric(c.node(2), "dsm_peer_last_seq", url0);
      },
      milliseconds(30000)))
      << "node 2's catch-up from node 0 did not reach node 0's last seq";
  EXPECT_TRUE(c.WaitConverged(ids, milliseconds(30000), {2}));
}

// An operator sees where the node's memory goes: the storage engine's budget and use, the
// allocator's, and the resident total.
TEST(ClusterTest, MetricsShowWhereTheMemoryGoes) {
  std::vector<NodeSpec> specs = FullMesh(1, "async", 1);
  specs[0].extra_args = {"--memory-mb", "64"};
  TestCluster c(specs);
  ASSERT_TRUE(c.StartAll().ok());
  ASSERT_EQ(SendTo(c.node(0), "memory-1").status, 200);
  HttpResponse r = c.node(0).Get("/metrics");
  ASSERT_EQ(r.status, 200);
  auto part = [&](const char* p) {
    return Sample(r.body, std::string("dsm_storage_memory_bytes{part=\"") + p + "\"}");
  };
  EXPECT_EQ(part("budget"), 64.0 * (1 << 20));
  EXPECT_GT(part("memtables"), 0);
  EXPECT_GE(part("block_cache"), part("memtables")) << "memtables are charged to the cache";
  EXPECT_GE(part("block_cache"), part("block_cache_pinned"));
  EXPECT_GE(part("table_readers"), 0);
  const double in_use = Sample(r.body, "dsm_malloc_bytes{state=\"in_use\"}");
  EXPECT_GE(in_use, 0);
  EXPECT_GE(Sample(r.body, "dsm_malloc_bytes{state=\"free\"}"), 0);
#if !defined(DSM_SANITIZED)
  // (A sanitizer build's node allocates with the sanitizer's allocator, not glibc's.)
  EXPECT_GT(in_use, part("memtables")) << "RocksDB's memory is allocated with malloc";
#endif
  const double resident = Sample(r.body, "dsm_process_resident_bytes");
  EXPECT_GT(resident, 1 << 20);
  EXPECT_LT(resident, 4.0 * (1 << 30));
}

}  // namespace
}  // namespace dsm::testing

// Membership changes on real dsm-node processes (docs/operations.md, "Membership"): a node added
// under quorum load ends with every acknowledged message and counts toward no quorum before it
// caught up; a removed node receives nothing more and refuses writes; a restart of every node
// keeps the membership; bad requests are clear 4xx answers that change nothing.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/process.h"

namespace dsm::testing {
namespace {

using std::chrono::milliseconds;

constexpr char kToken[] = "Membership-Token-7c1e4b9a2f";

std::vector<std::string> TokenArgs() { return {"--cluster-token", kToken}; }

HttpResponse Call(const std::string& method, const std::string& url,
                  std::optional<std::string> body = std::nullopt, bool with_token = true) {
  HttpRequest req;
  req.method = method;
  req.url = url;
  req.body = std::move(body);
  if (with_token) req.headers = {std::string("Authorization: Bearer ") + kToken};
  return Http(req);
}

HttpResponse AddMember(NodeProcess& at, const std::string& url) {
  return Call("POST", at.Url() + "/cluster/members", "{\"url\":\"" + url + "\"}");
}

HttpResponse RemoveMember(NodeProcess& at, const std::string& id) {
  return Call("DELETE", at.Url() + "/cluster/members/" + UrlEncode(id));
}

// The role `at` sees for the member with `url` ("" when it does not list it).
std::string RoleAt(NodeProcess& at, const std::string& url) {
  HttpResponse r = Call("GET", at.Url() + "/cluster");
  if (r.status != 200 || !r.json_ok) return "";
  for (const auto& m : r.json["members"].GetArray()) {
    if (m["url"].IsString() && m["url"].GetString() == url) return m["role"].GetString();
  }
  return "";
}

int64_t VersionAt(NodeProcess& at) { return Call("GET", at.Url() + "/cluster").Int("version"); }

// What `dsm-dbdump --meta` reads of node `i`'s data directory beside the running node: what a
// kill -9 now would leave.
std::string StoredMeta(TestCluster& c, size_t i) {
  return RunToExit(
             {BinaryPath("dsm-dbdump"), "--data-dir", c.DataDir(i), "--meta", "--follow-running"},
             milliseconds(60000))
      .out;
}

// The line `key` of a `dsm-dbdump --meta` output ("" when absent).
std::string MetaLine(const std::string& meta, const std::string& key) {
  const size_t at = ("\n" + meta).find("\n" + key + ":");
  if (at == std::string::npos) return "";
  return meta.substr(at, meta.find('\n', at) - at);
}

bool Holds(NodeProcess& n, const std::string& msg_id) {
  HttpResponse r = n.Get("/messages");
  return r.status == 200 && r.body.find("\"" + msg_id + "\"") != std::string::npos;
}

HttpResponse SendOne(NodeProcess& n, const std::string& msg_id, const std::string& ack,
                     const std::string& payload = "p") {
  return Call(
      "POST", n.Url() + "/send",
      "{\"msg_id\":\"" + msg_id + "\",\"payload\":\"" + payload + "\",\"ack\":\"" + ack + "\"}");
}

TEST(MembershipProcessTest, ALearnerHoldingAMessageIsNoQuorumVoteUntilItCaughtUp) {
  // n0 and n1 (async; quorum writes on request, of 3 nodes); n2 joins later with a message limit
  // too small for a message of n1's stream, so it cannot catch up and stays a learner.
  ClusterOptions o;
  o.quorum_timeout_ms = 1500;
  o.extra_args = TokenArgs();
  TestCluster c(
      {{"n0", {1}, "async", 3, {"--quorum", "3"}},
       {"n1", {0}, "async", 3, {}},
       {"n2", {0}, "async", 3, {"--learner-max-lag", "0", "--max-message-bytes", "1024"}}},
      o);
  ASSERT_TRUE(c.node(0).StartAndWait().ok());
  ASSERT_TRUE(c.node(1).StartAndWait().ok());
  const std::string big(2000, 'b');
  ASSERT_EQ(SendOne(c.node(1), "big", "local", big).status, 200);
  ASSERT_TRUE(WaitFor([&] { return Holds(c.node(0), "big"); }, milliseconds(20000)));

  ASSERT_TRUE(c.node(2).StartAndWait().ok());
  HttpResponse added = AddMember(c.node(0), c.node(2).Url());
  ASSERT_EQ(added.status, 201) << added.Describe();
  ASSERT_EQ(SendOne(c.node(0), "m", "local").status, 200);
  ASSERT_TRUE(WaitFor([&] { return Holds(c.node(2), "m"); }, milliseconds(20000)))
      << "the learner receives n0's stream";
  ASSERT_TRUE(WaitFor([&] { return Holds(c.node(1), "m"); }, milliseconds(20000)));
  EXPECT_EQ(RoleAt(c.node(0), c.node(2).Url()), "learner");

  // Three nodes hold m, but one is a learner: no quorum of 3.
  HttpResponse retry = SendOne(c.node(0), "m", "quorum");
  EXPECT_EQ(retry.status, 504) << "a learner was counted: " << retry.Describe();

  // Without the limit it fetches the large message, catches up and promotes itself.
  c.node(2).Terminate();
  auto& args = c.node(2).Args();
  args.resize(args.size() - 2);  // drops --max-message-bytes 1024
  ASSERT_TRUE(c.node(2).StartAndWait().ok());
  ASSERT_TRUE(
      WaitFor([&] { return RoleAt(c.node(0), c.node(2).Url()) == "voter"; }, milliseconds(30000)))
      << c.node(2).LogTail();
  EXPECT_NE(c.node(2).LogTail(1 << 16).find("this node is now a voter"), std::string::npos);
  retry = SendOne(c.node(0), "m", "quorum");
  EXPECT_EQ(retry.status, 200) << retry.Describe();
}

TEST(MembershipProcessTest, AMemberAddedUnderQuorumLoadEndsWithEveryAcknowledgedMessage) {
  ClusterOptions o;
  o.quorum_timeout_ms = 10000;  // a write that waits is counted below, not hidden by a timeout
  o.extra_args = TokenArgs();
  TestCluster c({{"n0", {1, 2}, "sync_quorum", 2, {}},
                 {"n1", {0, 2}, "sync_quorum", 2, {}},
                 {"n2", {0, 1}, "sync_quorum", 2, {}},
                 {"n3", {0}, "sync_quorum", 2, {}}},
                o);
  for (size_t i = 0; i < 3; ++i) ASSERT_TRUE(c.node(i).StartAndWait().ok());
  // Something to catch up on: 3 batches of 1000.
  for (int b = 0; b < 3; ++b) {
    std::string batch = "{\"msgs\":[";
    for (int k = 0; k < 1000; ++k) {
      batch += (k ? "," : "") + std::string("{\"msg_id\":\"pre-") + std::to_string(b) + "-" +
               std::to_string(k) + "\",\"payload\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}";
    }
    batch += "]}";
    ASSERT_EQ(Call("POST", c.node(b).Url() + "/send", batch).status, 200);
  }

  std::mutex mu;
  std::vector<std::string> acked;
  std::vector<std::string> failures;
  std::atomic<bool> stop{false};
  std::vector<std::thread> senders;
  for (int s = 0; s < 3; ++s) {
    senders.emplace_back([&, s] {
      for (int k = 0; !stop; ++k) {
        const std::string id = "q" + std::to_string(s) + "-" + std::to_string(k);
        HttpResponse r = SendOne(c.node(s), id, "quorum");
        std::lock_guard<std::mutex> lock(mu);
        if (r.status == 200) {
          acked.push_back(id);
        } else {
          failures.push_back(id + ": " + r.Describe());
        }
      }
    });
  }
  auto acked_count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return acked.size();
  };
  ASSERT_TRUE(WaitFor([&] { return acked_count() >= 30; }, milliseconds(30000)));

  ASSERT_TRUE(c.node(3).StartAndWait().ok());
  const auto added_at = std::chrono::steady_clock::now();
  HttpResponse added = AddMember(c.node(1), c.node(3).Url());
  ASSERT_EQ(added.status, 201) << added.Describe();
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(
        WaitFor([&] { return RoleAt(c.node(i), c.node(3).Url()) == "voter"; }, milliseconds(60000)))
        << "n" << i << " never saw n3 as a voter\n"
        << c.node(3).LogTail();
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - added_at).count();
  const size_t before_stop = acked_count();
  ASSERT_TRUE(WaitFor([&] { return acked_count() >= before_stop + 30; }, milliseconds(30000)));
  stop = true;
  for (auto& t : senders) t.join();
  std::printf(
      "membership: n3 a voter everywhere %.2f s after the add; %zu quorum writes, %zu "
      "refused or late\n",
      seconds, acked.size(), failures.size());
  EXPECT_TRUE(failures.empty()) << failures.size()
                                << " writes failed during the change, first: " << failures.front();
  EXPECT_TRUE(c.WaitConverged(acked, milliseconds(60000), {0, 1, 2, 3}))
      << "every acknowledged message reaches every member, the new one included";
  EXPECT_NE(c.node(3).LogTail(1 << 16).find("this node is now a voter"), std::string::npos);
}

TEST(MembershipProcessTest, ARemovedNodeReceivesNothingMoreAndRefusesWrites) {
  ClusterOptions o;
  o.extra_args = TokenArgs();
  TestCluster c({{"n0", {1, 2}, "async", 2, {}},
                 {"n1", {0, 2}, "async", 2, {}},
                 {"n2", {0, 1}, "async", 2, {}}},
                o);
  ASSERT_TRUE(c.StartAll().ok());
  ASSERT_EQ(SendOne(c.node(0), "before", "local").status, 200);
  ASSERT_TRUE(c.WaitConverged({"before"}, milliseconds(20000)));

  HttpResponse removed = RemoveMember(c.node(0), "n2");
  ASSERT_EQ(removed.status, 200) << removed.Describe();
  EXPECT_EQ(removed.Str("status"), "ok");
  // n1 hears of it from n0, and n2 itself from either.
  ASSERT_TRUE(
      WaitFor([&] { return RoleAt(c.node(1), c.node(2).Url()).empty(); }, milliseconds(20000)));
  ASSERT_TRUE(WaitFor([&] { return c.node(2).Get("/status").Str("role") == "removed"; },
                      milliseconds(20000)));

  std::vector<std::string> after;
  for (int k = 0; k < 20; ++k) {
    after.push_back("after-" + std::to_string(k));
    ASSERT_EQ(SendOne(c.node(k % 2), after.back(), "local").status, 200);
  }
  ASSERT_TRUE(c.WaitConverged(after, milliseconds(20000), {0, 1}));
  // A window of several heartbeats and anti-entropy pulls: nothing reaches n2.
  const int64_t n2_last = c.node(2).Get("/status").Int("last_seq");
  EXPECT_FALSE(WaitFor([&] { return c.node(2).Get("/status").Int("last_seq") != n2_last; },
                       milliseconds(3000)))
      << "a removed node received messages";
  for (const std::string& id : after) EXPECT_FALSE(Holds(c.node(2), id)) << id;

  HttpResponse refused = SendOne(c.node(2), "to-removed", "local");
  EXPECT_EQ(refused.status, 503) << refused.Describe();
  EXPECT_NE(refused.Str("reason").find("removed from the cluster"), std::string::npos);
  // The others no longer list it; their /status peers neither.
  HttpResponse st = c.node(0).Get("/status");
  EXPECT_EQ(st.body.find(c.node(2).Url()), std::string::npos) << st.body;
}

TEST(MembershipProcessTest, ARestartOfEveryNodeKeepsTheMembership) {
  ClusterOptions o;
  o.extra_args = TokenArgs();
  TestCluster c({{"n0", {1, 2}, "async", 2, {}},
                 {"n1", {0, 2}, "async", 2, {}},
                 {"n2", {0, 1}, "async", 2, {}},
                 {"n3", {0}, "async", 2, {}}},
                o);
  ASSERT_TRUE(c.StartAll().ok());
  // n0 knows its peers' ids once they answered a heartbeat.
  ASSERT_TRUE(WaitFor([&] { return c.PeerAliveIs(0, 1, true) && c.PeerAliveIs(0, 2, true); },
                      milliseconds(20000)));
  ASSERT_EQ(AddMember(c.node(0), c.node(3).Url()).status, 201);
  ASSERT_EQ(RemoveMember(c.node(0), "n2").status, 200);
  // Every member has both changes and n3's promotion (whose stamp may equal the removal's).
  for (size_t i : {0, 1, 3}) {
    ASSERT_TRUE(WaitFor(
        [&] {
          return RoleAt(c.node(i), c.node(2).Url()).empty() &&
                 (i == 3 || RoleAt(c.node(i), c.node(3).Url()) == "voter");
        },
        milliseconds(30000)))
        << "n" << i;
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        const int64_t v = VersionAt(c.node(0));
        return v >= 2 && VersionAt(c.node(1)) == v && VersionAt(c.node(3)) == v;
      },
      milliseconds(30000)));
  const int64_t version = VersionAt(c.node(0));
  // A membership learned from a heartbeat is stored by a later task, and n2 learns of its
  // removal only from its own heartbeats' answers (the members no longer call it; n3's
  // promotion, a change of the same version, may reach it first). The kill -9 comes once every
  // node has stored what the restart must keep.
  const auto has = [](const std::string& line, const std::string& what) {
    return line.find(what) != std::string::npos;
  };
  for (size_t i : {0, 1, 2, 3}) {
    std::string meta;
    ASSERT_TRUE(WaitFor(
        [&] {
          meta = StoredMeta(c, i);
          const bool removed = has(MetaLine(meta, "member " + c.node(2).Url()), "removed at");
          if (i == 2) return removed;  // n2 keeps only its own removal in this check
          return removed &&
                 has(MetaLine(meta, "membership"), "version " + std::to_string(version) + ",") &&
                 has(MetaLine(meta, "member " + c.node(3).Url()), "voter");
        },
        milliseconds(30000)))
        << "n" << i << " stored:\n" << meta;
  }

  c.KillAll();  // kill -9, then the same command lines (--peers still name n2, not n3)
  ASSERT_TRUE(c.StartAll().ok());
  for (size_t i : {0, 1, 3}) {
    EXPECT_EQ(VersionAt(c.node(i)), version) << "n" << i;
    EXPECT_EQ(RoleAt(c.node(i), c.node(2).Url()), "") << "n" << i;
  }
  EXPECT_EQ(RoleAt(c.node(0), c.node(3).Url()), "voter");
  EXPECT_NE(c.node(0).LogTail(1 << 16).find("the stored membership is used"), std::string::npos);
  EXPECT_EQ(c.node(2).Get("/status").Str("role"), "removed");

  ASSERT_EQ(SendOne(c.node(0), "after-restart", "local").status, 200);
  EXPECT_TRUE(c.WaitConverged({"after-restart"}, milliseconds(20000), {0, 1, 3}));
}

TEST(MembershipProcessTest, BadMembershipRequestsAreClear4xxAndChangeNothing) {
  ClusterOptions o;
  TestCluster c({{"n0", {1}, "sync_quorum", 2, TokenArgs()},
                 {"n1", {0}, "sync_quorum", 2, TokenArgs()},
                 {"n2", {}, "async", 2, {}}},  // no cluster token
                o);
  ASSERT_TRUE(c.StartAll().ok());
  ASSERT_TRUE(WaitFor([&] { return c.PeerAliveIs(0, 1, true); }, milliseconds(20000)))
      << "n0 knows n1's id once it answered a heartbeat";
  NodeProcess& n0 = c.node(0);
  auto expect = [](const char* what, const HttpResponse& r, long status, const char* reason) {
    EXPECT_EQ(r.status, status) << what << ": " << r.Describe();
    EXPECT_TRUE(r.IsError()) << what << ": " << r.Describe();
    EXPECT_NE(r.Str("reason").find(reason), std::string::npos) << what << ": " << r.Describe();
  };
  expect("unknown id", RemoveMember(n0, "nobody"), 404, "no member nobody");
  expect("an existing member", AddMember(n0, c.node(1).Url()), 409, "a member already");
  expect("this node's URL", AddMember(n0, n0.Url()), 400, "is this node");
  expect("remove this node", RemoveMember(n0, "n0"), 409, "is this node");
  expect("below the quorum", RemoveMember(n0, "n1"), 409, "fewer than --quorum 2");
  expect("malformed URL", AddMember(n0, "ftp://x"), 400, "malformed");
  expect("https without a CA", AddMember(n0, "https://127.0.0.1:1"), 400, "--tls-ca");
  expect("unknown field",
         Call("POST", n0.Url() + "/cluster/members", R"({"url":"http://127.0.0.1:1","role":"x"})"),
         400, "unknown field");
  expect("not JSON", Call("POST", n0.Url() + "/cluster/members", "{"), 400, "");
  expect("no token",
         Call("POST", n0.Url() + "/cluster/members", R"({"url":"http://127.0.0.1:1"})",
              /*with_token=*/false),
         401, "cluster token required");
  expect("no cluster token on the node",
         Call("POST", c.node(2).Url() + "/cluster/members", R"({"url":"http://127.0.0.1:1"})"), 403,
         "--cluster-token");
  expect("wrong method", Call("PUT", n0.Url() + "/cluster/members", "{}"), 405, "not allowed");
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(VersionAt(c.node(i)), 0) << "n" << i;
  EXPECT_EQ(RoleAt(n0, c.node(1).Url()), "voter");
  EXPECT_TRUE(n0.Running() && c.node(2).Running());
}

}  // namespace
}  // namespace dsm::testing

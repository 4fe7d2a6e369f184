// Hardening of real dsm-node processes: a cluster sharing a cluster token replicates; requests
// without or with a wrong token get 401 and store nothing; a node with the wrong token cannot
// join (it neither receives nor delivers anything); tokens appear in no log, /status or --help;
// and the connection limit refuses excess connections.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tests/testing/process.h"

namespace dsm::testing {
namespace {

using std::chrono::milliseconds;

constexpr char kToken[] = "Cluster-Token-4f9a1c0e7b2d";
constexpr char kWrongToken[] = "Wrong-Token-00000000000000";

std::string Bearer(const std::string& token) { return "Authorization: Bearer " + token; }

HttpResponse Call(const std::string& method, const std::string& url,
                  std::optional<std::string> body, std::vector<std::string> headers = {}) {
  HttpRequest req;
  req.method = method;
  req.url = url;
  req.body = std::move(body);
  req.headers = std::move(headers);
  return Http(req);
}

std::string SendBody(const std::string& msg_id) {
  return "{\"msg_id\":" + JsonQuote(msg_id) + ",\"sender\":\"s\",\"recipient\":\"r\",\"payload\":\"p\"}";
}

bool Holds(NodeProcess& n, const std::string& msg_id) {
  LogCheck c = FetchAndCheckLog(n.Url());
  for (const std::string& id : c.msg_ids) {
    if (id == msg_id) return true;
  }
  return false;
}

// What the node itself wrote to its log file (without the harness's "===== start" lines, which
// quote the command line the test chose).
std::string NodeOutput(const std::string& path) {
  std::ifstream in(path);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("===== ", 0) != 0) out += line + "\n";
  }
  return out;
}

// peer_status[url].consecutive_failures in `n`'s /status (-1 when unreadable).
int64_t ConsecutiveFailures(NodeProcess& n, const std::string& url) {
  HttpResponse r = n.Get("/status", milliseconds(3000));
  if (r.status != 200 || !r.json_ok) return -1;
  auto ps = r.json.FindMember("peer_status");
  if (ps == r.json.MemberEnd() || !ps->value.IsObject()) return -1;
  auto p = ps->value.FindMember(url.c_str());
  if (p == ps->value.MemberEnd() || !p->value.IsObject()) return -1;
  auto f = p->value.FindMember("consecutive_failures");
  return f != p->value.MemberEnd() && f->value.IsInt64() ? f->value.GetInt64() : -1;
}

TEST(HardeningProcessTest, ClusterWithTokenReplicatesAndRefusesOutsiders) {
  // The token reaches two nodes through the environment and the third through the flag.
  ASSERT_EQ(setenv("DSM_CLUSTER_TOKEN", kToken, 1), 0);
  TestCluster c({{"n1", {1, 2}, "async", 2, {}},
                 {"n2", {0, 2}, "async", 2, {}},
                 {"n3", {0, 1}, "async", 2, {"--cluster-token", kToken}}});
  Status s = c.StartAll();
  unsetenv("DSM_CLUSTER_TOKEN");
  ASSERT_TRUE(s.ok()) << s.ToString();

  ASSERT_EQ(c.node(0).Post("/send", SendBody("tok-1")).status, 200);
  ASSERT_EQ(c.node(2).Post("/send", SendBody("tok-2")).status, 200);
  EXPECT_TRUE(c.WaitConverged({"tok-1", "tok-2"}, milliseconds(30000)));

  // Outsiders: no token, a wrong one, the right one in the wrong header scheme.
  const std::string replicate =
      R"({"msg":{"msg_id":"evil-1","sender":"x","recipient":"y","payload":"z","ts":1}})";
  for (const std::vector<std::string>& headers :
       std::vector<std::vector<std::string>>{{}, {Bearer(kWrongToken)},
                                             {"Authorization: Basic " + std::string(kToken)}}) {
    HttpResponse r = Call("POST", c.node(1).Url() + "/replicate", replicate, headers);
    EXPECT_EQ(r.status, 401) << r.Describe();
    EXPECT_TRUE(r.IsError()) << r.Describe();
    HttpResponse sync = Call("POST", c.node(1).Url() + "/sync", R"({"since":0})", headers);
    EXPECT_EQ(sync.status, 401) << sync.Describe();
    EXPECT_EQ(sync.body.find("tok-1"), std::string::npos);  // nothing leaks
    EXPECT_EQ(Call("GET", c.node(1).Url() + "/heartbeat", std::nullopt, headers).status, 401);
  }
  EXPECT_FALSE(Holds(c.node(1), "evil-1"));
  // With the token the same request is accepted (and then replicates like any other).
  HttpResponse ok = Call("POST", c.node(1).Url() + "/replicate", replicate, {Bearer(kToken)});
  EXPECT_EQ(ok.status, 200) << ok.Describe();
  EXPECT_TRUE(c.WaitConverged({"evil-1"}, milliseconds(30000)));

  // The token is in no log and no /status.
  for (size_t i = 0; i < c.size(); ++i) {
    HttpResponse st = c.node(i).Get("/status");
    EXPECT_EQ(st.body.find(kToken), std::string::npos) << st.body;
    EXPECT_EQ(NodeOutput(c.node(i).LogPath()).find(kToken), std::string::npos)
        << c.node(i).LogPath();
  }
}

TEST(HardeningProcessTest, NodeWithTheWrongTokenCannotJoin) {
  TestCluster c({{"n1", {1, 2}, "async", 2, {"--cluster-token", kToken}},
                 {"n2", {0, 2}, "async", 2, {"--cluster-token", kToken}},
                 {"n3", {0, 1}, "async", 2, {"--cluster-token", kWrongToken}}});
  ASSERT_TRUE(c.StartAll().ok());
  ASSERT_EQ(c.node(0).Post("/send", SendBody("inside-1")).status, 200);
  ASSERT_EQ(c.node(2).Post("/send", SendBody("outside-1")).status, 200);
  ASSERT_TRUE(c.WaitConverged({"inside-1"}, milliseconds(30000), {0, 1}));

  // Every exchange with the impostor fails, both ways, for a while (many heartbeats, several
  // push retries and anti-entropy pulls).
  EXPECT_TRUE(WaitFor(
      [&] {
        return ConsecutiveFailures(c.node(2), c.PeerUrl(2, 0)) >= 10 &&
               ConsecutiveFailures(c.node(2), c.PeerUrl(2, 1)) >= 10 &&
               ConsecutiveFailures(c.node(0), c.PeerUrl(0, 2)) >= 10 &&
               ConsecutiveFailures(c.node(1), c.PeerUrl(1, 2)) >= 10;
      },
      milliseconds(30000), milliseconds(200)));
  EXPECT_TRUE(c.PeerAliveIs(0, 2, false));
  EXPECT_TRUE(c.PeerAliveIs(2, 0, false));
  // Nothing crossed.
  EXPECT_FALSE(Holds(c.node(0), "outside-1"));
  EXPECT_FALSE(Holds(c.node(1), "outside-1"));
  EXPECT_FALSE(Holds(c.node(2), "inside-1"));
}

TEST(HardeningProcessTest, TokensStayOutOfHelpAndErrors) {
  ASSERT_EQ(setenv("DSM_CLUSTER_TOKEN", kToken, 1), 0);
  RunResult help = RunToExit({BinaryPath("dsm-node"), "--help"});
  unsetenv("DSM_CLUSTER_TOKEN");
  EXPECT_EQ(help.exit.exit_code, 0);
  EXPECT_NE(help.out.find("--cluster-token"), std::string::npos);
  EXPECT_NE(help.out.find("DSM_CLUSTER_TOKEN"), std::string::npos);
  EXPECT_EQ(help.out.find(kToken), std::string::npos) << help.out;

  // An unusable token is refused without echoing it.
  const std::string bad = std::string(kToken) + " with space";
  RunResult r = RunToExit({BinaryPath("dsm-node"), "--id", "x", "--cluster-token", bad});
  EXPECT_EQ(r.exit.exit_code, 2);
  EXPECT_NE(r.err.find("--cluster-token"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(kToken), std::string::npos) << r.err;
}

TEST(HardeningProcessTest, ConnectionsBeyondTheLimitAreRefused) {
  TestCluster c({{"n1", {}, "async", 2, {"--max-connections", "3"}}});
  ASSERT_TRUE(c.StartAll().ok());
  // Three clients on keep-alive connections, each served once (so the server holds them). A
  // connection the harness's readiness probe closed may still hold its slot until the server
  // sees the close, so a refused connection is retried until the slot is free.
  auto open_served_connection = [&](int i) {
    const std::string req = "GET /heartbeat HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n";
    std::string got;
    int fd = -1;
    const bool served = WaitFor(
        [&] {
          fd = ConnectLocal(c.node(0).Port());
          if (fd < 0) return false;
          got.clear();
          if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
            char buf[4096];
            while (got.find("\r\n\r\n") == std::string::npos ||
                   (got.rfind("HTTP/1.1 200", 0) == 0 &&
                    got.find("\"high_waters\"") == std::string::npos)) {
              ssize_t n = recv(fd, buf, sizeof(buf), 0);  // SO_RCVTIMEO bounds the wait
              if (n <= 0) break;
              got.append(buf, static_cast<size_t>(n));
            }
            if (got.rfind("HTTP/1.1 200", 0) == 0 &&
                got.find("\"high_waters\"") != std::string::npos) {
              return true;
            }
          }
          close(fd);
          fd = -1;
          return false;
        },
        milliseconds(20000), milliseconds(50));
    EXPECT_TRUE(served) << "connection " << i << " last got: " << got;
    return fd;
  };
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) {
    int fd = open_served_connection(i);
    ASSERT_GE(fd, 0);
    held.push_back(fd);
  }
  // Once the server has taken the three, a fourth is answered 503 and closed.
  std::string last;
  EXPECT_TRUE(WaitFor(
      [&] {
        last = RawExchange(c.node(0).Port(), "GET /heartbeat HTTP/1.1\r\nHost: localhost\r\n\r\n");
        return last.rfind("HTTP/1.1 503", 0) == 0 &&
               last.find("too many connections") != std::string::npos;
      },
      milliseconds(20000)))
      << "last answer: " << last;
  for (int fd : held) close(fd);
  EXPECT_TRUE(WaitFor([&] { return c.node(0).Get("/heartbeat").status == 200; },
                      milliseconds(20000)));
}

// The biggest table file (.sst) under `dir`, or "" when there is none.
std::string BiggestTableFile(const std::string& dir) {
  namespace fs = std::filesystem;
  std::string best;
  uintmax_t best_size = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".sst" && e.file_size() > best_size) {
      best = e.path().string();
      best_size = e.file_size();
    }
  }
  return best;
}

TEST(HardeningProcessTest, DamagedDataDirectoryIsRefusedAndAWipedNodeRebuildsFromPeers) {
  TestCluster c({{"n1", {1}, "async", 2, {}}, {"n2", {0}, "async", 2, {}}});
  ASSERT_TRUE(c.StartAll().ok());
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    ids.push_back("dmg-" + std::to_string(i));
    ASSERT_EQ(c.node(i % 2).Post("/send", SendBody(ids.back())).status, 200);
  }
  ASSERT_TRUE(c.WaitConverged(ids, milliseconds(30000)));
  const std::string old_stream = c.node(1).Get("/heartbeat").Str("stream");

  // n2 stops cleanly (its data is then in table files), and one of them gets a flipped byte.
  ASSERT_EQ(c.node(1).Terminate().exit_code, 0);
  const std::string table = BiggestTableFile(c.DataDir(1));
  ASSERT_FALSE(table.empty());
  {
    std::fstream f(table, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(std::filesystem::file_size(table) / 3));
    char ch = 0;
    f.read(&ch, 1);
    ch = static_cast<char>(ch ^ 0x40);
    f.seekp(static_cast<std::streamoff>(std::filesystem::file_size(table) / 3));
    f.write(&ch, 1);
  }
  // Refused at start-up with a clear error.
  std::vector<std::string> argv = {BinaryPath("dsm-node")};
  argv.insert(argv.end(), c.node(1).Args().begin(), c.node(1).Args().end());
  RunResult r = RunToExit(argv);
  EXPECT_EQ(r.exit.exit_code, 1) << r.exit.ToString() << "\n" << r.err;
  EXPECT_NE(r.err.find("is damaged"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("docs/operations.md"), std::string::npos) << r.err;

  // The documented recovery: wipe the directory and restart; the node rebuilds from its peer
  // under a new stream.
  RemoveTree(c.DataDir(1));
  ASSERT_TRUE(c.node(1).StartAndWait().ok());
  EXPECT_TRUE(c.WaitConverged(ids, milliseconds(30000)));
  EXPECT_NE(c.node(1).Get("/heartbeat").Str("stream"), old_stream);
  LogCheck lc = FetchAndCheckLog(c.node(1).Url());
  EXPECT_TRUE(lc.Clean()) << lc.Summary();
  EXPECT_EQ(lc.msg_ids.size(), ids.size());
}

// A real full disk under a running node: a tmpfs mounted by the test (skipped when it cannot
// mount one).
TEST(HardeningProcessTest, FullDiskAnswers503WhileReadsWorkAndRecoversWhenSpaceReturns) {
  TempDir dir;
  const std::string mnt = dir.Sub("mnt");
  std::filesystem::create_directories(mnt);
  if (geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root: full-disk test skipped";
  if (mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=24m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs (" << std::strerror(errno) << "): test skipped";
  }
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const uint16_t port = FreePort();
  NodeProcess node("n1", BinaryPath("dsm-node"),
                   {"--port", std::to_string(port), "--id", "n1", "--data-dir", mnt + "/data",
                    "--min-free-disk-mb", "2"},
                   dir.Sub("n1.log"), port);
  ASSERT_TRUE(node.StartAndWait().ok());
  const std::string filler = mnt + "/filler";
  {
    std::ofstream f(filler, std::ios::binary);
    std::string chunk(1 << 20, 'f');
    for (int i = 0; i < 17; ++i) f.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  }
  const std::string payload(32 << 10, 'p');
  std::vector<std::string> acked;
  HttpResponse refused;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = "full-" + std::to_string(i);
    HttpResponse r = node.Post("/send", "{\"msg_id\":" + JsonQuote(id) +
                                            ",\"payload\":" + JsonQuote(payload) + "}");
    if (r.status != 200) {
      refused = std::move(r);
      break;
    }
    acked.push_back(id);
  }
  ASSERT_EQ(refused.status, 503) << refused.Describe();
  EXPECT_NE(refused.Str("reason").find("disk full"), std::string::npos) << refused.Describe();
  // Reads keep working; /status says why writes stop.
  LogCheck lc = FetchAndCheckLog(node.Url());
  EXPECT_EQ(lc.msg_ids, acked) << lc.Summary();
  HttpResponse st = node.Get("/status");
  ASSERT_EQ(st.status, 200);
  EXPECT_FALSE(st.json["writable"].GetBool()) << st.body;
  EXPECT_NE(st.Str("write_error").find("disk full"), std::string::npos) << st.body;

  // Space returns: /send works again without a restart.
  std::filesystem::remove(filler);
  EXPECT_TRUE(WaitFor(
      [&] { return node.Post("/send", SendBody("after-space")).status == 200; },
      milliseconds(30000), milliseconds(200)));
  acked.push_back("after-space");
  EXPECT_TRUE(node.Get("/status").json["writable"].GetBool());
  EXPECT_EQ(FetchAndCheckLog(node.Url()).msg_ids, acked);
  // And after a restart, exactly the acknowledged messages are there.
  ASSERT_TRUE(node.Restart().ok());
  EXPECT_EQ(FetchAndCheckLog(node.Url()).msg_ids, acked);
}

}  // namespace
}  // namespace dsm::testing

// The dashboard in a real browser: a live 3-node cluster of dsm-node processes, and Debian's
// headless Chromium driven by playwright-core (tests/dashboard/dashboard_scenario.mjs). On an open
// cluster the scenario sends a message through node1's form and sees it in node2's live feed,
// sees node1's charts move while a load runs, kills node3 with SIGKILL and sees node1's page turn
// it dead, and sees the 503 of a quorum send (in the outcomes and in the quorum chart).
// On a cluster whose nodes all require a client token (and share a cluster token) it sees the
// token form, a wrong token refused, the right one accepted, and a message sent through node1's
// form arrive in the live feed of node2's page, opened with a #token= link. The tests own the
// clusters (started and killed through the process harness) and check afterwards what the browser
// could not: that node3 really died and that the message is in node2's log. The screenshots are
// kept at <build>/artifacts/dashboard.png and dashboard-token.png.
//
// Needs `node` on PATH, /usr/bin/chromium (or $DSM_CHROMIUM) and tests/dashboard/node_modules
// (scripts/dev installs all three). DSM_SKIP_BROWSER_TESTS=1 skips the test explicitly.
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/testing/process.h"

#ifndef DSM_SOURCE_DIR
#error "DSM_SOURCE_DIR must be defined (tests/dashboard/CMakeLists.txt)"
#endif
#ifndef DSM_ARTIFACT_DIR
#error "DSM_ARTIFACT_DIR must be defined (tests/dashboard/CMakeLists.txt)"
#endif

namespace dsm::testing {
namespace {

namespace fs = std::filesystem;

// The full path of `name` on $PATH, or "" when it is not there.
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    const std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string ChromiumPath() {
  const char* env = std::getenv("DSM_CHROMIUM");
  return env != nullptr && *env != '\0' ? env : "/usr/bin/chromium";
}

bool IsPng(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char sig[8] = {};
  in.read(sig, sizeof(sig));
  return in.gcount() == 8 && std::string(sig, 8) == std::string("\x89PNG\r\n\x1a\n", 8);
}

// The "RESULT {json}" line of the scenario's output; a non-object when there is none.
rapidjson::Document ScenarioResult(const std::string& out) {
  rapidjson::Document result;
  const size_t at = out.find("RESULT ");
  if (at == std::string::npos) return result;
  result.Parse(out.substr(at + 7, out.find('\n', at) - at - 7).c_str());
  return result;
}

// Whether `messages` (a /messages answer's array) holds `msg_id`.
bool Holds(const rapidjson::Value& messages, const std::string& msg_id) {
  for (const auto& m : messages.GetArray()) {
    if (m.IsObject() && m.HasMember("msg_id") && m["msg_id"].IsString() &&
        m["msg_id"].GetString() == msg_id) {
      return true;
    }
  }
  return false;
}

// Checks that the browser, Node.js and playwright-core are there (or skips on request).
class DashboardBrowserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* skip = std::getenv("DSM_SKIP_BROWSER_TESTS");
    if (skip != nullptr && std::string(skip) == "1") GTEST_SKIP() << "DSM_SKIP_BROWSER_TESTS=1";

    node = FindOnPath("node");
    ASSERT_FALSE(node.empty()) << "Node.js (`node`) is not on PATH: run scripts/dev to install";
    ASSERT_EQ(::access(ChromiumPath().c_str(), X_OK), 0)
        << ChromiumPath() << " is missing: run scripts/dev (apt package chromium)";
    test_dir = std::string(DSM_SOURCE_DIR) + "/tests/dashboard";
    ASSERT_TRUE(fs::exists(test_dir + "/node_modules/playwright-core/package.json"))
        << "playwright-core is not installed in " << test_dir
        << ": run scripts/dev (npm ci there, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1)";
  }

  // Runs dashboard_scenario.mjs with `args` (the executable and script are prepended) and
  // returns the msg_id it sent through the form, or "" after a failed assertion.
  std::string RunScenario(std::vector<std::string> args, Millis timeout) {
    args.insert(args.begin(), {node, test_dir + "/dashboard_scenario.mjs"});
    args.insert(args.end(), {"--chromium", ChromiumPath(), "--timeout-ms", "30000"});
    RunResult run = RunToExit(args, timeout);
    std::cout << run.out << run.err;
    EXPECT_FALSE(run.timed_out) << "the browser scenario did not finish";
    EXPECT_TRUE(run.exit.exited && run.exit.exit_code == 0)
        << "the browser scenario failed (" << run.exit.ToString() << ")";
    rapidjson::Document result = ScenarioResult(run.out);
    if (!result.IsObject() || !result.HasMember("msg_id") || !result["msg_id"].IsString()) {
      ADD_FAILURE() << "the scenario printed no msg_id";
      return "";
    }
    return result["msg_id"].GetString();
  }

  std::string node;      // the Node.js executable
  std::string test_dir;  // where the scenario and its node_modules are
};

// node1, node2, node3, each peering with the two others.
std::vector<NodeSpec> ThreeNodes() {
  std::vector<NodeSpec> specs(3);
  specs[0].id = "node1";
  specs[0].peers = {1, 2};
  specs[1].id = "node2";
  specs[1].peers = {0, 2};
  specs[2].id = "node3";
  specs[2].peers = {0, 1};
  return specs;
}

TEST_F(DashboardBrowserTest, FormFeedAndFailureInHeadlessChromium) {
  // node1 refuses quorum writes it cannot get (--quorum 3) so the page can show a 503.
  std::vector<NodeSpec> specs = ThreeNodes();
  specs[0].extra_args = {"--quorum", "3"};
  TestCluster cluster(specs);
  Status s = cluster.StartAll();
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(WaitFor([&] { return cluster.PeerAliveIs(0, 2, true); }, Millis(30000)))
      << "node1 never saw node3 alive";

  const std::string screenshot = std::string(DSM_ARTIFACT_DIR) + "/dashboard.png";
  fs::create_directories(DSM_ARTIFACT_DIR);
  fs::remove(screenshot);
  const std::string msg_id =
      RunScenario({"--node1", cluster.node(0).Url(), "--node2", cluster.node(1).Url(), "--node3",
                   cluster.PeerUrl(0, 2), "--node3-pid", std::to_string(cluster.node(2).Pid()),
                   "--screenshot", screenshot},
                  Millis(300000));
  ASSERT_FALSE(HasFailure());

  // What the browser saw, checked from outside.

  ASSERT_TRUE(WaitFor([&] { return !cluster.node(2).Running(); }, Millis(10000)));
  EXPECT_EQ(cluster.node(2).LastExit().signal, 9) << cluster.node(2).LastExit().ToString();

  HttpResponse r = cluster.node(1).Get("/messages?recipient=dashboard-test");
  ASSERT_EQ(r.status, 200) << r.Describe();
  ASSERT_TRUE(r.json_ok && r.json["messages"].IsArray());
  EXPECT_TRUE(Holds(r.json["messages"], msg_id)) << "node2 does not hold " << msg_id;
  // The refused quorum send wrote nothing anywhere.
  HttpResponse refused = cluster.node(0).Get("/messages?recipient=dashboard-test");
  ASSERT_EQ(refused.status, 200);
  EXPECT_EQ(refused.json["messages"].Size(), 1u) << refused.Describe();

  EXPECT_TRUE(IsPng(screenshot)) << screenshot;
  EXPECT_GT(fs::file_size(screenshot), 10000u);
}

// A GET carrying `token` as a bearer token.
HttpResponse GetWithToken(NodeProcess& n, const std::string& path, const std::string& token) {
  HttpRequest req;
  req.url = n.Url() + path;
  req.headers = {"Authorization: Bearer " + token};
  req.timeout = Millis(3000);
  return Http(req);
}

// True when `from`'s /status (read with `token`) shows every one of its peers alive.
bool PeersAlive(TestCluster& cluster, size_t from, const std::string& token) {
  HttpResponse r = GetWithToken(cluster.node(from), "/status", token);
  if (r.status != 200 || !r.json_ok || !r.json.IsObject()) return false;
  auto ps = r.json.FindMember("peer_status");
  if (ps == r.json.MemberEnd() || !ps->value.IsObject()) return false;
  for (int to : cluster.spec(from).peers) {
    const std::string url = cluster.PeerUrl(from, static_cast<size_t>(to));
    auto entry = ps->value.FindMember(url.c_str());
    if (entry == ps->value.MemberEnd() || !entry->value.IsObject()) return false;
    auto alive = entry->value.FindMember("alive");
    if (alive == entry->value.MemberEnd() || !alive->value.IsBool() || !alive->value.GetBool()) {
      return false;
    }
  }
  return true;
}

TEST_F(DashboardBrowserTest, TokenFormAndTokenLinkOnAClusterWithAClientToken) {
  // Characters that need percent-encoding in the cookie and in the #token= link.
  const std::string client_token = "Dash+Client%Token;42=/x";
  const std::string cluster_token = "Dash-Cluster-Token-5b1e";
  std::vector<NodeSpec> specs = ThreeNodes();
  ClusterOptions options;
  options.extra_args = {"--client-token", client_token, "--cluster-token", cluster_token};
  TestCluster cluster(specs, options);
  Status s = cluster.StartAll();
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(cluster.node(0).Get("/status").status, 401) << "node1 does not require the token";
  ASSERT_TRUE(WaitFor([&] { return PeersAlive(cluster, 0, client_token); }, Millis(30000)))
      << "node1 never saw both peers alive";

  const std::string screenshot = std::string(DSM_ARTIFACT_DIR) + "/dashboard-token.png";
  fs::create_directories(DSM_ARTIFACT_DIR);
  fs::remove(screenshot);
  const std::string msg_id =
      RunScenario({"--mode", "token", "--token", client_token, "--node1", cluster.node(0).Url(),
                   "--node2", cluster.node(1).Url(), "--node3", cluster.PeerUrl(0, 2),
                   "--screenshot", screenshot},
                  Millis(180000));
  ASSERT_FALSE(HasFailure());
  // node2 holds the message, and still shows it only with the token.
  HttpResponse r =
      GetWithToken(cluster.node(1), "/messages?recipient=dashboard-test", client_token);
  ASSERT_EQ(r.status, 200) << r.Describe();
  ASSERT_TRUE(r.json_ok && r.json["messages"].IsArray());
  EXPECT_TRUE(Holds(r.json["messages"], msg_id)) << "node2 does not hold " << msg_id;
  EXPECT_EQ(cluster.node(1).Get("/messages?recipient=dashboard-test").status, 401);

  EXPECT_TRUE(IsPng(screenshot)) << screenshot;
}

}  // namespace
}  // namespace dsm::testing

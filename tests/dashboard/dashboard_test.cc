// The dashboard in a real browser: a live 3-node cluster of dsm-node processes, and Debian's
// headless Chromium driven by playwright-core (tests/dashboard/dashboard_scenario.mjs). The
// scenario sends a message through node1's form and sees it in node2's live feed, kills node3
// with SIGKILL and sees node1's page turn it dead, and sees the 503 of a quorum send. This test
// owns the cluster (started and killed through the process harness) and checks afterwards what
// the browser could not: that node3 really died and that the message is in node2's log. The
// screenshot is kept at <build>/artifacts/dashboard.png.
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

TEST(DashboardBrowserTest, FormFeedAndFailureInHeadlessChromium) {
  const char* skip = std::getenv("DSM_SKIP_BROWSER_TESTS");
  if (skip != nullptr && std::string(skip) == "1") GTEST_SKIP() << "DSM_SKIP_BROWSER_TESTS=1";

  const std::string node = FindOnPath("node");
  ASSERT_FALSE(node.empty()) << "Node.js (`node`) is not on PATH: run scripts/dev to install";
  ASSERT_EQ(::access(ChromiumPath().c_str(), X_OK), 0)
      << ChromiumPath() << " is missing: run scripts/dev (apt package chromium)";
  const std::string test_dir = std::string(DSM_SOURCE_DIR) + "/tests/dashboard";
  ASSERT_TRUE(fs::exists(test_dir + "/node_modules/playwright-core/package.json"))
      << "playwright-core is not installed in " << test_dir
      << ": run scripts/dev (npm ci there, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1)";

  // node1 refuses quorum writes it cannot get (--quorum 3) so the page can show a 503.
  std::vector<NodeSpec> specs(3);
  specs[0].id = "node1";
  specs[0].peers = {1, 2};
  specs[0].extra_args = {"--quorum", "3"};
  specs[1].id = "node2";
  specs[1].peers = {0, 2};
  specs[2].id = "node3";
  specs[2].peers = {0, 1};
  TestCluster cluster(specs);
  Status s = cluster.StartAll();
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(WaitFor([&] { return cluster.PeerAliveIs(0, 2, true); }, Millis(30000)))
      << "node1 never saw node3 alive";

  const std::string screenshot = std::string(DSM_ARTIFACT_DIR) + "/dashboard.png";
  fs::create_directories(DSM_ARTIFACT_DIR);
  fs::remove(screenshot);
  RunResult run =
      RunToExit({node, test_dir + "/dashboard_scenario.mjs", "--node1", cluster.node(0).Url(),
                 "--node2", cluster.node(1).Url(), "--node3", cluster.PeerUrl(0, 2), "--node3-pid",
                 std::to_string(cluster.node(2).Pid()), "--screenshot", screenshot, "--chromium",
                 ChromiumPath(), "--timeout-ms", "30000"},
                Millis(300000));
  std::cout << run.out << run.err;
  ASSERT_FALSE(run.timed_out) << "the browser scenario did not finish";
  ASSERT_TRUE(run.exit.exited && run.exit.exit_code == 0)
      << "the browser scenario failed (" << run.exit.ToString() << ")";

  // What the browser saw, checked from outside.
  const size_t at = run.out.find("RESULT ");
  ASSERT_NE(at, std::string::npos);
  rapidjson::Document result;
  result.Parse(run.out.substr(at + 7, run.out.find('\n', at) - at - 7).c_str());
  ASSERT_TRUE(result.IsObject() && result.HasMember("msg_id") && result["msg_id"].IsString());
  const std::string msg_id = result["msg_id"].GetString();

  ASSERT_TRUE(WaitFor([&] { return !cluster.node(2).Running(); }, Millis(10000)));
  EXPECT_EQ(cluster.node(2).LastExit().signal, 9) << cluster.node(2).LastExit().ToString();

  HttpResponse r = cluster.node(1).Get("/messages?recipient=dashboard-test");
  ASSERT_EQ(r.status, 200) << r.Describe();
  ASSERT_TRUE(r.json_ok && r.json["messages"].IsArray());
  bool found = false;
  for (const auto& m : r.json["messages"].GetArray()) {
    found = found || std::string(m["msg_id"].GetString()) == msg_id;
  }
  EXPECT_TRUE(found) << "node2 does not hold " << msg_id;
  // The refused quorum send wrote nothing anywhere.
  HttpResponse refused = cluster.node(0).Get("/messages?recipient=dashboard-test");
  ASSERT_EQ(refused.status, 200);
  EXPECT_EQ(refused.json["messages"].Size(), 1u) << refused.Describe();

  EXPECT_TRUE(IsPng(screenshot)) << screenshot;
  EXPECT_GT(fs::file_size(screenshot), 10000u);
}

}  // namespace
}  // namespace dsm::testing

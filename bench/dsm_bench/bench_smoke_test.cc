// Smoke test of dsm-bench: `dsm-bench --quick --smoke` (tiny counts) against its own local
// cluster must exit 0 and write a well-formed JSON report with every section and a complete SVG.
// `--compare etcd` must skip with one line and exit 0 when there is no etcd, and, when Debian's
// etcd-server is installed, measure a 3-member etcd cluster (skipped when it is not installed).
// Timings are never checked: the tests pass on a loaded machine as long as the benchmark runs.

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

namespace dsm::bench {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void ExpectLatency(const rapidjson::Value& obj, const char* key, const std::string& where) {
  ASSERT_TRUE(obj.HasMember(key)) << where << " has no " << key;
  const rapidjson::Value& l = obj[key];
  ASSERT_TRUE(l.IsObject()) << where << "." << key;
  for (const char* f : {"count", "p50", "p90", "p99", "p99_9", "max"}) {
    EXPECT_TRUE(l.HasMember(f) && l[f].IsNumber()) << where << "." << key << "." << f;
  }
}

void ExpectRun(const rapidjson::Value& run, const std::string& where) {
  ASSERT_TRUE(run.IsObject()) << where;
  for (const char* f : {"mode", "loop"}) {
    EXPECT_TRUE(run.HasMember(f) && run[f].IsString()) << where << "." << f;
  }
  for (const char* f : {"clients", "messages", "throughput_per_s", "error_count"}) {
    EXPECT_TRUE(run.HasMember(f) && run[f].IsNumber()) << where << "." << f;
  }
  const bool open = run.HasMember("loop") && run["loop"] == "open";
  ExpectLatency(run, open ? "latency_ms_from_intended" : "latency_ms", where);
  ASSERT_TRUE(run.HasMember("replication") && run["replication"].IsObject()) << where;
  ExpectLatency(run["replication"], "e2e_ms", where + ".replication");
  ASSERT_TRUE(run.HasMember("ratios") && run["ratios"].IsObject()) << where;
  EXPECT_TRUE(run["ratios"].HasMember("p50_to_base")) << where;
  EXPECT_TRUE(run["ratios"].HasMember("throughput_to_ceiling")) << where;
  EXPECT_TRUE(run.HasMember("cpu_pct") && run["cpu_pct"].IsObject()) << where;
}

// etcd on $PATH, or empty.
std::string EtcdOnPath() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && access((dir + "/etcd").c_str(), X_OK) == 0) return dir + "/etcd";
  }
  return "";
}

// Runs dsm-bench with `args` (plus --no-progress and a data directory in `dir`), expects exit 0
// and returns its stdout; *doc gets the JSON report.
std::string RunBench(const testing::TempDir& dir, std::vector<std::string> args,
                     rapidjson::Document* doc) {
  const std::string json_path = dir.Sub("report.json");
  std::vector<std::string> argv = {testing::BinaryPath("dsm-bench"),
                                   "--no-progress",
                                   "--json",
                                   json_path,
                                   "--data-dir",
                                   dir.Sub("data")};
  argv.insert(argv.end(), args.begin(), args.end());
  testing::RunResult r = testing::RunToExit(argv, std::chrono::milliseconds(200000));
  EXPECT_FALSE(r.timed_out) << "dsm-bench did not finish; stdout:\n"
                            << r.out << "\nstderr:\n"
                            << r.err;
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 0) << r.exit.ToString() << "\nstdout:\n"
                                                      << r.out << "\nstderr:\n"
                                                      << r.err;
  const std::string json = ReadAll(json_path);
  doc->Parse(json.data(), json.size());
  EXPECT_FALSE(doc->HasParseError()) << "the JSON report does not parse:\n" << json;
  return r.out;
}

TEST(BenchSmokeTest, RunsAndWritesEverySection) {
  testing::TempDir dir;
  const std::string json_path = dir.Sub("report.json");
  const std::string svg_path = dir.Sub("report.svg");
  testing::RunResult r =
      testing::RunToExit({testing::BinaryPath("dsm-bench"), "--quick", "--smoke", "--no-progress",
                          "--json", json_path, "--svg", svg_path, "--data-dir", dir.Sub("data")},
                         std::chrono::milliseconds(200000));
  ASSERT_FALSE(r.timed_out) << "dsm-bench did not finish; stdout:\n"
                            << r.out << "\nstderr:\n"
                            << r.err;
  ASSERT_TRUE(r.exit.exited && r.exit.exit_code == 0) << r.exit.ToString() << "\nstdout:\n"
                                                      << r.out << "\nstderr:\n"
                                                      << r.err;
  EXPECT_NE(r.out.find("Targets (docs/benchmarks.md)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("quorum write at  1 client, means: log_write"), std::string::npos) << r.out;

  const std::string json = ReadAll(json_path);
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  ASSERT_FALSE(doc.HasParseError()) << "the JSON report does not parse:\n" << json;
  ASSERT_TRUE(doc.IsObject());
  for (const char* section : {"machine", "config", "baselines", "publish", "quorum_write_stages",
                              "etcd", "replication", "batch", "catch_up"}) {
    ASSERT_TRUE(doc.HasMember(section) && doc[section].IsObject()) << "no section " << section;
  }
  EXPECT_EQ(std::string(doc["profile"].GetString()), "smoke");

  const rapidjson::Value& base = doc["baselines"];
  for (const char* b : {"fsync", "http_1", "http_ceiling"}) {
    ASSERT_TRUE(base.HasMember(b) && base[b].IsObject()) << "no baseline " << b;
    ExpectLatency(base[b], "latency_ms", std::string("baselines.") + b);
  }
  EXPECT_TRUE(base.HasMember("base_latency_ms") && base["base_latency_ms"].IsNumber());
  EXPECT_TRUE(base.HasMember("ceiling_per_s") && base["ceiling_per_s"].IsNumber());

  const rapidjson::Value& closed = doc["publish"]["closed_loop"];
  ASSERT_TRUE(closed.IsArray());
  // Two modes at the smoke profile's two client counts.
  ASSERT_EQ(closed.Size(), 4u);
  for (rapidjson::SizeType i = 0; i < closed.Size(); ++i) {
    ExpectRun(closed[i], "closed_loop[" + std::to_string(i) + "]");
  }
  EXPECT_EQ(std::string(closed[0]["mode"].GetString()), "async");
  EXPECT_EQ(std::string(closed[3]["mode"].GetString()), "sync_quorum");
  const rapidjson::Value& open = doc["publish"]["open_loop"];
  ASSERT_TRUE(open.IsArray());
  ASSERT_EQ(open.Size(), 2u);
  for (rapidjson::SizeType i = 0; i < open.Size(); ++i) {
    ExpectRun(open[i], "open_loop[" + std::to_string(i) + "]");
    ExpectLatency(open[i], "service_ms", "open_loop");
  }

  EXPECT_TRUE(doc["replication"].HasMember("method"));
  ExpectLatency(doc["replication"], "e2e_ms", "replication");
  EXPECT_TRUE(doc["replication"].HasMember("fully_replicated_per_s"));
  for (const char* f : {"accepted_per_s", "fully_replicated_per_s", "messages"}) {
    EXPECT_TRUE(doc["batch"].HasMember(f) && doc["batch"][f].IsNumber()) << "batch." << f;
  }
  const rapidjson::Value& cu = doc["catch_up"];
  ASSERT_TRUE(cu.HasMember("ran") && cu["ran"].IsBool());
  EXPECT_TRUE(cu["ran"].GetBool()) << "the local cluster's catch-up phase did not run";
  for (const char* f : {"messages", "seconds", "messages_per_s"}) {
    EXPECT_TRUE(cu.HasMember(f) && cu[f].IsNumber()) << "catch_up." << f;
  }

  // The stage breakdown of every sync_quorum closed-loop run, from the node's histograms.
  const rapidjson::Value& stages = doc["quorum_write_stages"]["runs"];
  ASSERT_TRUE(stages.IsArray());
  ASSERT_EQ(stages.Size(), 2u);
  for (const auto& st : stages.GetArray()) {
    EXPECT_TRUE(st["measured"].GetBool()) << (st.HasMember("error") ? st["error"].GetString() : "");
    for (const char* f : {"log_write", "core_queue", "quorum_wait", "push_round_trip", "peer_write",
                          "total_in_node"}) {
      ASSERT_TRUE(st.HasMember(f) && st[f].IsObject()) << "stage " << f;
      EXPECT_GT(st[f]["count"].GetUint64(), 0u) << "stage " << f << " observed nothing";
      EXPECT_TRUE(st[f]["mean_ms"].IsNumber() && st[f]["p50_ms"].IsNumber()) << f;
    }
  }
  EXPECT_FALSE(doc["etcd"]["requested"].GetBool());

  ASSERT_TRUE(doc.HasMember("targets") && doc["targets"].IsArray());
  EXPECT_EQ(doc["targets"].Size(), 5u);
  for (const auto& t : doc["targets"].GetArray()) {
    EXPECT_TRUE(t.HasMember("name") && t.HasMember("goal") && t.HasMember("met") &&
                t.HasMember("kind"));
  }

  const std::string svg = ReadAll(svg_path);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u) << svg.substr(0, 200);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
}

// The scale phase at the smoke profile's size (2000 messages): every figure is measured, the new
// empty peer catches up and its directory verifies.
TEST(BenchSmokeTest, ScalePhaseMeasuresEveryFigure) {
  testing::TempDir dir;
  rapidjson::Document doc;
  const std::string out = RunBench(dir, {"--smoke", "--phases", "scale"}, &doc);
  EXPECT_NE(out.find("Scale (random 100-byte payloads"), std::string::npos) << out;
  ASSERT_TRUE(doc.IsObject() && doc.HasMember("scale") && doc["scale"].IsObject());
  const rapidjson::Value& sc = doc["scale"];
  EXPECT_TRUE(sc["ran"].GetBool());
  ASSERT_TRUE(sc["points"].IsArray());
  ASSERT_EQ(sc["points"].Size(), 2u);  // the start and 2000 messages
  const rapidjson::Value& start = sc["points"][0];
  const rapidjson::Value& p = sc["points"][1];
  EXPECT_GE(p["messages"].GetUint64(), 2000u);
  EXPECT_GT(start["send_quorum_latency_ms"]["count"].GetUint64(), 0u);
  EXPECT_GT(p["send_quorum_latency_ms"]["count"].GetUint64(), 0u);
  EXPECT_GT(p["disk_bytes_per_message"].GetDouble(), 0);
  ASSERT_TRUE(p["rss_bytes"].IsArray());
  ASSERT_EQ(p["rss_bytes"].Size(), 3u);
  for (const auto& rss : p["rss_bytes"].GetArray()) EXPECT_GT(rss.GetUint64(), 0u);
  EXPECT_TRUE(p["catchup_complete"].GetBool());
  EXPECT_GT(p["catchup_per_s"].GetDouble(), 0);
  EXPECT_TRUE(p["verify_ran"].GetBool());
  EXPECT_FALSE(p.HasMember("verify_error")) << p["verify_error"].GetString();
  EXPECT_EQ(p["verify_records"].GetUint64(), p["messages"].GetUint64());
  int scale_targets = 0;
  for (const auto& t : doc["targets"].GetArray()) {
    if (std::string(t["name"].GetString()).rfind("scale at ", 0) != 0) continue;
    ++scale_targets;
    EXPECT_TRUE(t["measured"].GetBool()) << t["name"].GetString();
  }
  EXPECT_EQ(scale_targets, 5);
}

// Without etcd, --compare etcd prints one line saying so and the run goes on.
TEST(BenchSmokeTest, CompareEtcdWithoutEtcdSkipsTheComparison) {
  testing::TempDir dir;
  rapidjson::Document doc;
  const std::string out =
      RunBench(dir,
               {"--smoke", "--compare", "etcd", "--etcd-binary", dir.Sub("no-such-etcd"),
                "--phases", "closed", "--clients", "1"},
               &doc);
  EXPECT_NE(out.find("etcd side by side: skipped - no executable etcd at"), std::string::npos)
      << out;
  ASSERT_TRUE(doc.IsObject() && doc.HasMember("etcd"));
  EXPECT_TRUE(doc["etcd"]["requested"].GetBool());
  EXPECT_FALSE(doc["etcd"]["ran"].GetBool());
  EXPECT_TRUE(doc["etcd"].HasMember("skipped"));
  ASSERT_EQ(doc["publish"]["closed_loop"].Size(), 2u) << "dsm's runs did not run";
  // The three etcd targets are listed, not measured.
  int etcd_targets = 0;
  for (const auto& t : doc["targets"].GetArray()) {
    if (std::string(t["kind"].GetString()) != "ratio to etcd") continue;
    ++etcd_targets;
    EXPECT_FALSE(t["measured"].GetBool());
  }
  EXPECT_EQ(etcd_targets, 3);
}

// With Debian's etcd-server installed: a 3-member etcd cluster is started, loaded and stopped.
TEST(BenchSmokeTest, CompareEtcdMeasuresEtcd) {
  const std::string etcd = EtcdOnPath();
  if (etcd.empty()) GTEST_SKIP() << "no etcd on $PATH (apt-get install etcd-server)";
  testing::TempDir dir;
  rapidjson::Document doc;
  const std::string out =
      RunBench(dir, {"--smoke", "--compare", "etcd", "--phases", "closed"}, &doc);
  EXPECT_NE(out.find("etcd side by side (etcd "), std::string::npos) << out;
  ASSERT_TRUE(doc.IsObject() && doc.HasMember("etcd"));
  const rapidjson::Value& e = doc["etcd"];
  ASSERT_TRUE(e["ran"].GetBool()) << (e.HasMember("skipped") ? e["skipped"].GetString() : "");
  ASSERT_EQ(e["closed_loop"].Size(), 2u);  // the smoke profile's etcd client counts: 1, 4
  for (const auto& run : e["closed_loop"].GetArray()) {
    EXPECT_GT(run["messages"].GetUint64(), 0u);
    EXPECT_EQ(run["error_count"].GetUint64(), 0u);
    ExpectLatency(run, "latency_ms", "etcd.closed_loop");
  }
  ASSERT_EQ(e["dsm_to_etcd"].Size(), 2u);
  EXPECT_TRUE(e["dsm_to_etcd"][0]["sync_quorum"]["throughput"].IsNumber());
  // At 1 client both etcd targets are measured (64 clients is not among the smoke counts).
  int measured = 0;
  for (const auto& t : doc["targets"].GetArray()) {
    if (std::string(t["kind"].GetString()) == "ratio to etcd" && t["measured"].GetBool()) {
      ++measured;
    }
  }
  EXPECT_EQ(measured, 2);
  // Its data directories were removed with the run's.
  const std::string run_dir = doc["config"]["run_dir"].GetString();
  EXPECT_FALSE(run_dir.empty());
  EXPECT_FALSE(std::filesystem::exists(run_dir + "/etcd")) << run_dir;
}

// --phases retention: fresh clusters with and without trimming, the medians, and two targets.
TEST(BenchSmokeTest, RetentionPhaseComparesTrimmingWithNoRetention) {
  testing::TempDir dir;
  rapidjson::Document doc;
  const std::string out = RunBench(dir, {"--smoke", "--phases", "retention"}, &doc);
  EXPECT_NE(out.find("Retention: /send (quorum) while every node trims"), std::string::npos)
      << out;
  ASSERT_TRUE(doc.IsObject() && doc.HasMember("retention") && doc["retention"].IsObject());
  const rapidjson::Value& r = doc["retention"];
  EXPECT_TRUE(r["ran"].GetBool());
  ASSERT_TRUE(r["figures"].IsArray());
  ASSERT_EQ(r["figures"].Size(), 4u);  // 1 and 16 clients, each without and with trimming
  for (const auto& f : r["figures"].GetArray()) {
    for (const char* k : {"p50", "p99", "p99_9", "messages_per_s", "trimmed_per_s"}) {
      EXPECT_TRUE(f.HasMember(k) && f[k].IsNumber()) << k;
    }
    ASSERT_TRUE(f["runs"].IsArray());
    EXPECT_EQ(f["runs"].Size(), 1u);  // one repetition in the smoke profile
    EXPECT_EQ(f["errors"].GetUint64(), 0u);
  }
  int targets = 0;
  for (const auto& t : doc["targets"].GetArray()) {
    if (std::string(t["name"].GetString()).rfind("retention:", 0) != 0) continue;
    ++targets;
    EXPECT_TRUE(t["measured"].GetBool()) << t["value"].GetString();
  }
  EXPECT_EQ(targets, 2);
}

// --phases membership: a 4th node added to a fresh cluster under quorum load becomes a voter,
// holds every message at the end, and no write fails in any of the three windows.
TEST(BenchSmokeTest, MembershipPhaseAddsAVoterWithoutErrors) {
  testing::TempDir dir;
  rapidjson::Document doc;
  const std::string out = RunBench(dir, {"--smoke", "--phases", "membership"}, &doc);
  EXPECT_NE(out.find("Membership: a 4th node added under closed-loop quorum /send load"),
            std::string::npos)
      << out;
  ASSERT_TRUE(doc.IsObject() && doc.HasMember("membership") && doc["membership"].IsObject()) << out;
  const rapidjson::Value& m = doc["membership"];
  ASSERT_TRUE(m["ran"].GetBool()) << (m.HasMember("skipped") ? m["skipped"].GetString() : "");
  ASSERT_TRUE(m["runs"].IsArray());
  ASSERT_EQ(m["runs"].Size(), 1u);  // one run in the smoke profile
  const rapidjson::Value& run = m["runs"][0];
  EXPECT_TRUE(run["voter"].GetBool());
  EXPECT_TRUE(run["complete"].GetBool());
  EXPECT_GE(run["preloaded"].GetUint64(), 300u);
  EXPECT_GE(run["final_messages"].GetUint64(), run["preloaded"].GetUint64());
  EXPECT_EQ(run["final_messages"].GetUint64(), run["others_messages"].GetUint64());
  EXPECT_GT(run["to_voter_s"].GetDouble(), 0);
  for (const char* window : {"before", "during", "after"}) {
    ASSERT_TRUE(run.HasMember(window) && run[window].IsObject()) << window;
    EXPECT_GT(run[window]["latency_ms"]["count"].GetUint64(), 0u) << window;
    EXPECT_EQ(run[window]["error_count"].GetUint64(), 0u) << window;
  }
  ASSERT_TRUE(m["windows"].IsArray());
  EXPECT_EQ(m["windows"].Size(), 3u);
  EXPECT_EQ(m["error_count"].GetUint64(), 0u);
  int targets = 0;
  for (const auto& t : doc["targets"].GetArray()) {
    if (std::string(t["name"].GetString()).rfind("membership:", 0) != 0) continue;
    ++targets;
    EXPECT_TRUE(t["measured"].GetBool() && t["met"].GetBool()) << t["value"].GetString();
  }
  EXPECT_EQ(targets, 1);
  // The run's directories (the fresh cluster's and the new node's) were removed.
  const std::string run_dir = doc["config"]["run_dir"].GetString();
  EXPECT_FALSE(run_dir.empty());
  EXPECT_FALSE(std::filesystem::exists(run_dir + "/membership-1")) << run_dir;
}

}  // namespace
}  // namespace dsm::bench

// Smoke test of dsm-bench: `dsm-bench --quick --smoke` (tiny counts) against its own local
// cluster must exit 0 and write a well-formed JSON report with every section and a complete SVG.
// Timings are never checked: the test passes on a loaded machine as long as the benchmark runs.

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <fstream>
#include <sstream>
#include <string>

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

  const std::string json = ReadAll(json_path);
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  ASSERT_FALSE(doc.HasParseError()) << "the JSON report does not parse:\n" << json;
  ASSERT_TRUE(doc.IsObject());
  for (const char* section :
       {"machine", "config", "baselines", "publish", "replication", "batch", "catch_up"}) {
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

  ASSERT_TRUE(doc.HasMember("targets") && doc["targets"].IsArray());
  EXPECT_EQ(doc["targets"].Size(), 5u);
  for (const auto& t : doc["targets"].GetArray()) {
    EXPECT_TRUE(t.HasMember("name") && t.HasMember("goal") && t.HasMember("met"));
  }

  const std::string svg = ReadAll(svg_path);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u) << svg.substr(0, 200);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
}

}  // namespace
}  // namespace dsm::bench

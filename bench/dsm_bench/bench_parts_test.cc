// Unit tests of dsm-bench's pure parts: the /metrics parser and histogram deltas behind the stage
// breakdown, and the base64 encoding of etcd's JSON gateway. Table-driven where there are cases.

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "bench/dsm_bench/etcd_cluster.h"
#include "bench/dsm_bench/metrics_scrape.h"

namespace dsm::bench {
namespace {

TEST(Base64Test, EncodesLikeRfc4648) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
      {std::string("\xff\x00\x80", 3), "/wCA"},
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(Base64(in), want) << in;
}

TEST(EtcdPutBodyTest, KeyEncodedValueAsGiven) {
  EXPECT_EQ(EtcdPutBody("foo", "YmFy"), R"({"key":"Zm9v","value":"YmFy"})");
}

TEST(ParseMetricsTest, SamplesWithAndWithoutLabels) {
  Result<MetricsScrape> m = ParseMetrics(
      "# HELP x_total things\n"
      "# TYPE x_total counter\n"
      "x_total 42\n"
      "\n"
      "h_bucket{stage=\"log_write\",le=\"0.0005\"} 7\n"
      "h_bucket{peer=\"http://a:1\",le=\"+Inf\"} 9\n"
      "esc{v=\"a\\\"b\"} 1.5e-3 1700000000\n");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->size(), 4u);
  EXPECT_EQ((*m)[0].name, "x_total");
  EXPECT_TRUE((*m)[0].labels.empty());
  EXPECT_EQ((*m)[0].value, 42);
  EXPECT_EQ((*m)[1].name, "h_bucket");
  ASSERT_EQ((*m)[1].labels.size(), 2u);
  EXPECT_EQ((*m)[1].labels[0], (std::pair<std::string, std::string>("stage", "log_write")));
  EXPECT_EQ((*m)[1].labels[1].second, "0.0005");
  EXPECT_EQ((*m)[2].labels[0].second, "http://a:1");
  EXPECT_EQ((*m)[3].labels[0].second, "a\"b");
  EXPECT_DOUBLE_EQ((*m)[3].value, 1.5e-3);
}

TEST(ParseMetricsTest, RejectsWhatIsNotASample) {
  for (const char* bad : {"x_total\n", "x{a=\"1\" 3\n", "x{a=1} 3\n", "x notanumber\n"}) {
    EXPECT_FALSE(ParseMetrics(bad).ok()) << bad;
  }
}

// A histogram family h with bounds 0.1 ms, 0.5 ms and 1 ms, in two series (stage a and b).
std::string Scrape(int a1, int a2, int a3, int a_inf, double a_sum, int b_inf) {
  auto series = [](const char* stage, int c1, int c2, int c3, int inf, double sum) {
    std::string s;
    const std::string l = std::string("{stage=\"") + stage + "\",le=\"";
    s += "h_bucket" + l + "0.0001\"} " + std::to_string(c1) + "\n";
    s += "h_bucket" + l + "0.0005\"} " + std::to_string(c2) + "\n";
    s += "h_bucket" + l + "0.001\"} " + std::to_string(c3) + "\n";
    s += "h_bucket" + l + "+Inf\"} " + std::to_string(inf) + "\n";
    s += std::string("h_sum{stage=\"") + stage + "\"} " + std::to_string(sum) + "\n";
    s += std::string("h_count{stage=\"") + stage + "\"} " + std::to_string(inf) + "\n";
    return s;
  };
  return series("a", a1, a2, a3, a_inf, a_sum) + series("b", 0, 0, 0, b_inf, 0.01 * b_inf);
}

TEST(HistogramBetweenTest, DeltasMeanAndInterpolatedQuantile) {
  Result<MetricsScrape> before = ParseMetrics(Scrape(5, 5, 5, 5, 0.0004, 1));
  // Between the scrapes stage a saw 10 observations: 2 <= 0.1 ms, 8 in (0.1, 0.5] ms, summing
  // to 2.4 ms.
  Result<MetricsScrape> after = ParseMetrics(Scrape(7, 15, 15, 15, 0.0028, 3));
  ASSERT_TRUE(before.ok() && after.ok());
  HistogramDelta a = HistogramBetween(*before, *after, "h", {{"stage", "a"}});
  EXPECT_EQ(a.count, 10);
  EXPECT_NEAR(a.MeanMs(), 0.24, 1e-9);
  ASSERT_EQ(a.bounds.size(), 3u);  // +Inf is the count
  EXPECT_EQ(a.cumulative, (std::vector<double>{2, 10, 10}));
  // The 5th of 10 lies 3/8 into (0.1, 0.5] ms.
  EXPECT_NEAR(a.QuantileMs(0.5), 0.1 + 0.4 * 3.0 / 8.0, 1e-9);
  EXPECT_NEAR(a.QuantileMs(0.1), 0.05, 1e-9);  // inside the first bucket, from 0

  // An empty match takes every series; b's observations are all above the last bound.
  HistogramDelta all = HistogramBetween(*before, *after, "h", {});
  EXPECT_EQ(all.count, 12);
  EXPECT_NEAR(all.QuantileMs(0.99), 1.0, 1e-9);  // +Inf: the largest finite bound

  HistogramDelta sum = Add(a, HistogramBetween(*before, *after, "h", {{"stage", "b"}}));
  EXPECT_EQ(sum.count, 12);
  EXPECT_EQ(Add(HistogramDelta{}, a).count, 10);

  HistogramDelta none = HistogramBetween(*before, *after, "missing", {});
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.MeanMs(), 0);
  EXPECT_EQ(none.QuantileMs(0.5), 0);
}

}  // namespace
}  // namespace dsm::bench

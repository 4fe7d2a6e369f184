// Regression tests for a fuzz finding: RapidJSON 1.1's full-precision parser returned garbage for
// numbers with an all-zero significand and an exponent ({"ts":0e308} stored ts -6e-269). See
// src/http/json_numbers.h; the crashing input is kept in fuzz/corpus/json/.
#include "src/http/json_numbers.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "src/http/json_codec.h"

namespace dsm::json {
namespace {

std::string Rewrite(const std::string& in) {
  std::string out;
  return RewriteZeroExponentNumbers(in, &out) ? out : in;
}

TEST(JsonNumbersTest, RewritesOnlyZeroSignificandsWithExponents) {
  EXPECT_EQ(Rewrite("0e308"), "0.0  ");
  EXPECT_EQ(Rewrite("-0e100"), "-0.0  ");
  EXPECT_EQ(Rewrite("[0.000E+300,1]"), "[0.0       ,1]");
  EXPECT_EQ(Rewrite("{\"ts\":0e5}"), "{\"ts\":0.0}");
  // Left alone: nonzero significands, zeros without exponent, strings, and what is not a number.
  for (const std::string same :
       {"1e308", "0.5e10", "10e3", "0", "-0", "0.000", "\"0e308\"", "\"a\\\"0e308\"", "00e30",
        "0e", "0e+", "e5", "-", "true", "[1,2.5,-3e-7]"}) {
    EXPECT_EQ(Rewrite(same), same);
  }
}

TEST(JsonNumbersTest, ParseReadsZeroExponentNumbersAsZero) {
  Result<rapidjson::Document> d = Parse(R"({"a":0e308,"b":-0e100,"c":0.000e300,"d":0e400,)"
                                        R"("e":1e308,"f":"0e308"})");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ((*d)["a"].GetDouble(), 0.0);
  EXPECT_EQ((*d)["b"].GetDouble(), 0.0);
  EXPECT_TRUE(std::signbit((*d)["b"].GetDouble()));
  EXPECT_EQ((*d)["c"].GetDouble(), 0.0);
  EXPECT_EQ((*d)["d"].GetDouble(), 0.0);
  EXPECT_EQ((*d)["e"].GetDouble(), 1e308);
  EXPECT_STREQ((*d)["f"].GetString(), "0e308");

  Result<Message> m =
      ParseMessage(*Parse(R"({"payload":"p","ts":0e308})"), MessageSource::kClient, 100);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->ts, 0.0);
}

TEST(JsonNumbersTest, InvalidJsonStaysInvalidAtTheSameOffset) {
  Result<rapidjson::Document> d = Parse(R"({"a":00e30})");
  ASSERT_FALSE(d.ok());
  Result<rapidjson::Document> e = Parse(R"({"a":0e30 x})");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("offset 10"), std::string::npos) << e.status().ToString();
}

}  // namespace
}  // namespace dsm::json

// Table-driven tests of query-string handling: percent-decoding and GET /messages parameters.
#include "src/http/query.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <utility>

namespace dsm::http {
namespace {

TEST(PercentDecodeTest, Table) {
  struct Case {
    const char* name;
    std::string in;
    bool ok;
    std::string out;  // decoded value, or the error message
  } cases[] = {
      {"plain", "alice", true, "alice"},
      {"empty", "", true, ""},
      {"space as %20", "a%20b", true, "a b"},
      {"space as plus", "a+b", true, "a b"},
      {"literal plus", "a%2Bb", true, "a+b"},
      {"lower-case hex", "%c3%a9", true, "\xc3\xa9"},
      {"upper-case hex", "%C3%A9", true, "\xc3\xa9"},
      {"percent itself", "100%25", true, "100%"},
      {"nul byte", "a%00b", true, std::string("a\0b", 3)},
      {"truncated escape at end", "abc%4", false, "invalid percent-encoding in 'sender'"},
      {"lone percent", "%", false, "invalid percent-encoding in 'sender'"},
      {"non-hex escape", "%zz", false, "invalid percent-encoding in 'sender'"},
      {"half hex", "%4g", false, "invalid percent-encoding in 'sender'"},
      {"invalid utf-8", "%ff%fe", false, "'sender' is not valid UTF-8"},
      {"overlong utf-8", "%c0%af", false, "'sender' is not valid UTF-8"},
      {"surrogate", "%ed%a0%80", false, "'sender' is not valid UTF-8"},
      {"raw invalid byte", "\xff", false, "'sender' is not valid UTF-8"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Result<std::string> r = PercentDecode(c.in, "sender");
    ASSERT_EQ(r.ok(), c.ok) << r.status().ToString();
    if (c.ok) {
      EXPECT_EQ(*r, c.out);
    } else {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
      EXPECT_EQ(r.status().message(), c.out);
    }
  }
}

ListingQuery Expect(uint64_t after, std::optional<size_t> limit = std::nullopt,
                    std::optional<std::string> sender = std::nullopt,
                    std::optional<std::string> recipient = std::nullopt) {
  ListingQuery q;
  q.after = after;
  q.limit = limit;
  q.sender = std::move(sender);
  q.recipient = std::move(recipient);
  return q;
}

TEST(ParseListingQueryTest, Table) {
  struct Case {
    const char* name;
    std::map<std::string, std::string> raw;
    const char* error;    // nullptr when valid
    ListingQuery expect;  // when valid
  } cases[] = {
      {"nothing", {}, nullptr, Expect(0)},
      {"after", {{"after", "42"}}, nullptr, Expect(42)},
      {"after zero", {{"after", "0"}}, nullptr, Expect(0)},
      {"after max", {{"after", "18446744073709551615"}}, nullptr, Expect(UINT64_MAX)},
      {"limit bounds low", {{"limit", "1"}}, nullptr, Expect(0, 1)},
      {"limit bounds high", {{"limit", "10000"}}, nullptr, Expect(0, 10000)},
      {"filters decoded",
       {{"sender", "user%201"}, {"recipient", "b+c"}},
       nullptr,
       Expect(0, std::nullopt, "user 1", "b c")},
      {"unknown names ignored", {{"foo", "%zz"}, {"after", "3"}}, nullptr, Expect(3)},
      {"everything",
       {{"after", "5"}, {"limit", "20"}, {"sender", "a"}, {"recipient", "b"}},
       nullptr,
       Expect(5, 20, "a", "b")},
      {"limit=abc", {{"limit", "abc"}}, "'limit' must be an integer from 1 to 10000", {}},
      {"limit=0", {{"limit", "0"}}, "'limit' must be an integer from 1 to 10000", {}},
      {"limit too big", {{"limit", "10001"}}, "'limit' must be an integer from 1 to 10000", {}},
      {"limit empty", {{"limit", ""}}, "'limit' must be an integer from 1 to 10000", {}},
      {"limit negative", {{"limit", "-1"}}, "'limit' must be an integer from 1 to 10000", {}},
      {"limit with space", {{"limit", "5%20"}}, "'limit' must be an integer from 1 to 10000", {}},
      {"limit huge",
       {{"limit", "99999999999999999999999"}},
       "'limit' must be an integer from 1 to 10000",
       {}},
      {"after=-3", {{"after", "-3"}}, "'after' must be a non-negative integer", {}},
      {"after fraction", {{"after", "1.5"}}, "'after' must be a non-negative integer", {}},
      {"after above 2^64",
       {{"after", "18446744073709551616"}},
       "'after' must be a non-negative integer",
       {}},
      {"after plus sign", {{"after", "%2B3"}}, "'after' must be a non-negative integer", {}},
      {"after bad escape", {{"after", "%"}}, "invalid percent-encoding in 'after'", {}},
      {"sender empty", {{"sender", ""}}, "'sender' must be 1..256 bytes", {}},
      {"sender too long", {{"sender", std::string(257, 's')}}, "'sender' must be 1..256 bytes", {}},
      {"recipient invalid utf-8", {{"recipient", "%ff"}}, "'recipient' is not valid UTF-8", {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Result<ListingQuery> q = ParseListingQuery(c.raw);
    if (c.error != nullptr) {
      ASSERT_FALSE(q.ok());
      EXPECT_EQ(q.status().code(), Code::kInvalidArgument);
      EXPECT_EQ(q.status().message(), c.error);
      continue;
    }
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    EXPECT_EQ(q->after, c.expect.after);
    EXPECT_EQ(q->limit, c.expect.limit);
    EXPECT_EQ(q->sender, c.expect.sender);
    EXPECT_EQ(q->recipient, c.expect.recipient);
  }
}

}  // namespace
}  // namespace dsm::http

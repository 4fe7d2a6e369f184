// Table-driven tests of the JSON codec: parsing hostile bodies, message field rules for client and
// peer messages, writers, peer reply decoding and the HTTP status <-> Code mapping.
#include "src/http/json_codec.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace dsm::json {
namespace {

constexpr size_t kLimit = 1000;  // payload limit used by the tables

std::string Repeat(char c, size_t n) { return std::string(n, c); }

// ---------------------------------------------------------------------------------------------
// Parse

struct ParseCase {
  const char* name;
  std::string body;
  bool ok;
  const char* error_part;  // expected in the error message when !ok
};

std::vector<ParseCase> ParseCases() {
  return {
      {"object", R"({"a":1})", true, ""},
      {"array", "[1,2,3]", true, ""},
      {"string", R"("hi")", true, ""},
      {"whitespace around", " \t\n{}\r\n ", true, ""},
      {"escaped nul inside string", R"({"a":"x\u0000y"})", true, ""},
      {"utf-8 text", "{\"a\":\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"}", true, ""},
      {"deep nesting closed", Repeat('[', 100000) + Repeat(']', 100000), true, ""},
      {"empty body", "", false, "offset 0"},
      {"only whitespace", "   ", false, "invalid JSON"},
      {"truncated object", "{", false, "invalid JSON at offset 1"},
      {"truncated string", R"({"a":"abc)", false, "invalid JSON"},
      {"trailing garbage", "{} x", false, "invalid JSON at offset 3"},
      {"two roots", "{}{}", false, "invalid JSON"},
      {"raw nul inside", std::string("{\"a\":\0}", 7), false, "offset 5: NUL byte"},
      {"raw nul after value", std::string("{}\0garbage", 10), false, "offset 2: NUL byte"},
      {"invalid utf-8 ff", "{\"a\":\"\xff\xfe\xfd\"}", false, "invalid JSON"},
      {"overlong utf-8", "{\"a\":\"\xc0\xaf\"}", false, "invalid JSON"},
      {"surrogate bytes", "{\"a\":\"\xed\xa0\x80\"}", false, "invalid JSON"},
      {"truncated utf-8", "{\"a\":\"\xe2\x82\"}", false, "invalid JSON"},
      {"number too big", "[1e400]", false, "offset 1: Number too big to be stored in double."},
      {"negative number too big", "[-1e400]", false, "offset 1: Number too big"},
      // Within RapidJSON's exponent check but beyond DBL_MAX: refused by the codec's conversion,
      // at the same offset and with the same reason.
      {"just above DBL_MAX", R"({"a":1.7976931348623159e308})", false,
       "offset 5: Number too big to be stored in double."},
      {"2e308", "[2e308]", false, "offset 1: Number too big to be stored in double."},
      {"long significand with exponent",
       R"({"ts":111111111111111111111111111111111111111110e308,"payload":"p"})", false,
       "offset 6: Number too big to be stored in double."},
      {"integer of 400 digits", "[" + Repeat('9', 400) + "]", false, "offset 1: Number too big"},
      // RapidJSON's scanner refuses an exponent above 308 (plus the fraction digits) before any
      // conversion, whatever the significand.
      {"zero significand with exponent 400", "[0e400]", false, "offset 1: Number too big"},
      {"leading zero before exponent", R"({"a":00e30})", false, "invalid JSON at offset 6"},
      {"exponent without digits", "[1e]", false, "offset 3: Miss exponent in number."},
      {"fraction without digits", "[1.]", false, "offset 3: Miss fraction part in number."},
      {"garbage after a number", R"({"a":0e30 x})", false, "invalid JSON at offset 10"},
      {"plus sign", "[+1]", false, "offset 1: Invalid value."},
      {"lone high surrogate escape", R"(["\ud800"])", false, "surrogate"},
      {"bad escape", R"(["\q"])", false, "Invalid escape"},
      {"single quotes", "{'a':1}", false, "invalid JSON"},
      {"trailing comma", "[1,]", false, "invalid JSON"},
      {"nan literal", "[NaN]", false, "invalid JSON"},
      {"deep nesting unclosed", Repeat('[', 100000), false, "invalid JSON"},
      {"deep objects unclosed",
       [] {
         std::string s;
         for (int i = 0; i < 100000; ++i) s += "{\"a\":";
         return s;
       }(),
       false, "invalid JSON"},
      {"control char in string", "[\"a\x01\"]", false, "invalid JSON"},
  };
}

TEST(JsonParseTest, Table) {
  for (const ParseCase& c : ParseCases()) {
    SCOPED_TRACE(c.name);
    Result<rapidjson::Document> r = Parse(c.body);
    EXPECT_EQ(r.ok(), c.ok) << r.status().ToString();
    if (!c.ok && !r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
      EXPECT_NE(r.status().message().find(c.error_part), std::string::npos) << r.status().message();
    }
  }
}

// Bodies that are all ASCII are parsed without RapidJSON's encoding check, so the check that finds
// a byte above 0x7F (eight bytes at a time, then one by one) must find it wherever it sits: in
// each position of a word, in the last bytes that fill no word, first and last.
TEST(JsonParseTest, ANonAsciiByteAnywhereIsStillCheckedAsUtf8) {
  const std::string text(37, 'x');
  const std::string prefix = "{\"a\":\"";
  for (size_t i = 0; i < text.size(); ++i) {
    SCOPED_TRACE("byte " + std::to_string(i) + " of the string");
    std::string bad = text;
    bad[i] = '\xff';
    Result<rapidjson::Document> r = Parse(prefix + bad + "\"}");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "invalid JSON at offset " + std::to_string(prefix.size() + i) +
                                        ": Invalid encoding in string.");
    std::string good = text;
    good.replace(i, 1, "\xc3\xa9");  // é
    Result<rapidjson::Document> ok = Parse(prefix + good + "\"}");
    ASSERT_TRUE(ok.ok()) << ok.status().ToString();
    EXPECT_EQ((*ok)["a"].GetString(), good);
  }
}

TEST(JsonParseTest, DeepNestingInsideMessageFieldIsRejectedByFieldRules) {
  std::string body = "{\"payload\":" + Repeat('[', 100000) + Repeat(']', 100000) + "}";
  Result<rapidjson::Document> doc = Parse(body);
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  Result<Message> m = ParseMessage(*doc, MessageSource::kClient, kLimit);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message(), "'payload' must be a string");
}

TEST(JsonParseTest, FullPrecisionNumbers) {
  Result<rapidjson::Document> doc = Parse("[1700000000.1234567, 18446744073709551615]");
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ((*doc)[0].GetDouble(), 1700000000.1234567);
  EXPECT_EQ((*doc)[1].GetUint64(), UINT64_MAX);
}

// ---------------------------------------------------------------------------------------------
// Numbers: converted by the codec, typed as RapidJSON types them

uint64_t Bits(double d) { return std::bit_cast<uint64_t>(d); }

// The one value of `[text]`.
Result<rapidjson::Document> ParseNumber(const std::string& text) { return Parse("[" + text + "]"); }

// Integers get the same type flags as RapidJSON's own parsing gives them (its default parser:
// integers never reach its string-to-double code), so field checks such as IsUint64() keep their
// meaning; fractions and exponents are doubles.
TEST(JsonNumbersTest, TypesMatchRapidJson) {
  // Around each limit of Int, Uint, Int64 and Uint64, then numbers that are doubles.
  const char* texts[] = {"0",
                         "-0",
                         "1",
                         "-1",
                         "2147483647",
                         "2147483648",
                         "-2147483648",
                         "-2147483649",
                         "4294967295",
                         "4294967296",
                         "9223372036854775807",
                         "9223372036854775808",
                         "-9223372036854775808",
                         "-9223372036854775809",
                         "18446744073709551615",
                         "18446744073709551616",
                         "1.5",
                         "-0.0",
                         "1.0",
                         "1e2",
                         "1E+2",
                         "5e-324",
                         "0.5e1"};
  for (const char* text : texts) {
    SCOPED_TRACE(text);
    Result<rapidjson::Document> ours = ParseNumber(text);
    ASSERT_TRUE(ours.ok()) << ours.status().ToString();
    rapidjson::Document theirs;
    theirs.Parse(std::string("[") + text + "]");
    ASSERT_FALSE(theirs.HasParseError());
    const rapidjson::Value& a = (*ours)[0];
    const rapidjson::Value& b = theirs[0];
    EXPECT_EQ(a.IsInt(), b.IsInt());
    EXPECT_EQ(a.IsUint(), b.IsUint());
    EXPECT_EQ(a.IsInt64(), b.IsInt64());
    EXPECT_EQ(a.IsUint64(), b.IsUint64());
    EXPECT_EQ(a.IsDouble(), b.IsDouble());
    if (b.IsInt64()) {
      EXPECT_EQ(a.GetInt64(), b.GetInt64());
    }
    if (b.IsUint64()) {
      EXPECT_EQ(a.GetUint64(), b.GetUint64());
    }
  }
}

TEST(JsonNumbersTest, IntegerLimits) {
  Result<rapidjson::Document> d = Parse(
      "[-9223372036854775808,9223372036854775807,18446744073709551615,-2147483648,4294967295,-0]");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const rapidjson::Value& v = *d;
  EXPECT_TRUE(v[0].IsInt64());
  EXPECT_FALSE(v[0].IsUint64());
  EXPECT_EQ(v[0].GetInt64(), INT64_MIN);
  EXPECT_TRUE(v[1].IsInt64());
  EXPECT_TRUE(v[1].IsUint64());
  EXPECT_EQ(v[1].GetInt64(), INT64_MAX);
  EXPECT_TRUE(v[2].IsUint64());
  EXPECT_FALSE(v[2].IsInt64());
  EXPECT_EQ(v[2].GetUint64(), UINT64_MAX);
  EXPECT_TRUE(v[3].IsInt());
  EXPECT_EQ(v[3].GetInt(), INT32_MIN);
  EXPECT_TRUE(v[4].IsUint());
  EXPECT_FALSE(v[4].IsInt());
  EXPECT_EQ(v[4].GetUint(), UINT32_MAX);
  // "-0" is the integer 0, as RapidJSON reads it.
  EXPECT_TRUE(v[5].IsUint64());
  EXPECT_EQ(v[5].GetUint64(), 0u);
}

TEST(JsonNumbersTest, DoublesAreCorrectlyRounded) {
  struct Case {
    std::string text;
    double value;
  } cases[] = {
      {"1.5", 1.5},
      {"0.1", 0.1},
      {"-0.0", -0.0},
      {"5e-324", std::numeric_limits<double>::denorm_min()},
      {"-5e-324", -std::numeric_limits<double>::denorm_min()},
      {"2.2250738585072011e-308", 2.2250738585072011e-308},
      {"1.7976931348623157e308", std::numeric_limits<double>::max()},
      {"1e308", 1e308},
      {"0.0000000001e310", 1e300},
      // Zero significands with exponents (RapidJSON's full-precision parser returned garbage).
      {"0e308", 0.0},
      {"-0e100", -0.0},
      {"0.000E+300", 0.0},
      {"0e-99999999999", 0.0},
      // Below the smallest subnormal: the nearest double is a zero of the same sign.
      {"2e-324", 0.0},
      {"1e-400", 0.0},
      {"-1e-400", -0.0},
      {"1" + std::string(30, '0') + "e-9999", 0.0},
      // Integers beyond 64 bits are doubles.
      {"18446744073709551616", 18446744073709551616.0},
      {"-9223372036854775809", -9223372036854775808.0},
      {"123456789012345678901234567890", 1.2345678901234568e29},
      // Halfway between 2^53 and 2^53 + 2: only the last digit decides.
      {"9007199254740993.0", 9007199254740992.0},
      {"9007199254740993.00000000000000000000000000001", 9007199254740994.0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    Result<rapidjson::Document> d = ParseNumber(c.text);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    ASSERT_TRUE((*d)[0].IsDouble());
    EXPECT_EQ(Bits((*d)[0].GetDouble()), Bits(c.value)) << (*d)[0].GetDouble();
  }
}

TEST(JsonNumbersTest, StringsThatLookLikeNumbersStayStrings) {
  Result<rapidjson::Document> d = Parse(R"({"a":"0e308","b":"1e400","0e308":1})");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_STREQ((*d)["a"].GetString(), "0e308");
  EXPECT_STREQ((*d)["b"].GetString(), "1e400");
  EXPECT_EQ((*d)["0e308"].GetUint64(), 1u);
}

// What fuzz_json found (fuzz/corpus/json/crash-long-significand-exponent): numbers beyond DBL_MAX
// that pass RapidJSON's exponent check made its full-precision conversion read past a table
// (undefined behaviour) or return garbage (the first body below gave ts -3.4e-268). They are
// refused, at the offset of the number.
TEST(JsonNumbersTest, FuzzFindingLongSignificandWithExponent) {
  const std::string bodies[] = {
      R"({"ts":111111111111111111111111111111111111111110e308,"payload":"x"})",
      "{\"ts\":" + Repeat('1', 60) + "0e308,\"sender\":\"a\",\"payload\":\"p\"}",
  };
  for (const std::string& body : bodies) {
    Result<rapidjson::Document> d = Parse(body);
    ASSERT_FALSE(d.ok()) << body;
    EXPECT_EQ(d.status().code(), Code::kInvalidArgument);
    EXPECT_EQ(d.status().message(),
              "invalid JSON at offset 6: Number too big to be stored in double.");
  }
  // The same digits with a small exponent are an ordinary (rounded) timestamp.
  Result<rapidjson::Document> ok =
      Parse(R"({"ts":111111111111111111111111111111111111111110e-36})");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  Result<Message> m = ParseMessage(*ok, MessageSource::kClient, kLimit);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->ts, 111111111111111111111111111111111111111110e-36);
}

TEST(JsonNumbersTest, ZeroExponentTimestamps) {
  for (const char* body : {R"({"payload":"p","ts":0e308})", R"({"payload":"p","ts":-0e100})"}) {
    SCOPED_TRACE(body);
    Result<rapidjson::Document> d = Parse(body);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    Result<Message> m = ParseMessage(*d, MessageSource::kClient, kLimit);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->ts, 0.0);
  }
}

// ---------------------------------------------------------------------------------------------
// ParseMessage

struct MessageCase {
  const char* name;
  MessageSource source;
  std::string json;
  Code code;                      // kOk when valid
  std::string error;              // exact message when invalid
  std::optional<Message> expect;  // full expected message when valid
};

Message Msg(std::string msg_id, std::string sender, std::string recipient, std::string payload,
            double ts, std::string origin = "", uint64_t origin_seq = 0, uint64_t seq = 0) {
  Message m;
  m.msg_id = std::move(msg_id);
  m.sender = std::move(sender);
  m.recipient = std::move(recipient);
  m.payload = std::move(payload);
  m.ts = ts;
  m.origin = std::move(origin);
  m.origin_seq = origin_seq;
  m.seq = seq;
  return m;
}

std::vector<MessageCase> MessageCases() {
  const auto kC = MessageSource::kClient;
  const auto kP = MessageSource::kPeer;
  const auto kOk = Code::kOk;
  const auto kBad = Code::kInvalidArgument;
  const std::string id256 = Repeat('i', 256);
  const std::string id257 = Repeat('i', 257);
  return {
      // Client messages.
      {"client full", kC, R"({"msg_id":"m1","sender":"a","recipient":"b","payload":"p","ts":12.5})",
       kOk, "", Msg("m1", "a", "b", "p", 12.5)},
      {"client empty object: defaults left to the caller", kC, "{}", kOk, "",
       Msg("", "", "", "", 0)},
      {"client ignores origin, origin_seq and seq", kC,
       R"({"payload":"p","origin":5,"origin_seq":"x","seq":-1})", kOk, "", Msg("", "", "", "p", 0)},
      {"client ignores unknown fields", kC, R"({"payload":"p","ack":"quorum","extra":[1,{}]})", kOk,
       "", Msg("", "", "", "p", 0)},
      {"client integer ts", kC, R"({"ts":1700000000})", kOk, "", Msg("", "", "", "", 1700000000)},
      {"client negative ts", kC, R"({"ts":-1.5})", kOk, "", Msg("", "", "", "", -1.5)},
      {"client escaped nul in payload", kC, R"({"payload":"a\u0000b"})", kOk, "",
       Msg("", "", "", std::string("a\0b", 3), 0)},
      {"client payload at the limit", kC, "{\"payload\":\"" + Repeat('x', kLimit) + "\"}", kOk, "",
       Msg("", "", "", Repeat('x', kLimit), 0)},
      {"client msg_id of 256 bytes", kC, "{\"msg_id\":\"" + id256 + "\"}", kOk, "",
       Msg(id256, "", "", "", 0)},
      {"not an object: array", kC, "[]", kBad, "a message must be a JSON object", {}},
      {"not an object: string", kC, R"("hi")", kBad, "a message must be a JSON object", {}},
      {"not an object: null", kC, "null", kBad, "a message must be a JSON object", {}},
      {"msg_id number",
       kC,
       R"({"msg_id":7})",
       kBad,
       "'msg_id' must be a string of 1..256 bytes",
       {}},
      {"msg_id empty",
       kC,
       R"({"msg_id":""})",
       kBad,
       "'msg_id' must be a string of 1..256 bytes",
       {}},
      {"msg_id null",
       kC,
       R"({"msg_id":null})",
       kBad,
       "'msg_id' must be a string of 1..256 bytes",
       {}},
      {"msg_id too long",
       kC,
       "{\"msg_id\":\"" + id257 + "\"}",
       kBad,
       "'msg_id' must be a string of 1..256 bytes",
       {}},
      {"msg_id 10 KB",
       kC,
       "{\"msg_id\":\"" + Repeat('x', 10000) + "\"}",
       kBad,
       "'msg_id' must be a string of 1..256 bytes",
       {}},
      {"sender number",
       kC,
       R"({"sender":5})",
       kBad,
       "'sender' must be a string of 1..256 bytes",
       {}},
      {"sender empty",
       kC,
       R"({"sender":""})",
       kBad,
       "'sender' must be a string of 1..256 bytes",
       {}},
      {"sender too long",
       kC,
       "{\"sender\":\"" + id257 + "\"}",
       kBad,
       "'sender' must be a string of 1..256 bytes",
       {}},
      {"recipient object",
       kC,
       R"({"recipient":{}})",
       kBad,
       "'recipient' must be a string of 1..256 bytes",
       {}},
      {"recipient too long",
       kC,
       "{\"recipient\":\"" + id257 + "\"}",
       kBad,
       "'recipient' must be a string of 1..256 bytes",
       {}},
      {"payload object", kC, R"({"payload":{"x":1}})", kBad, "'payload' must be a string", {}},
      {"payload number", kC, R"({"payload":1})", kBad, "'payload' must be a string", {}},
      {"payload null", kC, R"({"payload":null})", kBad, "'payload' must be a string", {}},
      {"payload over the limit",
       kC,
       "{\"payload\":\"" + Repeat('x', kLimit + 1) + "\"}",
       Code::kTooLarge,
       "'payload' is 1001 bytes, more than the limit of 1000",
       {}},
      {"payload lone low surrogate escape",
       kC,
       R"({"payload":"\udc00"})",
       kBad,
       "'payload' is not valid UTF-8",
       {}},
      {"sender lone low surrogate escape",
       kC,
       R"({"sender":"\udfff"})",
       kBad,
       "'sender' is not valid UTF-8",
       {}},
      {"ts string",
       kC,
       R"({"ts":"yesterday"})",
       kBad,
       "'ts' must be a finite number (seconds since the epoch)",
       {}},
      {"ts bool",
       kC,
       R"({"ts":true})",
       kBad,
       "'ts' must be a finite number (seconds since the epoch)",
       {}},
      {"ts null",
       kC,
       R"({"ts":null})",
       kBad,
       "'ts' must be a finite number (seconds since the epoch)",
       {}},

      // Peer messages.
      {"peer full", kP,
       R"({"seq":9,"msg_id":"m","sender":"a","recipient":"b","payload":"p","ts":1.25,"origin":"n1@ab","origin_seq":3})",
       kOk, "", Msg("m", "a", "b", "p", 1.25, "n1@ab", 3, 9)},
      {"peer seed form without origin", kP,
       R"({"msg_id":"direct-1","sender":"system","payload":"x"})", kOk, "",
       Msg("direct-1", "system", "", "x", 0)},
      {"peer msg_id required", kP, R"({"payload":"p"})", kBad, "'msg_id' is required", {}},
      {"peer empty object", kP, "{}", kBad, "'msg_id' is required", {}},
      {"peer msg_id wrong type",
       kP,
       R"({"msg_id":5,"payload":"p"})",
       kBad,
       "'msg_id' must be a string of 1..256 bytes",
       {}},
      {"peer origin without origin_seq",
       kP,
       R"({"msg_id":"m","origin":"n1@ab"})",
       kBad,
       "'origin' and 'origin_seq' must be given together",
       {}},
      {"peer origin_seq without origin",
       kP,
       R"({"msg_id":"m","origin_seq":4})",
       kBad,
       "'origin' and 'origin_seq' must be given together",
       {}},
      {"peer origin_seq zero",
       kP,
       R"({"msg_id":"m","origin":"n1@ab","origin_seq":0})",
       kBad,
       "'origin_seq' must be at least 1",
       {}},
      {"peer origin_seq negative",
       kP,
       R"({"msg_id":"m","origin":"n1@ab","origin_seq":-4})",
       kBad,
       "'origin_seq' must be a non-negative integer",
       {}},
      {"peer origin_seq fraction",
       kP,
       R"({"msg_id":"m","origin":"n1@ab","origin_seq":1.5})",
       kBad,
       "'origin_seq' must be a non-negative integer",
       {}},
      {"peer origin_seq above 2^64",
       kP,
       R"({"msg_id":"m","origin":"n1@ab","origin_seq":18446744073709551616})",
       kBad,
       "'origin_seq' must be a non-negative integer",
       {}},
      {"peer origin_seq max", kP,
       R"({"msg_id":"m","origin":"n1@ab","origin_seq":18446744073709551615})", kOk, "",
       Msg("m", "", "", "", 0, "n1@ab", UINT64_MAX)},
      {"peer origin empty",
       kP,
       R"({"msg_id":"m","origin":"","origin_seq":1})",
       kBad,
       "'origin' must be a string of 1..256 bytes",
       {}},
      {"peer origin too long",
       kP,
       "{\"msg_id\":\"m\",\"origin\":\"" + id257 + "\",\"origin_seq\":1}",
       kBad,
       "'origin' must be a string of 1..256 bytes",
       {}},
      {"peer seq string",
       kP,
       R"({"msg_id":"m","seq":"1"})",
       kBad,
       "'seq' must be a non-negative integer",
       {}},
      {"peer seq negative",
       kP,
       R"({"msg_id":"m","seq":-5})",
       kBad,
       "'seq' must be a non-negative integer",
       {}},
      {"peer payload over the limit",
       kP,
       "{\"msg_id\":\"m\",\"payload\":\"" + Repeat('x', kLimit + 1) + "\"}",
       Code::kTooLarge,
       "'payload' is 1001 bytes, more than the limit of 1000",
       {}},
  };
}

TEST(ParseMessageTest, Table) {
  for (const MessageCase& c : MessageCases()) {
    SCOPED_TRACE(c.name);
    Result<rapidjson::Document> doc = Parse(c.json);
    ASSERT_TRUE(doc.ok()) << doc.status().ToString();
    Result<Message> m = ParseMessage(*doc, c.source, kLimit);
    if (c.code == Code::kOk) {
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      ASSERT_TRUE(c.expect.has_value());
      EXPECT_EQ(*m, *c.expect);
    } else {
      ASSERT_FALSE(m.ok());
      EXPECT_EQ(m.status().code(), c.code);
      EXPECT_EQ(m.status().message(), c.error);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Writers

TEST(WriteMessageTest, RoundTripsThroughPeerParsing) {
  static constexpr char kTricky[] = "nul\0and \"quotes\" \\ \n\t\x01";
  std::vector<Message> cases = {
      Msg("m1", "alice", "bob", "hello", 1700000000.123456, "node1@abcd", 42, 7),
      Msg("m2", "s", "r", std::string(kTricky, sizeof(kTricky) - 1), 0.1, "n@1", 1, 1),
      Msg("m3", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", -0.0, "n@1", 2, 2),
      Msg("m4", "s", "r", "", 1e-300, "n@1", UINT64_MAX, UINT64_MAX),
      Msg("unassigned", "s", "r", "p", 3.0),
  };
  for (const Message& m : cases) {
    SCOPED_TRACE(m.msg_id);
    std::string text = MessageToJson(m);
    Result<rapidjson::Document> doc = Parse(text);
    ASSERT_TRUE(doc.ok()) << doc.status().ToString() << " in " << text;
    Result<Message> back = ParseMessage(*doc, MessageSource::kPeer, 1 << 20);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, m);
  }
}

// Whatever finite ts a node stores, its peers read back the same bits from WriteMessage's JSON.
TEST(WriteMessageTest, TimestampsRoundTripExactly) {
  std::vector<double> values = {0.0,
                                -0.0,
                                1700000000.1234567,
                                0.1,
                                1e-300,
                                std::numeric_limits<double>::denorm_min(),
                                std::numeric_limits<double>::min(),
                                std::numeric_limits<double>::max(),
                                -std::numeric_limits<double>::max(),
                                9007199254740993.0,
                                18446744073709551616.0};
  std::mt19937_64 random(20240601);
  while (values.size() < 20000) {
    const double d = std::bit_cast<double>(random());
    if (std::isfinite(d)) values.push_back(d);
  }
  for (double ts : values) {
    Message m = Msg("m", "s", "r", "p", ts, "n@1", 1, 1);
    const std::string text = MessageToJson(m);
    Result<rapidjson::Document> doc = Parse(text);
    ASSERT_TRUE(doc.ok()) << doc.status().ToString() << " in " << text;
    Result<Message> back = ParseMessage(*doc, MessageSource::kPeer, kLimit);
    ASSERT_TRUE(back.ok()) << back.status().ToString() << " in " << text;
    ASSERT_EQ(Bits(back->ts), Bits(ts)) << text;
  }
}

TEST(WriteMessageTest, FieldNamesAndOrder) {
  EXPECT_EQ(MessageToJson(Msg("m", "a", "b", "p", 2.5, "n1@x", 3, 4)),
            R"({"seq":4,"msg_id":"m","sender":"a","recipient":"b","payload":"p","ts":2.5,)"
            R"("origin":"n1@x","origin_seq":3})");
  // Without an origin the stream fields are left out.
  EXPECT_EQ(MessageToJson(Msg("m", "a", "b", "p", 2.5)),
            R"({"seq":0,"msg_id":"m","sender":"a","recipient":"b","payload":"p","ts":2.5})");
  // A non-finite ts cannot be written as JSON; it becomes 0.
  EXPECT_EQ(MessageToJson(Msg("m", "a", "b", "p", std::nan(""))),
            R"({"seq":0,"msg_id":"m","sender":"a","recipient":"b","payload":"p","ts":0.0})");
}

TEST(WriteMessageTest, WriterAppendsToCallerBuffer) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartArray();
  WriteMessage(w, Msg("a", "s", "r", "p", 1, "n@1", 1, 1));
  WriteMessage(w, Msg("b", "s", "r", "p", 1, "n@1", 2, 2));
  w.EndArray();
  Result<rapidjson::Document> doc = Parse(std::string_view(buf.GetString(), buf.GetSize()));
  ASSERT_TRUE(doc.ok());
  ASSERT_TRUE(doc->IsArray());
  EXPECT_EQ(doc->Size(), 2u);
}

TEST(EncodeTest, ReplicateRequest) {
  std::vector<Message> msgs = {Msg("a", "s", "r", "p", 1, "n@1", 1, 5),
                               Msg("b", "s", "r", "q", 2, "n@1", 2, 6)};
  std::string body = EncodeReplicateRequest(msgs);
  Result<rapidjson::Document> doc = Parse(body);
  ASSERT_TRUE(doc.ok());
  ASSERT_TRUE((*doc)["msgs"].IsArray());
  ASSERT_EQ((*doc)["msgs"].Size(), 2u);
  for (rapidjson::SizeType i = 0; i < 2; ++i) {
    Result<Message> m = ParseMessage((*doc)["msgs"][i], MessageSource::kPeer, 100);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(*m, msgs[i]);
  }
  EXPECT_EQ(EncodeReplicateRequest({}), R"({"msgs":[]})");
}

TEST(EncodeTest, SyncRequest) {
  struct Case {
    uint64_t since;
    size_t limit;
    const char* body;
  } cases[] = {
      {0, 1000, R"({"since":0,"limit":1000})"},
      {42, 1, R"({"since":42,"limit":1})"},
      {7, 0, R"({"since":7})"},                    // everything
      {7, 50000, R"({"since":7,"limit":10000})"},  // clamped to the server's maximum
      {UINT64_MAX, 10, R"({"since":18446744073709551615,"limit":10})"},
  };
  for (const Case& c : cases) EXPECT_EQ(EncodeSyncRequest(c.since, c.limit), c.body);
}

TEST(ErrorBodyTest, Table) {
  struct Case {
    std::string reason;
    const char* body;
  } cases[] = {
      {"replication quorum not achieved",
       R"({"status":"error","reason":"replication quorum not achieved"})"},
      {"quote \" and backslash \\", R"({"status":"error","reason":"quote \" and backslash \\"})"},
      {"bad bytes \xff\xfe end", R"({"status":"error","reason":"bad bytes ?? end"})"},
      {"cut \xe2\x82", R"({"status":"error","reason":"cut ??"})"},
      {"ok \xc3\xa9", "{\"status\":\"error\",\"reason\":\"ok \xc3\xa9\"}"},
  };
  for (const Case& c : cases) {
    std::string body = ErrorBody(c.reason);
    EXPECT_EQ(body, c.body);
    EXPECT_TRUE(Parse(body).ok()) << body;
  }
}

// ---------------------------------------------------------------------------------------------
// Status mapping

TEST(StatusMappingTest, CodeForHttpStatus) {
  struct Case {
    long http;
    Code code;
  } cases[] = {
      {200, Code::kOk},
      {201, Code::kOk},
      {204, Code::kOk},
      {400, Code::kInvalidArgument},
      {401, Code::kInvalidArgument},
      {405, Code::kInvalidArgument},
      {404, Code::kNotFound},
      {408, Code::kTimeout},
      {409, Code::kConflict},
      {413, Code::kTooLarge},
      {500, Code::kIOError},
      {502, Code::kIOError},
      {503, Code::kUnavailable},
      {504, Code::kTimeout},
      {0, Code::kIOError},
      {302, Code::kIOError},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(CodeForHttpStatus(c.http), c.code) << c.http;
  }
}

TEST(StatusMappingTest, HttpStatusForCodeIsTheInverse) {
  struct Case {
    Code code;
    int http;
  } cases[] = {
      {Code::kOk, 200},         {Code::kInvalidArgument, 400}, {Code::kNotFound, 404},
      {Code::kConflict, 409},   {Code::kTooLarge, 413},        {Code::kIOError, 500},
      {Code::kCorruption, 500}, {Code::kUnavailable, 503},     {Code::kTimeout, 504},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(HttpStatusForCode(c.code), c.http) << CodeName(c.code);
    if (c.code != Code::kCorruption) {
      EXPECT_EQ(CodeForHttpStatus(c.http), c.code);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reply decoding

struct ReplyCase {
  const char* name;
  long http;
  std::string body;
  Code code;            // kOk when decoding succeeds
  const char* message;  // expected status message (exact) when it fails
};

TEST(DecodeReplicateReplyTest, Table) {
  struct Case {
    ReplyCase c;
    uint64_t high_water;
    bool gap;
  } cases[] = {
      {{"batch ok", 200, R"({"status":"ok","seq":9,"high_water":12,"applied":3,"duplicates":0})",
        Code::kOk, ""},
       12,
       false},
      {{"409 gap", 409,
        R"({"status":"error","reason":"gap in stream n1@a: expected origin_seq 5, got 9","high_water":4})",
        Code::kOk, ""},
       4,
       true},
      {{"409 gap at zero", 409, R"({"status":"error","reason":"gap","high_water":0})", Code::kOk,
        ""},
       0,
       true},
      {{"409 without high water", 409, R"({"status":"error","reason":"something else"})",
        Code::kConflict, "something else"},
       0,
       false},
      {{"409 not json", 409, "conflict", Code::kConflict, "HTTP 409: conflict"}, 0, false},
      {{"ok without high water", 200, R"({"status":"ok","seq":3})", Code::kCorruption,
        "invalid replicate reply: 'high_water' must be a non-negative integer"},
       0,
       false},
      {{"ok not json", 200, "<html>", Code::kCorruption, ""}, 0, false},
      {{"ok not an object", 200, "[1]", Code::kCorruption,
        "invalid replicate reply: not a JSON object"},
       0,
       false},
      {{"400", 400, R"({"status":"error","reason":"'msg_id' is required"})", Code::kInvalidArgument,
        "'msg_id' is required"},
       0,
       false},
      {{"401", 401, R"({"status":"error","reason":"missing cluster token"})",
        Code::kInvalidArgument, "missing cluster token"},
       0,
       false},
      {{"413 from pistache", 413, "Request exceeded maximum buffer size", Code::kTooLarge,
        "HTTP 413: Request exceeded maximum buffer size"},
       0,
       false},
      {{"500", 500, R"({"status":"error","reason":"storage failure: fsync failed"})",
        Code::kIOError, "storage failure: fsync failed"},
       0,
       false},
      {{"503", 503, R"({"status":"error","reason":"shutting down"})", Code::kUnavailable,
        "shutting down"},
       0,
       false},
      {{"504 empty body", 504, "", Code::kTimeout, "HTTP 504"}, 0, false},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.c.name);
    Result<ReplicateReply> r = DecodeReplicateReply(tc.c.http, tc.c.body);
    if (tc.c.code == Code::kOk) {
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->high_water, tc.high_water);
      EXPECT_EQ(r->gap, tc.gap);
    } else {
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), tc.c.code);
      if (*tc.c.message) {
        EXPECT_EQ(r.status().message(), tc.c.message);
      }
    }
  }
}

// A conflict answer is told apart from a gap answer, and both carry the peer's stream id.
TEST(DecodeReplicateReplyTest, ConflictAndStream) {
  Result<ReplicateReply> conflict = DecodeReplicateReply(
      409,
      R"({"status":"error","reason":"conflict at origin_seq 5 of stream a@1","high_water":4,"stream":"b@2","conflict":true})");
  ASSERT_TRUE(conflict.ok()) << conflict.status().ToString();
  EXPECT_TRUE(conflict->conflict);
  EXPECT_FALSE(conflict->gap);
  EXPECT_EQ(conflict->high_water, 4u);
  EXPECT_EQ(conflict->stream, "b@2");
  EXPECT_EQ(conflict->reason, "conflict at origin_seq 5 of stream a@1");
  Result<ReplicateReply> gap = DecodeReplicateReply(
      409, R"({"status":"error","reason":"gap","high_water":0,"stream":"b@2"})");
  ASSERT_TRUE(gap.ok());
  EXPECT_TRUE(gap->gap);
  EXPECT_FALSE(gap->conflict);
  Result<ReplicateReply> ok =
      DecodeReplicateReply(200, R"({"status":"ok","stream":"b@2","seq":9,"high_water":12})");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->stream, "b@2");
  EXPECT_FALSE(ok->conflict);
  EXPECT_FALSE(DecodeReplicateReply(200, R"({"status":"ok","stream":7,"high_water":1})").ok());
}

TEST(DecodeHeartbeatReplyTest, Table) {
  ReplyCase cases[] = {
      {"full", 200,
       R"({"status":"ok","node_id":"node2","time":1700000000.5,"stream":"node2@ab","high_waters":{"node2@ab":5,"node1@cd":7}})",
       Code::kOk, ""},
      {"seed form", 200, R"({"status":"ok","node_id":"node2","time":17})", Code::kOk, ""},
      {"missing node_id", 200, R"({"status":"ok","time":1})", Code::kCorruption,
       "invalid heartbeat reply: 'node_id' must be a string"},
      {"time string", 200, R"({"node_id":"n","time":"now"})", Code::kCorruption,
       "invalid heartbeat reply: 'time' must be a number"},
      {"high_waters not object", 200, R"({"node_id":"n","time":1,"high_waters":[]})",
       Code::kCorruption, "invalid heartbeat reply: 'high_waters' must be an object"},
      {"high water negative", 200, R"({"node_id":"n","time":1,"high_waters":{"a":-1}})",
       Code::kCorruption,
       "invalid heartbeat reply: 'high_waters' values must be non-negative integers"},
      {"truncated", 200, R"({"node_id":"n")", Code::kCorruption, ""},
      {"503", 503, R"({"status":"error","reason":"shutting down"})", Code::kUnavailable,
       "shutting down"},
      {"404 text", 404, "Could not find a matching route", Code::kNotFound,
       "HTTP 404: Could not find a matching route"},
  };
  for (const ReplyCase& c : cases) {
    SCOPED_TRACE(c.name);
    Result<HeartbeatReply> r = DecodeHeartbeatReply(c.http, c.body);
    if (c.code == Code::kOk) {
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(r->node_id, "node2");
    } else {
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), c.code);
      if (*c.message) {
        EXPECT_EQ(r.status().message(), c.message);
      }
    }
  }
  Result<HeartbeatReply> full = DecodeHeartbeatReply(200, cases[0].body);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->max_request_bytes, 0u) << "not stated: unknown";
  Result<HeartbeatReply> limit = DecodeHeartbeatReply(
      200, R"({"node_id":"n","time":1,"stream":"n@1","max_request_bytes":589824})");
  ASSERT_TRUE(limit.ok());
  EXPECT_EQ(limit->max_request_bytes, 589824u);
  EXPECT_FALSE(
      DecodeHeartbeatReply(200, R"({"node_id":"n","time":1,"max_request_bytes":-5})").ok());
  EXPECT_EQ(full->time, 1700000000.5);
  EXPECT_EQ(full->stream, "node2@ab");
  EXPECT_EQ(full->high_waters, (std::map<std::string, uint64_t>{{"node2@ab", 5}, {"node1@cd", 7}}));
}

TEST(DecodeSyncReplyTest, Table) {
  const std::string msg1 =
      R"({"seq":3,"msg_id":"a","sender":"s","recipient":"r","payload":"p","ts":1.5,"origin":"n1@x","origin_seq":1})";
  const std::string msg2 =
      R"({"seq":4,"msg_id":"b","sender":"s","recipient":"r","payload":"q","ts":2,"origin":"n2@y","origin_seq":8})";
  ReplyCase cases[] = {
      {"page", 200,
       R"({"messages":[)" + msg1 + "," + msg2 +
           R"(],"more":true,"next":4,"last_seq":10,"stream":"n1@x"})",
       Code::kOk, ""},
      {"empty page", 200, R"({"messages":[],"more":false,"next":0,"last_seq":0,"stream":"n1@x"})",
       Code::kOk, ""},
      {"more missing means false", 200, R"({"messages":[],"last_seq":0,"stream":"n1@x"})",
       Code::kOk, ""},
      {"no stream", 200, R"({"messages":[],"last_seq":0})", Code::kCorruption,
       "invalid sync reply: 'stream' must be a non-empty string"},
      {"no last_seq", 200, R"({"messages":[],"stream":"n1@x"})", Code::kCorruption,
       "invalid sync reply: 'last_seq' must be a non-negative integer"},
      {"messages not array", 200, R"({"messages":{},"last_seq":0,"stream":"n1@x"})",
       Code::kCorruption, "invalid sync reply: 'messages' must be an array"},
      {"more not bool", 200, R"({"messages":[],"more":1,"last_seq":0,"stream":"n1@x"})",
       Code::kCorruption, "invalid sync reply: 'more' must be a boolean"},
      {"message without seq", 200,
       R"({"messages":[{"msg_id":"a","origin":"n@1","origin_seq":1}],"last_seq":1,"stream":"n1@x"})",
       Code::kCorruption, "invalid sync reply: messages[0]: 'seq' is required"},
      {"invalid message", 200,
       R"({"messages":[)" + msg1 + R"(,{"seq":5,"payload":"p"}],"last_seq":5,"stream":"n1@x"})",
       Code::kCorruption, "invalid sync reply: messages[1]: 'msg_id' is required"},
      {"payload over the limit", 200,
       R"({"messages":[{"seq":1,"msg_id":"a","payload":")" + Repeat('x', 101) +
           R"("}],"last_seq":1,"stream":"n1@x"})",
       Code::kCorruption,
       "invalid sync reply: messages[0]: 'payload' is 101 bytes, more than the limit of 100"},
      {"400", 400, R"({"status":"error","reason":"'since' must be a non-negative integer"})",
       Code::kInvalidArgument, "'since' must be a non-negative integer"},
      {"500", 500, R"({"status":"error","reason":"storage failure: x"})", Code::kIOError,
       "storage failure: x"},
  };
  for (const ReplyCase& c : cases) {
    SCOPED_TRACE(c.name);
    Result<SyncReply> r = DecodeSyncReply(c.http, c.body, 100);
    if (c.code == Code::kOk) {
      EXPECT_TRUE(r.ok()) << r.status().ToString();
    } else {
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), c.code);
      if (*c.message) {
        EXPECT_EQ(r.status().message(), c.message);
      }
    }
  }
  Result<SyncReply> page = DecodeSyncReply(200, cases[0].body, 100);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->stream, "n1@x");
  EXPECT_TRUE(page->more);
  EXPECT_EQ(page->last_seq, 10u);
  ASSERT_EQ(page->messages.size(), 2u);
  EXPECT_EQ(page->messages[0], Msg("a", "s", "r", "p", 1.5, "n1@x", 1, 3));
  EXPECT_EQ(page->messages[1], Msg("b", "s", "r", "q", 2, "n2@y", 8, 4));
}

}  // namespace
}  // namespace dsm::json

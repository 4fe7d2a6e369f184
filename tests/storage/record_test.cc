// Table-driven tests of the record codec (storage/record.h): round trips, every truncation of
// valid records, unknown versions and trailing bytes.
#include "storage/record.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/encoding.h"

namespace dsm {
namespace {

struct RoundTripCase {
  const char* name;
  Message msg;
};

std::string Binary() {
  std::string s;
  for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
  s += std::string("\0\0\xff\x80", 4);
  return s;
}

Message Make(std::string msg_id, std::string sender, std::string recipient, std::string payload,
             double ts, std::string origin, uint64_t origin_seq) {
  Message m;
  m.msg_id = std::move(msg_id);
  m.sender = std::move(sender);
  m.recipient = std::move(recipient);
  m.payload = std::move(payload);
  m.ts = ts;
  m.origin = std::move(origin);
  m.origin_seq = origin_seq;
  return m;
}

std::vector<RoundTripCase> RoundTripCases() {
  return {
      {"all_empty", Make("", "", "", "", 0, "", 0)},
      {"typical",
       Make("6f1c-42", "alice", "bob", "hi there", 1700000000.125, "node1@0123456789abcdef", 7)},
      {"binary_bytes", Make(Binary(), Binary(), Binary(), Binary(), -0.0, Binary(), 1)},
      {"one_mib_payload", Make("big", "s", "r", std::string(1 << 20, 'x'), 1.0, "o@1", 2)},
      {"long_fields_two_byte_varints",
       Make(std::string(300, 'i'), std::string(128, 's'), std::string(127, 'r'),
            std::string(16384, 'p'), 2.5, std::string(200, 'o'), 3)},
      {"extreme_numbers", Make("m", "s", "r", "p", std::numeric_limits<double>::max(), "o",
                               std::numeric_limits<uint64_t>::max())},
      {"infinity_ts", Make("m", "s", "r", "p", std::numeric_limits<double>::infinity(), "o", 1)},
      {"denormal_ts", Make("m", "s", "r", "p", std::numeric_limits<double>::denorm_min(), "o", 1)},
  };
}

TEST(RecordTest, RoundTrips) {
  for (const RoundTripCase& c : RoundTripCases()) {
    SCOPED_TRACE(c.name);
    Message in = c.msg;
    in.seq = 999;  // not part of the record
    const std::string rec = EncodeRecord(in);
    EXPECT_EQ(static_cast<uint8_t>(rec[0]), kRecordVersion);
    Result<Message> out = DecodeRecord(42, rec);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    Message want = c.msg;
    want.seq = 42;
    EXPECT_EQ(*out, want);
    EXPECT_EQ(std::signbit(out->ts), std::signbit(c.msg.ts));
  }
}

TEST(RecordTest, NanTimestampKeepsItsBits) {
  Message m = Make("m", "s", "r", "p", std::numeric_limits<double>::quiet_NaN(), "o", 1);
  Result<Message> out = DecodeRecord(1, EncodeRecord(m));
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(std::isnan(out->ts));
}

TEST(RecordTest, AdoptedEncodingUsesGivenOrigin) {
  Message m = Make("m", "s", "r", "p", 3.0, "ignored", 99);
  std::string rec;
  AppendRecord(&rec, m, "self@ab", 5);
  Result<Message> out = DecodeRecord(8, rec);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->origin, "self@ab");
  EXPECT_EQ(out->origin_seq, 5u);
  EXPECT_EQ(out->payload, "p");
}

TEST(RecordTest, AppendRecordAppends) {
  Message m = Make("m", "s", "r", "p", 3.0, "o", 1);
  std::string buf = "prefix";
  AppendRecord(&buf, m);
  EXPECT_EQ(buf, "prefix" + EncodeRecord(m));
}

TEST(RecordTest, EveryTruncationIsCorruption) {
  for (const RoundTripCase& c : RoundTripCases()) {
    if (c.msg.payload.size() > 20000) continue;  // same structure as smaller cases, O(n^2)
    SCOPED_TRACE(c.name);
    const std::string rec = EncodeRecord(c.msg);
    for (size_t len = 0; len < rec.size(); ++len) {
      Result<Message> out = DecodeRecord(17, std::string_view(rec.data(), len));
      ASSERT_FALSE(out.ok()) << "length " << len << " of " << rec.size();
      EXPECT_EQ(out.status().code(), Code::kCorruption);
      const std::string& what = out.status().message();
      EXPECT_EQ(what.rfind("record at seq 17: ", 0), 0u) << what;
      if (len == 0) {
        EXPECT_NE(what.find("empty record"), std::string::npos) << what;
      } else {
        EXPECT_NE(what.find("truncated"), std::string::npos) << what;
      }
    }
  }
}

TEST(RecordTest, TruncationNamesTheField) {
  const Message m = Make("id", "sender", "recip", "payload", 1.0, "origin", 3);
  const std::string rec = EncodeRecord(m);
  struct Case {
    size_t len;
    const char* field;
  };
  // Layout: version [0,1) | msg_id [1,4) | sender [4,11) | recipient [11,17) | payload [17,25) |
  // origin [25,32) | origin_seq [32,40) | ts [40,48).
  const Case cases[] = {
      {1, "msg_id"},      {3, "msg_id"},      {4, "sender"},   {10, "sender"}, {11, "recipient"},
      {16, "recipient"},  {17, "payload"},    {24, "payload"}, {25, "origin"}, {31, "origin"},
      {32, "origin_seq"}, {39, "origin_seq"}, {40, "ts"},      {47, "ts"}};
  ASSERT_EQ(rec.size(), 48u);
  for (const Case& c : cases) {
    Result<Message> out = DecodeRecord(5, std::string_view(rec.data(), c.len));
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().message(), std::string("record at seq 5: truncated ") + c.field)
        << "length " << c.len;
  }
}

TEST(RecordTest, UnknownVersionsAreRejected) {
  const std::string rec = EncodeRecord(Make("m", "s", "r", "p", 1.0, "o", 1));
  for (int version : {0, 2, 3, 0x7f, 0x80, 0xff}) {
    std::string bad = rec;
    bad[0] = static_cast<char>(version);
    Result<Message> out = DecodeRecord(9, bad);
    ASSERT_FALSE(out.ok()) << version;
    EXPECT_EQ(out.status().code(), Code::kCorruption);
    EXPECT_EQ(out.status().message(),
              "record at seq 9: unknown record version " + std::to_string(version));
  }
}

TEST(RecordTest, TrailingBytesAreRejected) {
  const std::string rec = EncodeRecord(Make("m", "s", "r", "p", 1.0, "o", 1));
  const std::string tails[] = {std::string(1, '\0'), "x", "xyz", std::string(8, '\xff'),
                               EncodeRecord(Make("", "", "", "", 0, "", 0))};
  for (const std::string& tail : tails) {
    Result<Message> out = DecodeRecord(3, rec + tail);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), Code::kCorruption);
    EXPECT_EQ(out.status().message(),
              "record at seq 3: " + std::to_string(tail.size()) + " trailing bytes");
  }
}

TEST(RecordTest, OversizedLengthIsTruncation) {
  // A length prefix larger than the rest of the record, and an unterminated varint.
  std::string bad(1, static_cast<char>(kRecordVersion));
  PutVarint64(&bad, 1000);
  bad += "short";
  Result<Message> out = DecodeRecord(1, bad);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(), "record at seq 1: truncated msg_id");

  std::string unterminated(1, static_cast<char>(kRecordVersion));
  unterminated += std::string(11, '\x80');
  out = DecodeRecord(1, unterminated);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().message(), "record at seq 1: truncated msg_id");
}

}  // namespace
}  // namespace dsm

// dsm-dbdump's library on real data directories: directories written by RocksLogStore (own
// messages, messages of two peer streams, a consumed position, cursors), then damaged with raw
// RocksDB writes, one damage per table row. Also LogReader's refusals, its read-only promise, and
// reading next to a store that keeps writing (a secondary instance, in this process and next to
// another process holding the database).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <rapidjson/document.h>
#include <rocksdb/db.h>
#include <rocksdb/perf_context.h>
#include <rocksdb/perf_level.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/encoding.h"
#include "dsm/membership.h"
#include "storage/consumer_schema.h"
#include "storage/log_reader.h"
#include "storage/record.h"
#include "storage/rocks_log_store.h"
#include "storage/schema.h"
#include "tests/storage/test_util.h"
#include "tools/dbdump/command.h"
#include "tools/dbdump/compare.h"
#include "tools/dbdump/dump.h"
#include "tools/dbdump/text.h"
#include "tools/dbdump/verify.h"

namespace dsm::dbdump {
namespace {

namespace fs = std::filesystem;
using storage_test::ClientMsg;
using storage_test::PeerMsg;
using storage_test::ScopedTempDir;

constexpr char kPeer2Url[] = "http://127.0.0.1:8002";
constexpr char kPeer3Url[] = "http://127.0.0.1:8003";
constexpr char kStream2[] = "node2@0123456789abcdef";
constexpr char kStream3[] = "node3@fedcba9876543210";
const std::string kLongPayload(300, 'x');

std::unique_ptr<RocksLogStore> MustOpenStore(const std::string& path,
                                             const std::string& node_id = "node1") {
  RocksLogStoreOptions options;
  options.path = path;
  options.node_id = node_id;
  Result<std::unique_ptr<RocksLogStore>> store = RocksLogStore::Open(options);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(*store) : nullptr;
}

Result<std::unique_ptr<LogReader>> OpenReader(
    const std::string& path, LogReaderOptions::Mode mode = LogReaderOptions::Mode::kReadOnly) {
  LogReaderOptions options;
  options.path = path;
  options.mode = mode;
  return LogReader::Open(options);
}

std::unique_ptr<LogReader> MustOpenReader(
    const std::string& path, LogReaderOptions::Mode mode = LogReaderOptions::Mode::kReadOnly) {
  Result<std::unique_ptr<LogReader>> reader = OpenReader(path, mode);
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  return reader.ok() ? std::move(*reader) : nullptr;
}

// A RocksDB database opened directly with all its column families, to damage it.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    rocksdb::Options options;
    std::vector<std::string> names;
    EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(options, path, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const std::string& n : names) descriptors.emplace_back(n, rocksdb::ColumnFamilyOptions());
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(options, path, descriptors, &handles_, &db);
    EXPECT_TRUE(s.ok()) << s.ToString();
    db_.reset(db);
  }
  ~RawDb() {
    if (db_ == nullptr) return;
    for (auto* h : handles_) EXPECT_TRUE(db_->DestroyColumnFamilyHandle(h).ok());
    EXPECT_TRUE(db_->Close().ok());
  }

  void Put(const std::string& family, const std::string& key, const std::string& value) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    EXPECT_TRUE(db_->Put(wo, Family(family), key, value).ok());
  }
  void Delete(const std::string& family, const std::string& key) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    EXPECT_TRUE(db_->Delete(wo, Family(family), key).ok());
  }
  void DropFamily(const std::string& family) {
    rocksdb::ColumnFamilyHandle* h = Family(family);
    EXPECT_TRUE(db_->DropColumnFamily(h).ok());
  }
  std::string Get(const std::string& family, const std::string& key) {
    std::string value;
    EXPECT_TRUE(db_->Get(rocksdb::ReadOptions(), Family(family), key, &value).ok()) << key;
    return value;
  }

 private:
  rocksdb::ColumnFamilyHandle* Family(const std::string& name) {
    for (auto* h : handles_) {
      if (h->GetName() == name) return h;
    }
    ADD_FAILURE() << "no family " << name;
    return handles_.front();
  }

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
};

// Writes the standard directory:
//   seq 1..5  m1..m5, this node's own stream, positions 1..5 (m4's payload has a newline and a
//             tab, m5's is 300 bytes long)
//   seq 6..8  p1..p3 from kStream2, positions 1..3, pulled from kPeer2Url (cursor seq 3)
//   kStream3 position 1 carries m1 again: consumed, it points at seq 1
//   seq 9     q2 from kStream3, position 2
// push cursor of kPeer2Url = 4. Returns the directory's own stream id.
std::string BuildStandardDir(const std::string& path) {
  std::unique_ptr<RocksLogStore> store = MustOpenStore(path);
  if (store == nullptr) return "";
  std::vector<Message> own = {ClientMsg("m1"), ClientMsg("m2"), ClientMsg("m3"),
                              ClientMsg("m4", "alice", "bob", "two\nlines\tand a tab"),
                              ClientMsg("m5", "alice", "bob", kLongPayload)};
  EXPECT_TRUE(store->Append(own).ok());
  const PullCursor cursor{kStream2, 3};
  EXPECT_TRUE(store
                  ->Apply({PeerMsg("p1", kStream2, 1), PeerMsg("p2", kStream2, 2),
                           PeerMsg("p3", kStream2, 3)},
                          kPeer2Url, &cursor)
                  .ok());
  Result<std::vector<WriteOutcome>> r =
      store->Apply({PeerMsg("m1", kStream3, 1), PeerMsg("q2", kStream3, 2)});
  EXPECT_TRUE(r.ok());
  if (r.ok()) {
    EXPECT_EQ((*r)[0].kind, WriteOutcome::Kind::kDuplicate);
    EXPECT_EQ((*r)[1].seq, 9u);
  }
  EXPECT_TRUE(store->SetPushCursor(kPeer2Url, PushCursor{"", 4}).ok());
  Membership members;
  members.version = 2;
  members.Insert(MemberEntry{kPeer2Url, "node2", 0, 0, true});
  members.Insert(MemberEntry{kPeer3Url, "", 1, 2, false});
  EXPECT_TRUE(store->SetMembership(EncodeMembership(members, "")).ok());
  EXPECT_EQ(store->LastSeq(), 9u);
  return store->stream_id();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A fixture over a directory `Build` writes (it returns the directory's own stream id).
template <std::string (*Build)(const std::string&)>
class DirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    own_stream_ = Build(Db());
    ASSERT_FALSE(own_stream_.empty());
  }
  std::string Db() const { return dir_.Sub("db"); }

  ScopedTempDir dir_;
  std::string own_stream_;
};

using DbDumpTest = DirTest<BuildStandardDir>;

// ---------------------------------------------------------------------------------------------
// Metadata

TEST_F(DbDumpTest, MetadataTableShowsEveryFactAligned) {
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  std::ostringstream out;
  size_t problems = 99;
  ASSERT_TRUE(DumpMetadata(*reader, DumpOptions(), out, &problems).ok());
  EXPECT_EQ(problems, 0u);

  const std::vector<std::string> lines = Lines(out.str());
  std::map<std::string, std::string> values;
  size_t value_column = std::string::npos;
  for (const std::string& line : lines) {
    const size_t colon = line.find(": ");
    ASSERT_NE(colon, std::string::npos) << line;
    const size_t value_at = line.find_first_not_of(' ', colon + 1);
    if (value_column == std::string::npos) value_column = value_at;
    EXPECT_EQ(value_at, value_column) << "not aligned: " << line;
    values[line.substr(0, colon)] = line.substr(value_at);
  }
  const std::string incarnation = own_stream_.substr(own_stream_.find('@') + 1);
  EXPECT_EQ(values["data_dir"], Db());
  EXPECT_EQ(values["view"].rfind("read-only", 0), 0u) << values["view"];
  EXPECT_EQ(values["format_version"], std::to_string(schema::kFormatVersion));
  EXPECT_EQ(values["node_id"], "node1");
  EXPECT_EQ(values["incarnation"], incarnation);
  EXPECT_EQ(values["stream_id"], own_stream_);
  EXPECT_EQ(values["messages"], "9");
  EXPECT_EQ(values["first_seq"], "1");
  EXPECT_EQ(values["last_seq"], "9");
  EXPECT_EQ(values["high_water " + own_stream_], "5 (own stream)");
  EXPECT_EQ(values[std::string("high_water ") + kStream2], "3");
  EXPECT_EQ(values[std::string("high_water ") + kStream3], "2");
  EXPECT_EQ(values[std::string("push_cursor ") + kPeer2Url], "4");
  EXPECT_EQ(values[std::string("pull_cursor ") + kPeer2Url],
            std::string("seq 3 of stream ") + kStream2);
  EXPECT_EQ(values["membership"], "version 2, this node (URL not known)");
  EXPECT_EQ(values[std::string("member ") + kPeer2Url], "node2, voter (from --peers)");
  EXPECT_EQ(values[std::string("member ") + kPeer3Url], "(id not known), removed at 2 (added at 1)");
  EXPECT_EQ(values.count("problem"), 0u);
}

TEST_F(DbDumpTest, MetadataAsJson) {
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  std::ostringstream out;
  ASSERT_TRUE(DumpMetadata(*reader, DumpOptions{OutputFormat::kJsonLines, 0}, out).ok());
  const std::vector<std::string> lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 1u);
  rapidjson::Document doc;
  ASSERT_FALSE(doc.Parse(lines[0].c_str()).HasParseError()) << lines[0];
  EXPECT_EQ(doc["format_version"].GetUint64(), schema::kFormatVersion);
  EXPECT_STREQ(doc["node_id"].GetString(), "node1");
  EXPECT_EQ(doc["stream_id"].GetString(), own_stream_);
  EXPECT_EQ(doc["messages"].GetUint64(), 9u);
  EXPECT_EQ(doc["last_seq"].GetUint64(), 9u);
  EXPECT_EQ(doc["high_waters"][own_stream_.c_str()].GetUint64(), 5u);
  EXPECT_EQ(doc["high_waters"][kStream2].GetUint64(), 3u);
  EXPECT_EQ(doc["push_cursors"][kPeer2Url].GetUint64(), 4u);
  EXPECT_STREQ(doc["pull_cursors"][kPeer2Url]["stream"].GetString(), kStream2);
  EXPECT_EQ(doc["pull_cursors"][kPeer2Url]["seq"].GetUint64(), 3u);
  EXPECT_TRUE(doc["problems"].GetArray().Empty());
}

// ---------------------------------------------------------------------------------------------
// Ranges and lookups

TEST_F(DbDumpTest, RangeAsJsonLinesHasTheFieldsOfGetMessages) {
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  std::ostringstream out;
  uint64_t count = 0;
  ASSERT_TRUE(
      DumpRange(*reader, 1, UINT64_MAX, DumpOptions{OutputFormat::kJsonLines, 80}, out, &count)
          .ok());
  EXPECT_EQ(count, 9u);
  const std::vector<std::string> lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 9u);
  const std::vector<std::string> ids = {"m1", "m2", "m3", "m4", "m5", "p1", "p2", "p3", "q2"};
  for (size_t i = 0; i < lines.size(); ++i) {
    rapidjson::Document doc;
    ASSERT_FALSE(doc.Parse(lines[i].c_str()).HasParseError()) << lines[i];
    std::vector<std::string> keys;
    for (rapidjson::SizeType k = 0; k < doc.MemberCount(); ++k) {
      keys.emplace_back((doc.MemberBegin() + k)->name.GetString());
    }
    EXPECT_EQ(keys, (std::vector<std::string>{"seq", "msg_id", "sender", "recipient", "payload",
                                              "ts", "origin", "origin_seq"}));
    EXPECT_EQ(doc["seq"].GetUint64(), i + 1);
    EXPECT_EQ(doc["msg_id"].GetString(), ids[i]);
  }
  rapidjson::Document m5;
  m5.Parse(lines[4].c_str());
  EXPECT_EQ(m5["payload"].GetString(), kLongPayload);  // never cut
  EXPECT_EQ(m5["ts"].GetDouble(), 1700000000.25);
  EXPECT_EQ(m5["origin"].GetString(), own_stream_);
  EXPECT_EQ(m5["origin_seq"].GetUint64(), 5u);
  rapidjson::Document m4;
  m4.Parse(lines[3].c_str());
  EXPECT_STREQ(m4["payload"].GetString(), "two\nlines\tand a tab");
  rapidjson::Document q2;
  q2.Parse(lines[8].c_str());
  EXPECT_STREQ(q2["origin"].GetString(), kStream3);
  EXPECT_EQ(q2["origin_seq"].GetUint64(), 2u);
}

TEST_F(DbDumpTest, RangeAsTableIsAlignedAndFitsTheWidth) {
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  std::ostringstream out;
  uint64_t count = 0;
  ASSERT_TRUE(DumpRange(*reader, 3, 6, DumpOptions{OutputFormat::kTable, 120}, out, &count).ok());
  EXPECT_EQ(count, 4u);
  const std::vector<std::string> lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 5u) << out.str();
  EXPECT_EQ(lines[0].rfind("seq  msg_id  origin:origin_seq", 0), 0u) << lines[0];
  // Every column starts where its header starts.
  const size_t ts_column = lines[0].find("ts ");
  const size_t payload_column = lines[0].find("payload");
  ASSERT_NE(ts_column, std::string::npos);
  for (size_t i = 1; i < lines.size(); ++i) {
    EXPECT_LE(lines[i].size(), 120u) << lines[i];
    EXPECT_EQ(lines[i].substr(ts_column, 24),
              i < 4 ? "2023-11-14T22:13:20.250Z" : "2023-11-14T22:13:21.500Z")
        << lines[i];
  }
  EXPECT_NE(lines[1].find("m3"), std::string::npos);
  EXPECT_NE(lines[1].find(own_stream_ + ":3"), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("alice"), std::string::npos);
  EXPECT_EQ(lines[1].substr(payload_column), "hello");
  // Control characters are escaped: one message, one line.
  EXPECT_EQ(lines[2].substr(payload_column), "two\\nlines\\tand a tab");
  // A long payload is cut to the width, and says so.
  EXPECT_EQ(lines[3].size(), 120u);
  EXPECT_EQ(lines[3].substr(lines[3].size() - 4), "x...");
  EXPECT_NE(lines[4].find(std::string(kStream2) + ":1"), std::string::npos);
  EXPECT_EQ(lines[4].rfind("  6  p1  ", 0), 0u) << "seq right-aligned: " << lines[4];

  // Width 0 cuts nothing.
  std::ostringstream wide;
  ASSERT_TRUE(DumpRange(*reader, 5, 5, DumpOptions{OutputFormat::kTable, 0}, wide).ok());
  EXPECT_NE(wide.str().find(kLongPayload + "\n"), std::string::npos);
}

TEST_F(DbDumpTest, EmptyAndOutOfRangeRanges) {
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  std::ostringstream out;
  uint64_t count = 7;
  ASSERT_TRUE(
      DumpRange(*reader, 50, 60, DumpOptions{OutputFormat::kJsonLines, 0}, out, &count).ok());
  EXPECT_EQ(count, 0u);
  EXPECT_EQ(out.str(), "");
  ASSERT_TRUE(DumpRange(*reader, 9, 9, DumpOptions{OutputFormat::kJsonLines, 0}, out, &count).ok());
  EXPECT_EQ(count, 1u);
}

TEST_F(DbDumpTest, MsgIdLookup) {
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  std::ostringstream out;
  ASSERT_TRUE(DumpMsgId(*reader, "p2", DumpOptions{OutputFormat::kJsonLines, 0}, out).ok());
  rapidjson::Document doc;
  ASSERT_FALSE(doc.Parse(out.str().c_str()).HasParseError()) << out.str();
  EXPECT_EQ(doc["seq"].GetUint64(), 7u);
  EXPECT_STREQ(doc["origin"].GetString(), kStream2);

  std::ostringstream table;
  ASSERT_TRUE(DumpMsgId(*reader, "m2", DumpOptions(), table).ok());
  const std::vector<std::string> lines = Lines(table.str());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[1].find("m2"), std::string::npos);

  std::ostringstream none;
  Status s = DumpMsgId(*reader, "nope", DumpOptions(), none);
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_NE(s.message().find("'nope'"), std::string::npos) << s.message();
  EXPECT_EQ(none.str(), "");
}

TEST_F(DbDumpTest, LogReaderTypedReads) {
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  Result<std::optional<uint64_t>> seq = reader->LookupMsgId("q2");
  ASSERT_TRUE(seq.ok() && seq->has_value());
  EXPECT_EQ(**seq, 9u);
  // The consumed position of stream 3 points at the message stored under the own stream.
  Result<std::optional<uint64_t>> consumed = reader->LookupOrigin(kStream3, 1);
  ASSERT_TRUE(consumed.ok() && consumed->has_value());
  EXPECT_EQ(**consumed, 1u);
  Result<std::optional<Message>> m = reader->Get(1);
  ASSERT_TRUE(m.ok() && m->has_value());
  EXPECT_EQ((*m)->msg_id, "m1");
  EXPECT_EQ((*m)->origin, own_stream_);
  Result<std::optional<Message>> none = reader->Get(10);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  std::vector<uint64_t> seqs;
  ASSERT_TRUE(reader
                  ->ScanLog(4, 7,
                            [&](const Message& msg) {
                              seqs.push_back(msg.seq);
                              return true;
                            })
                  .ok());
  EXPECT_EQ(seqs, (std::vector<uint64_t>{4, 5, 6, 7}));
}

// ---------------------------------------------------------------------------------------------
// Verify

TEST_F(DbDumpTest, VerifyAcceptsAnIntactDirectory) {
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  std::vector<Damage> seen;
  Result<VerifyReport> report = Verify(*reader, [&](const Damage& d) { seen.push_back(d); });
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->ok());
  EXPECT_TRUE(seen.empty()) << seen.front().ToString();
  EXPECT_EQ(report->records, 9u);
  EXPECT_EQ(report->first_seq, 1u);
  EXPECT_EQ(report->last_seq, 9u);
  EXPECT_EQ(report->msgid_entries, 9u);
  EXPECT_EQ(report->origin_entries, 10u);  // 5 own + 3 + 2 (one consumed)
  EXPECT_EQ(report->streams, 3u);
  EXPECT_TRUE(report->inbox_checked);
  EXPECT_EQ(report->inbox_entries, 9u);
  EXPECT_EQ(report->Summary(),
            "OK: 9 records (seq 1..9), 9 msg_id entries, 10 origin positions in 3 streams, 9 "
            "recipient index entries");
}

TEST_F(DbDumpTest, ShowsAndAcceptsDurableConsumers) {
  {
    std::unique_ptr<RocksLogStore> store = MustOpenStore(Db());
    ASSERT_NE(store, nullptr);
    StoredConsumer c;
    c.name = "work";
    c.uid = "0a1b2c3d";
    c.session = 2;
    c.floor = 4;
    c.definition.recipient = "bob";
    ConsumerChange change;
    change.name = c.name;
    change.create = c;
    change.acks = {6};
    change.dead = {DeadLetter{5, 3, 1.79e9}};
    ASSERT_TRUE(store->consumer_state()->CommitAndWait({change}).ok());
  }
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  std::ostringstream out;
  ASSERT_TRUE(DumpMetadata(*reader, DumpOptions(), out).ok());
  EXPECT_NE(out.str().find("recipient 'bob', started after seq 0, ack floor 4, 1 acknowledgements "
                           "above it, 1 dead letters, session 2"),
            std::string::npos)
      << out.str();
  Result<VerifyReport> report = Verify(*reader);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok()) << report->Summary();
  EXPECT_EQ(report->consumers, 1u);
}

struct DamageCase {
  const char* name;
  // Damages the standard directory. `own` is its own stream id.
  std::function<void(RawDb& db, const std::string& own)> damage;
  // Every damage report expected: where -> a part of the problem text.
  std::function<std::map<std::string, std::string>(const std::string& own)> expected;
};

void PrintTo(const DamageCase& c, std::ostream* os) { *os << c.name; }

std::string MetaWhere(const std::string& raw_key) { return "meta '" + Escape(raw_key) + "'"; }

const DamageCase kDamageCases[] = {
    {"malformed consumers key",
     [](RawDb& db, const std::string&) { db.Put("consumers", std::string("\x03") + "abcq", ""); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"consumers key '\\x03abcq'", "malformed consumers key"}};
     }},
    {"consumer without a definition",
     [](RawDb& db, const std::string&) {
       db.Put("consumers", schema::ConsumerKey("w", schema::kConsumerFloorTag), BigEndian64(3));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"consumers 'w' definition", "consumer has no (readable) definition"}};
     }},
    {"msg_id index entry deleted", [](RawDb& db, const std::string&) { db.Delete("msgid", "m3"); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"log seq 3", "msg_id 'm3' is not in the msg_id index"}};
     }},
    {"stray msg_id index entry pointing at another message",
     [](RawDb& db, const std::string&) { db.Put("msgid", "ghost", BigEndian64(2)); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"msgid 'ghost'", "points at seq 2, which holds msg_id 'm2'"}};
     }},
    {"stray msg_id index entry pointing past the log",
     [](RawDb& db, const std::string&) { db.Put("msgid", "ghost", BigEndian64(99)); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"msgid 'ghost'", "points at seq 99, which is not in the log"}};
     }},
    {"malformed msg_id index value",
     [](RawDb& db, const std::string&) { db.Put("msgid", "m2", "xyz"); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"msgid 'm2'", "malformed value (3 bytes, expected 8)"}};
     }},
    {"undecodable record (unknown version)",
     [](RawDb& db, const std::string&) { db.Put("log", BigEndian64(4), "\x09garbage"); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"log seq 4", "record does not decode: unknown record version 9"}};
     }},
    {"undecodable record (truncated)",
     [](RawDb& db, const std::string&) {
       const std::string record = db.Get("log", BigEndian64(6));
       db.Put("log", BigEndian64(6), record.substr(0, record.size() - 3));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"log seq 6", "record does not decode: truncated ts"}};
     }},
    {"record removed from the middle",
     [](RawDb& db, const std::string&) { db.Delete("log", BigEndian64(5)); },
     [](const std::string& own) {
       return std::map<std::string, std::string>{
           {"log seq 5", "missing (the log is not dense: seq 4 is followed by seq 6)"},
           {"msgid 'm5'", "points at seq 5, which is not in the log"},
           {"origin " + own + "#5", "points at seq 5, which is not in the log"},
           {"inbox 'bob' seq 5", "points at seq 5, which is not in the log"}};
     }},
    {"records removed from the start",
     [](RawDb& db, const std::string&) {
       db.Delete("log", BigEndian64(1));
       db.Delete("log", BigEndian64(2));
     },
     [](const std::string& own) {
       return std::map<std::string, std::string>{
           {"log seq 1..2", "missing (the log starts at seq 3)"},
           {"msgid 'm1'", "points at seq 1, which is not in the log"},
           {"msgid 'm2'", "points at seq 2, which is not in the log"},
           {"origin " + own + "#1", "points at seq 1, which is not in the log"},
           {"origin " + own + "#2", "points at seq 2, which is not in the log"},
           {std::string("origin ") + kStream3 + "#1", "points at seq 1, which is not in the log"},
           {"inbox 'bob' seq 1", "points at seq 1, which is not in the log"},
           {"inbox 'bob' seq 2", "points at seq 2, which is not in the log"}};
     }},
    {"origin position deleted",
     [](RawDb& db, const std::string&) { db.Delete("origin", schema::OriginKey(kStream2, 2)); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {std::string("origin ") + kStream2 + "#2",
            "missing (the positions of node2@0123456789abcdef are not dense: #1 is followed by "
            "#3)"},
           {"log seq 7", "origin position node2@0123456789abcdef#2 is not in the origin index"}};
     }},
    {"origin position pointing at another position",
     [](RawDb& db, const std::string&) {
       db.Put("origin", schema::OriginKey(kStream2, 2), BigEndian64(8));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {std::string("origin ") + kStream2 + "#2",
            "points at seq 8, which holds node2@0123456789abcdef#3"}};
     }},
    {"origin position of a stored record pointing at another stream's message",
     [](RawDb& db, const std::string&) {
       db.Put("origin", schema::OriginKey(kStream2, 1), BigEndian64(2));
     },
     [](const std::string& own) {
       return std::map<std::string, std::string>{
           {"log seq 6",
            "origin position node2@0123456789abcdef#1 is indexed at seq 2 (a message "
            "of stream " +
                own + "), not here"}};
     }},
    {"high water too high",
     [](RawDb& db, const std::string&) {
       db.Put("meta", schema::HighWaterKey(kStream2), BigEndian64(5));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {MetaWhere(schema::HighWaterKey(kStream2)),
            "high water is 5, but the origin index of node2@0123456789abcdef ends at position "
            "#3"}};
     }},
    {"high water missing",
     [](RawDb& db, const std::string&) { db.Delete("meta", schema::HighWaterKey(kStream3)); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {MetaWhere(schema::HighWaterKey(kStream3)),
            "missing, but the origin index holds positions of node3@fedcba9876543210 up to #2"}};
     }},
    {"high water of a stream without positions",
     [](RawDb& db, const std::string&) {
       db.Put("meta", schema::HighWaterKey("node9@0000000000000000"), BigEndian64(2));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {MetaWhere(schema::HighWaterKey("node9@0000000000000000")),
            "high water is 2, but the origin index holds no position of node9@0000000000000000"}};
     }},
    {"records of one stream out of order",
     [](RawDb& db, const std::string&) {
       const std::string six = db.Get("log", BigEndian64(6));
       const std::string seven = db.Get("log", BigEndian64(7));
       db.Put("log", BigEndian64(6), seven);
       db.Put("log", BigEndian64(7), six);
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"log seq 7",
            "node2@0123456789abcdef#1 comes after node2@0123456789abcdef#2 (seq 6): the origin's "
            "order is broken"},
           {"msgid 'p1'", "points at seq 6, which holds msg_id 'p2'"},
           {"msgid 'p2'", "points at seq 7, which holds msg_id 'p1'"},
           {std::string("origin ") + kStream2 + "#1",
            "points at seq 6, which holds node2@0123456789abcdef#2"},
           {std::string("origin ") + kStream2 + "#2",
            "points at seq 7, which holds node2@0123456789abcdef#1"}};
     }},
    {"one message stored twice",
     [](RawDb& db, const std::string& own) {
       // m2 again at seq 10, as position 6 of the own stream (fully indexed but for its msg_id).
       Message m = ClientMsg("m2");
       m.origin = own;
       m.origin_seq = 6;
       db.Put("log", BigEndian64(10), EncodeRecord(m));
       db.Put("origin", schema::OriginKey(own, 6), BigEndian64(10));
       db.Put("meta", schema::HighWaterKey(own), BigEndian64(6));
       db.Put("inbox", schema::InboxKey("bob", 10), "");
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"log seq 10",
            "msg_id 'm2' is stored twice: here and at seq 2 (where the index points)"}};
     }},
    {"recipient index entry deleted",
     [](RawDb& db, const std::string&) { db.Delete("inbox", schema::InboxKey("bob", 3)); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"log seq 3", "not in the recipient index (no inbox entry for recipient 'bob')"}};
     }},
    {"stray recipient index entry",
     [](RawDb& db, const std::string&) { db.Put("inbox", schema::InboxKey("bob", 99), ""); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"inbox 'bob' seq 99", "points at seq 99, which is not in the log"}};
     }},
    {"recipient index entry of the wrong recipient",
     [](RawDb& db, const std::string&) { db.Put("inbox", schema::InboxKey("carol", 2), ""); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"inbox 'carol' seq 2", "points at seq 2, whose recipient is 'bob'"}};
     }},
    {"recipient index entry with a value",
     [](RawDb& db, const std::string&) { db.Put("inbox", schema::InboxKey("bob", 2), "v"); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"inbox 'bob' seq 2", "unexpected value (1 bytes, expected none)"}};
     }},
    {"malformed recipient index key",
     [](RawDb& db, const std::string&) { db.Put("inbox", "\x09short", ""); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"inbox key '\\tshort'", "malformed recipient index key"}};
     }},
    {"format version missing",
     [](RawDb& db, const std::string&) {
       db.Delete("meta", std::string(schema::kFormatVersionKey));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{{"meta 'format_version'", "missing"}};
     }},
    {"malformed incarnation",
     [](RawDb& db, const std::string&) {
       db.Put("meta", std::string(schema::kIncarnationKey), "XYZ");
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{{"meta 'incarnation'", "malformed incarnation"}};
     }},
    {"malformed push cursor",
     [](RawDb& db, const std::string&) { db.Put("meta", schema::PushCursorKey(kPeer3Url), "abc"); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {MetaWhere(schema::PushCursorKey(kPeer3Url)),
            "malformed push cursor (3 bytes, expected at least 8)"}};
     }},
    {"push cursor beyond the own stream",
     [](RawDb& db, const std::string&) {
       db.Put("meta", schema::PushCursorKey(kPeer2Url), BigEndian64(50));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {MetaWhere(schema::PushCursorKey(kPeer2Url)),
            "push cursor 50 is beyond the high water 5 of the directory's own stream"}};
     }},
    {"malformed pull cursor",
     [](RawDb& db, const std::string&) {
       db.Put("meta", schema::PullCursorKey(kPeer3Url), "\x05");
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {MetaWhere(schema::PullCursorKey(kPeer3Url)), "malformed pull cursor (1 bytes)"}};
     }},
    {"unreadable membership",
     [](RawDb& db, const std::string&) {
       db.Put("meta", std::string(schema::kMembershipKey), std::string("\x01\x05", 2));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"meta 'membership'", "unreadable membership document (2 bytes)"}};
     }},
    {"unknown meta key", [](RawDb& db, const std::string&) { db.Put("meta", "surprise", "1"); },
     [](const std::string&) {
       return std::map<std::string, std::string>{{"meta 'surprise'", "unknown meta key"}};
     }},
    {"entry in the default family",
     [](RawDb& db, const std::string&) { db.Put("default", "k", "v"); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"default 'k'", "unexpected entry in the unused default family"}};
     }},
    {"malformed log key",
     [](RawDb& db, const std::string&) { db.Put("log", std::string("\xff\x01", 2), "v"); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"log key '\\xff\\x01'", "malformed log key (2 bytes, expected 8)"}};
     }},
};

// Every damage of `report` is one of `expected` (where -> a part of the problem text), and every
// expected one is reported, once.
void ExpectExactlyTheDamage(const VerifyReport& report,
                            const std::map<std::string, std::string>& expected) {
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.damage_count, report.damage.size());
  std::map<std::string, std::string> found;
  std::string all;
  for (const Damage& d : report.damage) {
    found[d.where] = d.problem;
    all += "  " + d.ToString() + "\n";
  }
  EXPECT_EQ(found.size(), report.damage.size()) << "one report per entry expected:\n" << all;
  std::set<std::string> expected_where;
  std::set<std::string> found_where;
  for (const auto& [where, problem] : expected) expected_where.insert(where);
  for (const auto& [where, problem] : found) found_where.insert(where);
  EXPECT_EQ(found_where, expected_where) << all;
  for (const auto& [where, problem] : expected) {
    auto it = found.find(where);
    if (it == found.end()) continue;
    EXPECT_NE(it->second.find(problem), std::string::npos)
        << where << ": expected '" << problem << "', got '" << it->second << "'";
  }
  EXPECT_EQ(report.Summary().rfind("DAMAGED: " + std::to_string(expected.size()) + " problem", 0),
            0u)
      << report.Summary();
}

std::string DamageCaseName(const ::testing::TestParamInfo<DamageCase>& info) {
  std::string name;
  for (const char* p = info.param.name; *p != '\0'; ++p) {
    const char ch = *p;
    name += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  }
  return name;
}

class VerifyDamageTest : public DbDumpTest, public ::testing::WithParamInterface<DamageCase> {};

TEST_P(VerifyDamageTest, ReportsExactlyTheDamage) {
  const DamageCase& c = GetParam();
  {
    RawDb db(Db());
    c.damage(db, own_stream_);
  }
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  std::vector<Damage> streamed;
  Result<VerifyReport> report = Verify(*reader, [&](const Damage& d) { streamed.push_back(d); });
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(streamed.size(), report->damage.size());
  ExpectExactlyTheDamage(*report, c.expected(own_stream_));
}

INSTANTIATE_TEST_SUITE_P(Damage, VerifyDamageTest, ::testing::ValuesIn(kDamageCases),
                         DamageCaseName);

// Every damage report of a verify of `db`, as "where: problem", sorted.
std::vector<std::string> DamageLines(const std::string& db) {
  std::unique_ptr<LogReader> reader = MustOpenReader(db);
  if (reader == nullptr) return {"(no reader)"};
  Result<VerifyReport> report = Verify(*reader, nullptr);
  EXPECT_TRUE(report.ok()) << report.status().ToString();
  if (!report.ok()) return {"(verify failed)"};
  std::vector<std::string> lines;
  for (const Damage& d : report->damage) lines.push_back(d.ToString());
  std::sort(lines.begin(), lines.end());
  return lines;
}

// Index entries that the log's digests cannot account for (an inbox entry with a value or under
// a key no read finds, a msg_id entry with an empty key) are checked against their record
// whatever their digest bucket says: an entry can be wrong twice over.
TEST_F(DbDumpTest, VerifyReadsTheRecordOfAnInboxEntryWithAValue) {
  {
    RawDb db(Db());
    db.Put("inbox", schema::InboxKey("carol", 2), "v");
    db.Put("inbox", schema::InboxKey("bob", 99), "v");
  }
  EXPECT_EQ(
      DamageLines(Db()),
      (std::vector<std::string>{"inbox 'bob' seq 99: points at seq 99, which is not in the log",
                                "inbox 'bob' seq 99: unexpected value (1 bytes, expected none)",
                                "inbox 'carol' seq 2: points at seq 2, whose recipient is 'bob'",
                                "inbox 'carol' seq 2: unexpected value (1 bytes, expected none)"}));
}

TEST_F(DbDumpTest, VerifyReadsTheRecordOfAnEmptyMsgId) {
  {
    RawDb db(Db());
    db.Put("msgid", "", BigEndian64(2));
  }
  EXPECT_EQ(DamageLines(Db()),
            (std::vector<std::string>{"msgid '': empty msg_id",
                                      "msgid '': points at seq 2, which holds msg_id 'm2'"}));
}

// The digests hash each pair's bytes, key then seq. Hashed with the seq as XXH3's seed instead,
// a short key's hash only XORs the seed into the key: msg_id 'id-00002' at seq 2 and 'hd-00003'
// at seq 3 (three bits flipped) hashed alike, and this damage passed as a sound directory.
TEST(VerifyDigestTest, APairWithBitsFlippedInBothItsKeyAndItsSeqIsDamage) {
  ScopedTempDir dir;
  const std::string db = dir.Sub("db");
  {
    std::unique_ptr<RocksLogStore> store = MustOpenStore(db);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(
        store->Append({ClientMsg("id-00001"), ClientMsg("id-00002"), ClientMsg("id-00003")}).ok());
  }
  {
    RawDb raw(db);
    raw.Delete("msgid", "id-00002");
    raw.Put("msgid", "hd-00003", BigEndian64(3));
  }
  EXPECT_EQ(DamageLines(db),
            (std::vector<std::string>{
                "log seq 2: msg_id 'id-00002' is not in the msg_id index",
                "msgid 'hd-00003': points at seq 3, which holds msg_id 'id-00003'"}));
}

// A length prefix written with a superfluous byte (0x83 0x00 is 3, as 0x03 is) still parses, but
// no read of bob's entries ever finds the entry under it: seq 3 has no recipient entry.
TEST_F(DbDumpTest, VerifyFindsARecipientEntryNoReadFinds) {
  {
    RawDb db(Db());
    db.Delete("inbox", schema::InboxKey("bob", 3));
    db.Put("inbox", std::string("\x83\x00", 2) + "bob" + BigEndian64(3), "");
  }
  EXPECT_EQ(DamageLines(Db()),
            (std::vector<std::string>{
                "log seq 3: not in the recipient index (no inbox entry for recipient 'bob')"}));
}

// The cost of a check: each family is scanned in its own order, whatever the records' msg_ids and
// recipients. Point reads (a msg_id per record, a recipient entry per record when recipients
// outnumber what forward lookups follow) would make a large directory's check wait on random
// reads; the indexes are compared with the log by digests instead, and only the pairs whose
// digests differ are looked up. RocksDB's perf context counts the table blocks the check reads.
class VerifyCostTest : public ::testing::Test {
 protected:
  static constexpr int kRecords = 3000;
  static constexpr int kRecipients = 300;  // more than the recipient lookups follow one by one

  void SetUp() override {
    std::unique_ptr<RocksLogStore> store = MustOpenStore(Db());
    ASSERT_NE(store, nullptr);
    std::vector<Message> batch;
    for (int i = 0; i < kRecords; ++i) {
      // msg_ids in another order than the log's.
      batch.push_back(ClientMsg("id-" + std::to_string((i * 7919) % kRecords), "alice",
                                "r" + std::to_string(i % kRecipients)));
    }
    ASSERT_TRUE(store->Append(batch).ok());
  }

  std::string Db() const { return dir_.Sub("db"); }

  // Verifies the directory; *blocks is the number of table blocks read from the block cache or
  // the files (the store flushed its writes when it closed).
  VerifyReport VerifyCounting(uint64_t* blocks) {
    std::unique_ptr<LogReader> reader = MustOpenReader(Db());
    EXPECT_NE(reader, nullptr);
    if (reader == nullptr) return {};
    const rocksdb::PerfLevel level = rocksdb::GetPerfLevel();
    rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
    rocksdb::get_perf_context()->Reset();
    Result<VerifyReport> report = Verify(*reader, nullptr);
    *blocks = rocksdb::get_perf_context()->block_cache_hit_count +
              rocksdb::get_perf_context()->block_read_count;
    rocksdb::SetPerfLevel(level);
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    return report.ok() ? std::move(*report) : VerifyReport();
  }

  ScopedTempDir dir_;
};

TEST_F(VerifyCostTest, AnIntactDirectoryIsCheckedWithoutALookupPerRecord) {
  uint64_t blocks = 0;
  const VerifyReport report = VerifyCounting(&blocks);
  EXPECT_TRUE(report.ok()) << report.Summary();
  EXPECT_EQ(report.records, static_cast<uint64_t>(kRecords));
  EXPECT_EQ(report.msgid_entries, static_cast<uint64_t>(kRecords));
  EXPECT_EQ(report.inbox_entries, static_cast<uint64_t>(kRecords));
  // Scans read each block about once (a few dozen here); a lookup per record reads at least one
  // block per record (9,220 here when the msg_id and recipient entries were looked up).
  EXPECT_LT(blocks, static_cast<uint64_t>(kRecords / 10));
}

TEST_F(VerifyCostTest, ADamagedDirectoryIsLookedUpOnlyWhereItDiffers) {
  {
    RawDb db(Db());
    db.Delete("msgid", "id-5");
    db.Delete("inbox", schema::InboxKey("r7", 8));
  }
  uint64_t blocks = 0;
  const VerifyReport report = VerifyCounting(&blocks);
  // id-5 is the msg_id of seq 1 + i where i * 7919 = 5 (mod 3000): i = 2395.
  ExpectExactlyTheDamage(report, {{"log seq 2396", "msg_id 'id-5' is not in the msg_id index"},
                                  {"log seq 8", "not in the recipient index"}});
  EXPECT_EQ(report.msgid_entries, static_cast<uint64_t>(kRecords - 1));
  EXPECT_EQ(report.inbox_entries, static_cast<uint64_t>(kRecords - 1));
  // The scans again, then the lookups of the pairs in the two buckets that differ (a thousandth
  // of the records each); checking every record and entry one by one read 15,503 blocks here.
  EXPECT_LT(blocks, static_cast<uint64_t>(kRecords / 10));
}

// ---------------------------------------------------------------------------------------------
// A directory retention trimmed

constexpr char kStream4[] = "node4@00000000000000aa";  // positions 1..5 skipped, never held

TrimRequest TrimBefore(uint64_t seq) {
  TrimRequest req;
  req.before_seq = seq;
  req.max_records = 1000;
  return req;
}

// Writes a directory as a node's retention leaves it:
//   seq 1..5  a1..a5, own stream positions 1..5 (ts: a1 1000, a2 and a3 2000, a4 and a5 3000)
//   seq 6..7  p1..p2 from kStream2, positions 1..2
//   kStream3 position 1 carries a2 again: consumed, it points at seq 2
//   seq 8     q2 from kStream3, position 2
//   kStream4  positions 1..5 skipped (its holder trimmed them): high water 5, no entries
// then trims seq 1 (one step) and seqs 2..3 (a second step), and expires the msg_ids of the
// first step. Left: first_seq 4, dedup_head 1, one pending step (ending at seq 3), own trim mark
// 3, kStream4's 5; msg_ids a2 and a3 kept for dedup (a1's forgotten, until compaction), and
// kStream3#1 pointing below first_seq (its record a2 was trimmed). Returns the own stream id.
std::string BuildTrimmedDir(const std::string& path) {
  std::unique_ptr<RocksLogStore> store = MustOpenStore(path);
  if (store == nullptr) return "";
  EXPECT_TRUE(store
                  ->Append({ClientMsg("a1", "alice", "bob", "x", 1000),
                            ClientMsg("a2", "alice", "bob", "x", 2000),
                            ClientMsg("a3", "alice", "bob", "x", 2000),
                            ClientMsg("a4", "alice", "bob", "x", 3000),
                            ClientMsg("a5", "alice", "bob", "x", 3000)})
                  .ok());
  EXPECT_TRUE(store->Apply({PeerMsg("p1", kStream2, 1), PeerMsg("p2", kStream2, 2)}).ok());
  Result<std::vector<WriteOutcome>> r =
      store->Apply({PeerMsg("a2", kStream3, 1), PeerMsg("q2", kStream3, 2)});
  EXPECT_TRUE(r.ok());
  if (r.ok()) {
    EXPECT_EQ((*r)[0].kind, WriteOutcome::Kind::kDuplicate);
  }
  Result<uint64_t> skipped = store->SkipTrimmed(kStream4, 5);
  EXPECT_TRUE(skipped.ok() && *skipped == 5u);
  Result<TrimResult> t1 = store->Trim(TrimBefore(2));
  EXPECT_TRUE(t1.ok() && t1->trimmed == 1u);
  Result<TrimResult> t2 = store->Trim(TrimBefore(4));
  EXPECT_TRUE(t2.ok() && t2->trimmed == 2u && t2->first_seq == 4u);
  EXPECT_TRUE(store->ExpireMsgIds(1500).ok());
  EXPECT_EQ(store->FirstSeq(), 4u);
  EXPECT_EQ(store->TrimmedThrough(store->stream_id()), 3u);
  EXPECT_EQ(store->TrimmedThrough(kStream3), 0u);
  return store->stream_id();
}

using TrimmedDirTest = DirTest<BuildTrimmedDir>;

TEST_F(TrimmedDirTest, MetadataReadsTheRetentionKeys) {
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  Result<LogMetadata> meta = reader->ReadMetadata();
  ASSERT_TRUE(meta.ok()) << meta.status().ToString();
  EXPECT_TRUE(meta->problems.empty()) << meta->problems.front().key << ": "
                                      << meta->problems.front().problem;
  EXPECT_EQ(meta->first_seq_kept, std::optional<uint64_t>(4));
  EXPECT_EQ(meta->FirstSeqKept(), 4u);
  EXPECT_EQ(meta->dedup_head, std::optional<uint64_t>(1));
  EXPECT_EQ(meta->trim_marks, (std::map<uint64_t, double>{{3, 2000}}));
  EXPECT_EQ(meta->trimmed_through,
            (std::map<std::string, uint64_t>{{own_stream_, 3}, {kStream4, 5}}));
  EXPECT_EQ(meta->first_seq, 4u);  // the log's own extent
  EXPECT_EQ(meta->last_seq, 8u);
  EXPECT_EQ(meta->message_count, 5u);
}

TEST_F(TrimmedDirTest, MetadataDumpShowsTheTrimmedPrefix) {
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  std::ostringstream out;
  size_t problems = 99;
  ASSERT_TRUE(DumpMetadata(*reader, DumpOptions(), out, &problems).ok());
  EXPECT_EQ(problems, 0u);
  std::map<std::string, std::string> values;
  for (const std::string& line : Lines(out.str())) {
    const size_t colon = line.find(": ");
    ASSERT_NE(colon, std::string::npos) << line;
    values[line.substr(0, colon)] = line.substr(line.find_first_not_of(' ', colon + 1));
  }
  EXPECT_EQ(values["first_seq_kept"], "4 (seqs 1..3 trimmed)");
  EXPECT_EQ(values["dedup_head"], "1 (msg_ids of seqs 1..1 forgotten)");
  EXPECT_EQ(values["trim_steps_pending"].rfind("1 (msg_ids kept for dedup; the last step ends at "
                                               "seq 3, its newest message 1970-01-01T00:33:20",
                                               0),
            0u)
      << values["trim_steps_pending"];
  EXPECT_EQ(values["trimmed_through " + own_stream_], "3");
  EXPECT_EQ(values[std::string("trimmed_through ") + kStream4], "5");
  EXPECT_EQ(values["first_seq"], "4");

  std::ostringstream json;
  ASSERT_TRUE(DumpMetadata(*reader, DumpOptions{OutputFormat::kJsonLines, 0}, json).ok());
  rapidjson::Document doc;
  ASSERT_FALSE(doc.Parse(json.str().c_str()).HasParseError()) << json.str();
  EXPECT_EQ(doc["first_seq_kept"].GetUint64(), 4u);
  EXPECT_EQ(doc["dedup_head"].GetUint64(), 1u);
  ASSERT_EQ(doc["trim_steps_pending"].Size(), 1u);
  EXPECT_EQ(doc["trim_steps_pending"][0]["through_seq"].GetUint64(), 3u);
  EXPECT_EQ(doc["trim_steps_pending"][0]["newest_ts"].GetDouble(), 2000.0);
  EXPECT_EQ(doc["trimmed_through"][own_stream_.c_str()].GetUint64(), 3u);
  EXPECT_EQ(doc["trimmed_through"][kStream4].GetUint64(), 5u);
}

TEST_F(DbDumpTest, AnUntrimmedDirectoryShowsNoRetentionLines) {
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  std::ostringstream out;
  ASSERT_TRUE(DumpMetadata(*reader, DumpOptions(), out).ok());
  EXPECT_EQ(out.str().find("first_seq_kept"), std::string::npos) << out.str();
  std::ostringstream json;
  ASSERT_TRUE(DumpMetadata(*reader, DumpOptions{OutputFormat::kJsonLines, 0}, json).ok());
  rapidjson::Document doc;
  ASSERT_FALSE(doc.Parse(json.str().c_str()).HasParseError()) << json.str();
  EXPECT_EQ(doc["first_seq_kept"].GetUint64(), 1u);
  EXPECT_TRUE(doc["dedup_head"].IsNull());
  EXPECT_TRUE(doc["trim_steps_pending"].GetArray().Empty());
  EXPECT_EQ(doc["trimmed_through"].MemberCount(), 0u);
}

TEST_F(TrimmedDirTest, MsgIdLookupOfATrimmedMessageSaysSo) {
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  std::ostringstream out;
  Status kept = DumpMsgId(*reader, "a2", DumpOptions(), out);
  EXPECT_EQ(kept.code(), Code::kNotFound) << kept.ToString();
  EXPECT_NE(kept.message().find("trimmed by retention"), std::string::npos) << kept.message();
  EXPECT_NE(kept.message().find("still kept for dedup"), std::string::npos) << kept.message();
  Status forgotten = DumpMsgId(*reader, "a1", DumpOptions(), out);
  if (forgotten.code() == Code::kNotFound &&
      forgotten.message().find("trimmed") != std::string::npos) {
    EXPECT_NE(forgotten.message().find("forgotten"), std::string::npos) << forgotten.message();
  }  // else compaction already dropped the entry: plain NotFound
  EXPECT_EQ(forgotten.code(), Code::kNotFound);
  EXPECT_EQ(out.str(), "");
  ASSERT_TRUE(DumpMsgId(*reader, "a4", DumpOptions{OutputFormat::kJsonLines, 0}, out).ok());
}

TEST_F(TrimmedDirTest, VerifyAcceptsATrimmedDirectory) {
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  std::vector<Damage> seen;
  Result<VerifyReport> report = Verify(*reader, [&](const Damage& d) { seen.push_back(d); });
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  std::string all;
  for (const Damage& d : seen) all += "  " + d.ToString() + "\n";
  EXPECT_TRUE(report->ok()) << all;
  EXPECT_EQ(report->records, 5u);
  EXPECT_EQ(report->first_seq, 4u);
  EXPECT_EQ(report->last_seq, 8u);
  EXPECT_EQ(report->first_seq_kept, 4u);
  EXPECT_EQ(report->dedup_head, 1u);
  EXPECT_EQ(report->trim_steps_pending, 1u);
  EXPECT_EQ(report->msgid_trimmed, 2u);  // a2, a3
  EXPECT_LE(report->msgid_forgotten, 1u);  // a1, unless compaction dropped it
  EXPECT_EQ(report->msgid_entries, 7u + report->msgid_forgotten);
  EXPECT_EQ(report->origin_trimmed, 1u);  // kStream3#1 -> seq 2
  EXPECT_EQ(report->origin_entries, 6u);  // own #4..5, kStream2 #1..2, kStream3 #1..2
  EXPECT_EQ(report->inbox_entries, 5u);
  EXPECT_NE(report->Summary().find("; trimmed below seq 4 (2 msg_id entries kept for dedup"),
            std::string::npos)
      << report->Summary();
}

TEST_F(TrimmedDirTest, VerifyAcceptsADirectoryTrimmedToEmpty) {
  {
    std::unique_ptr<RocksLogStore> store = MustOpenStore(Db());
    ASSERT_NE(store, nullptr);
    Result<TrimResult> t = store->Trim(TrimBefore(100));
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(t->first_seq, 9u);
    ASSERT_TRUE(store->ExpireMsgIds(1e12).ok());
  }
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  Result<VerifyReport> report = Verify(*reader);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  std::string all;
  for (const Damage& d : report->damage) all += "  " + d.ToString() + "\n";
  EXPECT_TRUE(report->ok()) << all;
  EXPECT_EQ(report->records, 0u);
  EXPECT_EQ(report->first_seq_kept, 9u);
  EXPECT_EQ(report->dedup_head, 8u);
  EXPECT_EQ(report->trim_steps_pending, 0u);
  EXPECT_EQ(report->origin_entries, 0u);
}

// A node told that positions it already holds were trimmed at their origin (a push whose sender's
// cursor lagged, a peer that came back after its holder trimmed past it) marks them no longer
// held: their origin index entries go with the mark, as in a trim (storage/format.md: the index
// holds exactly T+1..H).
TEST_F(TrimmedDirTest, SkippingHeldPositionsLeavesNoIndexEntryBelowTheMark) {
  {
    std::unique_ptr<RocksLogStore> store = MustOpenStore(Db());
    ASSERT_NE(store, nullptr);
    // kStream2 holds #1..2 here; its holder trimmed through #4 and through #1.
    Result<uint64_t> skipped = store->SkipTrimmed(kStream2, 4);
    ASSERT_TRUE(skipped.ok()) << skipped.status().ToString();
    EXPECT_EQ(*skipped, 2u);
    ASSERT_TRUE(store->Apply({PeerMsg("q3", kStream3, 3)}).ok());
    skipped = store->SkipTrimmed(kStream3, 1);  // at or below the high water: nothing skipped
    ASSERT_TRUE(skipped.ok()) << skipped.status().ToString();
    EXPECT_EQ(*skipped, 0u);
    EXPECT_EQ(store->TrimmedThrough(kStream3), 1u);
  }
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  Result<VerifyReport> report = Verify(*reader);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  std::string all;
  for (const Damage& d : report->damage) all += "  " + d.ToString() + "\n";
  EXPECT_TRUE(report->ok()) << all;
  EXPECT_EQ(report->origin_entries, 4u);  // own #4..5, kStream3 #2..3
  EXPECT_EQ(report->origin_trimmed, 0u);  // kStream3#1 went with the mark
}

// Two nodes that trimmed the same prefix: the consumed position kStream3#1 points at a trimmed
// record in both (not held any more, so not compared), and a1's forgotten msg_id counts for
// neither.
TEST(DbDumpCompareTest, TrimmedDirectoriesCompareEqual) {
  ScopedTempDir dir;
  ASSERT_FALSE(dir.path().empty());
  ASSERT_FALSE(BuildTrimmedDir(dir.Sub("a")).empty());
  ASSERT_FALSE(BuildTrimmedDir(dir.Sub("b")).empty());
  std::unique_ptr<LogReader> a = MustOpenReader(dir.Sub("a"));
  std::unique_ptr<LogReader> b = MustOpenReader(dir.Sub("b"));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::ostringstream out;
  Result<CompareReport> report = Compare({a.get(), b.get()}, out);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->same()) << out.str();
  EXPECT_EQ(report->distinct, 7u) << out.str();  // a2..a5, p1, p2, q2
  EXPECT_EQ(report->shared_positions, 3u);       // kStream2 #1..2 and kStream3 #2
  EXPECT_EQ(report->conflicts, 0u);
}

// A case that writes one meta entry and expects one problem, on that key. In `key`,
// kOwnPlaceholder stands for the directory's own stream id.
constexpr char kOwnPlaceholder[] = "<own>";

DamageCase OneMetaEntry(const char* name, std::string key, std::string value,
                        std::string problem) {
  auto own_key = [key](const std::string& own) {
    std::string k = key;
    const size_t at = k.find(kOwnPlaceholder);
    if (at != std::string::npos) k.replace(at, std::strlen(kOwnPlaceholder), own);
    return k;
  };
  return DamageCase{
      name, [own_key, value](RawDb& db, const std::string& own) {
        db.Put("meta", own_key(own), value);
      },
      [own_key, problem](const std::string& own) {
        return std::map<std::string, std::string>{{MetaWhere(own_key(own)), problem}};
      }};
}

// Damage inside a trimmed directory, one case per check.
const DamageCase kTrimmedDamageCases[] = {
    {"hole inside the retained range",
     [](RawDb& db, const std::string&) {
       db.Delete("log", schema::LogKey(6));
       db.Delete("msgid", "p1");
       db.Delete("origin", schema::OriginKey(kStream2, 1));
       db.Delete("inbox", schema::InboxKey("all", 6));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"log seq 6", "missing (the log is not dense: seq 5 is followed by seq 7)"},
           {std::string("origin ") + kStream2 + "#1", "missing (the positions of"}};
     }},
    {"log starts after first_seq",
     [](RawDb& db, const std::string&) {
       db.Delete("log", schema::LogKey(4));
       db.Delete("msgid", "a4");
       db.Delete("inbox", schema::InboxKey("bob", 4));
     },
     [](const std::string& own) {
       return std::map<std::string, std::string>{
           {"log seq 4", "missing (the log starts at seq 5, first_seq is 4)"},
           {"origin " + own + "#4", "points at seq 4, which is not in the log"}};
     }},
    {"a trimmed record left in the log",
     [](RawDb& db, const std::string& own) {
       Message m = ClientMsg("a3", "alice", "bob", "x", 2000);
       m.seq = 3;
       m.origin = own;
       m.origin_seq = 3;
       db.Put("log", schema::LogKey(3), EncodeRecord(m));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"log seq 3", "below first_seq 4: a trimmed record is still in the log"}};
     }},
    {"recipient index entry below first_seq",
     [](RawDb& db, const std::string&) { db.Put("inbox", schema::InboxKey("bob", 2), ""); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {DescribeKey(LogFamily::kInbox, schema::InboxKey("bob", 2)),
            "points at seq 2, below first_seq 4"}};
     }},
    {"msg_id entry at or above first_seq pointing at nothing",
     [](RawDb& db, const std::string&) { db.Put("msgid", "ghost", schema::LogKey(20)); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"msgid 'ghost'", "points at seq 20, which is not in the log"}};
     }},
    {"a retained record's msg_id indexed at a trimmed seq",
     [](RawDb& db, const std::string&) { db.Put("msgid", "a5", schema::LogKey(2)); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {"log seq 5", "msg_id 'a5' is indexed at seq 2, a trimmed record, not here"}};
     }},
    {"origin index entry at or below the trim mark",
     [](RawDb& db, const std::string& own) {
       db.Put("origin", schema::OriginKey(own, 2), schema::LogKey(5));
     },
     [](const std::string& own) {
       return std::map<std::string, std::string>{
           {"origin " + own + "#2", "at or below the trim mark 3 of"}};
     }},
    {"positions of a skipped stream missing above its trim mark",
     [](RawDb& db, const std::string&) {
       db.Put("meta", schema::HighWaterKey(kStream4), schema::LogKey(7));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {MetaWhere(schema::HighWaterKey(kStream4)),
            "high water is 7, but the origin index holds no position of " +
                std::string(kStream4) + " (trim mark 5)"}};
     }},
    OneMetaEntry("trim mark beyond the high water",
                 schema::TrimmedKey("node9@00000000000000bb"), schema::LogKey(2),
                 "trim mark 2 is beyond the high water 0"),
    {"dedup head not below first_seq",
     [](RawDb& db, const std::string&) {
       db.Put("meta", std::string(schema::kDedupHeadKey), schema::LogKey(4));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {MetaWhere(std::string(schema::kDedupHeadKey)), "dedup head 4 is not below first_seq 4"},
           {MetaWhere(schema::TrimMarkKey(3)), "is at or below the dedup head 4"}};
     }},
    {"trim step at or beyond first_seq",
     [](RawDb& db, const std::string&) {
       db.Put("meta", schema::TrimMarkKey(6), schema::EncodeTrimMarkValue(3000));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {MetaWhere(schema::TrimMarkKey(6)), "trim step ending at seq 6 is not below first_seq 4"},
           {MetaWhere(std::string(schema::kFirstSeqKey)), "no trim step"}};
     }},
    {"no trim step ends where the log starts",
     [](RawDb& db, const std::string&) { db.Delete("meta", schema::TrimMarkKey(3)); },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {MetaWhere(std::string(schema::kFirstSeqKey)),
            "first_seq is 4, but no trim step (pending mark or dedup head) ends at seq 3"}};
     }},
    OneMetaEntry("malformed first_seq", std::string(schema::kFirstSeqKey), "\x01",
                 "malformed value (1 bytes, expected 8)"),
    OneMetaEntry("first_seq 0", std::string(schema::kFirstSeqKey), schema::LogKey(0),
                 "first seq 0 is not valid"),
    OneMetaEntry("malformed dedup head", std::string(schema::kDedupHeadKey), "\x01\x02",
                 "malformed value (2 bytes, expected 8)"),
    OneMetaEntry("malformed trim mark", schema::TrimmedKey(kOwnPlaceholder), "\x03",
                 "malformed value (1 bytes, expected 8)"),
    OneMetaEntry("trim mark without an origin", std::string(schema::kTrimmedPrefix),
                 schema::LogKey(1), "trim mark without a valid origin"),
    {"malformed trim step",
     [](RawDb& db, const std::string&) {
       db.Put("meta", schema::TrimMarkKey(3), "\x01");
       db.Put("meta", std::string(schema::kTrimMarkPrefix) + "abc", schema::EncodeTrimMarkValue(1));
     },
     [](const std::string&) {
       return std::map<std::string, std::string>{
           {MetaWhere(schema::TrimMarkKey(3)), "malformed trim step value (1 bytes"},
           {MetaWhere(std::string(schema::kTrimMarkPrefix) + "abc"),
            "malformed trim step key"}};
     }},
};

class VerifyTrimmedDamageTest : public TrimmedDirTest,
                                public ::testing::WithParamInterface<DamageCase> {};

TEST_P(VerifyTrimmedDamageTest, ReportsExactlyTheDamage) {
  const DamageCase& c = GetParam();
  {
    RawDb db(Db());
    c.damage(db, own_stream_);
  }
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  Result<VerifyReport> report = Verify(*reader);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ExpectExactlyTheDamage(*report, c.expected(own_stream_));
}

INSTANTIATE_TEST_SUITE_P(TrimmedDamage, VerifyTrimmedDamageTest,
                         ::testing::ValuesIn(kTrimmedDamageCases), DamageCaseName);

TEST_F(DbDumpTest, RangeDumpStopsAtAnUndecodableRecord) {
  {
    RawDb db(Db());
    db.Put("log", BigEndian64(4), "\x07");
  }
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  for (OutputFormat format : {OutputFormat::kJsonLines, OutputFormat::kTable}) {
    std::ostringstream out;
    uint64_t count = 0;
    Status s = DumpRange(*reader, 1, 9, DumpOptions{format, 100}, out, &count);
    EXPECT_EQ(s.code(), Code::kCorruption);
    EXPECT_NE(s.message().find("record at seq 4"), std::string::npos) << s.message();
    EXPECT_EQ(count, 3u);
  }
}

TEST_F(DbDumpTest, AVersion1DirectoryHasNoRecipientIndexToCheck) {
  {
    RawDb db(Db());
    db.DropFamily("inbox");
    db.Put("meta", std::string(schema::kFormatVersionKey), BigEndian64(1));
  }
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  EXPECT_FALSE(reader->HasFamily(LogFamily::kInbox));
  Result<LogMetadata> meta = reader->ReadMetadata();
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->format_version, 1u);
  EXPECT_TRUE(meta->problems.empty());
  Result<VerifyReport> report = Verify(*reader);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok()) << report->damage.front().ToString();
  EXPECT_FALSE(report->inbox_checked);
  EXPECT_EQ(report->Summary(),
            "OK: 9 records (seq 1..9), 9 msg_id entries, 10 origin positions in 3 streams, "
            "recipient index not checked");
}

TEST_F(DbDumpTest, ARecipientIndexFamilyMissingFromAVersion2DirectoryIsDamage) {
  if (schema::kFormatVersion < 2) GTEST_SKIP() << "no recipient index in this format version";
  {
    RawDb db(Db());
    db.DropFamily("inbox");
  }
  std::unique_ptr<LogReader> reader = MustOpenReader(Db());
  ASSERT_NE(reader, nullptr);
  Result<VerifyReport> report = Verify(*reader);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->damage.size(), 1u);
  EXPECT_EQ(report->damage[0].where, "family 'inbox'");
  EXPECT_NE(report->damage[0].problem.find("missing"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// RunCommand: the combinations and exit codes of the command line.

TEST_F(DbDumpTest, RunCommandExitCodes) {
  auto run = [](const Command& cmd, std::string* out_text = nullptr,
                std::string* err_text = nullptr) {
    std::ostringstream out;
    std::ostringstream err;
    const int code = RunCommand(cmd, out, err);
    if (out_text != nullptr) *out_text = out.str();
    if (err_text != nullptr) *err_text = err.str();
    return code;
  };
  Command cmd;
  cmd.data_dir = Db();
  std::string out;
  std::string err;
  EXPECT_EQ(run(cmd, &out, &err), kExitOk);  // --meta by default
  EXPECT_NE(out.find("last_seq:"), std::string::npos);
  EXPECT_EQ(err, "");

  cmd.verify = true;
  EXPECT_EQ(run(cmd, &out), kExitOk);
  EXPECT_EQ(out, "verify " + Db() +
                     ": OK: 9 records (seq 1..9), 9 msg_id entries, 10 origin positions in 3 "
                     "streams, 9 recipient index entries\n");

  Command lookup;
  lookup.data_dir = Db();
  lookup.msg_id = "absent";
  EXPECT_EQ(run(lookup, &out, &err), kExitDamage);
  EXPECT_EQ(err, "dsm-dbdump: msg_id 'absent' is not in data directory " + Db() + "\n");

  Command bad;
  bad.data_dir = Db();
  bad.from = 5;
  bad.to = 2;
  EXPECT_EQ(run(bad, &out, &err), kExitUsage);
  EXPECT_EQ(err, "dsm-dbdump: --from 5 is after --to 2\n");
  bad.from.reset();
  bad.all = true;
  EXPECT_EQ(run(bad, &out, &err), kExitUsage);
  Command both;
  both.data_dir = Db();
  both.compare_dirs = {Db(), Db()};
  EXPECT_EQ(run(both, &out, &err), kExitUsage);
  EXPECT_EQ(run(Command(), &out, &err), kExitUsage);

  Command missing;
  missing.data_dir = dir_.Sub("nowhere");
  EXPECT_EQ(run(missing, &out, &err), kExitUsage);
  EXPECT_EQ(err, "dsm-dbdump: data directory " + dir_.Sub("nowhere") + " does not exist\n");

  {
    RawDb db(Db());
    db.Delete("msgid", "m1");
  }
  Command damaged;
  damaged.data_dir = Db();
  damaged.verify = true;
  EXPECT_EQ(run(damaged, &out, &err), kExitDamage);
  const std::vector<std::string> lines = Lines(out);
  ASSERT_EQ(lines.size(), 2u) << out;
  EXPECT_EQ(lines[0], "damage: log seq 1: msg_id 'm1' is not in the msg_id index");
  EXPECT_EQ(lines[1].rfind("verify " + Db() + ": DAMAGED: 1 problem;", 0), 0u) << lines[1];
}

// ---------------------------------------------------------------------------------------------
// Compare

TEST(DbDumpCompareTest, ListsWhatEachDirectoryMisses) {
  ScopedTempDir dir;
  ASSERT_FALSE(dir.path().empty());
  {
    std::unique_ptr<RocksLogStore> a = MustOpenStore(dir.Sub("a"), "node1");
    std::unique_ptr<RocksLogStore> b = MustOpenStore(dir.Sub("b"), "node2");
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    ASSERT_TRUE(a->Append({ClientMsg("m1"), ClientMsg("m2"), ClientMsg("m3")}).ok());
    ASSERT_TRUE(
        b->Append({ClientMsg("m1"), ClientMsg("m2"), ClientMsg("m4"), ClientMsg("m5")}).ok());
  }
  std::unique_ptr<LogReader> a = MustOpenReader(dir.Sub("a"));
  std::unique_ptr<LogReader> b = MustOpenReader(dir.Sub("b"));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::ostringstream out;
  Result<CompareReport> report = Compare({a.get(), b.get()}, out);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_FALSE(report->same());
  EXPECT_EQ(report->distinct, 5u);
  ASSERT_EQ(report->dirs.size(), 2u);
  EXPECT_EQ(report->dirs[0].msg_ids, 3u);
  EXPECT_EQ(report->dirs[0].missing, 2u);
  EXPECT_EQ(report->dirs[1].msg_ids, 4u);
  EXPECT_EQ(report->dirs[1].missing, 1u);
  EXPECT_EQ(report->shared_positions, 0u);  // two own streams: no position in common
  EXPECT_EQ(report->conflicts, 0u);
  EXPECT_EQ(report->Summary(),
            "the directories differ: [1] misses 2, [2] misses 1 (of 5 distinct msg_ids)");
  const std::vector<std::string> lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 7u) << out.str();
  EXPECT_EQ(lines[0].rfind("[1] " + dir.Sub("a") + "  node1@", 0), 0u) << lines[0];
  EXPECT_EQ(lines[2], "[1] misses 2 msg_ids that others hold:");
  EXPECT_EQ(lines[3], "  'm4'  held by [2]");
  EXPECT_EQ(lines[4], "  'm5'  held by [2]");
  EXPECT_EQ(lines[5], "[2] misses 1 msg_ids that others hold:");
  EXPECT_EQ(lines[6], "  'm3'  held by [1]");

  // A directory compared with itself (two read-only views) is the same.
  std::unique_ptr<LogReader> a2 = MustOpenReader(dir.Sub("a"));
  ASSERT_NE(a2, nullptr);
  std::ostringstream same_out;
  Result<CompareReport> same = Compare({a.get(), a2.get()}, same_out);
  ASSERT_TRUE(same.ok());
  EXPECT_TRUE(same->same());
  EXPECT_EQ(same->shared_positions, 3u);
  EXPECT_EQ(same->conflicts, 0u);
  EXPECT_EQ(same->Summary(), "the 2 directories hold the same 3 msg_ids");

  Command cmd;
  cmd.compare_dirs = {dir.Sub("a"), dir.Sub("b")};
  std::ostringstream cmd_out;
  std::ostringstream cmd_err;
  EXPECT_EQ(RunCommand(cmd, cmd_out, cmd_err), kExitDamage);
  EXPECT_NE(cmd_out.str().find("compare: the directories differ"), std::string::npos);
  cmd.compare_dirs = {dir.Sub("a"), dir.Sub("a")};
  EXPECT_EQ(RunCommand(cmd, cmd_out, cmd_err), kExitOk);
}

// Applies `msgs` (peer messages) to a fresh store of `node_id` at `path`; every one must be stored
// or consume its position (kDuplicate), none refused.
void ApplyToNewStore(const std::string& path, const std::string& node_id,
                     std::vector<Message> msgs) {
  std::unique_ptr<RocksLogStore> store = MustOpenStore(path, node_id);
  ASSERT_NE(store, nullptr);
  const size_t n = msgs.size();
  Result<std::vector<WriteOutcome>> r = store->Apply(std::move(msgs));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), n);
  for (const WriteOutcome& o : *r) {
    EXPECT_TRUE(o.kind == WriteOutcome::Kind::kAppended || o.kind == WriteOutcome::Kind::kDuplicate)
        << static_cast<int>(o.kind);
  }
}

constexpr char kStreamS[] = "node7@00000000000000aa";
constexpr char kStreamT[] = "node8@00000000000000bb";
constexpr char kStreamU[] = "node9@00000000000000cc";

// Contract 10: two directories that hold the same msg_ids but disagree on which msg_id sits at one
// position. Each store accepts its own version (a store only checks its own contents), and the
// msg_id sets alone would call the directories the same.
TEST(DbDumpCompareTest, FindsAPositionHeldWithDifferentMsgIds) {
  ScopedTempDir dir;
  ASSERT_FALSE(dir.path().empty());
  // [1] S#2 is 'y'; 'w\t2' is T#1.   [2] S#2 is 'w\t2'; 'y' is U#1.
  ApplyToNewStore(
      dir.Sub("a"), "node1",
      {PeerMsg("x", kStreamS, 1), PeerMsg("y", kStreamS, 2), PeerMsg("w\t2", kStreamT, 1)});
  ApplyToNewStore(
      dir.Sub("b"), "node2",
      {PeerMsg("x", kStreamS, 1), PeerMsg("w\t2", kStreamS, 2), PeerMsg("y", kStreamU, 1)});
  // [3] agrees with [1] on S and lacks the rest.
  ApplyToNewStore(dir.Sub("c"), "node3", {PeerMsg("x", kStreamS, 1), PeerMsg("y", kStreamS, 2)});
  std::unique_ptr<LogReader> a = MustOpenReader(dir.Sub("a"));
  std::unique_ptr<LogReader> b = MustOpenReader(dir.Sub("b"));
  std::unique_ptr<LogReader> c = MustOpenReader(dir.Sub("c"));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);

  std::ostringstream out;
  Result<CompareReport> report = Compare({a.get(), b.get()}, out);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(report->dirs.size(), 2u);
  EXPECT_EQ(report->distinct, 3u);
  EXPECT_EQ(report->dirs[0].missing, 0u);
  EXPECT_EQ(report->dirs[1].missing, 0u);
  EXPECT_EQ(report->shared_positions, 2u);  // S#1 and S#2: the pass compared them
  EXPECT_EQ(report->conflicts, 1u);
  EXPECT_FALSE(report->same());
  EXPECT_EQ(report->Summary(),
            "the directories differ: [1] misses 0, [2] misses 0 (of 3 distinct msg_ids) and 1 "
            "conflicting position");
  std::vector<std::string> lines = Lines(out.str());
  ASSERT_EQ(lines.size(), 4u) << out.str();
  EXPECT_EQ(lines[0].rfind("[1] " + dir.Sub("a") + "  node1@", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind("[2] " + dir.Sub("b") + "  node2@", 0), 0u) << lines[1];
  EXPECT_EQ(lines[2], "positions held with different msg_ids:");
  EXPECT_EQ(lines[3], std::string("  conflict at ") + kStreamS + ":2: [1] 'y'  [2] 'w\\t2'");

  // Three directories: every holder of the position is named with its msg_id; what [3] misses is
  // listed before.
  std::ostringstream three_out;
  report = Compare({a.get(), b.get(), c.get()}, three_out);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->shared_positions, 2u);
  EXPECT_EQ(report->conflicts, 1u);
  EXPECT_EQ(report->Summary(),
            "the directories differ: [1] misses 0, [2] misses 0, [3] misses 1 (of 3 distinct "
            "msg_ids) and 1 conflicting position");
  lines = Lines(three_out.str());
  ASSERT_EQ(lines.size(), 7u) << three_out.str();
  EXPECT_EQ(lines[3], "[3] misses 1 msg_ids that others hold:");
  EXPECT_EQ(lines[4], "  'w\\t2'  held by [1] [2]");
  EXPECT_EQ(lines[5], "positions held with different msg_ids:");
  EXPECT_EQ(lines[6],
            std::string("  conflict at ") + kStreamS + ":2: [1] 'y'  [2] 'w\\t2'  [3] 'y'");

  // The command line: a conflict alone makes the directories differ (exit 1).
  Command cmd;
  cmd.compare_dirs = {dir.Sub("a"), dir.Sub("b")};
  std::ostringstream cmd_out;
  std::ostringstream cmd_err;
  EXPECT_EQ(RunCommand(cmd, cmd_out, cmd_err), kExitDamage);
  EXPECT_EQ(cmd_err.str(), "");
  EXPECT_NE(cmd_out.str().find(std::string("\n  conflict at ") + kStreamS + ":2: "),
            std::string::npos)
      << cmd_out.str();
  EXPECT_NE(cmd_out.str().find("\ncompare: the directories differ: [1] misses 0, [2] misses 0 (of "
                               "3 distinct msg_ids) and 1 conflicting position\n"),
            std::string::npos)
      << cmd_out.str();
}

// Directories that agree on every position they share show no conflict, whatever else differs:
// the stores are filled in different orders (different seqs), one holds a stream the other lacks,
// and one consumed a position (its entry points at the same msg_id stored under another stream).
TEST(DbDumpCompareTest, DirectoriesAgreeingOnEveryPositionShowNoConflict) {
  ScopedTempDir dir;
  ASSERT_FALSE(dir.path().empty());
  ApplyToNewStore(dir.Sub("a"), "node1",
                  {PeerMsg("z", kStreamT, 1), PeerMsg("x", kStreamS, 1), PeerMsg("y", kStreamS, 2),
                   PeerMsg("z", kStreamS, 3)});  // consumes S#3: points at T#1's record
  ApplyToNewStore(
      dir.Sub("b"), "node2",
      {PeerMsg("x", kStreamS, 1), PeerMsg("y", kStreamS, 2), PeerMsg("z", kStreamS, 3)});
  std::unique_ptr<LogReader> a = MustOpenReader(dir.Sub("a"));
  std::unique_ptr<LogReader> b = MustOpenReader(dir.Sub("b"));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(a->LookupOrigin(kStreamS, 3)->value_or(0), 1u);  // the consumed position
  ASSERT_EQ(b->LookupOrigin(kStreamS, 3)->value_or(0), 3u);

  std::ostringstream out;
  Result<CompareReport> report = Compare({a.get(), b.get()}, out);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->shared_positions, 3u);
  EXPECT_EQ(report->conflicts, 0u);
  EXPECT_TRUE(report->same());
  EXPECT_EQ(report->Summary(), "the 2 directories hold the same 3 msg_ids");
  EXPECT_EQ(Lines(out.str()).size(), 2u) << out.str();
  EXPECT_EQ(out.str().find("conflict"), std::string::npos) << out.str();

  Command cmd;
  cmd.compare_dirs = {dir.Sub("a"), dir.Sub("b")};
  std::ostringstream cmd_out;
  std::ostringstream cmd_err;
  EXPECT_EQ(RunCommand(cmd, cmd_out, cmd_err), kExitOk) << cmd_out.str() << cmd_err.str();
}

// A shared position whose entry points at nothing cannot be compared: Compare fails naming the
// directory and the entry (exit 1, like other damage) instead of guessing.
TEST(DbDumpCompareTest, ASharedPositionPointingAtNothingIsDamage) {
  ScopedTempDir dir;
  ASSERT_FALSE(dir.path().empty());
  ApplyToNewStore(dir.Sub("a"), "node1", {PeerMsg("x", kStreamS, 1)});
  ApplyToNewStore(dir.Sub("b"), "node2", {PeerMsg("x", kStreamS, 1)});
  {
    RawDb db(dir.Sub("b"));
    db.Put("origin", schema::OriginKey(kStreamS, 1), BigEndian64(99));
  }
  std::unique_ptr<LogReader> a = MustOpenReader(dir.Sub("a"));
  std::unique_ptr<LogReader> b = MustOpenReader(dir.Sub("b"));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::ostringstream out;
  Result<CompareReport> report = Compare({a.get(), b.get()}, out);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), Code::kCorruption);
  const std::string expected = "data directory " + dir.Sub("b") + ": origin " + kStreamS +
                               "#1: points at seq 99, which is not in the log; run --verify";
  EXPECT_EQ(report.status().message(), expected);

  Command cmd;
  cmd.compare_dirs = {dir.Sub("a"), dir.Sub("b")};
  std::ostringstream cmd_out;
  std::ostringstream cmd_err;
  EXPECT_EQ(RunCommand(cmd, cmd_out, cmd_err), kExitDamage);
  EXPECT_EQ(cmd_err.str(), "dsm-dbdump: " + expected + "\n");
}

// ---------------------------------------------------------------------------------------------
// LogReader: refusals, read-only promise, following a running store.

TEST(LogReaderOpenTest, RefusesWhatIsNotADsmDirectory) {
  ScopedTempDir dir;
  ASSERT_FALSE(dir.path().empty());
  struct Case {
    std::string path;
    Code code;
    std::string text;
  };
  const std::string file = dir.Sub("file");
  std::ofstream(file) << "x";
  fs::create_directories(dir.Sub("empty"));
  fs::create_directories(dir.Sub("other"));
  std::ofstream(dir.Sub("other") + "/notes.txt") << "hello";
  {
    // A RocksDB database that is not dsm's.
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir.Sub("plain"), &db).ok());
    delete db;
  }
  // A dsm directory written by a newer build.
  ASSERT_NE(MustOpenStore(dir.Sub("newer")), nullptr);
  {
    RawDb db(dir.Sub("newer"));
    db.Put("meta", std::string(schema::kFormatVersionKey), BigEndian64(schema::kFormatVersion + 1));
  }
  const std::vector<Case> cases = {
      {dir.Sub("missing"), Code::kNotFound,
       "data directory " + dir.Sub("missing") + " does not exist"},
      {file, Code::kInvalidArgument, "is not a directory"},
      {dir.Sub("empty"), Code::kInvalidArgument, "is empty"},
      {dir.Sub("other"), Code::kInvalidArgument, "is not a dsm database"},
      {dir.Sub("plain"), Code::kInvalidArgument, "not a dsm database (no column family 'log')"},
      {dir.Sub("newer"), Code::kInvalidArgument,
       "has format version " + std::to_string(schema::kFormatVersion + 1) +
           ", newer than this build"},
      {"", Code::kInvalidArgument, "no data directory"},
  };
  for (const Case& c : cases) {
    for (LogReaderOptions::Mode mode :
         {LogReaderOptions::Mode::kReadOnly, LogReaderOptions::Mode::kSecondary}) {
      Result<std::unique_ptr<LogReader>> reader = OpenReader(c.path, mode);
      ASSERT_FALSE(reader.ok()) << c.path;
      EXPECT_EQ(reader.status().code(), c.code) << reader.status().ToString();
      EXPECT_NE(reader.status().message().find(c.text), std::string::npos)
          << reader.status().message();
      EXPECT_EQ(reader.status().message().find('\n'), std::string::npos);
    }
  }
}

// Name, size and modification time of every file under `path`.
std::map<std::string, std::pair<uintmax_t, fs::file_time_type>> Snapshot(const std::string& path) {
  std::map<std::string, std::pair<uintmax_t, fs::file_time_type>> files;
  for (const auto& e : fs::recursive_directory_iterator(path)) {
    if (!e.is_regular_file()) continue;
    files[e.path().string()] = {e.file_size(), e.last_write_time()};
  }
  return files;
}

TEST_F(DbDumpTest, ReadingChangesNothingInTheDirectory) {
  const auto before = Snapshot(Db());
  for (LogReaderOptions::Mode mode :
       {LogReaderOptions::Mode::kReadOnly, LogReaderOptions::Mode::kSecondary}) {
    std::unique_ptr<LogReader> reader = MustOpenReader(Db(), mode);
    ASSERT_NE(reader, nullptr);
    std::ostringstream out;
    ASSERT_TRUE(DumpMetadata(*reader, DumpOptions(), out).ok());
    Result<VerifyReport> report = Verify(*reader);
    ASSERT_TRUE(report.ok());
    EXPECT_TRUE(report->ok());
  }
  EXPECT_EQ(Snapshot(Db()), before);
}

TEST(LogReaderFollowTest, SecondarySeesNewAppendsAfterCatchUp) {
  ScopedTempDir dir;
  ASSERT_FALSE(dir.path().empty());
  std::unique_ptr<RocksLogStore> store = MustOpenStore(dir.Sub("db"));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Append({ClientMsg("a1"), ClientMsg("a2"), ClientMsg("a3")}).ok());

  std::unique_ptr<LogReader> reader =
      MustOpenReader(dir.Sub("db"), LogReaderOptions::Mode::kSecondary);
  ASSERT_NE(reader, nullptr);
  Result<LogMetadata> meta = reader->ReadMetadata();
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->last_seq, 3u);
  EXPECT_EQ(meta->stream_id(), store->stream_id());

  ASSERT_TRUE(store->Append({ClientMsg("a4"), ClientMsg("a5")}).ok());
  const PullCursor cursor{kStream2, 1};
  ASSERT_TRUE(store->Apply({PeerMsg("p1", kStream2, 1)}, kPeer2Url, &cursor).ok());
  // The view only moves at a catch-up.
  meta = reader->ReadMetadata();
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->last_seq, 3u);

  ASSERT_TRUE(reader->CatchUp().ok());
  meta = reader->ReadMetadata();
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->last_seq, 6u);
  EXPECT_EQ(meta->message_count, 6u);
  EXPECT_EQ(meta->high_waters[kStream2], 1u);
  EXPECT_EQ(meta->pull_cursors[kPeer2Url], cursor);
  Result<std::optional<Message>> m = reader->Get(5);
  ASSERT_TRUE(m.ok() && m->has_value());
  EXPECT_EQ((*m)->msg_id, "a5");
  Result<VerifyReport> report = Verify(*reader);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok()) << report->damage.front().ToString();
  EXPECT_EQ(report->records, 6u);
}

// Another process holding a data directory open (tests/tools/hold_store_child.cc): started on
// construction, told to close the store and reaped on destruction.
class StoreHolder {
 public:
  explicit StoreHolder(const std::string& path) {
    int to_child[2];
    int from_child[2];
    if (::pipe2(to_child, O_CLOEXEC) != 0) return;
    if (::pipe2(from_child, O_CLOEXEC) != 0) {
      ::close(to_child[0]);
      ::close(to_child[1]);
      return;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(to_child[0], STDIN_FILENO);
      ::dup2(from_child[1], STDOUT_FILENO);
      ::execl(DSM_HOLD_STORE_CHILD, DSM_HOLD_STORE_CHILD, path.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    stdin_ = to_child[1];
    stdout_ = from_child[0];
  }
  ~StoreHolder() {
    if (stdin_ >= 0) ::close(stdin_);
    if (pid_ > 0) {
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (stdout_ >= 0) ::close(stdout_);
  }
  StoreHolder(const StoreHolder&) = delete;
  StoreHolder& operator=(const StoreHolder&) = delete;

  pid_t pid() const { return pid_; }

  // Waits (up to `timeout`) for the child to report that it holds the store.
  bool WaitReady(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return false;
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (got.find("ready\n") == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) != 1) return false;
      char buf[64];
      const ssize_t n = ::read(stdout_, buf, sizeof(buf));
      if (n <= 0) return false;  // the child exited
      got.append(buf, static_cast<size_t>(n));
    }
    return true;
  }

  // Lets the child close the store and exit; returns its exit status.
  int Release() {
    ::close(stdin_);
    stdin_ = -1;
    int status = 0;
    if (::waitpid(pid_, &status, 0) != pid_) return -1;
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
};

TEST(LogReaderFollowTest, ReadOnlyRefusesADirectoryAnotherProcessHolds) {
  ScopedTempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string db = dir.Sub("db");
  StoreHolder holder(db);
  ASSERT_TRUE(holder.WaitReady(std::chrono::seconds(60))) << "the holder did not open " << db;

  Result<std::unique_ptr<LogReader>> ro = OpenReader(db);
  ASSERT_FALSE(ro.ok());
  EXPECT_EQ(ro.status().code(), Code::kUnavailable);
  EXPECT_NE(ro.status().message().find("in use by a running process (pid " +
                                       std::to_string(holder.pid())),
            std::string::npos)
      << ro.status().message();

  // As a secondary it reads what the holder wrote.
  std::unique_ptr<LogReader> follower = MustOpenReader(db, LogReaderOptions::Mode::kSecondary);
  ASSERT_NE(follower, nullptr);
  Result<std::optional<uint64_t>> seq = follower->LookupMsgId("held");
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(seq->value_or(0), 1u);
  Result<VerifyReport> report = Verify(*follower);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok());

  // The command line says what to do.
  Command cmd;
  cmd.data_dir = db;
  std::ostringstream out;
  std::ostringstream err;
  EXPECT_EQ(RunCommand(cmd, out, err), kExitUsage);
  EXPECT_NE(err.str().find("use --follow-running"), std::string::npos) << err.str();
  cmd.follow_running = true;
  EXPECT_EQ(RunCommand(cmd, out, err), kExitOk);
  EXPECT_NE(out.str().find("secondary"), std::string::npos);

  follower.reset();
  const int status = holder.Release();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// ---------------------------------------------------------------------------------------------
// Text helpers

TEST(DbDumpTextTest, EscapeFitAndTimestamps) {
  EXPECT_EQ(Escape("plain text"), "plain text");
  EXPECT_EQ(Escape(std::string("a\0b\n\\\x01", 6)), "a\\0b\\n\\\\\\x01");
  EXPECT_EQ(Escape("caf\xc3\xa9"), "caf\xc3\xa9");  // valid UTF-8 stays
  EXPECT_EQ(Escape("\xff\xc3"), "\\xff\\xc3");      // invalid bytes do not
  EXPECT_EQ(Escape("\xc2\x85"), "\\xc2\\x85");      // a C1 control character
  EXPECT_EQ(DisplayWidth("caf\xc3\xa9"), 4u);
  EXPECT_EQ(Fit("abcdefghij", 0), "abcdefghij");
  EXPECT_EQ(Fit("abcdefghij", 10), "abcdefghij");
  EXPECT_EQ(Fit("abcdefghij", 7), "abcd...");
  EXPECT_EQ(Fit("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 4), "\xc3\xa9...");
  EXPECT_EQ(Fit("abcdefghij", 2), "ab");
  EXPECT_EQ(FormatTimestamp(1700000000.25), "2023-11-14T22:13:20.250Z");
  EXPECT_EQ(FormatTimestamp(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatTimestamp(-0.5), "1969-12-31T23:59:59.500Z");
  EXPECT_EQ(FormatTimestamp(1e300), "1.0000000000000001e+300");
  EXPECT_EQ(DescribeKey(LogFamily::kLog, BigEndian64(7)), "log seq 7");
  EXPECT_EQ(DescribeKey(LogFamily::kOrigin, schema::OriginKey("n@1", 3)), "origin n@1#3");
  EXPECT_EQ(DescribeKey(LogFamily::kMeta, schema::HighWaterKey("n@1")), "meta 'hwm\\0n@1'");
  EXPECT_EQ(DescribeKey(LogFamily::kMsgId, "it's"), "msgid 'it's'");
}

TEST(DbDumpTextTest, MessageJsonMatchesTheApiFields) {
  Message m = PeerMsg("id-1", kStream2, 4, "say \"hi\"");
  m.seq = 12;
  EXPECT_EQ(MessageJson(m),
            "{\"seq\":12,\"msg_id\":\"id-1\",\"sender\":\"carol\",\"recipient\":\"all\","
            "\"payload\":\"say \\\"hi\\\"\",\"ts\":1700000001.5,\"origin\":\"" +
                std::string(kStream2) + "\",\"origin_seq\":4}");
  Message bad = m;
  bad.payload = "\xff";
  rapidjson::Document doc;
  ASSERT_FALSE(doc.Parse(MessageJson(bad).c_str()).HasParseError());
  EXPECT_STREQ(doc["payload"].GetString(), "?");
}

}  // namespace
}  // namespace dsm::dbdump

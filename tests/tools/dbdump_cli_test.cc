// The dsm-dbdump binary itself (found through DSM_BIN_DIR): --help documents every option,
// errors are one line on stderr with exit code 2, --verify answers 0 with a one-line summary on
// a sound directory, --compare answers 1 when directories differ (in msg_ids or in the msg_id held
// at a position).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "storage/rocks_log_store.h"
#include "tests/testing/process.h"

namespace dsm {
namespace {

using testing::BinaryPath;
using testing::RunResult;
using testing::RunToExit;
using testing::TempDir;

RunResult Dbdump(std::vector<std::string> args) {
  args.insert(args.begin(), BinaryPath("dsm-dbdump"));
  return RunToExit(args, testing::Millis(60000));
}

size_t CountLines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

// A data directory of node `node_id` holding `ids`: as its own client messages when `origin` is
// empty, else as messages of peer stream `origin` at positions 1, 2, ...
void WriteDir(const std::string& path, const std::string& node_id,
              const std::vector<std::string>& ids, const std::string& origin = "") {
  RocksLogStoreOptions options;
  options.path = path;
  options.node_id = node_id;
  Result<std::unique_ptr<RocksLogStore>> store = RocksLogStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  std::vector<Message> msgs;
  for (const std::string& id : ids) {
    Message m;
    m.msg_id = id;
    m.sender = "alice";
    m.recipient = "bob";
    m.payload = "payload of " + id;
    m.ts = 1700000000.5;
    if (!origin.empty()) {
      m.origin = origin;
      m.origin_seq = msgs.size() + 1;
    }
    msgs.push_back(m);
  }
  Result<std::vector<WriteOutcome>> r =
      origin.empty() ? (*store)->Append(msgs) : (*store)->Apply(msgs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (const WriteOutcome& o : *r) ASSERT_EQ(o.kind, WriteOutcome::Kind::kAppended);
}

TEST(DbdumpCliTest, HelpDocumentsEveryOption) {
  RunResult r = Dbdump({"--help"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 0) << r.exit.ToString() << r.err;
  for (const char* option : {"--data-dir", "--meta", "--from", "--to", "--msg-id", "--all",
                             "--format", "--width", "--verify", "--follow-running", "--compare"}) {
    EXPECT_NE(r.out.find(option), std::string::npos) << option << " missing from:\n" << r.out;
  }
  EXPECT_NE(r.out.find("Exit codes"), std::string::npos);
}

TEST(DbdumpCliTest, MissingDirectoryIsAOneLineErrorWithExitCode2) {
  TempDir dir;
  const std::string missing = dir.Sub("not-there");
  RunResult r = Dbdump({"--data-dir", missing, "--verify"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 2) << r.exit.ToString();
  EXPECT_EQ(r.err, "dsm-dbdump: data directory " + missing + " does not exist\n");
  EXPECT_EQ(r.out, "");
}

TEST(DbdumpCliTest, UsageErrorsAreOneLineWithExitCode2) {
  TempDir dir;
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"--data-dir", dir.path(), "--format", "xml"},
      {"--data-dir", dir.path(), "--from", "abc"},
      {"--data-dir", dir.path(), "--from", "-3"},
      {"--data-dir", dir.path(), "--to", "1.5"},
      {"--data-dir", dir.path(), "--to", "18446744073709551616"},
      {"--data-dir", dir.path(), "--from", "9", "--to", "3"},
      {"--data-dir", dir.path(), "--all", "--from", "2"},
      {"--compare", dir.path()},
      {"--no-such-option"},
  };
  for (const auto& args : cases) {
    RunResult r = Dbdump(args);
    ASSERT_FALSE(r.timed_out);
    std::string shown;
    for (const std::string& a : args) shown += a + " ";
    EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 2) << shown << r.exit.ToString();
    EXPECT_EQ(CountLines(r.err), 1u) << shown << r.err;
    EXPECT_EQ(r.err.rfind("dsm-dbdump: ", 0), 0u) << r.err;
  }
}

TEST(DbdumpCliTest, VerifyOfASoundDirectoryExitsZeroWithOneLine) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  WriteDir(db, "node1", {"a", "b", "c"});
  RunResult r = Dbdump({"--data-dir", db, "--verify"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 0) << r.exit.ToString() << r.err;
  EXPECT_EQ(r.out.rfind("verify " + db +
                            ": OK: 3 records (seq 1..3), 3 msg_id entries, 3 origin positions in "
                            "1 stream",
                        0),
            0u)
      << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_EQ(r.err, "");
}

// The table file (.sst) of `db` that holds `needle`, and the offset of the needle in it; "" when
// none does.
std::pair<std::string, size_t> TableFileHolding(const std::string& db, const std::string& needle) {
  for (const auto& entry : std::filesystem::directory_iterator(db)) {
    if (entry.path().extension() != ".sst") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (size_t at = bytes.find(needle); at != std::string::npos) return {entry.path().string(), at};
  }
  return {"", 0};
}

// A table file of the log whose block checksum fails (a bit rot, a bad sector): --verify reports
// it as a `damage:` line naming the family and the file, with the DAMAGED summary; the metadata
// that can be read is still shown; both say on stderr where the recovery steps are.
TEST(DbdumpCliTest, ADamagedTableFileIsReportedAsDamage) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  WriteDir(db, "node1", {"m1", "m2", "m3"});  // closed cleanly: the records are in table files
  // The first record's payload: its first occurrence, stored literally whatever the compression.
  const auto [sst, at] = TableFileHolding(db, "payload of m1");
  ASSERT_FALSE(sst.empty()) << "no table file of " << db << " holds the log's records";
  {
    std::fstream f(sst, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(at));
    f.write("\xff\xff\xff\xff", 4);
    ASSERT_TRUE(f.good());
  }
  const std::string sst_name = std::filesystem::path(sst).filename().string();
  const std::string hint =
      "dsm-dbdump: data directory " + db +
      " is damaged; to bring its node back, see docs/operations.md, \"Recovering a damaged or "
      "lost node\"\n";

  RunResult r = Dbdump({"--data-dir", db, "--verify"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 1) << r.exit.ToString() << r.err;
  std::vector<std::string> lines;
  for (size_t pos = 0, nl; (nl = r.out.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    lines.push_back(r.out.substr(pos, nl - pos));
  }
  ASSERT_GE(lines.size(), 2u) << "stdout:\n" << r.out << "stderr:\n" << r.err;
  EXPECT_EQ(lines[0].rfind("damage: family 'log': damaged, cannot be read (the scan stopped "
                           "before the first record): scan of log: Corruption: ",
                           0),
            0u)
      << r.out;
  EXPECT_NE(lines[0].find(sst_name), std::string::npos) << "the damaged file is not named:\n"
                                                        << r.out;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_EQ(lines[i].rfind("damage: ", 0), 0u) << r.out;
  }
  EXPECT_EQ(lines.back().rfind("verify " + db + ": DAMAGED: ", 0), 0u) << r.out;
  EXPECT_EQ(r.err, hint);

  // The metadata: what can be read, and what cannot.
  r = Dbdump({"--data-dir", db});
  ASSERT_FALSE(r.timed_out);
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 1) << r.exit.ToString() << r.err;
  for (const std::string& want :
       {std::string("node_id:"), std::string("format_version:"), std::string("high_water node1@"),
        std::string("unreadable:"), sst_name}) {
    EXPECT_NE(r.out.find(want), std::string::npos) << want << " missing from:\n" << r.out;
  }
  EXPECT_NE(r.out.find("node1\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.err, hint);
}

TEST(DbdumpCliTest, DumpsARangeAndComparesDirectories) {
  TempDir dir;
  WriteDir(dir.Sub("a"), "node1", {"a", "b", "c"});
  WriteDir(dir.Sub("b"), "node2", {"a", "c"});

  RunResult r = Dbdump({"--data-dir", dir.Sub("a"), "--from", "2", "--format", "jsonl"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 0) << r.exit.ToString() << r.err;
  ASSERT_EQ(CountLines(r.out), 2u) << r.out;
  EXPECT_EQ(r.out.rfind("{\"seq\":2,\"msg_id\":\"b\",", 0), 0u) << r.out;

  r = Dbdump({"--data-dir", dir.Sub("a"), "--msg-id", "zzz"});
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 1) << r.exit.ToString();
  EXPECT_EQ(CountLines(r.err), 1u) << r.err;

  r = Dbdump({"--compare", dir.Sub("a"), dir.Sub("b")});
  ASSERT_FALSE(r.timed_out);
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 1) << r.exit.ToString() << r.err;
  EXPECT_NE(r.out.find("[2] misses 1 msg_ids that others hold:\n  'b'  held by [1]\n"),
            std::string::npos)
      << r.out;

  r = Dbdump({"--compare", dir.Sub("a"), dir.Sub("a"), "--follow-running"});
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 0) << r.exit.ToString() << r.err;
  EXPECT_NE(r.out.find("compare: the 2 directories hold the same 3 msg_ids"), std::string::npos)
      << r.out;
}

TEST(DbdumpCliTest, CompareAnswers1ForAConflictingPosition) {
  TempDir dir;
  constexpr char kOrigin[] = "node9@00000000000000aa";
  WriteDir(dir.Sub("a"), "node1", {"a", "b", "c"}, kOrigin);
  WriteDir(dir.Sub("b"), "node2", {"a", "c", "b"}, kOrigin);  // the same msg_ids

  RunResult r = Dbdump({"--compare", dir.Sub("a"), dir.Sub("b")});
  ASSERT_FALSE(r.timed_out);
  EXPECT_TRUE(r.exit.exited && r.exit.exit_code == 1) << r.exit.ToString() << r.err;
  const std::string origin = kOrigin;
  std::string expected = "positions held with different msg_ids:\n";
  expected += "  conflict at " + origin + ":2: [1] 'b'  [2] 'c'\n";
  expected += "  conflict at " + origin + ":3: [1] 'c'  [2] 'b'\n";
  expected +=
      "compare: the directories differ: [1] misses 0, [2] misses 0 (of 3 distinct msg_ids) and 2 "
      "conflicting positions\n";
  EXPECT_NE(r.out.find(expected), std::string::npos) << r.out;
  EXPECT_EQ(r.err, "");
}

}  // namespace
}  // namespace dsm

// Power cuts in one process (tests/storage/power_loss_fs.h):
//  - PowerLossFs itself: synced bytes survive a cut, unsynced ones do not, whatever Close, Flush or
//    RangeSync did; a file whose name never became durable disappears; renames carry the synced
//    state; files that existed before are kept as they were; with the power off every write
//    fails; the journal is replayed exactly (a torn last line, a rename cut in half);
//  - RocksLogStore across a cut: with sync on, every acknowledged Append survives (through a
//    flush to table files and a reopen too); with sync off, a cut loses acknowledged appends -
//    the evidence that a store acknowledging before fsync fails the power-cut tests.
#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "storage/rocks_log_store.h"
#include "tests/storage/power_loss_fs.h"
#include "tests/storage/test_util.h"

namespace dsm {
namespace {

namespace fs = std::filesystem;
using storage_test::ApplyPowerCut;
using storage_test::ClientMsg;
using storage_test::PowerCutReport;
using storage_test::PowerJournalPath;
using storage_test::PowerLossFs;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteAll(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

class PowerLossFsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }

  std::unique_ptr<rocksdb::FSWritableFile> Create(const std::string& name) {
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s =
        fs_.NewWritableFile(dir_.Sub(name), rocksdb::FileOptions(), &file, nullptr);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return file;
  }
  static void Append(rocksdb::FSWritableFile* file, const std::string& data) {
    rocksdb::IOStatus s = file->Append(data, rocksdb::IOOptions(), nullptr);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  static void Sync(rocksdb::FSWritableFile* file) {
    rocksdb::IOStatus s = file->Sync(rocksdb::IOOptions(), nullptr);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  static void Close(rocksdb::FSWritableFile* file) {
    rocksdb::IOStatus s = file->Close(rocksdb::IOOptions(), nullptr);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  void FsyncDir() {
    std::unique_ptr<rocksdb::FSDirectory> d;
    ASSERT_TRUE(fs_.NewDirectory(dir_.path(), rocksdb::IOOptions(), &d, nullptr).ok());
    ASSERT_TRUE(d->Fsync(rocksdb::IOOptions(), nullptr).ok());
  }
  // Switches the power off and applies the cut.
  PowerCutReport Cut() {
    fs_.PowerCut();
    PowerCutReport report;
    Status s = ApplyPowerCut(journal_, &report);
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_FALSE(fs::exists(journal_)) << "the journal outlived its cut";
    return report;
  }
  bool Exists(const std::string& name) const { return fs::exists(dir_.Sub(name)); }

  storage_test::ScopedTempDir dir_;
  const std::string journal_ = PowerJournalPath(dir_.Sub("files"));
  PowerLossFs fs_{journal_};
};

TEST_F(PowerLossFsTest, SyncedBytesSurviveACutUnsyncedBytesDoNot) {
  std::unique_ptr<rocksdb::FSWritableFile> f = Create("a");
  Append(f.get(), "durable");
  Sync(f.get());
  Append(f.get(), "-lost");
  ASSERT_TRUE(f->Flush(rocksdb::IOOptions(), nullptr).ok());
  ASSERT_TRUE(f->RangeSync(0, 12, rocksdb::IOOptions(), nullptr).ok());
  // Until the cut, reads and sizes see every byte written.
  EXPECT_EQ(f->GetFileSize(rocksdb::IOOptions(), nullptr), 12u);
  Close(f.get());
  EXPECT_EQ(ReadAll(dir_.Sub("a")), "durable-lost");

  PowerCutReport report = Cut();
  EXPECT_EQ(ReadAll(dir_.Sub("a")), "durable");
  EXPECT_EQ(report.files_truncated, 1u);
  EXPECT_EQ(report.files_removed, 0u);
  EXPECT_EQ(report.bytes_dropped, 5u);
}

TEST_F(PowerLossFsTest, FsyncMakesDurableOnlyWhatWasAppendedBeforeIt) {
  std::unique_ptr<rocksdb::FSWritableFile> f = Create("a.log");
  Append(f.get(), "one,");
  Sync(f.get());
  Append(f.get(), "two,");
  ASSERT_TRUE(f->Fsync(rocksdb::IOOptions(), nullptr).ok());
  Append(f.get(), "three");
  Close(f.get());
  PowerCutReport report = Cut();
  EXPECT_EQ(ReadAll(dir_.Sub("a.log")), "one,two,");
  EXPECT_EQ(report.wal_bytes_dropped, 5u);
}

TEST_F(PowerLossFsTest, AFileNeverSyncedDisappearsWhateverCloseDid) {
  std::unique_ptr<rocksdb::FSWritableFile> f = Create("b");
  Append(f.get(), "never synced");
  ASSERT_TRUE(f->Flush(rocksdb::IOOptions(), nullptr).ok());
  Close(f.get());
  PowerCutReport report = Cut();
  EXPECT_FALSE(Exists("b"));
  EXPECT_EQ(report.files_removed, 1u);
  EXPECT_EQ(report.bytes_dropped, 12u);
}

TEST_F(PowerLossFsTest, ADirectoryFsyncKeepsTheNameButNotTheBytes) {
  std::unique_ptr<rocksdb::FSWritableFile> f = Create("c");
  FsyncDir();
  Append(f.get(), "unsynced");
  Close(f.get());
  Cut();
  ASSERT_TRUE(Exists("c"));
  EXPECT_EQ(fs::file_size(dir_.Sub("c")), 0u);
}

TEST_F(PowerLossFsTest, RenamesCarryTheSyncedState) {
  std::unique_ptr<rocksdb::FSWritableFile> f = Create("synced.tmp");
  Append(f.get(), "content");
  Sync(f.get());
  Close(f.get());
  ASSERT_TRUE(
      fs_.RenameFile(dir_.Sub("synced.tmp"), dir_.Sub("synced"), rocksdb::IOOptions(), nullptr)
          .ok());
  std::unique_ptr<rocksdb::FSWritableFile> g = Create("unsynced.tmp");
  Append(g.get(), "content");
  Close(g.get());
  ASSERT_TRUE(
      fs_.RenameFile(dir_.Sub("unsynced.tmp"), dir_.Sub("unsynced"), rocksdb::IOOptions(), nullptr)
          .ok());
  Cut();
  EXPECT_EQ(ReadAll(dir_.Sub("synced")), "content");
  EXPECT_FALSE(Exists("unsynced"));
  EXPECT_FALSE(Exists("synced.tmp"));
  EXPECT_FALSE(Exists("unsynced.tmp"));
}

TEST_F(PowerLossFsTest, FilesFromBeforeKeepTheirContent) {
  WriteAll(dir_.Sub("old"), "before;");
  WriteAll(dir_.Sub("old2"), "before;");
  std::unique_ptr<rocksdb::FSWritableFile> f;
  ASSERT_TRUE(fs_.ReopenWritableFile(dir_.Sub("old"), rocksdb::FileOptions(), &f, nullptr).ok());
  Append(f.get(), "after");
  Close(f.get());
  std::unique_ptr<rocksdb::FSWritableFile> g;
  ASSERT_TRUE(fs_.ReopenWritableFile(dir_.Sub("old2"), rocksdb::FileOptions(), &g, nullptr).ok());
  Append(g.get(), "after");
  Sync(g.get());
  Close(g.get());
  Cut();
  EXPECT_EQ(ReadAll(dir_.Sub("old")), "before;");
  EXPECT_EQ(ReadAll(dir_.Sub("old2")), "before;after");
}

TEST_F(PowerLossFsTest, WithThePowerOffEveryWriteFails) {
  std::unique_ptr<rocksdb::FSWritableFile> f = Create("d");
  Append(f.get(), "x");
  Sync(f.get());
  Close(f.get());
  std::unique_ptr<rocksdb::FSWritableFile> open = Create("e");
  fs_.PowerCut();
  const rocksdb::IOOptions io;
  EXPECT_TRUE(open->Append("y", io, nullptr).IsIOError());
  EXPECT_TRUE(open->Sync(io, nullptr).IsIOError());
  EXPECT_TRUE(open->Fsync(io, nullptr).IsIOError());
  EXPECT_TRUE(open->Flush(io, nullptr).IsIOError());
  EXPECT_TRUE(open->Close(io, nullptr).ok());
  std::unique_ptr<rocksdb::FSWritableFile> g;
  EXPECT_TRUE(fs_.NewWritableFile(dir_.Sub("g"), rocksdb::FileOptions(), &g, nullptr).IsIOError());
  EXPECT_TRUE(fs_.RenameFile(dir_.Sub("d"), dir_.Sub("h"), io, nullptr).IsIOError());
  EXPECT_TRUE(fs_.DeleteFile(dir_.Sub("d"), io, nullptr).IsIOError());
  // Reads still work.
  std::unique_ptr<rocksdb::FSSequentialFile> r;
  ASSERT_TRUE(fs_.NewSequentialFile(dir_.Sub("d"), rocksdb::FileOptions(), &r, nullptr).ok());
  PowerCutReport report;
  ASSERT_TRUE(ApplyPowerCut(journal_, &report).ok());
  EXPECT_EQ(ReadAll(dir_.Sub("d")), "x");
  EXPECT_FALSE(Exists("e"));
}

TEST_F(PowerLossFsTest, AnUnappliedJournalIsNeverAppendedTo) {
  WriteAll(journal_, "");
  std::unique_ptr<rocksdb::FSWritableFile> f;
  EXPECT_TRUE(fs_.NewWritableFile(dir_.Sub("f"), rocksdb::FileOptions(), &f, nullptr).IsIOError());
}

TEST_F(PowerLossFsTest, NoJournalNothingToCut) {
  PowerCutReport report;
  ASSERT_TRUE(ApplyPowerCut(journal_, &report).ok());
  EXPECT_FALSE(report.journal_found);
}

// Journals as a killed process leaves them, replayed by ApplyPowerCut.
TEST_F(PowerLossFsTest, JournalReplay) {
  const std::string a = dir_.Sub("a");
  const std::string b = dir_.Sub("b");
  struct Case {
    const char* name;
    std::string journal;
    bool a_exists;  // before the cut (with content "0123456789")
    bool b_exists;
    std::string a_after;  // "-" = gone
    std::string b_after;
  };
  const std::vector<Case> cases = {
      {"synced", "C\t1\t" + a + "\nS\t1\t4\n", true, false, "0123", "-"},
      {"torn last line ignored", "C\t1\t" + a + "\nS\t1\t4\nS\t1\t8", true, false, "0123", "-"},
      {"larger sync wins", "C\t1\t" + a + "\nS\t1\t8\nS\t1\t4\n", true, false, "01234567", "-"},
      {"dir fsync names", "C\t1\t" + a + "\nF\t" + dir_.path() + "\n", true, false, "", "-"},
      {"other dir fsync does not", "C\t1\t" + a + "\nF\t/elsewhere\n", true, false, "-", "-"},
      {"rename done", "C\t1\t" + a + "\nS\t1\t4\nM\t" + a + "\t" + b + "\nR\n", false, true, "-",
       "0123"},
      {"rename failed", "C\t1\t" + a + "\nS\t1\t4\nM\t" + a + "\t" + b + "\nS\t1\t6\n", true, false,
       "012345", "-"},
      {"rename cut after the fact", "C\t1\t" + a + "\nS\t1\t4\nM\t" + a + "\t" + b + "\n", false,
       true, "-", "0123"},
      {"rename cut before the fact", "C\t1\t" + a + "\nS\t1\t4\nM\t" + a + "\t" + b + "\n", true,
       false, "0123", "-"},
      {"rename over a tracked file",
       "C\t1\t" + a + "\nC\t2\t" + b + "\nS\t2\t9\nM\t" + a + "\t" + b + "\nR\n", false, true, "-",
       "-"},
      {"deleted", "C\t1\t" + a + "\nD\t" + a + "\n", true, false, "0123456789", "-"},
      {"reopened", "O\t1\t3\t" + a + "\n", true, false, "012", "-"},
      {"recreated", "C\t1\t" + a + "\nS\t1\t4\nC\t2\t" + a + "\n", true, false, "-", "-"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    fs::remove(a);
    fs::remove(b);
    if (c.a_exists) WriteAll(a, "0123456789");
    if (c.b_exists) WriteAll(b, "0123456789");
    WriteAll(journal_, c.journal);
    PowerCutReport report;
    Status s = ApplyPowerCut(journal_, &report);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(fs::exists(a) ? ReadAll(a) : "-", c.a_after);
    EXPECT_EQ(fs::exists(b) ? ReadAll(b) : "-", c.b_after);
  }
  WriteAll(journal_, "C\t1\n");
  PowerCutReport report;
  EXPECT_EQ(ApplyPowerCut(journal_, &report).code(), Code::kCorruption);
}

// RocksLogStore through a PowerLossFs.
class StorePowerCutTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }

  RocksLogStoreOptions Options(bool sync) const {
    RocksLogStoreOptions o;
    o.path = path_;
    o.node_id = "n1";
    o.sync = sync;
    o.min_free_bytes = 0;
    o.env = power_.env.get();
    return o;
  }

  // Appends `calls` Append calls of 1-3 messages each; returns the acknowledged seqs by msg_id.
  static std::map<std::string, uint64_t> AppendSome(RocksLogStore* store, const std::string& prefix,
                                                    int calls) {
    std::map<std::string, uint64_t> acked;
    for (int i = 0; i < calls; ++i) {
      std::vector<Message> msgs;
      for (int k = 0; k <= i % 3; ++k) {
        msgs.push_back(ClientMsg(prefix + std::to_string(i) + "." + std::to_string(k), "alice",
                                 "bob", std::string(100 + 37 * k, 'p')));
      }
      std::vector<std::string> ids;
      for (const Message& m : msgs) ids.push_back(m.msg_id);
      Result<std::vector<WriteOutcome>> r = store->Append(std::move(msgs));
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) return acked;
      for (size_t k = 0; k < ids.size(); ++k) acked[ids[k]] = (*r)[k].seq;
    }
    return acked;
  }

  // Cuts the power under `store`, destroys it and applies the cut.
  PowerCutReport CutUnder(std::unique_ptr<RocksLogStore> store) {
    power_.fs->PowerCut();
    // With the power off nothing more is acknowledged.
    Result<std::vector<WriteOutcome>> late = store->Append({ClientMsg("after-the-cut")});
    EXPECT_FALSE(late.ok());
    store.reset();
    PowerCutReport report;
    Status s = ApplyPowerCut(PowerJournalPath(path_), &report);
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_TRUE(report.journal_found);
    return report;
  }

  // Reopens the directory with the real file system; returns how many of `acked` are missing
  // (failing the test if one is at another seq).
  size_t CountLost(const std::map<std::string, uint64_t>& acked, uint64_t* last_seq) {
    RocksLogStoreOptions o;
    o.path = path_;
    o.node_id = "n1";
    o.min_free_bytes = 0;
    Result<std::unique_ptr<RocksLogStore>> opened = RocksLogStore::Open(o);
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    if (!opened.ok()) return acked.size();
    size_t lost = 0;
    for (const auto& [msg_id, seq] : acked) {
      Result<std::optional<Message>> m = (*opened)->FindByMsgId(msg_id);
      EXPECT_TRUE(m.ok()) << m.status().ToString();
      if (!m.ok() || !m->has_value()) {
        ++lost;
        continue;
      }
      EXPECT_EQ((*m)->seq, seq) << msg_id;
    }
    *last_seq = (*opened)->LastSeq();
    EXPECT_FALSE((*opened)->FindByMsgId("after-the-cut")->has_value());
    return lost;
  }

  storage_test::ScopedTempDir dir_;
  const std::string path_ = dir_.Sub("db");
  storage_test::PowerLossEnv power_{PowerJournalPath(path_)};
};

TEST_F(StorePowerCutTest, WithSyncEveryAcknowledgedAppendSurvivesACut) {
  std::map<std::string, uint64_t> acked;
  {
    // A first life that closes cleanly: its records go to table files (flush at close), and the
    // second life starts from a reopened directory, all through the PowerLossFs.
    Result<std::unique_ptr<RocksLogStore>> opened = RocksLogStore::Open(Options(true));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    acked = AppendSome(opened->get(), "first-", 60);
  }
  Result<std::unique_ptr<RocksLogStore>> opened = RocksLogStore::Open(Options(true));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::map<std::string, uint64_t> second = AppendSome(opened->get(), "second-", 60);
  acked.insert(second.begin(), second.end());
  ASSERT_EQ(acked.size(), 240u);
  PowerCutReport report = CutUnder(std::move(*opened));
  uint64_t last_seq = 0;
  const size_t lost = CountLost(acked, &last_seq);
  std::printf("sync on: %zu of %zu acknowledged messages lost; cut: %s\n", lost, acked.size(),
              report.ToString().c_str());
  EXPECT_EQ(lost, 0u);
  EXPECT_EQ(last_seq, acked.size());
}

TEST_F(StorePowerCutTest, WithoutSyncACutLosesAcknowledgedAppends) {
  Result<std::unique_ptr<RocksLogStore>> opened = RocksLogStore::Open(Options(false));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::map<std::string, uint64_t> acked = AppendSome(opened->get(), "unsynced-", 60);
  ASSERT_EQ(acked.size(), 120u);
  PowerCutReport report = CutUnder(std::move(*opened));
  uint64_t last_seq = 0;
  const size_t lost = CountLost(acked, &last_seq);
  std::printf("sync off: %zu of %zu acknowledged messages lost; cut: %s\n", lost, acked.size(),
              report.ToString().c_str());
  // Nothing was ever fsynced after the open: every acknowledged append is gone, and the
  // write-ahead log lost bytes.
  EXPECT_EQ(lost, acked.size());
  EXPECT_EQ(last_seq, 0u);
  EXPECT_GT(report.wal_bytes_dropped, 0u);
}

}  // namespace
}  // namespace dsm

// Disk faults under RocksLogStore:
//  - a full disk (RocksDB's NoSpace) refuses writes with Unavailable("disk full ...") while reads
//    keep working, acknowledges nothing it did not store, and recovers by itself once space
//    returns - both with an injected NoSpace and with a real, small tmpfs mounted by the test
//    (skipped, saying why, where mounting is impossible);
//  - any other write error stays sticky, a failed fsync of the write-ahead log too;
//  - a damaged data directory (a bit flipped in the write-ahead log or in a table file, a
//    truncated table file) is refused at open with Corruption naming the directory and the
//    recovery procedure; a torn last record of the write-ahead log (a write cut short by a
//    machine crash, never acknowledged) is dropped.
#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "storage/rocks_log_store.h"
#include "tests/storage/test_util.h"

namespace dsm {
namespace {

namespace fs = std::filesystem;
using storage_test::ClientMsg;
using storage_test::PeerMsg;

// Forwards to the default file system and wraps every new write-ahead log file (*.log) with
// WrapWal: the base of the file systems below, which change what the log's writes do.
class WalWrappingFs : public rocksdb::FileSystemWrapper {
 public:
  WalWrappingFs() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* file,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(name, options, file, dbg);
    if (s.ok() && name.size() > 4 && name.compare(name.size() - 4, 4, ".log") == 0) {
      *file = WrapWal(std::move(*file));
    }
    return s;
  }

 protected:
  virtual std::unique_ptr<rocksdb::FSWritableFile> WrapWal(
      std::unique_ptr<rocksdb::FSWritableFile> file) = 0;
};

// Forwards to the default file system; while armed, every append to a write-ahead log fails
// with `fault` (NoSpace, or a plain IOError) - or, armed with ArmSyncs, every sync of one.
class WalFaultFs : public WalWrappingFs {
 public:
  const char* Name() const override { return "WalFaultFs"; }

  void Arm(rocksdb::IOStatus fault) {
    std::lock_guard lock(state_->mu);
    state_->fault = std::move(fault);
    state_->armed = true;
  }
  void ArmSyncs(rocksdb::IOStatus fault) {
    std::lock_guard lock(state_->mu);
    state_->fault = std::move(fault);
    state_->syncs_armed = true;
  }
  void Disarm() {
    std::lock_guard lock(state_->mu);
    state_->armed = false;
    state_->syncs_armed = false;
  }

  std::unique_ptr<rocksdb::FSWritableFile> WrapWal(
      std::unique_ptr<rocksdb::FSWritableFile> file) override {
    return std::make_unique<Faulty>(std::move(file), state_);
  }

 private:
  struct State {
    std::mutex mu;
    bool armed = false;
    bool syncs_armed = false;
    rocksdb::IOStatus fault;
    rocksdb::IOStatus Check() {
      std::lock_guard lock(mu);
      return armed ? fault : rocksdb::IOStatus::OK();
    }
    rocksdb::IOStatus CheckSync() {
      std::lock_guard lock(mu);
      return syncs_armed ? fault : rocksdb::IOStatus::OK();
    }
  };
  class Faulty : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    Faulty(std::unique_ptr<rocksdb::FSWritableFile> f, std::shared_ptr<State> state)
        : FSWritableFileOwnerWrapper(std::move(f)), state_(std::move(state)) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = state_->Check();
      return s.ok() ? FSWritableFileOwnerWrapper::Append(data, o, dbg) : s;
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& info,
                             rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = state_->Check();
      return s.ok() ? FSWritableFileOwnerWrapper::Append(data, o, info, dbg) : s;
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = state_->CheckSync();
      return s.ok() ? FSWritableFileOwnerWrapper::Sync(o, dbg) : s;
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      rocksdb::IOStatus s = state_->CheckSync();
      return s.ok() ? FSWritableFileOwnerWrapper::Fsync(o, dbg) : s;
    }

   private:
    std::shared_ptr<State> state_;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

rocksdb::IOStatus NoSpace() {
  rocksdb::IOStatus s = rocksdb::IOStatus::NoSpace("injected: No space left on device");
  s.SetRetryable(true);
  return s;
}

// A slow disk, made exact: while held, every sync of a write-ahead log file waits until release.
class HeldSyncFs : public WalWrappingFs {
 public:
  const char* Name() const override { return "HeldSyncFs"; }

  void Hold() {
    std::lock_guard lock(state_->mu);
    state_->held = true;
  }
  void Release() {
    std::lock_guard lock(state_->mu);
    state_->held = false;
    state_->cv.notify_all();
  }
  // Whether a sync reached the held disk within `deadline`.
  bool WaitForAHeldSync(std::chrono::seconds deadline) {
    std::unique_lock lock(state_->mu);
    return state_->cv.wait_for(lock, deadline, [&] { return state_->waiting > 0; });
  }
  // The write-ahead log syncs done so far.
  int syncs() {
    std::lock_guard lock(state_->mu);
    return state_->syncs;
  }

  std::unique_ptr<rocksdb::FSWritableFile> WrapWal(
      std::unique_ptr<rocksdb::FSWritableFile> file) override {
    return std::make_unique<Held>(std::move(file), state_);
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool held = false;
    int waiting = 0;
    int syncs = 0;
    void Pass() {
      std::unique_lock lock(mu);
      ++waiting;
      cv.notify_all();
      cv.wait(lock, [&] { return !held; });
      --waiting;
      ++syncs;
    }
  };
  class Held : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    Held(std::unique_ptr<rocksdb::FSWritableFile> f, std::shared_ptr<State> state)
        : FSWritableFileOwnerWrapper(std::move(f)), state_(std::move(state)) {}
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      state_->Pass();
      return FSWritableFileOwnerWrapper::Sync(o, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      state_->Pass();
      return FSWritableFileOwnerWrapper::Fsync(o, dbg);
    }

   private:
    std::shared_ptr<State> state_;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// Appends one message; its outcome.
Result<std::vector<WriteOutcome>> AppendOne(LogStore& store, const std::string& id,
                                            size_t payload_bytes = 16) {
  Message m = ClientMsg(id);
  m.payload.assign(payload_bytes, 'x');
  return store.Append({m});
}

// Retries an append until it succeeds (the store resumes after a full disk by itself).
bool AppendEventually(LogStore& store, const std::string& id, std::chrono::seconds deadline) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (AppendOne(store, id).ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// The msg_ids of the log in seq order; fails the test on a gap in the seqs.
std::vector<std::string> LogIds(const LogStore& store) {
  std::vector<std::string> ids;
  uint64_t expected = 1;
  Status s = store.Scan(ScanOptions{}, [&](const Message& m) {
    EXPECT_EQ(m.seq, expected++);
    ids.push_back(m.msg_id);
    return true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return ids;
}

class DiskFaultTest : public ::testing::Test {
 protected:
  RocksLogStoreOptions Options(const std::string& path) {
    RocksLogStoreOptions o;
    o.path = path;
    o.node_id = "n1";
    return o;
  }
  // A store in this test's directory whose files go through `fs`, with "ok-1" acknowledged; null
  // (and the test failed) when that did not work.
  std::unique_ptr<RocksLogStore> OpenWithOneAcked(std::shared_ptr<rocksdb::FileSystem> fs) {
    env_ = rocksdb::NewCompositeEnv(std::move(fs));
    RocksLogStoreOptions o = Options(dir_.path() + "/db");
    o.env = env_.get();
    auto store = RocksLogStore::Open(o);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok() || !AppendOne(**store, "ok-1").ok()) return nullptr;
    return std::move(*store);
  }
  storage_test::ScopedTempDir dir_;
  std::unique_ptr<rocksdb::Env> env_;  // outlives the stores of OpenWithOneAcked
};

TEST_F(DiskFaultTest, FullDiskRefusesWritesKeepsReadsAndRecoversByItself) {
  auto fs = std::make_shared<WalFaultFs>();
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  RocksLogStoreOptions o = Options(dir_.path() + "/db");
  o.env = env.get();
  std::vector<std::string> acked;
  {
    auto store = RocksLogStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(AppendOne(**store, "before-" + std::to_string(i)).ok());
      acked.push_back("before-" + std::to_string(i));
    }

    fs->Arm(NoSpace());
    for (int i = 0; i < 3; ++i) {
      auto r = AppendOne(**store, "refused-" + std::to_string(i));
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
      EXPECT_NE(r.status().message().find("disk full"), std::string::npos)
          << r.status().ToString();
    }
    auto applied = (*store)->Apply({storage_test::PeerMsg("peer-1", "n2@aa", 1)});
    EXPECT_EQ(applied.status().code(), Code::kUnavailable);
    EXPECT_EQ((*store)->WriteHealth().code(), Code::kUnavailable);
    // Reads keep working and show only what was acknowledged.
    EXPECT_EQ((*store)->LastSeq(), 5u);
    EXPECT_EQ(LogIds(**store), acked);
    auto found = (*store)->FindByMsgId("before-3");
    ASSERT_TRUE(found.ok() && found->has_value());

    // Space returns: writes resume without a restart.
    fs->Disarm();
    ASSERT_TRUE(AppendEventually(**store, "after-0", std::chrono::seconds(20)));
    acked.push_back("after-0");
    ASSERT_TRUE(AppendOne(**store, "after-1").ok());
    acked.push_back("after-1");
    EXPECT_TRUE((*store)->WriteHealth().ok()) << (*store)->WriteHealth().ToString();
    EXPECT_EQ(LogIds(**store), acked);
  }
  // After a restart: exactly what was acknowledged, seqs dense, nothing refused came back.
  auto reopened = RocksLogStore::Open(o);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(LogIds(**reopened), acked);
  auto refused = (*reopened)->FindByMsgId("refused-0");
  ASSERT_TRUE(refused.ok());
  EXPECT_FALSE(refused->has_value());
}

TEST_F(DiskFaultTest, OtherWriteErrorsStaySticky) {
  auto fs = std::make_shared<WalFaultFs>();
  std::unique_ptr<RocksLogStore> store = OpenWithOneAcked(fs);
  ASSERT_NE(store, nullptr);
  fs->Arm(rocksdb::IOStatus::IOError("injected: Input/output error"));
  auto r = AppendOne(*store, "bad-1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kIOError) << r.status().ToString();
  fs->Disarm();
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // past any resume interval
  auto again = AppendOne(*store, "bad-2");
  EXPECT_EQ(again.status().code(), Code::kIOError) << again.status().ToString();
  // AppendAsync reports the same error to its callback.
  std::promise<Status> async_status;
  store->AppendAsync({ClientMsg("bad-3")}, [&](Result<std::vector<WriteOutcome>> r) {
    async_status.set_value(r.status());
  });
  std::future<Status> got = async_status.get_future();
  ASSERT_EQ(got.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_EQ(got.get().code(), Code::kIOError);
  EXPECT_EQ(store->WriteHealth().code(), Code::kIOError);
  EXPECT_EQ(LogIds(*store), std::vector<std::string>{"ok-1"});
}

// /send hands its messages to AppendAsync, /replicate its pushed batch to ApplyAsync, on an HTTP
// thread, which serves other connections too: neither may wait for the disk, even when the store
// is idle, and the writes queued meanwhile go to the disk together once it answers.
class AsyncWriteTest : public DiskFaultTest, public ::testing::WithParamInterface<bool> {
 protected:
  // Write i (0-based): a client message, or position i + 1 of a peer's stream.
  void Write(LogStore& store, int i, LogStore::AppendDone done) {
    if (GetParam()) {
      store.ApplyAsync({PeerMsg("w" + std::to_string(i), "peer@1", i + 1)}, std::move(done));
    } else {
      store.AppendAsync({ClientMsg("w" + std::to_string(i))}, std::move(done));
    }
  }
};

INSTANTIATE_TEST_SUITE_P(AppendAndApply, AsyncWriteTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "ApplyAsync" : "AppendAsync";
                         });

TEST_P(AsyncWriteTest, NeverWaitsForTheDiskOnItsCallersThread) {
  constexpr int kWrites = 10;
  // Declared before the store, which outlives them otherwise: a failed assertion below must not
  // leave a callback to run on destroyed objects when the store is closed.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<uint64_t> seqs;
  std::set<std::thread::id> callers;  // the threads that made the writes
  bool on_a_caller_thread = false;
  auto done = [&](Result<std::vector<WriteOutcome>> r) {
    std::lock_guard lock(mu);
    EXPECT_TRUE(r.ok() && r->size() == 1) << r.status().ToString();
    seqs.push_back(r.ok() && r->size() == 1 ? (*r)[0].seq : 0);
    on_a_caller_thread = on_a_caller_thread || callers.count(std::this_thread::get_id()) > 0;
    cv.notify_all();
  };
  auto fs = std::make_shared<HeldSyncFs>();
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs);
  RocksLogStoreOptions o = Options(dir_.path() + "/db");
  o.env = env.get();
  auto store = RocksLogStore::Open(o);
  ASSERT_TRUE(store.ok()) << store.status().ToString();

  fs->Hold();
  // The first write finds the store idle; the others are queued while its sync is held. Each
  // call runs on its own thread so that one which waits for the disk is seen, not hung on.
  // (A call still waiting holds its future, whose destructor waits for it, until the release.)
  std::vector<std::future<void>> calls;
  bool returned = true;
  for (int i = 0; i < kWrites && returned; ++i) {
    calls.push_back(std::async(std::launch::async, [&, i] {
      {
        std::lock_guard lock(mu);
        callers.insert(std::this_thread::get_id());
      }
      Write(**store, i, done);
    }));
    returned = calls.back().wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    EXPECT_TRUE(returned) << "write " << i << " waited for the held disk";
    if (i == 0 && returned) {
      EXPECT_TRUE(fs->WaitForAHeldSync(std::chrono::seconds(30)));
    }
  }
  const int syncs_before = fs->syncs();
  fs->Release();
  if (!returned) return;
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return seqs.size() == kWrites; }));
  std::vector<uint64_t> expected(kWrites);
  std::iota(expected.begin(), expected.end(), 1);
  EXPECT_EQ(seqs, expected);
  EXPECT_FALSE(on_a_caller_thread);
  // The nine queued behind the held one went to the disk as one group: one more sync.
  EXPECT_EQ(fs->syncs() - syncs_before, 2);
}

// A failed fsync stops writes for good: what it covered reached the file but is never shown nor
// acknowledged, and a later fsync that succeeds proves nothing about it (the kernel may have
// dropped the pages it failed to write), so the writes after it fail too.
TEST_F(DiskFaultTest, AFailedSyncStopsWritesAndShowsNothingItCovered) {
  auto fs = std::make_shared<WalFaultFs>();
  std::unique_ptr<RocksLogStore> store = OpenWithOneAcked(fs);
  ASSERT_NE(store, nullptr);
  fs->ArmSyncs(rocksdb::IOStatus::IOError("injected: fsync failed"));
  auto r = AppendOne(*store, "unsynced-1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kIOError) << r.status().ToString();
  auto found = store->FindByMsgId("unsynced-1");
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_FALSE(found->has_value());
  auto got = store->Get(2);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_FALSE(got->has_value());
  EXPECT_EQ(store->LastSeq(), 1u);
  fs->Disarm();
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // past any resume interval
  auto again = AppendOne(*store, "after-1");
  EXPECT_EQ(again.status().code(), Code::kIOError) << again.status().ToString();
  // A retry of the failed message is refused too: no duplicate answer acknowledges it.
  auto retry = AppendOne(*store, "unsynced-1");
  EXPECT_EQ(retry.status().code(), Code::kIOError) << retry.status().ToString();
  EXPECT_EQ(store->WriteHealth().code(), Code::kIOError);
  EXPECT_EQ(LogIds(*store), std::vector<std::string>{"ok-1"});
}

// A real full disk: a tmpfs of a few MiB mounted by the test.
class TmpfsTest : public DiskFaultTest {
 protected:
  void SetUp() override {
    mount_point_ = dir_.path() + "/mnt";
    fs::create_directories(mount_point_);
    if (geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root: full-disk test skipped";
    if (::mount("tmpfs", mount_point_.c_str(), "tmpfs", 0, "size=24m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs (" << std::strerror(errno)
                   << "): full-disk test skipped";
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) ::umount2(mount_point_.c_str(), MNT_DETACH);
  }
  std::string mount_point_;
  bool mounted_ = false;
};

TEST_F(TmpfsTest, RealFullDiskRefusesWritesAndRecoversWhenSpaceReturns) {
  RocksLogStoreOptions o = Options(mount_point_ + "/db");
  o.min_free_bytes = 2 << 20;  // the reserve, scaled down to the small disk
  const std::string filler = mount_point_ + "/filler";
  std::vector<std::string> acked;
  {
    auto store = RocksLogStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    // Leave about 6 MiB free, then write until the disk is full.
    {
      std::ofstream f(filler, std::ios::binary);
      std::string chunk(1 << 20, 'f');
      for (int i = 0; i < 17; ++i) f.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    }
    EXPECT_TRUE((*store)->WriteHealth().ok());
    Status full;
    for (int i = 0; i < 1000 && full.ok(); ++i) {
      const std::string id = "m-" + std::to_string(i);
      auto r = AppendOne(**store, id, 32 << 10);
      if (r.ok()) {
        acked.push_back(id);
      } else {
        full = r.status();
      }
    }
    ASSERT_FALSE(full.ok()) << "the disk never filled up";
    EXPECT_EQ(full.code(), Code::kUnavailable) << full.ToString();
    EXPECT_NE(full.message().find("disk full"), std::string::npos) << full.ToString();
    ASSERT_GT(acked.size(), 10u);
    // Still full: refused again, and reported; reads work.
    EXPECT_EQ(AppendOne(**store, "refused", 32 << 10).status().code(), Code::kUnavailable);
    EXPECT_EQ((*store)->WriteHealth().code(), Code::kUnavailable);
    EXPECT_EQ(LogIds(**store), acked);

    // Space returns: the store resumes by itself.
    fs::remove(filler);
    ASSERT_TRUE(AppendEventually(**store, "after-space", std::chrono::seconds(30)))
        << (*store)->WriteHealth().ToString();
    acked.push_back("after-space");
    EXPECT_TRUE((*store)->WriteHealth().ok()) << (*store)->WriteHealth().ToString();
    EXPECT_EQ(LogIds(**store), acked);
  }
  auto reopened = RocksLogStore::Open(o);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(LogIds(**reopened), acked);
}

// ---------------------------------------------------------------------------------------------
// Damaged data directories.

std::vector<fs::path> FilesEndingIn(const std::string& dir, const std::string& suffix) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        fs::file_size(e.path()) > 0) {
      out.push_back(e.path());
    }
  }
  return out;
}

void FlipByte(const fs::path& file, uint64_t offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

class DamageTest : public DiskFaultTest {
 protected:
  // Writes `n` messages of 1 KiB; with `crash`, closes without flushing (the data stays in the
  // write-ahead log, as after kill -9).
  void Fill(int n, bool crash) {
    RocksLogStoreOptions o = Options(path_);
    o.flush_on_close = !crash;
    auto store = RocksLogStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(AppendOne(**store, "m-" + std::to_string(i), 1024).ok());
    }
  }
  void ExpectRefusedAsDamaged() {
    auto store = RocksLogStore::Open(Options(path_));
    ASSERT_FALSE(store.ok()) << "a damaged directory opened";
    EXPECT_EQ(store.status().code(), Code::kCorruption) << store.status().ToString();
    EXPECT_NE(store.status().message().find(path_), std::string::npos);
    EXPECT_NE(store.status().message().find("is damaged"), std::string::npos)
        << store.status().ToString();
    EXPECT_NE(store.status().message().find("docs/operations.md"), std::string::npos);
  }
  std::string path_ = dir_.path() + "/db";
};

TEST_F(DamageTest, BitFlipInTheWriteAheadLogIsRefusedAtOpen) {
  Fill(200, /*crash=*/true);
  std::vector<fs::path> wals = FilesEndingIn(path_, ".log");
  ASSERT_FALSE(wals.empty());
  const fs::path wal = wals.back();
  FlipByte(wal, fs::file_size(wal) / 2);
  ExpectRefusedAsDamaged();
}

TEST_F(DamageTest, BitFlipInATableFileIsRefusedAtOpen) {
  Fill(200, /*crash=*/false);
  std::vector<fs::path> tables = FilesEndingIn(path_, ".sst");
  ASSERT_FALSE(tables.empty()) << "the clean close left no table file";
  fs::path biggest = tables.front();
  for (const fs::path& t : tables) {
    if (fs::file_size(t) > fs::file_size(biggest)) biggest = t;
  }
  FlipByte(biggest, fs::file_size(biggest) / 3);  // inside the data blocks
  ExpectRefusedAsDamaged();
}

TEST_F(DamageTest, TruncatedTableFileIsRefusedAtOpen) {
  Fill(200, /*crash=*/false);
  std::vector<fs::path> tables = FilesEndingIn(path_, ".sst");
  ASSERT_FALSE(tables.empty());
  fs::resize_file(tables.front(), fs::file_size(tables.front()) / 2);
  auto store = RocksLogStore::Open(Options(path_));
  ASSERT_FALSE(store.ok()) << "a truncated table file went unnoticed";
  EXPECT_EQ(store.status().code(), Code::kCorruption) << store.status().ToString();
  EXPECT_NE(store.status().message().find(path_), std::string::npos);
}

TEST_F(DamageTest, CleanCloseLeavesNothingInTheWriteAheadLog) {
  Fill(50, /*crash=*/false);
  // Whatever the log files hold now is not needed: cutting them loses nothing.
  for (const fs::path& wal : FilesEndingIn(path_, ".log")) fs::resize_file(wal, 0);
  auto store = RocksLogStore::Open(Options(path_));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->LastSeq(), 50u);
}

TEST_F(DamageTest, TornLastRecordIsDroppedLikeACrashedWrite) {
  Fill(20, /*crash=*/true);
  std::vector<fs::path> wals = FilesEndingIn(path_, ".log");
  ASSERT_FALSE(wals.empty());
  const fs::path wal = wals.back();
  fs::resize_file(wal, fs::file_size(wal) - 100);  // inside the last record (1 KiB payload)
  auto store = RocksLogStore::Open(Options(path_));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->LastSeq(), 19u);
  std::vector<std::string> ids = LogIds(**store);
  ASSERT_EQ(ids.size(), 19u);
  EXPECT_EQ(ids.back(), "m-18");
  // Writes go on from there, dense.
  ASSERT_TRUE(AppendOne(**store, "next").ok());
  EXPECT_EQ((*store)->LastSeq(), 20u);
}

}  // namespace
}  // namespace dsm

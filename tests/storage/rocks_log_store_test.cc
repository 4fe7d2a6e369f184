// RocksLogStore only: persistence across reopen, the refusals of Open, damage detection, group
// commit under 16 concurrent writers, and AppendAsync and ApplyAsync writes mixed with waiting ones.
#include "storage/rocks_log_store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/perf_context.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/table_properties.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "common/encoding.h"
#include "storage/schema.h"
#include "tests/storage/test_util.h"

namespace dsm {
namespace {

using storage_test::ClientMsg;
using storage_test::PeerMsg;
using storage_test::ScopedTempDir;

Result<std::unique_ptr<RocksLogStore>> OpenStore(const std::string& path,
                                                 const std::string& node_id = "node1") {
  RocksLogStoreOptions options;
  options.path = path;
  options.node_id = node_id;
  return RocksLogStore::Open(options);
}

std::unique_ptr<RocksLogStore> MustOpen(const std::string& path,
                                        const std::string& node_id = "node1") {
  Result<std::unique_ptr<RocksLogStore>> store = OpenStore(path, node_id);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(*store) : nullptr;
}

// A RocksDB database opened directly, with every column family it has (or the given ones when
// creating it).
class RawDb {
 public:
  explicit RawDb(const std::string& path, std::vector<std::string> create_families = {}) {
    rocksdb::Options options;
    std::vector<std::string> names;
    if (create_families.empty()) {
      EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(options, path, &names).ok());
    } else {
      options.create_if_missing = true;
      options.create_missing_column_families = true;
      names = std::move(create_families);
    }
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
    ASSERT_TRUE(db_->Put(wo, Family(family), key, value).ok());
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

class RocksLogStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }
  std::string Db() const { return dir_.Sub("db"); }

  ScopedTempDir dir_;
};

TEST_F(RocksLogStoreTest, ReopenKeepsEverything) {
  std::string stream;
  std::string incarnation;
  const PullCursor cursor{"peer@1", 12};
  {
    std::unique_ptr<RocksLogStore> store = MustOpen(Db());
    ASSERT_NE(store, nullptr);
    stream = store->stream_id();
    incarnation = store->incarnation();
    EXPECT_EQ(stream, "node1@" + incarnation);
    EXPECT_EQ(store->path(), Db());
    ASSERT_TRUE(store->Append({ClientMsg("a"), ClientMsg("b")}).ok());
    ASSERT_TRUE(store
                    ->Apply({PeerMsg("p1", "peer@1", 1), PeerMsg("p2", "peer@1", 2)},
                            "http://127.0.0.1:8001", &cursor)
                    .ok());
    ASSERT_TRUE(store->SetPushCursor("http://127.0.0.1:8001", PushCursor{"", 2}).ok());
  }
  std::unique_ptr<RocksLogStore> store = MustOpen(Db());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->incarnation(), incarnation);
  EXPECT_EQ(store->stream_id(), stream);
  EXPECT_EQ(store->LastSeq(), 4u);
  const std::map<std::string, uint64_t> hw = {{stream, 2}, {"peer@1", 2}};
  EXPECT_EQ(store->HighWaters(), hw);
  EXPECT_EQ(store->GetPullCursor("http://127.0.0.1:8001"), cursor);
  EXPECT_EQ(store->GetPushCursor("http://127.0.0.1:8001").origin_seq, 2u);
  Result<std::optional<Message>> p2 = store->FindByMsgId("p2");
  ASSERT_TRUE(p2.ok() && p2->has_value());
  EXPECT_EQ((*p2)->seq, 4u);
  EXPECT_EQ((*p2)->origin, "peer@1");
  // Writing goes on where it stopped, and duplicates are still known.
  Result<std::vector<WriteOutcome>> r = store->Append({ClientMsg("c"), ClientMsg("a")});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].seq, 5u);
  EXPECT_EQ((*r)[0].origin_seq, 3u);
  EXPECT_EQ((*r)[1].kind, WriteOutcome::Kind::kDuplicate);
  EXPECT_EQ((*r)[1].seq, 1u);
  r = store->Apply({PeerMsg("p2", "peer@1", 2), PeerMsg("p3", "peer@1", 3)});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].kind, WriteOutcome::Kind::kDuplicate);
  EXPECT_EQ((*r)[1].seq, 6u);
}

TEST_F(RocksLogStoreTest, ReopenKeepsWhatRetentionDid) {
  std::string stream;
  {
    std::unique_ptr<RocksLogStore> store = MustOpen(Db());
    ASSERT_NE(store, nullptr);
    stream = store->stream_id();
    ASSERT_TRUE(store->Append({ClientMsg("a", "s", "r", "x", 1000), ClientMsg("b", "s", "r", "x", 2000)})
                    .ok());
    ASSERT_TRUE(store->Apply({PeerMsg("p1", "peer@1", 1)}).ok());
    TrimRequest all;
    all.before_seq = 100;
    all.max_records = 100;
    Result<TrimResult> r = store->Trim(all);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->trimmed, 3u);
    ASSERT_TRUE(store->SkipTrimmed("peer@2", 7).ok());
    ASSERT_TRUE(store->ExpireMsgIds(1e12).ok());  // every trimmed msg_id
  }
  std::unique_ptr<RocksLogStore> store = MustOpen(Db());
  ASSERT_NE(store, nullptr);
  // Every record was trimmed: the seqs go on after the last one all the same.
  EXPECT_EQ(store->FirstSeq(), 4u);
  EXPECT_EQ(store->LastSeq(), 3u);
  EXPECT_EQ(store->TrimmedThrough(stream), 2u);
  EXPECT_EQ(store->TrimmedThrough("peer@1"), 1u);
  EXPECT_EQ(store->TrimmedThrough("peer@2"), 7u);
  EXPECT_EQ(store->HighWater("peer@2"), 7u);
  Result<std::vector<WriteOutcome>> r = store->Append({ClientMsg("a"), ClientMsg("c")});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].kind, WriteOutcome::Kind::kAppended);  // its msg_id was forgotten
  EXPECT_EQ((*r)[0].seq, 4u);
  EXPECT_EQ((*r)[0].origin_seq, 3u);
  EXPECT_EQ((*r)[1].seq, 5u);
}

TEST_F(RocksLogStoreTest, EachNewDirectoryGetsItsOwnIncarnation) {
  std::unique_ptr<RocksLogStore> a = MustOpen(dir_.Sub("a"));
  std::unique_ptr<RocksLogStore> b = MustOpen(dir_.Sub("b"));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->incarnation().size(), 16u);
  EXPECT_NE(a->incarnation(), b->incarnation());
}

TEST_F(RocksLogStoreTest, CreatesParentDirectories) {
  const std::string path = dir_.Sub("x/y/z/db");
  EXPECT_NE(MustOpen(path), nullptr);
  EXPECT_TRUE(std::filesystem::exists(path + "/CURRENT"));
}

TEST_F(RocksLogStoreTest, RefusesInvalidOptions) {
  EXPECT_EQ(OpenStore("").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(OpenStore(Db(), "").status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(Db()));
}

TEST_F(RocksLogStoreTest, RefusesAnotherNodesDirectory) {
  { ASSERT_NE(MustOpen(Db(), "a"), nullptr); }
  Result<std::unique_ptr<RocksLogStore>> other = OpenStore(Db(), "b");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(other.status().message(), "data directory " + Db() + " belongs to node 'a', not 'b'");
  EXPECT_NE(MustOpen(Db(), "a"), nullptr);
}

TEST_F(RocksLogStoreTest, RefusesNewerFormatVersion) {
  { ASSERT_NE(MustOpen(Db()), nullptr); }
  {
    RawDb raw(Db());
    raw.Put(schema::kMetaFamily, std::string(schema::kFormatVersionKey),
            BigEndian64(schema::kFormatVersion + 1));
  }
  Result<std::unique_ptr<RocksLogStore>> store = OpenStore(Db());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store.status().message(),
            "data directory " + Db() + " has format version " +
                std::to_string(schema::kFormatVersion + 1) + ", newer than this build reads (" +
                std::to_string(schema::kFormatVersion) + ")");
}

TEST_F(RocksLogStoreTest, RefusesNonEmptyDirectoryThatIsNotADatabase) {
  std::filesystem::create_directories(Db());
  std::ofstream(Db() + "/notes.txt") << "precious";
  Result<std::unique_ptr<RocksLogStore>> store = OpenStore(Db());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store.status().message(),
            "data directory " + Db() + " is not empty and is not a dsm database");
  // Nothing was created next to the file.
  EXPECT_FALSE(std::filesystem::exists(Db() + "/CURRENT"));
}

TEST_F(RocksLogStoreTest, RefusesForeignRocksDbDatabases) {
  const std::string with_data = dir_.Sub("with_data");
  { RawDb(with_data, {"default"}).Put("default", "k", "v"); }
  Result<std::unique_ptr<RocksLogStore>> store = OpenStore(with_data);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kInvalidArgument);
  EXPECT_NE(store.status().message().find("not a dsm database"), std::string::npos)
      << store.status().ToString();

  const std::string other_families = dir_.Sub("other_families");
  { RawDb raw(other_families, {"default", "users"}); }
  store = OpenStore(other_families);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().message(), "data directory " + other_families +
                                          " holds a database that is not a dsm database "
                                          "(column family 'users')");
}

TEST_F(RocksLogStoreTest, FinishesAnInterruptedCreation) {
  // A crash right after RocksDB created the database, before the metadata was written.
  { RawDb raw(Db(), {"default", "log"}); }
  std::string incarnation;
  {
    std::unique_ptr<RocksLogStore> store = MustOpen(Db());
    ASSERT_NE(store, nullptr);
    incarnation = store->incarnation();
    ASSERT_TRUE(store->Append({ClientMsg("a")}).ok());
  }
  std::unique_ptr<RocksLogStore> store = MustOpen(Db());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->incarnation(), incarnation);
  EXPECT_EQ(store->LastSeq(), 1u);
}

TEST_F(RocksLogStoreTest, RefusesSecondOpenOfALiveDirectory) {
  std::unique_ptr<RocksLogStore> first = MustOpen(Db());
  ASSERT_NE(first, nullptr);
  Result<std::unique_ptr<RocksLogStore>> second = OpenStore(Db());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kIOError);
  EXPECT_EQ(second.status().message().rfind("data directory " + Db() + " is locked", 0), 0u)
      << second.status().ToString();
  // The first one is unaffected.
  EXPECT_TRUE(first->Append({ClientMsg("a")}).ok());
}

TEST_F(RocksLogStoreTest, RefusesAnUncreatableDirectory) {
  const std::string file = dir_.Sub("file");
  std::ofstream(file) << "x";
  Result<std::unique_ptr<RocksLogStore>> store = OpenStore(file + "/db");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kIOError);
  EXPECT_EQ(store.status().message().rfind("cannot create data directory " + file + "/db: ", 0), 0u)
      << store.status().ToString();
  store = OpenStore(file);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kIOError);
}

// The error of opening `path` as an unprivileged user. Root writes through permissions, so
// as root the open runs in a child process that has dropped to uid/gid 65534 (nobody).
Status OpenUnprivileged(const std::string& path) {
  if (::geteuid() != 0) return OpenStore(path).status();
  int fds[2];
  if (::pipe(fds) != 0) return Status::IOError("pipe");
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    const std::string msg = OpenStore(path).status().ToString();
    const bool written =
        ::write(fds[1], msg.data(), msg.size()) == static_cast<ssize_t>(msg.size());
    ::_exit(written ? 0 : 3);
  }
  ::close(fds[1]);
  std::string msg;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof(buf))) > 0;) msg.append(buf, n);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return Status::IOError("child failed");
  return msg == "OK" ? Status::Ok() : Status::IOError(msg);  // the message carries the code
}

TEST_F(RocksLogStoreTest, RefusesAnUnwritableDirectory) {
  std::filesystem::create_directories(Db());
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(Db().c_str(), 0555), 0);
  const Status s = OpenUnprivileged(Db());
  ::chmod(Db().c_str(), 0755);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("IOError: data directory " + Db() + " is not writable: "),
            std::string::npos)
      << s.ToString();
  EXPECT_TRUE(std::filesystem::is_empty(Db()));
}

TEST_F(RocksLogStoreTest, DamagedRecordIsReportedNotGuessed) {
  {
    std::unique_ptr<RocksLogStore> store = MustOpen(Db());
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Append({ClientMsg("a"), ClientMsg("b"), ClientMsg("c")}).ok());
  }
  { RawDb(Db()).Put(schema::kLogFamily, schema::LogKey(2), std::string("\x09garbage")); }
  std::unique_ptr<RocksLogStore> store = MustOpen(Db());
  ASSERT_NE(store, nullptr);
  Result<std::optional<Message>> m = store->Get(2);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().ToString(), "Corruption: record at seq 2: unknown record version 9");
  EXPECT_TRUE(store->Get(1).ok());
  int visited = 0;
  Status s = store->Scan({}, [&](const Message&) {
    ++visited;
    return true;
  });
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_EQ(visited, 1);
  EXPECT_EQ(store->FindByMsgId("b").status().code(), Code::kCorruption);
  EXPECT_EQ(store->ReadOrigin(store->stream_id(), 0, 10, 1 << 20).status().code(),
            Code::kCorruption);
  // A client retry of "b" must not be answered from a damaged record.
  EXPECT_EQ(store->Append({ClientMsg("b")}).status().code(), Code::kCorruption);
}

TEST_F(RocksLogStoreTest, SixteenConcurrentWritersAreGroupCommitted) {
  std::unique_ptr<RocksLogStore> store = MustOpen(Db());
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 16;
  constexpr int kPerThread = 60;
  std::vector<std::thread> threads;
  std::vector<std::vector<uint64_t>> seqs(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Result<std::vector<WriteOutcome>> r =
            store->Append({ClientMsg("w" + std::to_string(t) + "-" + std::to_string(i))});
        seqs[t].push_back(r.ok() && (*r)[0].kind == WriteOutcome::Kind::kAppended ? (*r)[0].seq
                                                                                  : 0);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  constexpr uint64_t kTotal = kThreads * kPerThread;
  EXPECT_EQ(store->LastSeq(), kTotal);
  std::set<uint64_t> all;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const uint64_t seq = seqs[t][i];
      ASSERT_NE(seq, 0u) << "write " << t << "-" << i << " failed";
      all.insert(seq);
      Result<std::optional<Message>> m = store->Get(seq);
      ASSERT_TRUE(m.ok() && m->has_value());
      EXPECT_EQ((*m)->msg_id, "w" + std::to_string(t) + "-" + std::to_string(i));
      EXPECT_EQ((*m)->origin_seq, seq);
    }
  }
  EXPECT_EQ(all.size(), kTotal);
  EXPECT_EQ(*all.begin(), 1u);
  EXPECT_EQ(*all.rbegin(), kTotal);
  // And the same after a reopen.
  store.reset();
  store = MustOpen(Db());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->LastSeq(), kTotal);
  EXPECT_EQ(store->HighWater(store->stream_id()), kTotal);
}

// Collects AppendAsync/ApplyAsync completions: each must come exactly once.
class AsyncResults {
 public:
  explicit AsyncResults(size_t expected) : seqs_(expected, 0), calls_(expected, 0) {}

  LogStore::AppendDone Callback(size_t index) {
    return [this, index](Result<std::vector<WriteOutcome>> r) {
      std::lock_guard lock(mu_);
      ++calls_[index];
      if (r.ok() && r->size() == 1 && (*r)[0].kind == WriteOutcome::Kind::kAppended) {
        seqs_[index] = (*r)[0].seq;
      }
      ++done_;
      cv_.notify_all();
    };
  }
  bool WaitAll() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return done_ == seqs_.size(); });
  }
  size_t done() {
    std::lock_guard lock(mu_);
    return done_;
  }
  std::vector<uint64_t> seqs() {
    std::lock_guard lock(mu_);
    return seqs_;
  }
  std::vector<int> calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint64_t> seqs_;
  std::vector<int> calls_;
  size_t done_ = 0;
};

std::string AsyncId(int thread, int i) {
  return "a" + std::to_string(thread) + "-" + std::to_string(i);
}

TEST_F(RocksLogStoreTest, AsyncAndWaitingWritersShareTheLogInOrder) {
  std::unique_ptr<RocksLogStore> store = MustOpen(Db());
  ASSERT_NE(store, nullptr);
  constexpr int kAsyncThreads = 6;
  constexpr int kSyncThreads = 3;
  constexpr int kPerThread = 80;
  AsyncResults async(kAsyncThreads * kPerThread);
  std::vector<std::vector<uint64_t>> sync_seqs(kSyncThreads);
  std::vector<std::thread> threads;
  // Half the asynchronous writers append client messages, half apply a peer's stream each.
  for (int t = 0; t < kAsyncThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        LogStore::AppendDone done = async.Callback(t * kPerThread + i);
        if (t % 2 == 0) {
          store->AppendAsync({ClientMsg(AsyncId(t, i))}, std::move(done));
        } else {
          const std::string origin = "peer" + std::to_string(t) + "@1";
          store->ApplyAsync({PeerMsg(AsyncId(t, i), origin, i + 1)}, std::move(done));
        }
      }
    });
  }
  for (int t = 0; t < kSyncThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Result<std::vector<WriteOutcome>> r =
            store->Append({ClientMsg("s" + std::to_string(t) + "-" + std::to_string(i))});
        sync_seqs[t].push_back(r.ok() ? (*r)[0].seq : 0);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(async.WaitAll()) << async.done() << " completions";

  constexpr uint64_t kTotal = (kAsyncThreads + kSyncThreads) * kPerThread;
  EXPECT_EQ(store->LastSeq(), kTotal);
  std::vector<int> calls = async.calls();
  std::vector<uint64_t> seqs = async.seqs();
  std::set<uint64_t> all;
  for (int t = 0; t < kAsyncThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const size_t k = t * kPerThread + i;
      EXPECT_EQ(calls[k], 1) << AsyncId(t, i);
      ASSERT_NE(seqs[k], 0u) << AsyncId(t, i) << " failed";
      Result<std::optional<Message>> m = store->Get(seqs[k]);
      ASSERT_TRUE(m.ok() && m->has_value());
      EXPECT_EQ((*m)->msg_id, AsyncId(t, i));
      all.insert(seqs[k]);
    }
    // One thread's writes are queued in its order, so they get increasing seqs.
    EXPECT_TRUE(std::is_sorted(seqs.begin() + t * kPerThread, seqs.begin() + (t + 1) * kPerThread));
  }
  for (const std::vector<uint64_t>& v : sync_seqs) {
    for (uint64_t seq : v) {
      ASSERT_NE(seq, 0u);
      all.insert(seq);
    }
  }
  EXPECT_EQ(all.size(), kTotal);  // dense: 1..kTotal, each once
  EXPECT_EQ(*all.rbegin(), kTotal);
  for (int t = 1; t < kAsyncThreads; t += 2) {
    EXPECT_EQ(store->HighWater("peer" + std::to_string(t) + "@1"), uint64_t{kPerThread});
  }
}

TEST_F(RocksLogStoreTest, DestructionWaitsForQueuedAsyncWrites) {
  std::unique_ptr<RocksLogStore> store = MustOpen(Db());
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100;
  AsyncResults async(kThreads * kPerThread);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        store->AppendAsync({ClientMsg(AsyncId(t, i))}, async.Callback(t * kPerThread + i));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  store.reset();  // with writes most likely still queued
  EXPECT_EQ(async.done(), static_cast<size_t>(kThreads * kPerThread));
  store = MustOpen(Db());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->LastSeq(), static_cast<uint64_t>(kThreads * kPerThread));
}

// Pushes read the newest positions of the own stream from memory (RocksLogStoreOptions::
// tail_cache_*), older ones from the database: both give the same answers, at the boundary too.
TEST_F(RocksLogStoreTest, OwnStreamReadsFromMemoryAndFromDiskAgree) {
  RocksLogStoreOptions options;
  options.path = Db();
  options.node_id = "node1";
  options.tail_cache_records = 10;
  Result<std::unique_ptr<RocksLogStore>> opened = RocksLogStore::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<RocksLogStore> store = std::move(*opened);
  // 25 positions of our stream, with a peer's message in between (a seq that is not ours).
  for (int i = 1; i <= 25; ++i) {
    ASSERT_TRUE(store->Append({ClientMsg("own-" + std::to_string(i))}).ok());
    if (i == 18) {
      ASSERT_TRUE(store->Apply({PeerMsg("peer-1", "peer@1", 1)}).ok());
    }
  }
  const std::string stream = store->stream_id();
  struct Read {
    uint64_t after;
    size_t limit;
    size_t max_bytes;
  };
  std::vector<Read> reads;
  for (uint64_t after = 0; after <= 26; ++after) {
    for (size_t limit : {size_t{1}, size_t{4}, size_t{100}}) {
      reads.push_back({after, limit, 4 << 20});
    }
    reads.push_back({after, 100, 1});  // the byte budget: one message
  }
  std::vector<std::vector<Message>> from_memory;
  for (const Read& r : reads) {
    Result<std::vector<Message>> got = store->ReadOrigin(stream, r.after, r.limit, r.max_bytes);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    // ReadOwnRecent answers exactly the reads that memory holds (positions 16..25), the same way.
    std::optional<Result<std::vector<Message>>> recent =
        store->ReadOwnRecent(r.after, r.limit, r.max_bytes);
    EXPECT_EQ(recent.has_value(), r.after >= 15 && r.after < 25) << "after " << r.after;
    if (recent.has_value()) {
      ASSERT_TRUE(recent->ok()) << recent->status().ToString();
      EXPECT_EQ(recent->value(), *got) << "after " << r.after << " limit " << r.limit;
    }
    from_memory.push_back(std::move(*got));
  }
  // Reopened, nothing is in memory: every read goes to the database.
  store.reset();
  options.tail_cache_records = 0;
  opened = RocksLogStore::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  store = std::move(*opened);
  for (size_t i = 0; i < reads.size(); ++i) {
    const Read& r = reads[i];
    EXPECT_FALSE(store->ReadOwnRecent(r.after, r.limit, r.max_bytes).has_value());
    Result<std::vector<Message>> got = store->ReadOrigin(stream, r.after, r.limit, r.max_bytes);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, from_memory[i]) << "after " << r.after << " limit " << r.limit;
    const size_t budget = r.max_bytes == 1 ? 1 : 100;
    const size_t expected =
        r.after >= 25 ? 0 : std::min<size_t>({r.limit, static_cast<size_t>(25 - r.after), budget});
    EXPECT_EQ(got->size(), expected) << "after " << r.after << " limit " << r.limit;
    if (!got->empty()) {
      EXPECT_EQ(got->front().origin_seq, r.after + 1);
      EXPECT_EQ(got->front().msg_id, "own-" + std::to_string(r.after + 1));
    }
  }
}


// Trimming while writers append and readers read: a read never fails on a record being removed
// (it answers Trimmed, or reads around it), never returns a record below the first seq it saw
// afterwards, and the own-stream tail never serves trimmed positions.
TEST_F(RocksLogStoreTest, ReadsDuringTrimsNeverSeeDamage) {
  RocksLogStoreOptions options;
  options.path = Db();
  options.node_id = "node1";
  options.sync = false;
  options.tail_cache_records = 64;
  Result<std::unique_ptr<RocksLogStore>> opened = RocksLogStore::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  RocksLogStore& store = **opened;
  const std::string self = store.stream_id();
  constexpr int kMessages = 4000;
  std::atomic<bool> done{false};
  std::atomic<int> problems{0};
  std::string first_problem;
  std::mutex problem_mu;
  auto report = [&](const std::string& what) {
    std::lock_guard<std::mutex> lock(problem_mu);
    if (problems.fetch_add(1) == 0) first_problem = what;
  };
  std::thread writer([&] {
    for (int i = 1; i <= kMessages; i += 10) {
      std::vector<Message> batch;
      for (int j = i; j < i + 10; ++j) {
        batch.push_back(ClientMsg("m" + std::to_string(j), "s", j % 3 ? "bob" : "carol"));
      }
      if (!store.Append(std::move(batch)).ok()) report("append failed");
    }
    done = true;
  });
  std::thread trimmer([&] {
    while (!done) {
      TrimRequest req;
      req.before_seq = store.LastSeq() > 100 ? store.LastSeq() - 100 : 0;
      req.max_records = 37;
      Result<TrimResult> r = store.Trim(req);
      if (!r.ok()) report("trim: " + r.status().ToString());
    }
  });
  std::thread reader([&] {
    uint64_t n = 0;
    while (!done) {
      const uint64_t last = store.HighWater(self);
      const uint64_t after = last > 0 ? (n * 7919) % last : 0;
      ++n;
      Result<std::vector<Message>> r = store.ReadOrigin(self, after, 50, 1 << 20);
      if (!r.ok() && r.status().code() != Code::kTrimmed) {
        report("ReadOrigin: " + r.status().ToString());
      } else if (r.ok()) {
        for (size_t k = 0; k < r->size(); ++k) {
          if ((*r)[k].origin_seq != after + 1 + k) report("ReadOrigin out of order");
        }
      }
      ScanOptions scan;
      scan.after = after;
      scan.limit = 20;
      if (n % 2) scan.recipient = "carol";
      uint64_t prev = 0;
      Status s = store.Scan(scan, [&](const Message& m) {
        if (m.seq <= prev) report("Scan out of order");
        prev = m.seq;
        return true;
      });
      if (!s.ok()) report("Scan: " + s.ToString());
      Result<std::optional<Message>> found = store.FindByMsgId("m" + std::to_string(after + 1));
      if (!found.ok()) report("FindByMsgId: " + found.status().ToString());
      const uint64_t first_before = store.FirstSeq();
      auto recent = store.ReadOwnRecent(after, 10, 1 << 20);
      if (recent && recent->ok() && !(*recent)->empty() &&
          (*recent)->front().seq < first_before) {
        report("the tail served a trimmed record");
      }
      Result<std::vector<Message>> read = store.ReadOrigin(self, after, 10, 1 << 20);
      if (read.ok() && !read->empty() && read->front().seq < first_before) {
        report("ReadOrigin returned a trimmed record");
      }
    }
  });
  writer.join();
  trimmer.join();
  reader.join();
  EXPECT_EQ(problems.load(), 0) << first_problem;
  EXPECT_GT(store.FirstSeq(), 1u);
  // What is left is exactly the tail of the log, readable from its first position on.
  const uint64_t first = store.FirstSeq();
  Result<std::vector<Message>> rest = store.ReadOrigin(self, first - 1, kMessages, 1 << 30);
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  EXPECT_EQ(rest->size(), kMessages - first + 1);
  EXPECT_EQ(store.TrimmedThrough(self), first - 1);
}

TEST_F(RocksLogStoreTest, OneMemoryBudgetForMemtablesAndBlockCache) {
  RocksLogStoreOptions options;
  options.path = Db();
  options.node_id = "node1";
  options.memory_budget_bytes = uint64_t{48} << 20;
  Result<std::unique_ptr<RocksLogStore>> store = RocksLogStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ASSERT_TRUE((*store)->Append({ClientMsg("a"), ClientMsg("b")}).ok());
  const StoreMemory m = (*store)->Memory();
  EXPECT_EQ(m.budget_bytes, uint64_t{48} << 20);
  EXPECT_EQ(m.block_cache_capacity, uint64_t{48} << 20);
  EXPECT_EQ(m.write_buffer_limit, uint64_t{24} << 20);
  EXPECT_GT(m.memtable_bytes, 0u);
  // The memtables are charged to the block cache.
  EXPECT_GE(m.block_cache_usage, m.memtable_bytes);
  store->reset();

  options.memory_budget_bytes = kMinMemoryBudgetBytes - 1;
  Result<std::unique_ptr<RocksLogStore>> small = RocksLogStore::Open(options);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), Code::kInvalidArgument);
  EXPECT_NE(small.status().message().find("below the minimum of 32 MiB"), std::string::npos)
      << small.status().ToString();
}

// Most writes look up msg_ids that are new: the msg_id memtable's Bloom filter answers those
// without searching the memtable, and a stored one is still found there.
TEST_F(RocksLogStoreTest, MsgIdMemtableFilterAnswersUnknownIds) {
  std::unique_ptr<RocksLogStore> store = MustOpen(Db());
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Append({ClientMsg("known")}).ok());
  const rocksdb::PerfLevel level = rocksdb::GetPerfLevel();
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  rocksdb::get_perf_context()->Reset();
  Result<std::optional<Message>> unknown = store->FindByMsgId("unknown");
  ASSERT_TRUE(unknown.ok()) << unknown.status().ToString();
  EXPECT_FALSE(unknown->has_value());
  EXPECT_EQ(rocksdb::get_perf_context()->bloom_memtable_miss_count, 1u);
  rocksdb::get_perf_context()->Reset();
  Result<std::optional<Message>> known = store->FindByMsgId("known");
  ASSERT_TRUE(known.ok()) << known.status().ToString();
  ASSERT_TRUE(known->has_value());
  EXPECT_EQ(rocksdb::get_perf_context()->bloom_memtable_hit_count, 1u);
  rocksdb::SetPerfLevel(level);
}

// The compression of each table file of `family` in the (closed) database at `path`.
std::multiset<std::string> TableCompressions(const std::string& path, const std::string& family) {
  std::vector<std::string> names;
  EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::Options(), path, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& n : names) descriptors.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      rocksdb::DB::OpenForReadOnly(rocksdb::Options(), path, descriptors, &handles, &raw);
  EXPECT_TRUE(s.ok()) << s.ToString();
  std::multiset<std::string> out;
  if (!s.ok()) return out;
  std::unique_ptr<rocksdb::DB> db(raw);
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    if (h->GetName() != family) continue;
    rocksdb::TablePropertiesCollection tables;
    EXPECT_TRUE(db->GetPropertiesOfAllTables(h, &tables).ok());
    for (const auto& [file, props] : tables) out.insert(props->compression_name);
  }
  for (rocksdb::ColumnFamilyHandle* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  return out;
}

TEST_F(RocksLogStoreTest, CompressedDirectoryReopensAndVerifies) {
  constexpr int kMessages = 20000;
  std::mt19937 rng(7);
  auto payload = [&rng] {
    std::string p(100, ' ');
    for (char& c : p) c = static_cast<char>('a' + rng() % 26);
    return p;
  };
  std::vector<std::string> payloads;
  {
    std::unique_ptr<RocksLogStore> store = MustOpen(Db());
    ASSERT_NE(store, nullptr);
    for (int batch = 0; batch < kMessages / 1000; ++batch) {
      std::vector<Message> msgs;
      for (int i = 0; i < 1000; ++i) {
        payloads.push_back(payload());
        msgs.push_back(ClientMsg("m-" + std::to_string(payloads.size()), "alice", "bob",
                                 payloads.back()));
      }
      ASSERT_TRUE(store->Append(std::move(msgs)).ok());
    }
    ASSERT_TRUE(store->CompactAll().ok());
  }
  // Every table of the log is in the bottommost level, compressed with zstd.
  const std::multiset<std::string> compressions = TableCompressions(Db(), schema::kLogFamily);
  ASSERT_FALSE(compressions.empty());
  for (const std::string& c : compressions) EXPECT_EQ(c, "ZSTD");
  // Reopened (every block's checksum is verified at open), everything reads back.
  std::unique_ptr<RocksLogStore> store = MustOpen(Db());
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->LastSeq(), static_cast<uint64_t>(kMessages));
  int seen = 0;
  ASSERT_TRUE(store
                  ->Scan(ScanOptions{}, [&](const Message& m) {
                    EXPECT_EQ(m.payload, payloads[static_cast<size_t>(seen)]);
                    ++seen;
                    return true;
                  })
                  .ok());
  EXPECT_EQ(seen, kMessages);
  Result<std::optional<Message>> found = store->FindByMsgId("m-12345");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->payload, payloads[12344]);
}

}  // namespace
}  // namespace dsm

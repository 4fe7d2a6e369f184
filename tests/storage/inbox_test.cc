// Recipient inboxes and live-reader notification in storage: the AppendNotifier on its own, the
// recipient index of both LogStore implementations (a recipient Scan answers exactly what a
// filtered full scan answers), the notification of durable writes and the register-then-read
// protocol of live readers, and RocksLogStore's on-disk index and in-place upgrade of format
// version 1 directories.
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/encoding.h"
#include "storage/append_notifier.h"
#include "storage/rocks_log_store.h"
#include "storage/schema.h"
#include "tests/storage/test_util.h"
#include "tests/storage/v1_layout.h"
#include "tests/testing/memory_log_store.h"

namespace dsm {
namespace {

using storage_test::ClientMsg;
using storage_test::PeerMsg;
using storage_test::ScopedTempDir;

constexpr auto kDeadline = std::chrono::seconds(30);  // generous: conditions, never timing

// Records its calls; a test can wait for the first one.
class RecordingWaiter final : public AppendWaiter {
 public:
  void OnAppend(uint64_t seq) override {
    std::lock_guard lock(mu_);
    seqs_.push_back(seq);
    cv_.notify_all();
  }
  std::vector<uint64_t> seqs() {
    std::lock_guard lock(mu_);
    return seqs_;
  }
  // Waits for the first call; nullopt at the deadline.
  std::optional<uint64_t> WaitCalled() {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, kDeadline, [this] { return !seqs_.empty(); })) return std::nullopt;
    return seqs_.front();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint64_t> seqs_;
};

// Polls `flag` until it is set or `timeout` passed.
bool WaitForFlag(const std::atomic<bool>& flag, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!flag.load()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

AppendFilter Filter(std::optional<std::string> sender, std::optional<std::string> recipient) {
  AppendFilter f;
  f.sender = std::move(sender);
  f.recipient = std::move(recipient);
  return f;
}

// ---------------------------------------------------------------------------------------------
// AppendNotifier

TEST(AppendNotifierTest, WakesOnlyMatchingWaitersOnceWithTheFirstMatchingSeq) {
  AppendNotifier n;
  auto bob = std::make_shared<RecordingWaiter>();
  auto carol = std::make_shared<RecordingWaiter>();
  auto from_alice = std::make_shared<RecordingWaiter>();
  auto alice_to_carol = std::make_shared<RecordingWaiter>();
  auto anything = std::make_shared<RecordingWaiter>();
  n.Wait(bob, 0, Filter(std::nullopt, "bob"));
  n.Wait(carol, 0, Filter(std::nullopt, "carol"));
  n.Wait(from_alice, 0, Filter("alice", std::nullopt));
  n.Wait(alice_to_carol, 0, Filter("alice", "carol"));
  n.Wait(anything, 2, Filter(std::nullopt, std::nullopt));
  EXPECT_EQ(n.waiting(), 5u);

  const AppendedMessage first[] = {{1, "dave", "bob"}, {2, "alice", "bob"}};
  n.Notify(first, 2);
  EXPECT_EQ(bob->seqs(), std::vector<uint64_t>{1});
  EXPECT_EQ(from_alice->seqs(), std::vector<uint64_t>{2});
  EXPECT_TRUE(carol->seqs().empty());
  EXPECT_TRUE(alice_to_carol->seqs().empty());
  EXPECT_TRUE(anything->seqs().empty()) << "it waits for seq > 2";
  EXPECT_EQ(n.waiting(), 3u);
  EXPECT_EQ(n.last_seq(), 2u);

  const AppendedMessage second[] = {{3, "erin", "carol"}, {4, "alice", "carol"}, {5, "x", "bob"}};
  n.Notify(second, 5);
  EXPECT_EQ(carol->seqs(), std::vector<uint64_t>{3});
  EXPECT_EQ(alice_to_carol->seqs(), std::vector<uint64_t>{4});
  EXPECT_EQ(anything->seqs(), std::vector<uint64_t>{3});
  EXPECT_EQ(bob->seqs(), std::vector<uint64_t>{1}) << "one call per registration";
  EXPECT_EQ(n.waiting(), 0u);
  EXPECT_EQ(n.last_seq(), 5u);
}

TEST(AppendNotifierTest, IgnoresMessagesAtOrBeforeThePosition) {
  AppendNotifier n;
  auto w = std::make_shared<RecordingWaiter>();
  n.Wait(w, 7, Filter(std::nullopt, "bob"));
  const AppendedMessage old[] = {{6, "a", "bob"}, {7, "a", "bob"}};
  n.Notify(old, 7);
  EXPECT_TRUE(w->seqs().empty());
  const AppendedMessage later[] = {{8, "a", "bob"}};
  n.Notify(later, 8);
  EXPECT_EQ(w->seqs(), std::vector<uint64_t>{8});
}

TEST(AppendNotifierTest, CancelEndsTheRegistration) {
  AppendNotifier n;
  auto w = std::make_shared<RecordingWaiter>();
  auto kept = std::make_shared<RecordingWaiter>();
  AppendNotifier::Ticket t = n.Wait(w, 0, Filter(std::nullopt, "bob"));
  n.Wait(kept, 0, Filter(std::nullopt, "bob"));
  EXPECT_TRUE(n.Cancel(t));
  EXPECT_FALSE(n.Cancel(t)) << "already cancelled";
  EXPECT_FALSE(n.Cancel(12345)) << "never existed";
  const AppendedMessage m[] = {{1, "a", "bob"}};
  n.Notify(m, 1);
  EXPECT_TRUE(w->seqs().empty());
  EXPECT_EQ(kept->seqs(), std::vector<uint64_t>{1});
  // A registration that was called cannot be cancelled any more.
  AppendNotifier::Ticket called = n.Wait(w, 0, Filter(std::nullopt, std::nullopt));
  n.Notify(m, 1);
  EXPECT_FALSE(n.Cancel(called));
  EXPECT_EQ(w->seqs(), std::vector<uint64_t>{1});
}

TEST(AppendNotifierTest, AWriteWithoutRecordsWakesNobodyButLastSeqNeverGoesBack) {
  AppendNotifier n;
  auto w = std::make_shared<RecordingWaiter>();
  n.Wait(w, 0, Filter(std::nullopt, std::nullopt));
  n.Notify({}, 4);
  EXPECT_TRUE(w->seqs().empty());
  EXPECT_EQ(n.last_seq(), 4u);
  n.Notify({}, 3);  // notifications may arrive out of order: the highest stays
  EXPECT_EQ(n.last_seq(), 4u);
}

// A waiter whose OnAppend blocks until released.
class BlockingWaiter final : public AppendWaiter {
 public:
  void OnAppend(uint64_t) override {
    std::unique_lock lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return released_; });
    returned_ = true;
  }
  bool WaitEntered() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kDeadline, [this] { return entered_; });
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  bool returned() {
    std::lock_guard lock(mu_);
    return returned_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool released_ = false;
  bool returned_ = false;
};

TEST(AppendNotifierTest, CancelWaitsForACallInProgress) {
  AppendNotifier n;
  auto w = std::make_shared<BlockingWaiter>();
  AppendNotifier::Ticket t = n.Wait(w, 0, Filter(std::nullopt, "bob"));
  std::thread writer([&] {
    const AppendedMessage m[] = {{1, "a", "bob"}};
    n.Notify(m, 1);
  });
  ASSERT_TRUE(w->WaitEntered());
  std::atomic<bool> cancelled{false};
  bool returned_before_cancel_did = false;
  std::thread canceller([&] {
    EXPECT_FALSE(n.Cancel(t)) << "it was being called, not waiting";
    returned_before_cancel_did = w->returned();
    cancelled = true;
  });
  // Cancel must not return while OnAppend runs: give it every chance to do so wrongly.
  EXPECT_FALSE(WaitForFlag(cancelled, std::chrono::milliseconds(200)));
  w->Release();
  writer.join();
  canceller.join();
  EXPECT_TRUE(returned_before_cancel_did) << "Cancel returned while OnAppend was running";
}

// ---------------------------------------------------------------------------------------------
// Both stores

class MemoryHarness {
 public:
  Status Open(AppendNotifier* notifier) {
    store_ = std::make_unique<MemoryLogStore>("node1", "00000000000000aa");
    store_->SetAppendNotifier(notifier);
    return Status::Ok();
  }
  LogStore* store() { return store_.get(); }

 private:
  std::unique_ptr<MemoryLogStore> store_;
};

class RocksHarness {
 public:
  Status Open(AppendNotifier* notifier) {
    if (dir_.path().empty()) return Status::IOError("no temp dir");
    RocksLogStoreOptions options;
    options.path = dir_.Sub("db");
    options.node_id = "node1";
    options.notifier = notifier;
    Result<std::unique_ptr<RocksLogStore>> store = RocksLogStore::Open(options);
    if (!store.ok()) return store.status();
    store_ = std::move(*store);
    return Status::Ok();
  }
  LogStore* store() { return store_.get(); }

 private:
  ScopedTempDir dir_;
  std::unique_ptr<RocksLogStore> store_;
};

struct HarnessNames {
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, MemoryHarness> ? "Memory" : "Rocks";
  }
};

template <typename H>
class InboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = harness_.Open(&notifier_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    store_ = harness_.store();
  }

  std::vector<Message> ScanAll(const ScanOptions& opts) {
    std::vector<Message> out;
    Status s = store_->Scan(opts, [&](const Message& m) {
      out.push_back(m);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  AppendNotifier notifier_;
  H harness_;
  LogStore* store_ = nullptr;
};

using Harnesses = ::testing::Types<MemoryHarness, RocksHarness>;
TYPED_TEST_SUITE(InboxTest, Harnesses, HarnessNames);

TYPED_TEST(InboxTest, RecipientScanAnswersExactlyWhatAFilteredFullScanAnswers) {
  // Recipients that are prefixes of one another, and one with a NUL byte.
  const std::vector<std::string> people = {"alice", "bob", "carol", "bo", std::string("b\0ob", 4)};
  std::mt19937 rng(7);
  int next_id = 0;
  uint64_t peer_pos = 0;
  for (int round = 0; round < 30; ++round) {
    std::vector<Message> batch;
    const int n = 1 + static_cast<int>(rng() % 7);
    for (int i = 0; i < n; ++i) {
      batch.push_back(ClientMsg("m" + std::to_string(next_id++), people[rng() % 3],
                                people[rng() % people.size()]));
    }
    if (round % 3 == 0) batch.push_back(batch.front());  // a duplicate inside the call
    ASSERT_TRUE(this->store_->Append(std::move(batch)).ok());
    // Peer messages are indexed too.
    Message p = PeerMsg("p" + std::to_string(round), "peer@1", ++peer_pos);
    p.recipient = people[rng() % people.size()];
    ASSERT_TRUE(this->store_->Apply({p}).ok());
  }
  const std::vector<Message> all = this->ScanAll(ScanOptions{});
  ASSERT_EQ(all.size(), this->store_->LastSeq());

  for (const std::string& r : people) {
    for (uint64_t after : {uint64_t{0}, uint64_t{5}, uint64_t{40}, all.size() + uint64_t{3}}) {
      for (size_t limit : {SIZE_MAX, size_t{3}}) {
        for (std::optional<std::string> sender :
             {std::optional<std::string>(), std::optional<std::string>("alice")}) {
          ScanOptions opts;
          opts.after = after;
          opts.limit = limit;
          opts.recipient = r;
          opts.sender = sender;
          std::vector<Message> want;
          for (const Message& m : all) {
            if (m.seq <= after || m.recipient != r || (sender && m.sender != *sender)) continue;
            if (want.size() < limit) want.push_back(m);
          }
          EXPECT_EQ(this->ScanAll(opts), want)
              << "recipient '" << r << "' after " << after << " limit " << limit;
        }
      }
    }
  }
  // A recipient nobody wrote to.
  ScanOptions nobody;
  nobody.recipient = "zed";
  EXPECT_TRUE(this->ScanAll(nobody).empty());
}

TYPED_TEST(InboxTest, RecipientScanStopsWhenTheVisitorSaysSo) {
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(this->store_->Append({ClientMsg("m" + std::to_string(i), "a", "bob")}).ok());
  }
  ScanOptions opts;
  opts.recipient = "bob";
  std::vector<uint64_t> seen;
  Status s = this->store_->Scan(opts, [&](const Message& m) {
    seen.push_back(m.seq);
    return seen.size() < 4;
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3, 4}));
}

TYPED_TEST(InboxTest, DurableWritesNotifyTheWaitersTheyMatch) {
  auto bob = std::make_shared<RecordingWaiter>();
  auto carol = std::make_shared<RecordingWaiter>();
  auto any = std::make_shared<RecordingWaiter>();
  this->notifier_.Wait(bob, 0, Filter(std::nullopt, "bob"));
  this->notifier_.Wait(carol, 0, Filter(std::nullopt, "carol"));
  this->notifier_.Wait(any, 0, Filter(std::nullopt, std::nullopt));

  ASSERT_TRUE(this->store_->Append({ClientMsg("a", "x", "dave"), ClientMsg("b", "x", "bob")}).ok());
  EXPECT_EQ(bob->seqs(), std::vector<uint64_t>{2});
  EXPECT_EQ(any->seqs(), std::vector<uint64_t>{1});
  EXPECT_TRUE(carol->seqs().empty());
  EXPECT_EQ(this->notifier_.last_seq(), 2u);

  // A duplicate appends nothing and wakes nobody.
  ASSERT_TRUE(this->store_->Append({ClientMsg("a", "x", "carol")}).ok());
  EXPECT_TRUE(carol->seqs().empty());
  // A peer's message does.
  Message p = PeerMsg("p", "peer@1", 1);
  p.recipient = "carol";
  ASSERT_TRUE(this->store_->Apply({p}).ok());
  EXPECT_EQ(carol->seqs(), std::vector<uint64_t>{3});
  EXPECT_EQ(this->notifier_.waiting(), 0u);
}

// The live reader's protocol (register, then read; wait only when the read found nothing) reads
// every message of its recipient exactly once, in order, while writers append concurrently.
TYPED_TEST(InboxTest, RegisterThenReadMissesNothingUnderConcurrentWrites) {
  constexpr int kWriters = 3;
  constexpr int kPerWriter = 300;
  std::atomic<bool> failed{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([this, w, &failed] {
      for (int i = 0; i < kPerWriter; ++i) {
        const std::string id = "w" + std::to_string(w) + "-" + std::to_string(i);
        // Every third message is for bob, in batches of one or two.
        std::vector<Message> batch = {ClientMsg(id, "x", i % 3 == 0 ? "bob" : "other")};
        if (i % 5 == 0) batch.push_back(ClientMsg(id + "b", "x", "other"));
        if (!this->store_->Append(std::move(batch)).ok()) failed = true;
      }
    });
  }
  const size_t expected = kWriters * ((kPerWriter + 2) / 3);
  std::vector<std::string> read;
  uint64_t position = 0;
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (read.size() < expected && std::chrono::steady_clock::now() < deadline) {
    auto waiter = std::make_shared<RecordingWaiter>();
    AppendNotifier::Ticket ticket =
        this->notifier_.Wait(waiter, position, Filter(std::nullopt, "bob"));
    ScanOptions opts;
    opts.after = position;
    opts.recipient = "bob";
    std::vector<Message> page = this->ScanAll(opts);
    if (!page.empty()) {
      this->notifier_.Cancel(ticket);
      for (const Message& m : page) read.push_back(m.msg_id);
      position = page.back().seq;
      continue;
    }
    ASSERT_TRUE(waiter->WaitCalled().has_value())
        << "no wake-up after " << read.size() << " of " << expected << " messages";
  }
  for (std::thread& t : writers) t.join();
  ASSERT_FALSE(failed.load());
  EXPECT_EQ(read.size(), expected);
  EXPECT_EQ(std::set<std::string>(read.begin(), read.end()).size(), read.size()) << "repeats";
}

// ---------------------------------------------------------------------------------------------
// RocksLogStore: the index on disk and the upgrade of version-1 directories.

// Every key/value of `family`, read from a closed database.
std::vector<std::pair<std::string, std::string>> ReadFamily(const std::string& path,
                                                            const std::string& family) {
  std::vector<std::pair<std::string, std::string>> out;
  rocksdb::Options options;
  std::vector<std::string> names;
  EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(options, path, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& n : names) descriptors.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::OpenForReadOnly(options, path, descriptors, &handles, &raw);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok()) return out;
  std::unique_ptr<rocksdb::DB> db(raw);
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    if (h->GetName() != family) continue;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), h));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      out.emplace_back(it->key().ToString(), it->value().ToString());
    }
  }
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    EXPECT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  }
  return out;
}

uint64_t StoredFormatVersion(const std::string& path) {
  for (const auto& [k, v] : ReadFamily(path, schema::kMetaFamily)) {
    uint64_t version = 0;
    if (k == schema::kFormatVersionKey && schema::DecodeSeqValue(v, &version)) return version;
  }
  return 0;
}

// (recipient, seq) of every inbox entry, in key order.
std::vector<std::pair<std::string, uint64_t>> InboxEntries(const std::string& path) {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& [k, v] : ReadFamily(path, schema::kInboxFamily)) {
    std::string_view recipient;
    uint64_t seq = 0;
    EXPECT_TRUE(schema::ParseInboxKey(k, &recipient, &seq));
    EXPECT_TRUE(v.empty());
    out.emplace_back(std::string(recipient), seq);
  }
  return out;
}

class RocksInboxTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }
  std::string Db() const { return dir_.Sub("db"); }

  Result<std::unique_ptr<RocksLogStore>> Open() {
    RocksLogStoreOptions options;
    options.path = Db();
    options.node_id = "node1";
    options.info_log = [this](const std::string& line) { log_.push_back(line); };
    return RocksLogStore::Open(options);
  }

  // The messages of a version-1 directory: `n` messages of two origins, to three recipients.
  static std::vector<Message> V1Messages(size_t n) {
    std::vector<Message> msgs;
    uint64_t pos[2] = {0, 0};
    for (size_t i = 0; i < n; ++i) {
      const int o = i % 4 == 0 ? 1 : 0;
      Message m = ClientMsg("v1-" + std::to_string(i), "s", i % 3 == 0 ? "bob" : "carol");
      if (i % 7 == 0) m.recipient = "dave";
      m.origin = o == 0 ? "node1@00000000000000a1" : "node2@00000000000000b2";
      m.origin_seq = ++pos[o];
      msgs.push_back(std::move(m));
    }
    return msgs;
  }

  ScopedTempDir dir_;
  std::vector<std::string> log_;
};

TEST_F(RocksInboxTest, NewDirectoriesHaveTheCurrentVersionAndOneIndexEntryPerRecord) {
  {
    Result<std::unique_ptr<RocksLogStore>> store = Open();
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)
                    ->Append({ClientMsg("a", "x", "bob"), ClientMsg("b", "x", "carol"),
                              ClientMsg("a", "x", "carol"),  // duplicate: not indexed
                              ClientMsg("c", "x", "bob")})
                    .ok());
    Message p = PeerMsg("p", "peer@1", 1);
    p.recipient = "bob";
    ASSERT_TRUE((*store)->Apply({p}).ok());
  }
  EXPECT_TRUE(log_.empty()) << log_.front();
  EXPECT_EQ(StoredFormatVersion(Db()), schema::kFormatVersion);
  const std::vector<std::pair<std::string, uint64_t>> want = {
      {"bob", 1}, {"bob", 3}, {"bob", 4}, {"carol", 2}};
  // Keys sort by length prefix first: "bob" and "carol" have different lengths, so compare as
  // sets of entries.
  auto got = InboxEntries(Db());
  EXPECT_EQ(std::set(got.begin(), got.end()), std::set(want.begin(), want.end()));
  EXPECT_EQ(got.size(), want.size());
}

// Applies `edit` to the closed database of `path` through a raw RocksDB handle per family.
void EditDb(const std::string& path,
            const std::function<void(rocksdb::DB*, const std::string& family,
                                     rocksdb::ColumnFamilyHandle*)>& edit) {
  rocksdb::Options options;
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(options, path, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& n : names) descriptors.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(options, path, descriptors, &handles, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  for (rocksdb::ColumnFamilyHandle* h : handles) edit(db.get(), h->GetName(), h);
  for (rocksdb::ColumnFamilyHandle* h : handles) {
    ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  }
}

std::vector<uint64_t> ScanSeqs(LogStore& store, const std::string& recipient, Status* status) {
  ScanOptions opts;
  opts.recipient = recipient;
  std::vector<uint64_t> seen;
  *status = store.Scan(opts, [&](const Message& m) {
    seen.push_back(m.seq);
    return true;
  });
  return seen;
}

TEST_F(RocksInboxTest, RecipientScanReadsThroughTheIndex) {
  {
    Result<std::unique_ptr<RocksLogStore>> store = Open();
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)
                    ->Append({ClientMsg("a", "x", "bob"), ClientMsg("b", "x", "carol"),
                              ClientMsg("c", "x", "bob")})
                    .ok());
  }
  // The index loses bob's first entry and gains one pointing at carol's record.
  EditDb(Db(), [](rocksdb::DB* db, const std::string& family, rocksdb::ColumnFamilyHandle* h) {
    if (family != schema::kInboxFamily) return;
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), h, schema::InboxKey("bob", 1)).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), h, schema::InboxKey("bob", 2), "").ok());
  });
  {
    Result<std::unique_ptr<RocksLogStore>> store = Open();
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Status s;
    // Seq 1 is bob's but no longer indexed: not visited. Seq 2 is visited and dropped by the
    // record check.
    EXPECT_EQ(ScanSeqs(**store, "bob", &s), std::vector<uint64_t>{3});
    EXPECT_TRUE(s.ok()) << s.ToString();
    // The full scan still sees seq 1.
    std::vector<uint64_t> all;
    ASSERT_TRUE((*store)
                    ->Scan(ScanOptions{},
                           [&](const Message& m) {
                             if (m.recipient == "bob") all.push_back(m.seq);
                             return true;
                           })
                    .ok());
    EXPECT_EQ(all, (std::vector<uint64_t>{1, 3}));
  }
  // An index entry pointing at a missing record is reported as corruption.
  EditDb(Db(), [](rocksdb::DB* db, const std::string& family, rocksdb::ColumnFamilyHandle* h) {
    if (family != schema::kLogFamily) return;
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), h, schema::LogKey(2)).ok());
  });
  Result<std::unique_ptr<RocksLogStore>> store = Open();
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  Status s;
  ScanSeqs(**store, "bob", &s);
  EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find("points at seq 2, which is not in the log"), std::string::npos)
      << s.ToString();
}

TEST_F(RocksInboxTest, UpgradesAVersion1DirectoryInPlace) {
  constexpr size_t kMessages = 25000;  // more than one upgrade batch
  storage_test::V1Directory v1;
  v1.path = Db();
  v1.messages = V1Messages(kMessages);
  ASSERT_TRUE(storage_test::WriteV1Directory(v1).ok());
  EXPECT_EQ(StoredFormatVersion(Db()), 1u);

  std::string stream;
  {
    Result<std::unique_ptr<RocksLogStore>> store = Open();
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_EQ(log_.size(), 3u);  // version 1 -> 2 (two lines), then 2 -> 3
    EXPECT_NE(log_[2].find("upgraded to format version 3"), std::string::npos) << log_[2];
    EXPECT_NE(log_[0].find("has format version 1: upgrading it in place to version 2"),
              std::string::npos)
        << log_[0];
    EXPECT_NE(log_[1].find("upgraded to format version 2: 25000 messages indexed"),
              std::string::npos)
        << log_[1];
    EXPECT_EQ((*store)->LastSeq(), kMessages);
    EXPECT_EQ((*store)->stream_id(), "node1@00000000000000a1");
    // Everything reads as before, and recipient scans go through the new index.
    for (const std::string r : {"bob", "carol", "dave"}) {
      ScanOptions opts;
      opts.recipient = r;
      uint64_t count = 0;
      uint64_t last = 0;
      ASSERT_TRUE((*store)
                      ->Scan(opts,
                             [&](const Message& m) {
                               EXPECT_EQ(m.recipient, r);
                               EXPECT_EQ(m, [&] {
                                 Message want = v1.messages[m.seq - 1];
                                 want.seq = m.seq;
                                 return want;
                               }());
                               EXPECT_GT(m.seq, last);
                               last = m.seq;
                               ++count;
                               return true;
                             })
                      .ok());
      uint64_t want = 0;
      for (const Message& m : v1.messages) want += m.recipient == r;
      EXPECT_EQ(count, want) << r;
    }
    // Writing goes on after the old log, and is indexed.
    Result<std::vector<WriteOutcome>> r = (*store)->Append({ClientMsg("new", "x", "dave")});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ((*r)[0].seq, kMessages + 1);
    EXPECT_EQ((*r)[0].origin_seq, (kMessages * 3) / 4 + 1);
  }
  EXPECT_EQ(StoredFormatVersion(Db()), 3u);
  EXPECT_EQ(InboxEntries(Db()).size(), kMessages + 1);

  // Opening again upgrades nothing.
  log_.clear();
  Result<std::unique_ptr<RocksLogStore>> again = Open();
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(log_.empty());
  EXPECT_EQ((*again)->LastSeq(), kMessages + 1);
}

TEST_F(RocksInboxTest, RedoesAnInterruptedUpgrade) {
  storage_test::V1Directory v1;
  v1.path = Db();
  v1.messages = V1Messages(40);
  v1.with_partial_inbox = true;  // the inbox family exists with 13 entries, version still 1
  v1.partial_inbox = 13;
  ASSERT_TRUE(storage_test::WriteV1Directory(v1).ok());
  {
    Result<std::unique_ptr<RocksLogStore>> store = Open();
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_EQ(log_.size(), 3u);
  }
  EXPECT_EQ(StoredFormatVersion(Db()), 3u);
  std::vector<std::pair<std::string, uint64_t>> entries = InboxEntries(Db());
  ASSERT_EQ(entries.size(), 40u);
  std::set<uint64_t> seqs;
  for (const auto& [recipient, seq] : entries) {
    seqs.insert(seq);
    EXPECT_EQ(recipient, v1.messages[seq - 1].recipient);
  }
  EXPECT_EQ(seqs.size(), 40u);
}

TEST_F(RocksInboxTest, AVersion2DirectoryWithoutItsIndexIsDamaged) {
  storage_test::V1Directory v1;
  v1.path = Db();
  v1.messages = V1Messages(3);
  ASSERT_TRUE(storage_test::WriteV1Directory(v1).ok());
  EditDb(Db(), [](rocksdb::DB* db, const std::string& family, rocksdb::ColumnFamilyHandle* h) {
    if (family != schema::kMetaFamily) return;
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), h, std::string(schema::kFormatVersionKey), BigEndian64(2))
            .ok());
  });
  Result<std::unique_ptr<RocksLogStore>> store = Open();
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kCorruption);
  EXPECT_EQ(store.status().message(), "data directory " + Db() + " lacks column family 'inbox'");
}

// A version-2 directory: a version-1 layout with its complete recipient index, version 2.
void WriteV2Directory(const std::string& path, size_t messages,
                      std::vector<Message>* written = nullptr) {
  storage_test::V1Directory v1;
  v1.path = path;
  v1.messages = [&] {
    std::vector<Message> msgs;
    for (size_t i = 0; i < messages; ++i) {
      Message m = ClientMsg("v2-" + std::to_string(i), "s", "bob");
      m.origin = "node1@00000000000000a1";
      m.origin_seq = i + 1;
      msgs.push_back(std::move(m));
    }
    return msgs;
  }();
  v1.with_partial_inbox = true;  // the whole index
  v1.partial_inbox = messages;
  ASSERT_TRUE(storage_test::WriteV1Directory(v1).ok());
  EditDb(path, [](rocksdb::DB* db, const std::string& family, rocksdb::ColumnFamilyHandle* h) {
    if (family != schema::kMetaFamily) return;
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), h, std::string(schema::kFormatVersionKey), BigEndian64(2))
            .ok());
  });
  if (written != nullptr) *written = v1.messages;
}

TEST_F(RocksInboxTest, UpgradesAVersion2DirectoryToVersion3WithAnEmptyConsumersFamily) {
  WriteV2Directory(Db(), 10);
  ASSERT_EQ(StoredFormatVersion(Db()), 2u);
  {
    Result<std::unique_ptr<RocksLogStore>> store = Open();
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_EQ(log_.size(), 1u);
    EXPECT_NE(log_[0].find("upgraded to format version 3"), std::string::npos) << log_[0];
    EXPECT_EQ((*store)->LastSeq(), 10u);
    Result<std::vector<StoredConsumer>> none = (*store)->consumer_state()->Load();
    ASSERT_TRUE(none.ok());
    EXPECT_TRUE(none->empty());
    // The new family takes consumers.
    StoredConsumer c;
    c.name = "work";
    c.uid = "0a1b2c3d";
    c.session = 1;
    c.floor = 4;
    ConsumerChange change;
    change.name = c.name;
    change.create = c;
    ASSERT_TRUE((*store)->consumer_state()->CommitAndWait({change}).ok());
  }
  EXPECT_EQ(StoredFormatVersion(Db()), 3u);
  log_.clear();
  Result<std::unique_ptr<RocksLogStore>> again = Open();
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(log_.empty());
  Result<std::vector<StoredConsumer>> loaded = (*again)->consumer_state()->Load();
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ((*loaded)[0].floor, 4u);
}

TEST_F(RocksInboxTest, AVersion3DirectoryWithoutItsConsumersFamilyIsDamaged) {
  WriteV2Directory(Db(), 3);
  EditDb(Db(), [](rocksdb::DB* db, const std::string& family, rocksdb::ColumnFamilyHandle* h) {
    if (family != schema::kMetaFamily) return;
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), h, std::string(schema::kFormatVersionKey), BigEndian64(3))
            .ok());
  });
  Result<std::unique_ptr<RocksLogStore>> store = Open();
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kCorruption);
  EXPECT_EQ(store.status().message(),
            "data directory " + Db() + " lacks column family 'consumers'");
}

}  // namespace
}  // namespace dsm

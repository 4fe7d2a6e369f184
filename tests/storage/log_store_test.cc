// LogStore behaviour (dsm/log_store.h), run against both implementations: RocksLogStore and the
// MemoryLogStore of dsm_testing. Both must answer every call identically.
#include "dsm/log_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "storage/rocks_log_store.h"
#include "tests/storage/fault_fs.h"
#include "tests/storage/test_util.h"
#include "tests/testing/memory_log_store.h"

namespace dsm {
namespace {

using storage_test::ClientMsg;
using storage_test::PeerMsg;
using Kind = WriteOutcome::Kind;

class MemoryHarness {
 public:
  Status Open() {
    store_ = std::make_unique<MemoryLogStore>("node1", "00000000000000aa");
    return Status::Ok();
  }
  LogStore* store() { return store_.get(); }
  // Every later write fails, as after a failed fsync.
  void BreakDisk() { store_->FailWrites(Status::IOError("simulated fsync failure")); }

 private:
  std::unique_ptr<MemoryLogStore> store_;
};

class RocksHarness {
 public:
  Status Open() {
    if (dir_.path().empty()) return Status::IOError("no temp dir");
    RocksLogStoreOptions options;
    options.path = dir_.Sub("db");
    options.node_id = "node1";
    options.env = fault_.env.get();
    Result<std::unique_ptr<RocksLogStore>> store = RocksLogStore::Open(options);
    if (!store.ok()) return store.status();
    store_ = std::move(*store);
    return Status::Ok();
  }
  LogStore* store() { return store_.get(); }
  // The write-ahead log stops accepting writes.
  void BreakDisk() { fault_.fs->FailWalWrites(true); }

 private:
  storage_test::ScopedTempDir dir_;
  storage_test::FaultInjectionEnv fault_;
  std::unique_ptr<RocksLogStore> store_;  // destroyed before the env and the directory
};

struct HarnessNames {
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, MemoryHarness> ? "Memory" : "Rocks";
  }
};

template <typename H>
class LogStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = harness_.Open();
    ASSERT_TRUE(s.ok()) << s.ToString();
    store_ = harness_.store();
  }

  std::vector<WriteOutcome> Append(std::vector<Message> msgs) {
    Result<std::vector<WriteOutcome>> r = store_->Append(std::move(msgs));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::vector<WriteOutcome>{};
  }

  std::vector<WriteOutcome> Apply(std::vector<Message> msgs, const std::string& peer = {},
                                  const PullCursor* cursor = nullptr) {
    Result<std::vector<WriteOutcome>> r = store_->Apply(std::move(msgs), peer, cursor);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::vector<WriteOutcome>{};
  }

  std::vector<Message> Scan(const ScanOptions& opts) {
    std::vector<Message> out;
    Status s = store_->Scan(opts, [&](const Message& m) {
      out.push_back(m);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  std::vector<uint64_t> ScanSeqs(const ScanOptions& opts) {
    std::vector<uint64_t> seqs;
    for (const Message& m : Scan(opts)) seqs.push_back(m.seq);
    return seqs;
  }

  std::optional<Message> Get(uint64_t seq) {
    Result<std::optional<Message>> r = store_->Get(seq);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::nullopt;
  }

  std::optional<Message> Find(const std::string& msg_id) {
    Result<std::optional<Message>> r = store_->FindByMsgId(msg_id);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::nullopt;
  }

  std::vector<Message> ReadOrigin(const std::string& origin, uint64_t after, size_t limit,
                                  size_t max_bytes) {
    Result<std::vector<Message>> r = store_->ReadOrigin(origin, after, limit, max_bytes);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : std::vector<Message>{};
  }

  const std::string& self() { return store_->stream_id(); }

  H harness_;
  LogStore* store_ = nullptr;
};

using Harnesses = ::testing::Types<MemoryHarness, RocksHarness>;
TYPED_TEST_SUITE(LogStoreTest, Harnesses, HarnessNames);

ScanOptions Scanning(uint64_t after, size_t limit = SIZE_MAX,
                     std::optional<std::string> sender = std::nullopt,
                     std::optional<std::string> recipient = std::nullopt) {
  ScanOptions opts;
  opts.after = after;
  opts.limit = limit;
  opts.sender = std::move(sender);
  opts.recipient = std::move(recipient);
  return opts;
}

void ExpectOutcome(const WriteOutcome& o, Kind kind, uint64_t seq, const std::string& origin,
                   uint64_t origin_seq, uint64_t expected = 0) {
  EXPECT_EQ(o.kind, kind);
  EXPECT_EQ(o.seq, seq);
  EXPECT_EQ(o.origin, origin);
  EXPECT_EQ(o.origin_seq, origin_seq);
  EXPECT_EQ(o.expected_origin_seq, expected);
}

TYPED_TEST(LogStoreTest, StartsEmpty) {
  EXPECT_EQ(this->store_->node_id(), "node1");
  EXPECT_EQ(this->self().rfind("node1@", 0), 0u);
  EXPECT_EQ(this->self().size(), 6u + 16u);
  EXPECT_EQ(this->store_->LastSeq(), 0u);
  EXPECT_TRUE(this->store_->HighWaters().empty());
  EXPECT_FALSE(this->Get(1).has_value());
  EXPECT_FALSE(this->Find("nope").has_value());
  EXPECT_TRUE(this->Scan({}).empty());
  EXPECT_TRUE(this->store_->WriteHealth().ok());
}

TYPED_TEST(LogStoreTest, AppendAssignsDenseSeqs) {
  Message in = ClientMsg("a", "alice", "bob", "one", 12.5);
  in.seq = 77;  // ignored, like origin and origin_seq
  in.origin = "forged@1";
  in.origin_seq = 40;
  std::vector<WriteOutcome> first = this->Append({in, ClientMsg("b"), ClientMsg("c")});
  ASSERT_EQ(first.size(), 3u);
  for (uint64_t i = 0; i < 3; ++i) {
    ExpectOutcome(first[i], Kind::kAppended, i + 1, this->self(), i + 1);
  }
  std::vector<WriteOutcome> second = this->Append({ClientMsg("d"), ClientMsg("e")});
  ASSERT_EQ(second.size(), 2u);
  ExpectOutcome(second[0], Kind::kAppended, 4, this->self(), 4);
  ExpectOutcome(second[1], Kind::kAppended, 5, this->self(), 5);

  EXPECT_EQ(this->store_->LastSeq(), 5u);
  EXPECT_EQ(this->store_->HighWater(this->self()), 5u);
  std::optional<Message> got = this->Get(1);
  ASSERT_TRUE(got.has_value());
  Message want = ClientMsg("a", "alice", "bob", "one", 12.5);
  want.seq = 1;
  want.origin = this->self();
  want.origin_seq = 1;
  EXPECT_EQ(*got, want);
  EXPECT_FALSE(this->Get(0).has_value());
  EXPECT_FALSE(this->Get(6).has_value());
  std::optional<Message> e = this->Find("e");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->seq, 5u);
}

TYPED_TEST(LogStoreTest, BinaryAndLargeFieldsSurvive) {
  std::string binary(256, '\0');
  for (int i = 0; i < 256; ++i) binary[i] = static_cast<char>(i);
  const std::string big(1 << 20, 'z');
  this->Append({ClientMsg(binary, binary, binary, binary), ClientMsg("big", "s", "r", big)});
  std::optional<Message> b = this->Find(binary);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->sender, binary);
  EXPECT_EQ(b->payload, binary);
  std::optional<Message> g = this->Get(2);
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->payload, big);
}

TYPED_TEST(LogStoreTest, DuplicateMsgIdAnswersOriginalSeqAndWritesNothing) {
  this->Append({ClientMsg("a", "s", "r", "original"), ClientMsg("b")});
  std::vector<WriteOutcome> again = this->Append({ClientMsg("b", "s", "r", "changed")});
  ASSERT_EQ(again.size(), 1u);
  ExpectOutcome(again[0], Kind::kDuplicate, 2, this->self(), 2);
  EXPECT_EQ(this->store_->LastSeq(), 2u);
  EXPECT_EQ(this->store_->HighWater(this->self()), 2u);
  EXPECT_EQ(this->Get(2)->payload, "hello");
  EXPECT_EQ(this->Find("a")->payload, "original");
}

TYPED_TEST(LogStoreTest, DuplicatesInsideOneCall) {
  std::vector<WriteOutcome> out =
      this->Append({ClientMsg("a"), ClientMsg("b"), ClientMsg("a"), ClientMsg("b")});
  ASSERT_EQ(out.size(), 4u);
  ExpectOutcome(out[0], Kind::kAppended, 1, this->self(), 1);
  ExpectOutcome(out[1], Kind::kAppended, 2, this->self(), 2);
  ExpectOutcome(out[2], Kind::kDuplicate, 1, this->self(), 1);
  ExpectOutcome(out[3], Kind::kDuplicate, 2, this->self(), 2);
  EXPECT_EQ(this->store_->LastSeq(), 2u);
}

TYPED_TEST(LogStoreTest, InvalidInputWritesNothing) {
  Result<std::vector<WriteOutcome>> r = this->store_->Append({ClientMsg("a"), ClientMsg("")});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  r = this->store_->Apply({PeerMsg("b", "p@1", 0)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(this->store_->LastSeq(), 0u);
  EXPECT_FALSE(this->Find("a").has_value());
  EXPECT_TRUE(this->store_->WriteHealth().ok());  // the caller's fault, not the disk's
  EXPECT_EQ(this->Append({ClientMsg("a")}).size(), 1u);
}

TYPED_TEST(LogStoreTest, ApplyAdoptsMessagesWithoutOrigin) {
  this->Append({ClientMsg("mine")});
  std::vector<WriteOutcome> out = this->Apply({ClientMsg("seed-style"), ClientMsg("mine")});
  ASSERT_EQ(out.size(), 2u);
  ExpectOutcome(out[0], Kind::kAppended, 2, this->self(), 2);
  ExpectOutcome(out[1], Kind::kDuplicate, 1, this->self(), 1);
  std::optional<Message> m = this->Get(2);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->origin, this->self());
  EXPECT_EQ(m->origin_seq, 2u);
}

TYPED_TEST(LogStoreTest, ApplyInOrder) {
  this->Append({ClientMsg("own")});
  std::vector<WriteOutcome> out = this->Apply(
      {PeerMsg("p1", "peer@7", 1), PeerMsg("p2", "peer@7", 2), PeerMsg("p3", "peer@7", 3)});
  ASSERT_EQ(out.size(), 3u);
  for (uint64_t i = 0; i < 3; ++i) {
    ExpectOutcome(out[i], Kind::kAppended, i + 2, "peer@7", i + 1);
  }
  EXPECT_EQ(this->store_->HighWater("peer@7"), 3u);
  EXPECT_EQ(this->store_->HighWater(this->self()), 1u);
  EXPECT_EQ(this->store_->LastSeq(), 4u);
  std::optional<Message> m = this->Get(3);
  ASSERT_TRUE(m.has_value());
  Message want = PeerMsg("p2", "peer@7", 2);
  want.seq = 3;
  EXPECT_EQ(*m, want);
}

TYPED_TEST(LogStoreTest, ApplyDuplicatePosition) {
  this->Apply({PeerMsg("p1", "peer@7", 1), PeerMsg("p2", "peer@7", 2)});
  // The same messages again, and another msg_id claiming a taken position.
  std::vector<WriteOutcome> out = this->Apply(
      {PeerMsg("p2", "peer@7", 2), PeerMsg("p1", "peer@7", 1), PeerMsg("intruder", "peer@7", 1)});
  ASSERT_EQ(out.size(), 3u);
  ExpectOutcome(out[0], Kind::kDuplicate, 2, "peer@7", 2);
  ExpectOutcome(out[1], Kind::kDuplicate, 1, "peer@7", 1);
  // Another msg_id at a held position is a conflict: refused, never a duplicate.
  ExpectOutcome(out[2], Kind::kConflict, 1, "peer@7", 1);
  EXPECT_EQ(this->store_->LastSeq(), 2u);
  EXPECT_FALSE(this->Find("intruder").has_value());
  EXPECT_EQ(this->store_->HighWater("peer@7"), 2u);
}

TYPED_TEST(LogStoreTest, GapStopsThatOriginForTheRestOfTheCall) {
  this->Apply({PeerMsg("p1", "p@1", 1)});
  std::vector<WriteOutcome> out =
      this->Apply({PeerMsg("p3", "p@1", 3), PeerMsg("q1", "q@1", 1), PeerMsg("p2", "p@1", 2),
                   PeerMsg("q2", "q@1", 2), ClientMsg("adopted")});
  ASSERT_EQ(out.size(), 5u);
  ExpectOutcome(out[0], Kind::kGap, 0, "p@1", 3, 2);
  ExpectOutcome(out[1], Kind::kAppended, 2, "q@1", 1);
  ExpectOutcome(out[2], Kind::kGap, 0, "p@1", 2, 2);  // in order, but its origin is stopped
  ExpectOutcome(out[3], Kind::kAppended, 3, "q@1", 2);
  ExpectOutcome(out[4], Kind::kAppended, 4, this->self(), 1);
  EXPECT_EQ(this->store_->HighWater("p@1"), 1u);
  EXPECT_EQ(this->store_->HighWater("q@1"), 2u);
  EXPECT_FALSE(this->Find("p2").has_value());
  EXPECT_FALSE(this->Find("p3").has_value());
  // The next call starts afresh.
  out = this->Apply({PeerMsg("p2", "p@1", 2), PeerMsg("p3", "p@1", 3)});
  ASSERT_EQ(out.size(), 2u);
  ExpectOutcome(out[0], Kind::kAppended, 5, "p@1", 2);
  ExpectOutcome(out[1], Kind::kAppended, 6, "p@1", 3);
}

TYPED_TEST(LogStoreTest, MsgIdKnownUnderAnotherOriginConsumesThePosition) {
  // The same client message was accepted by this node and (after a retry) by peer p.
  this->Append({ClientMsg("m1")});
  std::vector<WriteOutcome> out = this->Apply({PeerMsg("m1", "p@1", 1), PeerMsg("m2", "p@1", 2)});
  ASSERT_EQ(out.size(), 2u);
  ExpectOutcome(out[0], Kind::kDuplicate, 1, "p@1", 1);
  ExpectOutcome(out[1], Kind::kAppended, 2, "p@1", 2);
  EXPECT_EQ(this->store_->HighWater("p@1"), 2u);
  EXPECT_EQ(this->store_->LastSeq(), 2u);
  // Stored once, under its first origin.
  std::optional<Message> m1 = this->Find("m1");
  ASSERT_TRUE(m1.has_value());
  EXPECT_EQ(m1->origin, this->self());
  // The stream p reads back whole, m1 carrying p's position.
  std::vector<Message> p = this->ReadOrigin("p@1", 0, 10, 1 << 20);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].msg_id, "m1");
  EXPECT_EQ(p[0].seq, 1u);
  EXPECT_EQ(p[0].origin, "p@1");
  EXPECT_EQ(p[0].origin_seq, 1u);
  EXPECT_EQ(p[1].msg_id, "m2");
  EXPECT_EQ(p[1].origin_seq, 2u);
  std::vector<Message> own = this->ReadOrigin(this->self(), 0, 10, 1 << 20);
  ASSERT_EQ(own.size(), 1u);
  EXPECT_EQ(own[0].origin, this->self());
  // Replaying the consumed position is a plain duplicate.
  out = this->Apply({PeerMsg("m1", "p@1", 1)});
  ExpectOutcome(out[0], Kind::kDuplicate, 1, "p@1", 1);
}

TYPED_TEST(LogStoreTest, PullCursorIsWrittenWithTheMessages) {
  const std::string peer = "http://127.0.0.1:8001";
  EXPECT_EQ(this->store_->GetPullCursor(peer), PullCursor{});
  PullCursor c1{"peer@1", 2};
  this->Apply({PeerMsg("a", "peer@1", 1), PeerMsg("b", "peer@1", 2)}, peer, &c1);
  EXPECT_EQ(this->store_->GetPullCursor(peer), c1);
  // All duplicates: the cursor still moves.
  PullCursor c2{"peer@1", 5};
  std::vector<WriteOutcome> out = this->Apply({PeerMsg("a", "peer@1", 1)}, peer, &c2);
  EXPECT_EQ(out[0].kind, Kind::kDuplicate);
  EXPECT_EQ(this->store_->GetPullCursor(peer), c2);
  // No messages at all, and a new peer stream (the peer's directory was replaced).
  PullCursor c3{"peer@2", 0};
  EXPECT_TRUE(this->Apply({}, peer, &c3).empty());
  EXPECT_EQ(this->store_->GetPullCursor(peer), c3);
  EXPECT_EQ(this->store_->GetPullCursor("http://other"), PullCursor{});
  EXPECT_EQ(this->store_->LastSeq(), 2u);
}

TYPED_TEST(LogStoreTest, ScanWithAfterLimitAndFilters) {
  std::vector<Message> msgs;
  for (int i = 1; i <= 10; ++i) {
    msgs.push_back(
        ClientMsg("m" + std::to_string(i), i % 2 ? "odd" : "even", i % 3 ? "all" : "three"));
  }
  this->Append(std::move(msgs));
  using Seqs = std::vector<uint64_t>;
  EXPECT_EQ(this->ScanSeqs({}), (Seqs{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(this->ScanSeqs(Scanning(7)), (Seqs{8, 9, 10}));
  EXPECT_EQ(this->ScanSeqs(Scanning(10)), Seqs{});
  EXPECT_EQ(this->ScanSeqs(Scanning(100)), Seqs{});
  EXPECT_EQ(this->ScanSeqs(Scanning(2, 3)), (Seqs{3, 4, 5}));
  EXPECT_EQ(this->ScanSeqs(Scanning(0, 0)), Seqs{});
  EXPECT_EQ(this->ScanSeqs(Scanning(0, SIZE_MAX, "odd")), (Seqs{1, 3, 5, 7, 9}));
  // The limit counts matches, not visited records.
  EXPECT_EQ(this->ScanSeqs(Scanning(1, 2, "odd")), (Seqs{3, 5}));
  EXPECT_EQ(this->ScanSeqs(Scanning(0, SIZE_MAX, std::nullopt, "three")), (Seqs{3, 6, 9}));
  EXPECT_EQ(this->ScanSeqs(Scanning(0, SIZE_MAX, "even", "three")), (Seqs{6}));
  EXPECT_EQ(this->ScanSeqs(Scanning(0, SIZE_MAX, "nobody")), Seqs{});
  // The visitor stops the scan.
  int visited = 0;
  Status s = this->store_->Scan({}, [&](const Message&) { return ++visited < 4; });
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(visited, 4);
  // Messages come back whole.
  std::vector<Message> all = this->Scan(Scanning(5, 1));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0], *this->Get(6));
}

TYPED_TEST(LogStoreTest, ScanVisitorMayCallBackIntoTheStore) {
  this->Append({ClientMsg("a"), ClientMsg("b")});
  int seen = 0;
  Status s = this->store_->Scan({}, [&](const Message& m) {
    Result<std::optional<Message>> again = this->store_->Get(m.seq);
    EXPECT_TRUE(again.ok() && again->has_value());
    ++seen;
    return true;
  });
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(seen, 2);
}

TYPED_TEST(LogStoreTest, ReadOriginWithLimitAndMaxBytes) {
  std::vector<Message> msgs;
  for (int i = 1; i <= 5; ++i) {
    msgs.push_back(ClientMsg("m" + std::to_string(i), "s", "r", std::string(100, 'a' + i)));
  }
  this->Append(std::move(msgs));
  this->Apply({PeerMsg("x", "p@1", 1)});  // another stream, interleaved in the log

  auto ids = [](const std::vector<Message>& v) {
    std::vector<std::string> out;
    for (const Message& m : v) out.push_back(m.msg_id);
    return out;
  };
  using Ids = std::vector<std::string>;
  const std::string& self = this->self();
  EXPECT_EQ(ids(this->ReadOrigin(self, 0, 100, 1 << 20)), (Ids{"m1", "m2", "m3", "m4", "m5"}));
  EXPECT_EQ(ids(this->ReadOrigin(self, 2, 100, 1 << 20)), (Ids{"m3", "m4", "m5"}));
  EXPECT_EQ(ids(this->ReadOrigin(self, 0, 2, 1 << 20)), (Ids{"m1", "m2"}));
  EXPECT_EQ(ids(this->ReadOrigin(self, 3, 1, 1 << 20)), (Ids{"m4"}));
  EXPECT_EQ(ids(this->ReadOrigin(self, 0, 100, 250)), (Ids{"m1", "m2"}));
  EXPECT_EQ(ids(this->ReadOrigin(self, 0, 100, 200)), (Ids{"m1", "m2"}));
  EXPECT_EQ(ids(this->ReadOrigin(self, 0, 100, 199)), (Ids{"m1"}));
  EXPECT_EQ(ids(this->ReadOrigin(self, 1, 100, 10)), (Ids{"m2"}));  // at least one
  EXPECT_EQ(ids(this->ReadOrigin(self, 0, 0, 1 << 20)), Ids{});
  EXPECT_EQ(ids(this->ReadOrigin(self, 5, 100, 1 << 20)), Ids{});
  EXPECT_EQ(ids(this->ReadOrigin("unknown@1", 0, 100, 1 << 20)), Ids{});
  EXPECT_EQ(ids(this->ReadOrigin("p@1", 0, 100, 1 << 20)), Ids{"x"});

  std::vector<Message> page = this->ReadOrigin(self, 1, 1, 1 << 20);
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0], *this->Get(2));
}

TYPED_TEST(LogStoreTest, PushCursors) {
  EXPECT_EQ(this->store_->GetPushCursor("http://a").origin_seq, 0u);
  ASSERT_TRUE(this->store_->SetPushCursor("http://a", PushCursor{"", 5}).ok());
  ASSERT_TRUE(this->store_->SetPushCursor("http://b", PushCursor{"peer@2", 9}).ok());
  EXPECT_EQ(this->store_->GetPushCursor("http://a").origin_seq, 5u);
  EXPECT_EQ(this->store_->GetPushCursor("http://b"), (PushCursor{"peer@2", 9}));
  // Not forced upwards: a peer whose directory was replaced starts again.
  ASSERT_TRUE(this->store_->SetPushCursor("http://a", PushCursor{"", 0}).ok());
  EXPECT_EQ(this->store_->GetPushCursor("http://a").origin_seq, 0u);
}

TYPED_TEST(LogStoreTest, HighWaters) {
  this->Append({ClientMsg("a"), ClientMsg("b")});
  this->Apply({PeerMsg("p1", "p@1", 1), PeerMsg("q1", "q@1", 1), PeerMsg("q2", "q@1", 2)});
  this->Apply({PeerMsg("r5", "r@1", 5)});  // a gap: no high water
  const std::map<std::string, uint64_t> want = {{this->self(), 2}, {"p@1", 1}, {"q@1", 2}};
  EXPECT_EQ(this->store_->HighWaters(), want);
  EXPECT_EQ(this->store_->HighWater("r@1"), 0u);
}

TYPED_TEST(LogStoreTest, WriteFailureIsSticky) {
  this->Append({ClientMsg("a"), ClientMsg("b")});
  ASSERT_TRUE(this->store_->SetPushCursor("http://p", PushCursor{"", 1}).ok());
  this->harness_.BreakDisk();

  Result<std::vector<WriteOutcome>> r = this->store_->Append({ClientMsg("c")});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kIOError);
  const Status health = this->store_->WriteHealth();
  EXPECT_EQ(health.code(), Code::kIOError);
  EXPECT_EQ(health.ToString(), r.status().ToString());
  // Every later write fails with the same error.
  r = this->store_->Append({ClientMsg("d")});
  EXPECT_EQ(r.status().ToString(), health.ToString());
  PullCursor c{"p@1", 1};
  r = this->store_->Apply({PeerMsg("e", "p@1", 1)}, "http://p", &c);
  EXPECT_EQ(r.status().ToString(), health.ToString());
  r = this->store_->Append({ClientMsg("a")});  // even a duplicate
  EXPECT_EQ(r.status().ToString(), health.ToString());
  EXPECT_EQ(this->store_->SetPushCursor("http://p", PushCursor{"", 2}).ToString(), health.ToString());
  // Nothing of the failed writes is visible; reads go on.
  EXPECT_EQ(this->store_->LastSeq(), 2u);
  EXPECT_EQ(this->store_->HighWater(this->self()), 2u);
  EXPECT_EQ(this->store_->HighWater("p@1"), 0u);
  EXPECT_EQ(this->store_->GetPullCursor("http://p"), PullCursor{});
  EXPECT_EQ(this->store_->GetPushCursor("http://p").origin_seq, 1u);
  EXPECT_FALSE(this->Find("c").has_value());
  EXPECT_EQ(this->Get(2)->msg_id, "b");
  EXPECT_EQ(this->ScanSeqs({}), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(this->ReadOrigin(this->self(), 0, 10, 1 << 20).size(), 2u);
}

TYPED_TEST(LogStoreTest, ConcurrentWritersGetDenseSeqs) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 40;
  std::vector<std::thread> threads;
  std::vector<std::vector<std::pair<std::string, uint64_t>>> acked(kThreads);
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        // Half the writers also replay an earlier id of theirs: a duplicate in the same call.
        std::vector<Message> msgs = {ClientMsg(id)};
        if (t % 2 == 0 && !acked[t].empty()) msgs.push_back(ClientMsg(acked[t].front().first));
        Result<std::vector<WriteOutcome>> r = this->store_->Append(std::move(msgs));
        if (!r.ok() || (*r)[0].kind != Kind::kAppended) {
          ++failures;
          continue;
        }
        if (r->size() == 2 &&
            ((*r)[1].kind != Kind::kDuplicate || (*r)[1].seq != acked[t].front().second)) {
          ++failures;
        }
        acked[t].emplace_back(id, (*r)[0].seq);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  constexpr uint64_t kTotal = kThreads * kPerThread;
  EXPECT_EQ(this->store_->LastSeq(), kTotal);
  EXPECT_EQ(this->store_->HighWater(this->self()), kTotal);
  std::vector<Message> all = this->Scan({});
  ASSERT_EQ(all.size(), kTotal);
  std::set<std::string> ids;
  for (uint64_t i = 0; i < kTotal; ++i) {
    EXPECT_EQ(all[i].seq, i + 1);
    EXPECT_EQ(all[i].origin_seq, i + 1);  // log order is the stream's order
    ids.insert(all[i].msg_id);
  }
  EXPECT_EQ(ids.size(), kTotal);
  for (const auto& per_thread : acked) {
    uint64_t prev = 0;
    for (const auto& [id, seq] : per_thread) {
      EXPECT_EQ(all[seq - 1].msg_id, id);
      EXPECT_GT(seq, prev);  // one writer's calls keep their order
      prev = seq;
    }
  }
}


// ---- Retention (LogStore::Trim and friends) ----

TrimRequest TrimBefore(uint64_t seq, size_t max_records = 1000,
                       std::function<bool(const Message&)> keep = {}) {
  TrimRequest req;
  req.before_seq = seq;
  req.max_records = max_records;
  req.keep = std::move(keep);
  return req;
}

TYPED_TEST(LogStoreTest, TrimRemovesTheOldestRecordsWithTheirIndexEntries) {
  std::vector<Message> msgs;
  for (int i = 1; i <= 10; ++i) {
    msgs.push_back(ClientMsg("m" + std::to_string(i), "alice", i % 2 ? "bob" : "carol"));
  }
  this->Append(std::move(msgs));
  const uint64_t bytes_before = this->store_->StoredBytes();
  Result<TrimResult> r = this->store_->Trim(TrimBefore(5));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->trimmed, 4u);
  EXPECT_EQ(r->first_seq, 5u);
  EXPECT_FALSE(r->kept);
  EXPECT_GT(r->bytes, 0u);
  EXPECT_EQ(this->store_->FirstSeq(), 5u);
  EXPECT_EQ(this->store_->LastSeq(), 10u);
  if constexpr (std::is_same_v<TypeParam, MemoryHarness>) {
    EXPECT_LT(this->store_->StoredBytes(), bytes_before);  // RocksDB's is an estimate
  }
  for (uint64_t seq = 1; seq <= 4; ++seq) EXPECT_FALSE(this->Get(seq).has_value()) << seq;
  EXPECT_TRUE(this->Get(5).has_value());
  EXPECT_EQ(this->ScanSeqs(Scanning(0)), (std::vector<uint64_t>{5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(this->ScanSeqs(Scanning(0, SIZE_MAX, std::nullopt, "bob")),
            (std::vector<uint64_t>{5, 7, 9}));
  EXPECT_FALSE(this->Find("m2").has_value());  // its record is gone...
  // ...but its msg_id is still known: a retry is a duplicate, not a new message.
  std::vector<WriteOutcome> again = this->Append({ClientMsg("m2")});
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].kind, Kind::kDuplicate);
  EXPECT_EQ(again[0].seq, 2u);
  EXPECT_EQ(again[0].origin, "");
  // The own stream's positions 1..4 are gone: reading them says so, and where to resume.
  EXPECT_EQ(this->store_->TrimmedThrough(this->self()), 4u);
  Result<std::vector<Message>> old = this->store_->ReadOrigin(this->self(), 2, 10, 1 << 20);
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.status().code(), Code::kTrimmed) << old.status().ToString();
  Result<uint64_t> run = this->store_->TrimmedRun(this->self(), 2);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(*run, 4u);
  std::vector<Message> rest = this->ReadOrigin(this->self(), 4, 10, 1 << 20);
  ASSERT_EQ(rest.size(), 6u);
  EXPECT_EQ(rest.front().origin_seq, 5u);
  EXPECT_EQ(rest.front().seq, 5u);
  // Within the new bounds nothing changed: the next message follows the last one.
  std::vector<WriteOutcome> next = this->Append({ClientMsg("m11")});
  EXPECT_EQ(next[0].seq, 11u);
  EXPECT_EQ(next[0].origin_seq, 11u);
}

TYPED_TEST(LogStoreTest, TrimStopsAtAKeptRecordAndAtItsBounds) {
  std::vector<Message> msgs;
  for (int i = 1; i <= 10; ++i) {
    msgs.push_back(ClientMsg("m" + std::to_string(i), "alice", "bob", "x", 1000.0 + i));
  }
  this->Append(std::move(msgs));
  // At most 3 per step.
  Result<TrimResult> r = this->store_->Trim(TrimBefore(100, 3));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->trimmed, 3u);
  EXPECT_EQ(r->first_seq, 4u);
  // Stops at the first record kept (the age rule keeps ts >= 1006).
  r = this->store_->Trim(TrimBefore(100, 1000, [](const Message& m) { return m.ts >= 1006; }));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->trimmed, 2u);
  EXPECT_TRUE(r->kept);
  EXPECT_EQ(this->store_->FirstSeq(), 6u);
  // Nothing before the bound: nothing done.
  r = this->store_->Trim(TrimBefore(6));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->trimmed, 0u);
  EXPECT_EQ(r->first_seq, 6u);
  // Everything: the log is empty, and seqs still go on after the last one.
  r = this->store_->Trim(TrimBefore(100));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->trimmed, 5u);
  EXPECT_EQ(this->store_->FirstSeq(), 11u);
  EXPECT_EQ(this->store_->LastSeq(), 10u);
  EXPECT_TRUE(this->ScanSeqs(Scanning(0)).empty());
  EXPECT_EQ(this->Append({ClientMsg("m11")})[0].seq, 11u);
}

TYPED_TEST(LogStoreTest, ExpiredMsgIdsOfTrimmedRecordsAreForgotten) {
  this->Append({ClientMsg("old", "a", "b", "x", 1000.0), ClientMsg("mid", "a", "b", "x", 2000.0)});
  this->Append({ClientMsg("new", "a", "b", "x", 3000.0)});
  ASSERT_TRUE(this->store_->Trim(TrimBefore(2)).ok());  // "old"
  ASSERT_TRUE(this->store_->Trim(TrimBefore(3)).ok());  // "mid"
  // Steps whose newest record is older than 1500: the first one.
  ASSERT_TRUE(this->store_->ExpireMsgIds(1500.0).ok());
  std::vector<WriteOutcome> r = this->Append({ClientMsg("old"), ClientMsg("mid"), ClientMsg("new")});
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].kind, Kind::kAppended);  // forgotten: stored anew
  EXPECT_EQ(r[0].seq, 4u);
  EXPECT_EQ(r[1].kind, Kind::kDuplicate);  // trimmed, still remembered
  EXPECT_EQ(r[1].seq, 2u);
  EXPECT_EQ(r[2].kind, Kind::kDuplicate);  // not trimmed
  EXPECT_EQ(r[2].seq, 3u);
  EXPECT_EQ(this->Find("old")->seq, 4u);
  // Never the msg_id of a record that is still there, however old.
  ASSERT_TRUE(this->store_->ExpireMsgIds(1e12).ok());
  EXPECT_EQ(this->Append({ClientMsg("new")})[0].kind, Kind::kDuplicate);
}

// A large call (RocksLogStore looks a large group's msg_ids up in one batch) follows the same
// rules, message by message, as the small calls above: stored, forgotten, repeated and new ids,
// and a peer's positions whose msg_id this node holds under another origin.
TYPED_TEST(LogStoreTest, LargeCallsFollowTheRulesMessageByMessage) {
  this->Append({ClientMsg("old", "a", "b", "x", 1000.0), ClientMsg("kept", "a", "b", "x", 3000.0)});
  ASSERT_TRUE(this->store_->Trim(TrimBefore(2)).ok());   // "old"
  ASSERT_TRUE(this->store_->Trim(TrimBefore(3)).ok());   // "kept"
  ASSERT_TRUE(this->store_->ExpireMsgIds(1500.0).ok());  // the first step: "old" is forgotten
  std::vector<Message> stored;
  for (int i = 0; i < 10; ++i) stored.push_back(ClientMsg("s" + std::to_string(i)));
  this->Append(stored);  // seqs 3..12
  std::vector<Message> big;
  for (int i = 0; i < 100; ++i) {
    if (i % 10 == 3) {
      big.push_back(ClientMsg("s" + std::to_string(i / 10)));  // stored: seq 3 + i / 10
    } else if (i == 50) {
      big.push_back(ClientMsg("old"));  // forgotten: stored anew
    } else if (i == 60) {
      big.push_back(ClientMsg("kept"));  // trimmed, still remembered
    } else if (i == 70) {
      big.push_back(ClientMsg("n1"));  // repeated in this call
    } else {
      big.push_back(ClientMsg("n" + std::to_string(i)));
    }
  }
  std::vector<WriteOutcome> out = this->Append(big);
  ASSERT_EQ(out.size(), big.size());
  uint64_t next = 13;
  for (int i = 0; i < 100; ++i) {
    SCOPED_TRACE("message " + std::to_string(i));
    if (i % 10 == 3) {
      ExpectOutcome(out[i], Kind::kDuplicate, 3 + i / 10, this->self(), 3 + i / 10);
    } else if (i == 60) {
      ExpectOutcome(out[i], Kind::kDuplicate, 2, "", 0);  // its position is gone
    } else if (i == 70) {
      ExpectOutcome(out[i], Kind::kDuplicate, 14, this->self(), 14);  // n1 went to seq 14
    } else {
      ExpectOutcome(out[i], Kind::kAppended, next, this->self(), next);
      ++next;
    }
  }
  EXPECT_EQ(this->store_->LastSeq(), next - 1);
  EXPECT_EQ(this->Find("old")->seq, 13u + 50 - 5);  // after 50 messages of which 5 duplicates

  // A peer's stream in one call: positions whose msg_id is stored here are consumed.
  std::vector<Message> pushed;
  for (int i = 1; i <= 80; ++i) {
    pushed.push_back(PeerMsg(i % 20 == 0 ? "s" + std::to_string(i / 20) : "p" + std::to_string(i),
                             "p@1", i));
  }
  const uint64_t before = this->store_->LastSeq();
  out = this->Apply(pushed);
  ASSERT_EQ(out.size(), pushed.size());
  next = before + 1;
  for (int i = 1; i <= 80; ++i) {
    SCOPED_TRACE("position " + std::to_string(i));
    if (i % 20 == 0) {
      ExpectOutcome(out[i - 1], Kind::kDuplicate, 3 + i / 20, "p@1", i);
    } else {
      ExpectOutcome(out[i - 1], Kind::kAppended, next++, "p@1", i);
    }
  }
  EXPECT_EQ(this->store_->HighWater("p@1"), 80u);
  EXPECT_EQ(this->ReadOrigin("p@1", 0, 100, 1 << 20).size(), 80u);
}

TYPED_TEST(LogStoreTest, TrimmedPositionsOfAPeerStreamAreDuplicatesWhateverTheirMsgId) {
  const std::string peer = "peer@1";
  this->Apply({PeerMsg("p1", peer, 1), PeerMsg("p2", peer, 2), PeerMsg("p3", peer, 3)});
  ASSERT_TRUE(this->store_->Trim(TrimBefore(3)).ok());
  EXPECT_EQ(this->store_->TrimmedThrough(peer), 2u);
  // Position 2 held "p2"; another msg_id there cannot be told apart any more: not a conflict.
  std::vector<WriteOutcome> r = this->Apply({PeerMsg("other", peer, 2), PeerMsg("p3", peer, 3),
                                             PeerMsg("x3", peer, 3)});
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].kind, Kind::kDuplicate);
  EXPECT_EQ(r[1].kind, Kind::kDuplicate);
  EXPECT_EQ(r[2].kind, Kind::kConflict);  // a held position keeps its rule
  EXPECT_EQ(this->store_->LastSeq(), 3u);
}

TYPED_TEST(LogStoreTest, SkippedPositionsAreHeldAsTrimmed) {
  const std::string peer = "peer@1";
  this->Apply({PeerMsg("p1", peer, 1), PeerMsg("p2", peer, 2)});
  Result<uint64_t> skipped = this->store_->SkipTrimmed(peer, 10);
  ASSERT_TRUE(skipped.ok()) << skipped.status().ToString();
  EXPECT_EQ(*skipped, 8u);
  EXPECT_EQ(this->store_->HighWater(peer), 10u);
  EXPECT_EQ(this->store_->TrimmedThrough(peer), 10u);
  skipped = this->store_->SkipTrimmed(peer, 5);
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ(*skipped, 0u);
  EXPECT_EQ(this->store_->HighWater(peer), 10u);
  std::vector<WriteOutcome> r = this->Apply({PeerMsg("p5", peer, 5), PeerMsg("p11", peer, 11)});
  EXPECT_EQ(r[0].kind, Kind::kDuplicate);
  EXPECT_EQ(r[1].kind, Kind::kAppended);
  EXPECT_EQ(this->store_->HighWater(peer), 11u);
  Result<std::vector<Message>> read = this->store_->ReadOrigin(peer, 0, 10, 1 << 20);
  EXPECT_EQ(read.status().code(), Code::kTrimmed);
  EXPECT_EQ(this->ReadOrigin(peer, 10, 10, 1 << 20).size(), 1u);
  // Our own stream is ours: never skipped.
  EXPECT_EQ(this->store_->SkipTrimmed(this->self(), 3).status().code(), Code::kInvalidArgument);
}

TYPED_TEST(LogStoreTest, APositionConsumedByATrimmedMessageReadsAsTrimmed) {
  const std::string peer = "peer@1";
  this->Apply({PeerMsg("a", peer, 1)});  // seq 1
  this->Append({ClientMsg("x")});         // seq 2
  this->Apply({PeerMsg("b", peer, 2)});  // seq 3
  // Position 3 of the peer's stream is "x", stored already: it points at seq 2.
  EXPECT_EQ(this->Apply({PeerMsg("x", peer, 3)})[0].kind, Kind::kDuplicate);
  this->Apply({PeerMsg("c", peer, 4)});  // seq 4
  ASSERT_TRUE(this->store_->Trim(TrimBefore(3)).ok());  // seqs 1 and 2
  EXPECT_EQ(this->store_->TrimmedThrough(peer), 1u);
  // Position 2 is held; position 3 pointed at a trimmed record: a read stops before it...
  std::vector<Message> page = this->ReadOrigin(peer, 1, 10, 1 << 20);
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].msg_id, "b");
  // ...and a read from it says it is gone, up to where the stream goes on.
  EXPECT_EQ(this->store_->ReadOrigin(peer, 2, 10, 1 << 20).status().code(), Code::kTrimmed);
  Result<uint64_t> run = this->store_->TrimmedRun(peer, 2);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(*run, 3u);
  page = this->ReadOrigin(peer, 3, 10, 1 << 20);
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].msg_id, "c");
  // Held positions and their neighbours: nothing to skip.
  run = this->store_->TrimmedRun(peer, 1);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(*run, 0u);
}

}  // namespace
}  // namespace dsm

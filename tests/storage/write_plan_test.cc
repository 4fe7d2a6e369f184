// Tests of PlanWrites (storage/write_plan.h) against fake lookups: what the stores cannot show
// deterministically through their API (several requests in one group commit) and the plan's
// exact contents.
#include "storage/write_plan.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "storage/record.h"
#include "tests/storage/test_util.h"

namespace dsm {
namespace {

using storage_test::ClientMsg;
using storage_test::PeerMsg;
using Kind = WriteOutcome::Kind;

constexpr char kSelf[] = "self@0000000000000001";

// A store's durable contents as the lookups see them.
struct FakeStore {
  std::map<std::string, uint64_t, std::less<>> msg_ids;
  std::map<uint64_t, StoredPosition> positions;  // seq -> origin position
  std::map<std::pair<std::string, uint64_t>, uint64_t> origin_index;
  HighWaterMap high_waters;
  uint64_t last_seq = 0;
  Status fail;  // returned by every lookup when not OK
  int lookups = 0;

  // Records `msg_id` as stored at `seq`, position origin#origin_seq.
  void Put(const std::string& msg_id, uint64_t seq, const std::string& origin,
           uint64_t origin_seq) {
    msg_ids[msg_id] = seq;
    positions[seq] = StoredPosition{origin, origin_seq};
    origin_index[{origin, origin_seq}] = seq;
    high_waters[origin] = std::max(high_waters[origin], origin_seq);
    last_seq = std::max(last_seq, seq);
  }

  WritePlanLookups Lookups() {
    WritePlanLookups l;
    l.find_msg_id = [this](std::string_view id) -> Result<std::optional<uint64_t>> {
      ++lookups;
      if (!fail.ok()) return fail;
      auto it = msg_ids.find(id);
      if (it == msg_ids.end()) return std::optional<uint64_t>();
      return std::optional<uint64_t>(it->second);
    };
    l.stored_position = [this](uint64_t seq) -> Result<StoredPosition> {
      ++lookups;
      if (!fail.ok()) return fail;
      return positions.at(seq);
    };
    l.find_origin_seq = [this](std::string_view origin,
                               uint64_t p) -> Result<std::optional<uint64_t>> {
      ++lookups;
      if (!fail.ok()) return fail;
      auto it = origin_index.find({std::string(origin), p});
      if (it == origin_index.end()) return std::optional<uint64_t>();
      return std::optional<uint64_t>(it->second);
    };
    return l;
  }

  Result<WritePlan> Plan(const std::vector<WriteRequest>& requests) {
    std::vector<const WriteRequest*> ptrs;
    for (const WriteRequest& r : requests) ptrs.push_back(&r);
    const WritePlanLookups l = Lookups();
    return PlanWrites(ptrs, WritePlanState{kSelf, last_seq, &high_waters}, l);
  }
};

WriteRequest AppendReq(const std::vector<Message>* msgs) {
  WriteRequest r;
  r.kind = WriteRequest::Kind::kAppend;
  r.msgs = msgs;
  return r;
}

WriteRequest ApplyReq(const std::vector<Message>* msgs, std::string_view peer = {},
                      const PullCursor* cursor = nullptr) {
  WriteRequest r;
  r.kind = WriteRequest::Kind::kApply;
  r.msgs = msgs;
  r.peer_url = peer;
  r.cursor = cursor;
  return r;
}

void ExpectOutcome(const WriteOutcome& o, Kind kind, uint64_t seq, const std::string& origin,
                   uint64_t origin_seq, uint64_t expected = 0) {
  EXPECT_EQ(o.kind, kind);
  EXPECT_EQ(o.seq, seq);
  EXPECT_EQ(o.origin, origin);
  EXPECT_EQ(o.origin_seq, origin_seq);
  EXPECT_EQ(o.expected_origin_seq, expected);
}

TEST(WritePlanTest, AppendsGetDenseSeqsAndOwnPositions) {
  FakeStore store;
  store.Put("old", 4, "peer@1", 4);
  store.Put("mine", 3, kSelf, 2);
  const std::vector<Message> msgs = {ClientMsg("a"), ClientMsg("b", "x", "y", "payload")};
  Result<WritePlan> plan = store.Plan({AppendReq(&msgs)});
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->records.size(), 2u);
  EXPECT_EQ(plan->records[0].seq, 5u);
  EXPECT_EQ(plan->records[1].seq, 6u);
  EXPECT_EQ(plan->last_seq, 6u);
  Result<Message> rec = DecodeRecord(6, plan->records[1].value);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->msg_id, "b");
  EXPECT_EQ(rec->payload, "payload");
  EXPECT_EQ(rec->origin, kSelf);
  EXPECT_EQ(rec->origin_seq, 4u);
  ASSERT_EQ(plan->msg_ids.size(), 2u);
  EXPECT_EQ(plan->msg_ids[1].msg_id, "b");
  EXPECT_EQ(plan->msg_ids[1].seq, 6u);
  ASSERT_EQ(plan->origins.size(), 2u);
  EXPECT_EQ(plan->origins[0].origin, kSelf);
  EXPECT_EQ(plan->origins[0].origin_seq, 3u);
  EXPECT_EQ(plan->origins[0].seq, 5u);
  ASSERT_EQ(plan->high_waters.size(), 1u);
  EXPECT_EQ(plan->high_waters[0].first, kSelf);
  EXPECT_EQ(plan->high_waters[0].second, 4u);
  ASSERT_EQ(plan->results.size(), 1u);
  ASSERT_TRUE(plan->results[0].ok());
  ExpectOutcome((*plan->results[0])[0], Kind::kAppended, 5, kSelf, 3);
  ExpectOutcome((*plan->results[0])[1], Kind::kAppended, 6, kSelf, 4);
}

TEST(WritePlanTest, DuplicatesAcrossRequestsOfOneGroup) {
  FakeStore store;
  const std::vector<Message> first = {ClientMsg("a")};
  const std::vector<Message> second = {ClientMsg("b"), ClientMsg("a")};
  // A peer's copy of "b" at the next position of its stream: consumes that position.
  const std::vector<Message> third = {PeerMsg("b", "peer@1", 1), PeerMsg("c", "peer@1", 2)};
  Result<WritePlan> plan = store.Plan({AppendReq(&first), AppendReq(&second), ApplyReq(&third)});
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->records.size(), 3u);  // a, b, c
  ExpectOutcome((*plan->results[0])[0], Kind::kAppended, 1, kSelf, 1);
  ExpectOutcome((*plan->results[1])[0], Kind::kAppended, 2, kSelf, 2);
  ExpectOutcome((*plan->results[1])[1], Kind::kDuplicate, 1, kSelf, 1);
  ExpectOutcome((*plan->results[2])[0], Kind::kDuplicate, 2, "peer@1", 1);
  ExpectOutcome((*plan->results[2])[1], Kind::kAppended, 3, "peer@1", 2);
  // Origin entries: self#1, self#2, peer#1 -> 2 (consumed), peer#2 -> 3.
  ASSERT_EQ(plan->origins.size(), 4u);
  EXPECT_EQ(plan->origins[2].origin, "peer@1");
  EXPECT_EQ(plan->origins[2].origin_seq, 1u);
  EXPECT_EQ(plan->origins[2].seq, 2u);
  EXPECT_EQ(plan->msg_ids.size(), 3u);
  std::map<std::string, uint64_t> hws(plan->high_waters.begin(), plan->high_waters.end());
  EXPECT_EQ(hws, (std::map<std::string, uint64_t>{{kSelf, 2}, {"peer@1", 2}}));
}

TEST(WritePlanTest, StoredDuplicateCarriesStoredPosition) {
  FakeStore store;
  store.Put("known", 7, "other@9", 3);
  const std::vector<Message> msgs = {ClientMsg("known")};
  Result<WritePlan> plan = store.Plan({AppendReq(&msgs)});
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->empty());
  EXPECT_EQ(plan->last_seq, 7u);
  ExpectOutcome((*plan->results[0])[0], Kind::kDuplicate, 7, "other@9", 3);
}

TEST(WritePlanTest, DuplicatePositionUsesTheOriginIndex) {
  FakeStore store;
  store.Put("x1", 1, "p@1", 1);
  store.Put("x2", 2, "p@1", 2);
  // Same position, different msg_id: a conflict, not a duplicate; nothing is stored.
  const std::vector<Message> msgs = {PeerMsg("other", "p@1", 2), PeerMsg("x1", "p@1", 1),
                                     PeerMsg("x1", "p@1", 2)};
  Result<WritePlan> plan = store.Plan({ApplyReq(&msgs)});
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->empty());
  ExpectOutcome((*plan->results[0])[0], Kind::kConflict, 2, "p@1", 2);
  ExpectOutcome((*plan->results[0])[1], Kind::kDuplicate, 1, "p@1", 1);
  // A known msg_id at another position than its own is a conflict too.
  ExpectOutcome((*plan->results[0])[2], Kind::kConflict, 2, "p@1", 2);
}

TEST(WritePlanTest, GapMovesThePullCursorBeforeItInTheSameWrite) {
  FakeStore store;
  store.Put("x1", 1, "p@1", 1);
  // A page of the peer's seqs 11..13: 11 is new, 12 leaves a hole in p@1, 13 is of q@1.
  std::vector<Message> msgs = {PeerMsg("a", "p@1", 2), PeerMsg("b", "p@1", 4),
                               PeerMsg("c", "q@1", 1)};
  msgs[0].seq = 11;
  msgs[1].seq = 12;
  msgs[2].seq = 13;
  const PullCursor cursor{"peer@9", 13};
  Result<WritePlan> plan = store.Plan({ApplyReq(&msgs, "http://p", &cursor)});
  ASSERT_TRUE(plan.ok());
  ExpectOutcome((*plan->results[0])[1], Kind::kGap, 0, "p@1", 4, 3);
  ASSERT_EQ(plan->pull_cursors.size(), 1u);
  // The cursor stops before the gap (peer seq 11), in the write that stores 11 and 13.
  EXPECT_EQ(*plan->pull_cursors[0].cursor, (PullCursor{"peer@9", 11}));
  EXPECT_EQ(plan->records.size(), 2u);
}

TEST(WritePlanTest, MissingOriginEntryBelowHighWaterIsCorruption) {
  FakeStore store;
  store.high_waters["p@1"] = 5;  // but no origin index entries
  const std::vector<Message> msgs = {PeerMsg("m", "p@1", 3)};
  Result<WritePlan> plan = store.Plan({ApplyReq(&msgs)});
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), Code::kCorruption);
}

TEST(WritePlanTest, GapStopsOnlyThatOriginAndOnlyForItsRequest) {
  FakeStore store;
  const std::vector<Message> first = {PeerMsg("p2", "p@1", 2), PeerMsg("q1", "q@1", 1),
                                      PeerMsg("p1", "p@1", 1), PeerMsg("q2", "q@1", 2)};
  const std::vector<Message> second = {PeerMsg("p1", "p@1", 1)};
  Result<WritePlan> plan = store.Plan({ApplyReq(&first), ApplyReq(&second)});
  ASSERT_TRUE(plan.ok());
  const std::vector<WriteOutcome>& a = *plan->results[0];
  ExpectOutcome(a[0], Kind::kGap, 0, "p@1", 2, 1);
  ExpectOutcome(a[1], Kind::kAppended, 1, "q@1", 1);
  ExpectOutcome(a[2], Kind::kGap, 0, "p@1", 1, 1);  // stopped for the rest of the call
  ExpectOutcome(a[3], Kind::kAppended, 2, "q@1", 2);
  ExpectOutcome((*plan->results[1])[0], Kind::kAppended, 3, "p@1", 1);
}

TEST(WritePlanTest, InvalidRequestFailsAlone) {
  FakeStore store;
  const std::vector<Message> good1 = {ClientMsg("a")};
  const std::vector<Message> empty_id = {ClientMsg("z"), ClientMsg("")};
  const std::vector<Message> no_origin_seq = {PeerMsg("y", "p@1", 0)};
  const std::vector<Message> nul_origin = {PeerMsg("y", std::string("p\0x", 3), 1)};
  const std::vector<Message> good2 = {ClientMsg("b")};
  const std::vector<Message> none;
  const PullCursor cursor{"peer@2", 9};
  Result<WritePlan> plan =
      store.Plan({AppendReq(&good1), AppendReq(&empty_id), ApplyReq(&no_origin_seq),
                  ApplyReq(&nul_origin), ApplyReq(&none, "", &cursor), AppendReq(&good2)});
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->results.size(), 6u);
  EXPECT_TRUE(plan->results[0].ok());
  for (int i = 1; i <= 4; ++i) {
    EXPECT_EQ(plan->results[i].status().code(), Code::kInvalidArgument) << i;
  }
  ASSERT_TRUE(plan->results[5].ok());
  ExpectOutcome((*plan->results[5])[0], Kind::kAppended, 2, kSelf, 2);
  EXPECT_EQ(plan->records.size(), 2u);  // "z" of the invalid request is not planned
  EXPECT_TRUE(plan->pull_cursors.empty());
}

TEST(WritePlanTest, CursorsAreKeptInQueueOrder) {
  FakeStore store;
  store.Put("dup", 1, "p@1", 1);
  const std::vector<Message> dups = {PeerMsg("dup", "p@1", 1)};
  const std::vector<Message> none;
  const PullCursor c1{"p@1", 10};
  const PullCursor c2{"p@1", 20};
  Result<WritePlan> plan =
      store.Plan({ApplyReq(&dups, "http://p", &c1), ApplyReq(&none, "http://p", &c2)});
  ASSERT_TRUE(plan.ok());
  EXPECT_FALSE(plan->empty());
  EXPECT_TRUE(plan->records.empty());
  ASSERT_EQ(plan->pull_cursors.size(), 2u);
  EXPECT_EQ(plan->pull_cursors[0].peer_url, "http://p");
  EXPECT_EQ(*plan->pull_cursors[0].cursor, c1);
  EXPECT_EQ(*plan->pull_cursors[1].cursor, c2);
}

TEST(WritePlanTest, LookupFailureVoidsThePlan) {
  FakeStore store;
  store.fail = Status::IOError("disk read failed");
  const std::vector<Message> msgs = {ClientMsg("a")};
  Result<WritePlan> plan = store.Plan({AppendReq(&msgs)});
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().ToString(), "IOError: disk read failed");
}

TEST(WritePlanTest, GapsNeedNoLookup) {
  FakeStore store;
  const std::vector<Message> msgs = {PeerMsg("a", "p@1", 5), PeerMsg("b", "p@1", 6)};
  Result<WritePlan> plan = store.Plan({ApplyReq(&msgs)});
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->empty());
  EXPECT_EQ(store.lookups, 0);
  ExpectOutcome((*plan->results[0])[1], Kind::kGap, 0, "p@1", 6, 1);
}

}  // namespace
}  // namespace dsm

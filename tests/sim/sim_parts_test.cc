// The simulation's parts on their own: MemoryLogStore's simulated disk (fsync as a scheduled
// event, what a crash drops, disk faults, images, its planted bugs) and SimNetwork's faults
// (exactly one answer per call, duplicated, late and paused deliveries, crashes).
#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/planted_bugs.h"
#include "src/http/json_codec.h"
#include "tests/testing/manual_clock.h"
#include "tests/testing/memory_log_store.h"
#include "tests/testing/sim_network.h"

namespace dsm {
namespace {

using Kind = WriteOutcome::Kind;
using Outcomes = Result<std::vector<WriteOutcome>>;

Message ClientMsg(const std::string& id) {
  Message m;
  m.msg_id = id;
  m.sender = "s";
  m.recipient = "r";
  m.payload = "p-" + id;
  return m;
}

Message PeerMsg(const std::string& id, const std::string& origin, uint64_t origin_seq) {
  Message m = ClientMsg(id);
  m.origin = origin;
  m.origin_seq = origin_seq;
  return m;
}

// A store whose scheduled events the test runs by hand, in order.
class SimStoreTest : public ::testing::Test {
 protected:
  SimStoreTest() {
    store_.SetSyncScheduler([this](std::function<void()> e) { events_.push_back(std::move(e)); });
  }
  ~SimStoreTest() override { SetPlantedBug(PlantedBug::kNone); }

  // Runs the scheduled events (and those they schedule) until none is left.
  void RunEvents() {
    while (!events_.empty()) {
      std::function<void()> e = std::move(events_.front());
      events_.pop_front();
      e();
    }
  }
  // AppendAsync of one client message; its answer lands in *out.
  void AppendAsync(const std::string& id, std::optional<Outcomes>* out) {
    store_.AppendAsync({ClientMsg(id)}, [out](Outcomes r) { *out = std::move(r); });
  }
  bool Holds(const std::string& id) {
    Result<std::optional<Message>> m = store_.FindByMsgId(id);
    return m.ok() && m->has_value();
  }

  MemoryLogStore store_{"a", "0000000000000001"};
  std::deque<std::function<void()>> events_;
};

TEST_F(SimStoreTest, AnAsyncWriteIsVisibleAndAnsweredOnlyAfterItsFsync) {
  std::optional<Outcomes> r;
  AppendAsync("m1", &r);
  EXPECT_FALSE(r.has_value());
  EXPECT_EQ(store_.LastSeq(), 0u);
  EXPECT_FALSE(Holds("m1"));
  EXPECT_EQ(store_.PendingWrites(), 1u);
  events_.front()();  // the fsync completes: published, but the callback is another event
  events_.pop_front();
  EXPECT_TRUE(Holds("m1"));
  EXPECT_FALSE(r.has_value());
  RunEvents();
  ASSERT_TRUE(r.has_value() && r->ok());
  EXPECT_EQ((*r)->front().seq, 1u);
  EXPECT_EQ(store_.PendingWrites(), 0u);
}

TEST_F(SimStoreTest, QueuedWritesAreOneGroupAndDuplicatesInsideItAreFound) {
  std::optional<Outcomes> a, b, c;
  AppendAsync("m1", &a);
  AppendAsync("m2", &b);
  AppendAsync("m1", &c);
  EXPECT_EQ(events_.size(), 1u);  // one fsync for the group
  RunEvents();
  ASSERT_TRUE(a && a->ok() && b && b->ok() && c && c->ok());
  EXPECT_EQ((*a)->front().seq, 1u);
  EXPECT_EQ((*b)->front().seq, 2u);
  EXPECT_EQ((*c)->front().kind, Kind::kDuplicate);
  EXPECT_EQ((*c)->front().seq, 1u);
}

TEST_F(SimStoreTest, ACrashDropsWritesNotFsyncedAndNeverCallsTheirCallbacks) {
  std::optional<Outcomes> r;
  AppendAsync("lost", &r);
  std::vector<LogStore::AppendDone> dropped = store_.Crash();
  EXPECT_EQ(dropped.size(), 1u);
  RunEvents();  // the old process's fsync event is void
  EXPECT_FALSE(r.has_value());
  EXPECT_FALSE(Holds("lost"));
  // The dropped write never took a seq: the next one is seq 1.
  std::optional<Outcomes> next;
  AppendAsync("next", &next);
  RunEvents();
  ASSERT_TRUE(next && next->ok());
  EXPECT_EQ((*next)->front().seq, 1u);
}

TEST_F(SimStoreTest, ADurableWriteWhoseCallbackHasNotRunSurvivesACrashUnanswered) {
  std::optional<Outcomes> r;
  AppendAsync("m1", &r);
  events_.front()();  // fsync done, callback pending
  events_.pop_front();
  EXPECT_EQ(store_.Crash().size(), 1u);
  RunEvents();
  EXPECT_FALSE(r.has_value());
  EXPECT_TRUE(Holds("m1"));
}

TEST_F(SimStoreTest, ASyncWriteCommitsTheQueuedWritesBeforeItself) {
  std::optional<Outcomes> queued;
  AppendAsync("m1", &queued);
  Outcomes applied = store_.Apply({PeerMsg("p1", "b@1", 1)});
  ASSERT_TRUE(applied.ok());
  EXPECT_EQ(applied->front().seq, 2u);  // after the queued write, which is durable now
  EXPECT_TRUE(Holds("m1"));
  EXPECT_FALSE(queued.has_value());  // its callback still runs later, as an event
  EXPECT_EQ(store_.Crash().size(), 1u);
  EXPECT_TRUE(Holds("m1"));
  EXPECT_TRUE(Holds("p1"));
}

TEST_F(SimStoreTest, PushCursorsAreUnsyncedUntilADurableWrite) {
  ASSERT_TRUE(store_.SetPushCursor("peer", PushCursor{"b@1", 5}).ok());
  (void)store_.Crash();
  EXPECT_EQ(store_.GetPushCursor("peer"), PushCursor{});
  ASSERT_TRUE(store_.SetPushCursor("peer", PushCursor{"b@1", 5}).ok());
  ASSERT_TRUE(store_.Append({ClientMsg("m1")}).ok());
  (void)store_.Crash();
  EXPECT_EQ(store_.GetPushCursor("peer"), (PushCursor{"b@1", 5}));
}

TEST_F(SimStoreTest, AFullDiskRefusesWritesUntilItHasSpaceAndAFailedOneUntilACrash) {
  store_.SetDiskFull(true);
  Outcomes full = store_.Append({ClientMsg("m1")});
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), Code::kUnavailable);
  std::optional<Outcomes> queued;
  AppendAsync("m2", &queued);
  RunEvents();
  ASSERT_TRUE(queued.has_value());
  EXPECT_FALSE(queued->ok());
  store_.SetDiskFull(false);
  EXPECT_TRUE(store_.Append({ClientMsg("m1")}).ok());

  store_.FailWrites(Status::IOError("fsync failed"));
  EXPECT_EQ(store_.Append({ClientMsg("m3")}).status().code(), Code::kIOError);
  EXPECT_FALSE(store_.SetPushCursor("peer", PushCursor{"b@1", 1}).ok());
  (void)store_.Crash();  // a new process
  EXPECT_TRUE(store_.Append({ClientMsg("m3")}).ok());
  EXPECT_EQ(store_.LastSeq(), 2u);
}

TEST_F(SimStoreTest, AnImageRestoresTheOlderContent) {
  ASSERT_TRUE(store_.Append({ClientMsg("m1")}).ok());
  std::shared_ptr<const MemoryLogStore::Image> image = store_.TakeImage();
  ASSERT_TRUE(store_.Append({ClientMsg("m2")}).ok());
  (void)store_.Crash();
  store_.Restore(*image);
  EXPECT_EQ(store_.LastSeq(), 1u);
  EXPECT_FALSE(Holds("m2"));
  EXPECT_EQ(store_.HighWater(store_.stream_id()), 1u);
}

TEST_F(SimStoreTest, PlantedAckBeforeFsyncAnswersAWriteThatACrashThenDrops) {
  SetPlantedBug(PlantedBug::kAckBeforeFsync);
  std::optional<Outcomes> r;
  AppendAsync("m1", &r);
  ASSERT_TRUE(r && r->ok());  // answered before its fsync
  EXPECT_TRUE(Holds("m1"));
  (void)store_.Crash();
  EXPECT_FALSE(Holds("m1"));
  EXPECT_EQ(store_.LastSeq(), 0u);
}

TEST_F(SimStoreTest, PlantedAckBeforePeerFsyncLosesAnAcceptedPush) {
  SetPlantedBug(PlantedBug::kAckBeforePeerFsync);
  ASSERT_TRUE(store_.Apply({PeerMsg("p1", "b@1", 1)}).ok());
  EXPECT_TRUE(Holds("p1"));
  (void)store_.Crash();
  EXPECT_FALSE(Holds("p1"));
  EXPECT_EQ(store_.HighWater("b@1"), 0u);
}

TEST_F(SimStoreTest, PlantedReuseSeqAfterRestartOverwritesTheLastRecord) {
  SetPlantedBug(PlantedBug::kReuseSeqAfterRestart);
  ASSERT_TRUE(store_.Append({ClientMsg("m1"), ClientMsg("m2")}).ok());
  (void)store_.Crash();
  Outcomes r = store_.Append({ClientMsg("m3")});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->front().seq, 2u);
  Result<std::optional<Message>> at2 = store_.Get(2);
  ASSERT_TRUE(at2.ok() && at2->has_value());
  EXPECT_EQ((*at2)->msg_id, "m3");
}

// ---- SimNetwork ----

class SimNetworkTest : public ::testing::Test {
 protected:
  SimNetworkTest() : net_(&clock_, &rng_, Options()) {
    for (int i = 0; i < 2; ++i) net_.AddNode();
    // Node 0 only calls; a node without a server is down and sends nothing.
    net_.SetServer(0, [](const std::string&, const std::string&) {
      return SimNetwork::HttpReply(404, "{}");
    });
    net_.SetServer(1, [this](const std::string& route, const std::string&) {
      ++served_;
      EXPECT_EQ(route, "GET /heartbeat");
      return SimNetwork::HttpReply(
          200, R"({"status":"ok","node_id":"n1","time":1,"stream":"n1@1","high_waters":{}})");
    });
    transport_ = net_.MakeTransport(0, {1});
  }
  static SimNetworkOptions Options() {
    SimNetworkOptions o;
    o.request_timeout = Millis(300);
    return o;
  }
  // Sends one heartbeat from node 0 and runs the network for `for_ms`.
  std::vector<Result<HeartbeatReply>> Heartbeat(int for_ms = 2000) {
    std::vector<Result<HeartbeatReply>> answers;
    transport_->Heartbeat(0, std::nullopt,
                          [&](Result<HeartbeatReply> r) { answers.push_back(std::move(r)); });
    const MonoTime end = clock_.Now() + Millis(for_ms);
    while (net_.NextEventTime() <= end) {
      clock_.AdvanceTo(net_.NextEventTime());
      net_.RunDue();
    }
    clock_.AdvanceTo(end);
    return answers;
  }

  ManualClock clock_;
  std::mt19937_64 rng_{1};
  SimNetwork net_;
  std::unique_ptr<Transport> transport_;
  int served_ = 0;
};

TEST_F(SimNetworkTest, AnAnswerIsDecodedFromTheBytesOnce) {
  std::vector<Result<HeartbeatReply>> answers = Heartbeat();
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_TRUE(answers[0].ok());
  EXPECT_EQ(answers[0]->stream, "n1@1");
  EXPECT_EQ(served_, 1);
}

TEST_F(SimNetworkTest, ADuplicatedRequestIsServedTwiceAndAnsweredOnce) {
  net_.options().duplicate_probability = 1;
  std::vector<Result<HeartbeatReply>> answers = Heartbeat();
  EXPECT_EQ(answers.size(), 1u);
  EXPECT_EQ(served_, 2);
  EXPECT_EQ(net_.stats().duplicated, 1u);
}

TEST_F(SimNetworkTest, ALateRequestIsServedAfterTheCallerTimedOut) {
  net_.options().late_probability = 1;
  std::vector<Result<HeartbeatReply>> answers = Heartbeat();
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status().code(), Code::kTimeout);
  EXPECT_EQ(served_, 1);
}

TEST_F(SimNetworkTest, APausedNodeServesNothingUntilItsPauseEnds) {
  net_.Pause(1, clock_.Now() + Millis(1000));
  std::vector<Result<HeartbeatReply>> answers = Heartbeat(500);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status().code(), Code::kTimeout);
  EXPECT_EQ(served_, 0);
  (void)Heartbeat(1000);
  EXPECT_EQ(served_, 2);  // the held request, then the new one
}

TEST_F(SimNetworkTest, ACutLinkTimesOutAndADownNodeRefuses) {
  net_.SetLink(0, 1, false);
  std::vector<Result<HeartbeatReply>> cut = Heartbeat();
  ASSERT_EQ(cut.size(), 1u);
  EXPECT_EQ(cut[0].status().code(), Code::kTimeout);
  net_.HealAll();
  net_.Crash(1);
  std::vector<Result<HeartbeatReply>> down = Heartbeat();
  ASSERT_EQ(down.size(), 1u);
  EXPECT_EQ(down[0].status().code(), Code::kUnavailable);
}

TEST_F(SimNetworkTest, ACrashedCallerHearsNothing) {
  std::vector<Result<HeartbeatReply>> answers;
  transport_->Heartbeat(0, std::nullopt,
                        [&](Result<HeartbeatReply> r) { answers.push_back(std::move(r)); });
  net_.Crash(0);
  clock_.Advance(std::chrono::seconds(2));
  net_.RunDue();
  EXPECT_TRUE(answers.empty());
}

}  // namespace
}  // namespace dsm

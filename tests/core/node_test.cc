// Node (the replication core) driven by hand: a ManualClock, a MemoryLogStore and a
// FakeTransport whose requests the test answers one by one.
#include "core/node.h"

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <set>
#include <tuple>
#include <vector>

#include "common/metrics.h"
#include "tests/testing/fake_transport.h"
#include "tests/testing/manual_clock.h"
#include "tests/testing/memory_log_store.h"

namespace dsm {
namespace {

using std::chrono::milliseconds;

class NodeTest : public ::testing::Test {
 protected:
  void Make(ReplicationMode mode, int quorum, int peers = 2) {
    options_.id = "a";
    options_.peers.clear();
    for (int i = 0; i < peers; ++i)
      options_.peers.push_back("http://127.0.0.1:" + std::to_string(9001 + i));
    options_.mode = mode;
    options_.quorum = quorum;
    options_.heartbeat_interval = milliseconds(100);
    options_.heartbeat_timeout = milliseconds(300);
    options_.quorum_timeout = milliseconds(500);
    options_.anti_entropy_interval = milliseconds(1000);
    options_.retry_min = milliseconds(10);
    options_.retry_max = milliseconds(80);
    node_ = std::make_unique<Node>(options_, &log_, &transport_, &clock_);
    if (hold_storage_) {
      node_->SetStorageExecutor([this](std::function<void()> task) {
        storage_tasks_.push_back(std::move(task));
      });
    }
    node_->Start();
  }

  // With hold_storage_ set before Make(), the core's log work waits in storage_tasks_ until
  // RunStorage() runs it (in order).
  void RunStorage() {
    while (!storage_tasks_.empty()) {
      auto task = std::move(storage_tasks_.front());
      storage_tasks_.erase(storage_tasks_.begin());
      task();
    }
  }

  // Make(), then every peer answers the first heartbeat: the node knows each peer's incarnation
  // (pushes and quorum counts wait for it).
  void MakeIntroduced(ReplicationMode mode, int quorum, int peers = 2) {
    Make(mode, quorum, peers);
    node_->Tick();
    OkHeartbeats();
  }

  // Answers the pulls a start makes with empty pages: the peers hold nothing yet.
  void AnswerStartUpPullsEmpty() {
    while (transport_.pending_syncs() > 0) {
      auto pull = transport_.TakeSync();
      SyncReply empty;
      empty.stream = PeerStream(pull.peer);
      pull.done(empty);
      node_->Tick();
    }
  }

  // Peer i's stream id.
  static std::string PeerStream(size_t i) { return "p" + std::to_string(i) + "@1"; }

  // A heartbeat answer of peer i's incarnation `stream` (its first one by default).
  static HeartbeatReply Hb(size_t i, std::string stream = "") {
    HeartbeatReply r;
    r.node_id = "peer";
    r.stream = stream.empty() ? PeerStream(i) : std::move(stream);
    return r;
  }

  // A push answer: the peer (incarnation `stream`) holds our stream up to `high_water`.
  static ReplicateReply Ack(uint64_t high_water, std::string stream = PeerStream(0)) {
    ReplicateReply r;
    r.high_water = high_water;
    r.stream = std::move(stream);
    return r;
  }

  static Message Msg(const std::string& id) {
    Message m;
    m.msg_id = id;
    m.sender = "s";
    m.recipient = "r";
    m.payload = "p-" + id;
    m.ts = 1;
    return m;
  }

  // A page of the peer's log holding its own stream `stream` at seqs first..last (messages
  // b<first>..b<last>, each at the same position of the stream as its seq).
  static SyncReply StreamPage(const std::string& stream, uint64_t first, uint64_t last) {
    SyncReply page;
    page.stream = stream;
    for (uint64_t k = first; k <= last; ++k) {
      Message m = Msg("b" + std::to_string(k));
      m.seq = k;
      m.origin = stream;
      m.origin_seq = k;
      page.messages.push_back(m);
    }
    return page;
  }

  // A page of peer b's log (stream b@2) with a gap in stream c@3: b stores message x as b@2:1
  // (and also holds it as c@3:1, under that other origin), then y at c@3:2, so its log shows
  // c@3:2 without c@3:1.
  static SyncReply GapPage() {
    SyncReply page;
    page.stream = "b@2";
    Message dup = Msg("x");
    dup.seq = 1;
    dup.origin = "b@2";
    dup.origin_seq = 1;
    Message second = Msg("y");
    second.seq = 2;
    second.origin = "c@3";
    second.origin_seq = 2;
    page.messages = {dup, second};
    return page;
  }

  // Sends one message; the answer lands in *out when it comes.
  void Send(const std::string& id, std::optional<SendResult>* out,
            AckMode ack = AckMode::kDefault) {
    node_->Send({Msg(id)}, ack, [out](SendResult r) { *out = std::move(r); });
  }

  void FailHeartbeats() { transport_.AnswerHeartbeats(Status::Unavailable("refused")); }
  void OkHeartbeats(size_t peer = SIZE_MAX) {
    for (size_t i = 0; i < options_.peers.size(); ++i) {
      if (peer == SIZE_MAX || peer == i) transport_.AnswerHeartbeats(Hb(i), i);
    }
  }

  // Answers the oldest pending push with the high water the peer would have after it.
  void AckPush() {
    auto call = transport_.TakeReplicate();
    ReplicateReply r;
    r.high_water = call.msgs.back().origin_seq;
    call.done(r);
  }

  bool Stored(const std::string& id) {
    auto m = log_.FindByMsgId(id);
    return m.ok() && m->has_value();
  }

  NodeOptions options_;
  bool hold_storage_ = false;
  std::vector<std::function<void()>> storage_tasks_;
  ManualClock clock_;
  MemoryLogStore log_{"a", "0000000000000001"};
  FakeTransport transport_;
  std::unique_ptr<Node> node_;
};

TEST_F(NodeTest, StartIssuesHeartbeatsAndPullsToEveryPeer) {
  Make(ReplicationMode::kAsync, 2);
  node_->Tick();
  EXPECT_EQ(transport_.pending_heartbeats(), 2u);
  EXPECT_EQ(transport_.pending_syncs(), 2u);
}

TEST_F(NodeTest, AsyncSendAnswersAfterTheLocalWriteAndPushes) {
  MakeIntroduced(ReplicationMode::kAsync, 2);
  std::optional<SendResult> r;
  Send("m1", &r);
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->status.ok()) << r->status.ToString();
  EXPECT_EQ(r->outcomes[0].seq, 1u);
  EXPECT_TRUE(Stored("m1"));
  EXPECT_EQ(transport_.pending_replicates(), 2u);  // one push per peer
  AckPush();
  EXPECT_EQ(log_.GetPushCursor(options_.peers[0]).origin_seq, 1u);  // the cursor is persisted
}

TEST_F(NodeTest, QuorumSendWaitsForPeerAcknowledgements) {
  MakeIntroduced(ReplicationMode::kSyncQuorum, 3);
  std::optional<SendResult> r;
  Send("m1", &r);
  EXPECT_FALSE(r.has_value());
  AckPush();
  EXPECT_FALSE(r.has_value()) << "2 of 3 nodes is not a quorum of 3";
  AckPush();
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->status.ok());
}

TEST_F(NodeTest, QuorumRefusedUpFrontWhenPeersAreKnownDead) {
  Make(ReplicationMode::kSyncQuorum, 3);
  node_->Tick();
  FailHeartbeats();
  clock_.Advance(milliseconds(400));  // past the heartbeat timeout
  node_->Tick();
  std::optional<SendResult> r;
  Send("m1", &r);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.code(), Code::kUnavailable);
  EXPECT_EQ(r->status.message(), "replication quorum not achieved");
  EXPECT_FALSE(Stored("m1"));
  EXPECT_EQ(log_.LastSeq(), 0u);
  // A local ack is still possible.
  Send("m2", &r, AckMode::kLocal);
  EXPECT_TRUE(r->status.ok());
}

TEST_F(NodeTest, QuorumTimeoutKeepsTheMessageAndARetryWaitsForIt) {
  MakeIntroduced(ReplicationMode::kSyncQuorum, 2);
  std::optional<SendResult> r;
  Send("m1", &r);
  clock_.Advance(milliseconds(501));
  node_->Tick();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.code(), Code::kTimeout);
  EXPECT_NE(r->status.message().find("m1"), std::string::npos) << r->status.message();
  EXPECT_NE(r->status.message().find("seq 1"), std::string::npos) << r->status.message();
  EXPECT_NE(r->status.message().find("500 ms"), std::string::npos) << r->status.message();
  EXPECT_TRUE(Stored("m1"));

  OkHeartbeats();  // the peers are reachable: the retry is not refused up front
  std::optional<SendResult> retry;
  Send("m1", &retry);
  EXPECT_FALSE(retry.has_value());
  AckPush();
  ASSERT_TRUE(retry.has_value());
  EXPECT_TRUE(retry->status.ok());
  EXPECT_EQ(retry->outcomes[0].kind, WriteOutcome::Kind::kDuplicate);
  EXPECT_EQ(retry->outcomes[0].seq, 1u);
  EXPECT_EQ(log_.LastSeq(), 1u);
}

TEST_F(NodeTest, FailedPushIsRetriedWithBackoff) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  std::optional<SendResult> r;
  Send("m1", &r);
  auto call = transport_.TakeReplicate();
  const MonoTime failed_at = clock_.Now();
  call.done(Status::Unavailable("refused"));
  EXPECT_EQ(transport_.pending_replicates(), 0u);
  EXPECT_GE(node_->NextDeadline(), failed_at);
  EXPECT_LE(node_->NextDeadline(), failed_at + options_.retry_max);
  clock_.Advance(options_.retry_max);
  node_->Tick();
  ASSERT_EQ(transport_.pending_replicates(), 1u);
  EXPECT_EQ(transport_.TakeReplicate().msgs[0].msg_id, "m1");
}

// A restarted peer's first heartbeat names its stream: the push that backs off after failing to
// reach it goes out again at once, not at the end of its backoff.
TEST_F(NodeTest, AHeartbeatFromAPeerRetriesItsBackedOffPushAtOnce) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  ASSERT_EQ(transport_.pending_heartbeats(), 0u);
  std::optional<SendResult> r;
  Send("m1", &r);
  // Unreachable until its backoff grows to retry_max.
  transport_.TakeReplicate().done(Status::Unavailable("refused"));
  for (int i = 0; i < 3; ++i) {  // 10, 20, 40 -> 80 ms; the peer stays alive (300 ms)
    clock_.Advance(options_.retry_max);
    node_->Tick();
    ASSERT_EQ(transport_.pending_replicates(), 1u);
    transport_.TakeReplicate().done(Status::Unavailable("refused"));
  }
  transport_.AnswerHeartbeats(Hb(0), 0);  // the heartbeats of those ticks: still alive
  ASSERT_EQ(transport_.pending_replicates(), 0u);

  // Neither someone else's stream nor a GET without one changes anything.
  node_->Heartbeat(nullptr, "stranger@9");
  node_->Heartbeat();
  node_->Tick();
  EXPECT_EQ(transport_.pending_replicates(), 0u);

  node_->Heartbeat(nullptr, PeerStream(0));  // the clock has not moved
  ASSERT_EQ(transport_.pending_replicates(), 1u);
  auto resent = transport_.TakeReplicate();
  EXPECT_EQ(resent.msgs[0].msg_id, "m1");
  EXPECT_EQ(transport_.pending_heartbeats(), 0u) << "an alive peer is not sent an extra heartbeat";

  // At most once per retry_min: a heartbeat sooner than that after the last one acted on does
  // not cut a backoff short; one later does, however long the backoff.
  resent.done(Status::Unavailable("refused"));  // backoff: retry_min
  node_->Heartbeat(nullptr, PeerStream(0));
  node_->Tick();
  EXPECT_EQ(transport_.pending_replicates(), 0u);
  for (int i = 1; i <= 2; ++i) {  // backoff: 2, then 4 x retry_min
    clock_.Advance(options_.retry_min * i);
    node_->Tick();
    ASSERT_EQ(transport_.pending_replicates(), 1u);
    transport_.TakeReplicate().done(Status::Unavailable("refused"));
  }
  node_->Heartbeat(nullptr, PeerStream(0));  // 3 x retry_min after the last one acted on
  EXPECT_EQ(transport_.pending_replicates(), 1u);
}

// A push the peer refused (here: a message too large for it, retried after retry_max) keeps its
// backoff when the peer calls: only a failure to reach it ends early.
TEST_F(NodeTest, AHeartbeatFromAPeerLeavesARefusedPushWaiting) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  std::optional<SendResult> r;
  Send("m1", &r);
  transport_.TakeReplicate().done(Status::TooLarge("request body too large"));
  ASSERT_EQ(transport_.pending_replicates(), 0u);
  node_->Heartbeat(nullptr, PeerStream(0));
  node_->Tick();
  EXPECT_EQ(transport_.pending_replicates(), 0u);
  clock_.Advance(options_.retry_max);
  node_->Tick();
  EXPECT_EQ(transport_.pending_replicates(), 1u);
}

// A peer that is dead here and calls again gets a heartbeat at once: only this node's own
// exchange with it makes it alive (the heartbeat it sent proves one direction only).
TEST_F(NodeTest, AHeartbeatFromADeadPeerIsAnsweredWithAHeartbeatAtOnce) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  clock_.Advance(milliseconds(50));
  node_->Tick();
  FailHeartbeats();
  clock_.Advance(options_.heartbeat_timeout);
  node_->Tick();
  FailHeartbeats();
  ASSERT_FALSE(node_->GetStatus().peers[0].alive);
  ASSERT_EQ(transport_.pending_heartbeats(), 0u);

  node_->Heartbeat(nullptr, PeerStream(0));
  ASSERT_EQ(transport_.pending_heartbeats(), 1u);
  EXPECT_FALSE(node_->GetStatus().peers[0].alive);
  OkHeartbeats();
  EXPECT_TRUE(node_->GetStatus().peers[0].alive);
}

TEST_F(NodeTest, GapAnswerRewindsThePushCursor) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  std::optional<SendResult> r;
  Send("m1", &r);
  AckPush();
  Send("m2", &r);
  auto call = transport_.TakeReplicate();
  ASSERT_EQ(call.msgs[0].msg_id, "m2");
  ReplicateReply gap;  // the peer was wiped: it has nothing of our stream
  gap.gap = true;
  gap.high_water = 0;
  call.done(gap);
  ASSERT_EQ(transport_.pending_replicates(), 1u);
  auto resend = transport_.TakeReplicate();
  EXPECT_EQ(resend.msgs.size(), 2u);
  EXPECT_EQ(resend.msgs[0].msg_id, "m1");
}

TEST_F(NodeTest, SuccessfulReplicationCountsAsLiveness) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  node_->Tick();
  std::optional<SendResult> r;
  Send("m1", &r);
  clock_.Advance(milliseconds(200));
  AckPush();
  clock_.Advance(milliseconds(200));  // 400 ms since start, 200 since the push succeeded
  NodeStatus st = node_->GetStatus();
  EXPECT_TRUE(st.peers[0].alive);
  clock_.Advance(milliseconds(200));
  st = node_->GetStatus();
  EXPECT_FALSE(st.peers[0].alive);
}

TEST_F(NodeTest, StatusReportsLagPerPeer) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  std::optional<SendResult> r;
  Send("m1", &r);
  Send("m2", &r);
  clock_.Advance(milliseconds(1500));
  NodeStatus st = node_->GetStatus();
  EXPECT_EQ(st.own_high_water, 2u);
  EXPECT_EQ(st.peers[0].lag_messages, 2u);
  EXPECT_GT(st.peers[0].lag_seconds, 1.0);
}

TEST_F(NodeTest, PullAppliesPagesAndStoresTheCursor) {
  Make(ReplicationMode::kAsync, 2, 1);
  node_->Tick();
  auto call = transport_.TakeSync();
  EXPECT_EQ(call.since, 0u);
  SyncReply page = StreamPage("b@0000000000000002", 1, 2);
  page.more = true;
  page.last_seq = 5;
  call.done(page);
  EXPECT_TRUE(Stored("b1"));
  EXPECT_TRUE(Stored("b2"));
  EXPECT_EQ(log_.GetPullCursor(options_.peers[0]), (PullCursor{page.stream, 2}));
  node_->Tick();  // more pages: pull again at once
  ASSERT_EQ(transport_.pending_syncs(), 1u);
  EXPECT_EQ(transport_.TakeSync().since, 2u);
}

// Pages are pipelined: the next one is requested as soon as a page arrives, while it is written.
TEST_F(NodeTest, PullRequestsTheNextPageWhileItWritesOne) {
  hold_storage_ = true;
  Make(ReplicationMode::kAsync, 2, 1);
  node_->Tick();
  SyncReply page = StreamPage("b@2", 1, 2);
  page.more = true;
  page.last_seq = 6;
  transport_.TakeSync().done(page);
  EXPECT_FALSE(Stored("b1")) << "page 1's write waits on the storage executor";
  ASSERT_EQ(transport_.pending_syncs(), 1u) << "page 2 is requested before page 1 is written";
  auto second = transport_.TakeSync();
  EXPECT_EQ(second.since, 2u);
  RunStorage();
  EXPECT_TRUE(Stored("b2"));
  EXPECT_EQ(log_.GetPullCursor(options_.peers[0]), (PullCursor{page.stream, 2}));
  // Page 2 arrives and is written after page 1: the cursor follows.
  SyncReply page2 = StreamPage(page.stream, 3, 3);
  page2.last_seq = 3;
  second.done(page2);
  RunStorage();
  EXPECT_TRUE(Stored("b3"));
  EXPECT_EQ(log_.GetPullCursor(options_.peers[0]), (PullCursor{page.stream, 3}));
}

// A page requested while the page before it was written is written only if that page ended
// where it begins: here page 1 stops at a gap (the cursor stays before it and a repair starts),
// so page 2, already requested, must not be written (it would move the cursor past the gap).
TEST_F(NodeTest, APipelinedPageAfterAGapIsNotWritten) {
  Make(ReplicationMode::kAsync, 2, 1);
  node_->Tick();
  SyncReply page = GapPage();
  page.more = true;
  page.last_seq = 4;
  transport_.TakeSync().done(page);
  EXPECT_EQ(log_.GetPullCursor(options_.peers[0]).seq, 1u) << "the cursor stays before the gap";
  ASSERT_EQ(transport_.pending_stream_syncs(), 1u);
  ASSERT_EQ(transport_.pending_syncs(), 1u) << "page 2 was requested with page 1";
  auto ahead = transport_.TakeSync();
  EXPECT_EQ(ahead.since, 2u);
  SyncReply page2;
  page2.stream = "b@2";
  Message z = Msg("z");
  z.seq = 3;
  z.origin = "b@2";
  z.origin_seq = 2;
  page2.messages = {z};
  page2.last_seq = 4;
  page2.next = 4;
  ahead.done(page2);
  EXPECT_FALSE(Stored("z")) << "page 2 does not start where the cursor is";
  EXPECT_EQ(log_.GetPullCursor(options_.peers[0]).seq, 1u);
  node_->Tick();
  EXPECT_EQ(transport_.pending_syncs(), 0u) << "the repair goes first";
}

// A pull says how far this node holds each stream; the peer's `next` moves the cursor past what
// it left out, but never beyond the peer's last seq.
TEST_F(NodeTest, PullSendsHighWatersAndFollowsThePeersNext) {
  Make(ReplicationMode::kAsync, 2, 1);
  std::optional<SendResult> sent;
  Send("a1", &sent);
  ASSERT_TRUE(sent.has_value() && sent->status.ok());
  node_->Tick();
  auto call = transport_.TakeSync();
  EXPECT_EQ(call.have, (std::map<std::string, uint64_t>{{log_.stream_id(), 1}}));
  SyncReply page;
  page.stream = "b@0000000000000002";
  page.last_seq = 9;
  page.next = 7;  // seqs 1..7 were ours: nothing to send
  page.more = true;
  call.done(page);
  EXPECT_EQ(log_.GetPullCursor(options_.peers[0]), (PullCursor{page.stream, 7}));
  node_->Tick();
  call = transport_.TakeSync();
  EXPECT_EQ(call.since, 7u);
  page.next = 10;  // beyond last_seq: not believed
  page.more = false;
  call.done(page);
  EXPECT_EQ(log_.GetPullCursor(options_.peers[0]), (PullCursor{page.stream, 7}));
}

TEST_F(NodeTest, SyncLeavesOutWhatThePullerHolds) {
  Make(ReplicationMode::kAsync, 2, 1);
  for (int i = 1; i <= 5; ++i) {
    std::optional<SendResult> sent;
    Send("a" + std::to_string(i), &sent);
    ASSERT_TRUE(sent.has_value() && sent->status.ok());
  }
  const std::string own = log_.stream_id();
  // The puller holds positions 1..3 of our stream: seqs 4 and 5 come.
  Result<SyncPage> page = node_->Sync(0, 10, {{own, 3}, {"x@1", 99}});
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->messages.size(), 2u);
  EXPECT_EQ(page->messages[0].msg_id, "a4");
  EXPECT_EQ(page->next, 5u);
  EXPECT_FALSE(page->more);
  // Holding everything: an empty page that still reaches the end.
  page = node_->Sync(0, 10, {{own, 5}});
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->messages.empty());
  EXPECT_EQ(page->next, 5u);
  EXPECT_FALSE(page->more);
  // A page looks at no more than kSyncScanFactor * limit entries.
  for (int i = 6; i <= 40; ++i) {
    std::optional<SendResult> sent;
    Send("a" + std::to_string(i), &sent);
    ASSERT_TRUE(sent.has_value() && sent->status.ok());
  }
  page = node_->Sync(0, 1, {{own, 40}});
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->messages.empty());
  EXPECT_EQ(page->next, Node::kSyncScanFactor);
  EXPECT_TRUE(page->more);
  // Without `have`, as before: `limit` entries.
  page = node_->Sync(2, 3);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->messages.size(), 3u);
  EXPECT_EQ(page->next, 5u);
  EXPECT_TRUE(page->more);
}

// A page's last_seq is the log's, never the request's `since` (which may lie beyond the log).
TEST_F(NodeTest, SyncPageFromBeyondTheLogGivesTheLastSeq) {
  Make(ReplicationMode::kAsync, 2, 1);
  for (int i = 1; i <= 3; ++i) {
    std::optional<SendResult> sent;
    Send("a" + std::to_string(i), &sent);
    ASSERT_TRUE(sent.has_value() && sent->status.ok());
  }
  Result<SyncPage> page = node_->Sync(100, 10);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->messages.empty());
  EXPECT_EQ(page->last_seq, 3u);
  EXPECT_EQ(page->next, 100u);
  EXPECT_FALSE(page->more);
  page = node_->Sync(1, 10);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->messages.size(), 2u);
  EXPECT_EQ(page->last_seq, 3u);
  EXPECT_EQ(page->next, 3u);
}

TEST_F(NodeTest, PullFromAReplacedPeerStartsOverFromZero) {
  Make(ReplicationMode::kAsync, 2, 1);
  node_->Tick();
  SyncReply page;
  page.stream = "b@old";
  Message m = Msg("b1");
  m.seq = 5;
  m.origin = "b@old";
  m.origin_seq = 1;
  page.messages.push_back(m);
  page.last_seq = 5;
  transport_.TakeSync().done(page);
  ASSERT_EQ(log_.GetPullCursor(options_.peers[0]).seq, 5u);

  clock_.Advance(options_.anti_entropy_interval);
  node_->Tick();
  auto call = transport_.TakeSync();
  EXPECT_EQ(call.since, 5u);
  SyncReply wiped;
  wiped.stream = "b@new";
  call.done(wiped);
  EXPECT_EQ(log_.GetPullCursor(options_.peers[0]), (PullCursor{"b@new", 0}));
  node_->Tick();
  ASSERT_EQ(transport_.pending_syncs(), 1u);
  EXPECT_EQ(transport_.TakeSync().since, 0u);
}

// Peer b holds stream c up to 2, but position 1 is a msg_id it stores under another origin, so
// its log (what /sync shows) has c:2 without c:1. The puller repairs stream c, then resumes.
TEST_F(NodeTest, PullGapIsRepairedFromTheOriginStream) {
  Make(ReplicationMode::kAsync, 2, 1);
  node_->Tick();
  SyncReply page = GapPage();
  page.last_seq = 2;
  transport_.TakeSync().done(page);
  EXPECT_TRUE(Stored("x"));
  EXPECT_FALSE(Stored("y"));
  EXPECT_EQ(log_.GetPullCursor(options_.peers[0]).seq, 1u) << "the cursor stays before the gap";
  ASSERT_EQ(transport_.pending_stream_syncs(), 1u);
  auto repair = transport_.TakeStreamSync();
  EXPECT_EQ(repair.origin, "c@3");
  EXPECT_EQ(repair.since, 0u);
  SyncReply stream;
  stream.stream = "b@2";
  Message pos1 = Msg("x");
  pos1.origin = "c@3";
  pos1.origin_seq = 1;
  Message pos2 = page.messages[1];  // y at c@3:2
  stream.messages = {pos1, pos2};
  repair.done(stream);
  EXPECT_TRUE(Stored("y"));
  EXPECT_EQ(log_.HighWater("c@3"), 2u);
  node_->Tick();  // the pull resumes where it stopped
  ASSERT_EQ(transport_.pending_syncs(), 1u);
  EXPECT_EQ(transport_.TakeSync().since, 1u);
}

TEST_F(NodeTest, QuorumForAMessageOfAnotherOriginUsesPeersHighWaters) {
  Make(ReplicationMode::kSyncQuorum, 3);
  Message m = Msg("x1");
  m.origin = "b@0000000000000002";
  m.origin_seq = 1;
  ASSERT_TRUE(node_->Replicate({m}).ok());
  node_->Tick();
  std::optional<SendResult> r;
  Send("x1", &r);  // a client retry of a message node b accepted
  EXPECT_FALSE(r.has_value());
  HeartbeatReply hb = Hb(0);
  hb.high_waters[m.origin] = 1;
  transport_.AnswerHeartbeats(hb, 0);
  EXPECT_FALSE(r.has_value()) << "self + one peer is not a quorum of 3";
  hb.stream = PeerStream(1);
  transport_.AnswerHeartbeats(hb, 1);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->status.ok());
}

TEST_F(NodeTest, ReplicateReportsGapsAndHighWater) {
  Make(ReplicationMode::kAsync, 2);
  Message m = Msg("x3");
  m.origin = "b@2";
  m.origin_seq = 3;
  auto r = node_->Replicate({m});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->gap);
  EXPECT_EQ(r->high_water, 0u);
  EXPECT_FALSE(Stored("x3"));
}

TEST_F(NodeTest, ReplicateWithoutOriginAdoptsAndPushes) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  Message m = Msg("direct");
  auto r = node_->Replicate({m});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcomes[0].origin, log_.stream_id());
  ASSERT_EQ(transport_.pending_replicates(), 1u);
  EXPECT_EQ(transport_.TakeReplicate().msgs[0].msg_id, "direct");
}

TEST_F(NodeTest, StopAnswersPendingQuorumWaiters) {
  MakeIntroduced(ReplicationMode::kSyncQuorum, 2);
  std::optional<SendResult> r;
  Send("m1", &r);
  EXPECT_FALSE(r.has_value());
  node_->Stop();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.code(), Code::kUnavailable);
  Send("m2", &r);
  EXPECT_EQ(r->status.code(), Code::kUnavailable);
}

TEST_F(NodeTest, MetricsCountSendsQuorumOutcomesAndPeers) {
  MakeIntroduced(ReplicationMode::kSyncQuorum, 2, 1);
  std::optional<SendResult> r;
  Send("m1", &r);
  AckPush();       // ok
  Send("m1", &r);  // duplicate, already held by the peer: ok at once
  Send("m2", &r);
  clock_.Advance(milliseconds(501));
  node_->Tick();  // timeout
  Message pushed = Msg("from-peer");
  pushed.origin = PeerStream(0);
  pushed.origin_seq = 1;
  ASSERT_TRUE(node_->Replicate({pushed}).ok());
  MetricsWriter w;
  node_->WriteMetrics(w);
  const std::string& text = w.text();
  for (const char* line : {
           "dsm_messages_appended_total{source=\"client\"} 2\n",
           "dsm_messages_deduplicated_total{source=\"client\"} 1\n",
           "dsm_quorum_writes_total{outcome=\"ok\"} 2\n",
           "dsm_quorum_writes_total{outcome=\"timeout\"} 1\n",
           "dsm_send_duration_seconds_count{ack=\"quorum\"} 3\n",
           "dsm_peer_replicated_messages_total{peer=\"http://127.0.0.1:9001\"} 1\n",
           "dsm_peer_lag_messages{peer=\"http://127.0.0.1:9001\"} 1\n",
           "# TYPE dsm_peer_alive gauge\n",
           // Where the time went: three log writes, two of them reached their quorum (the
           // retry at once), one push answered and one in flight.
           "dsm_send_stage_duration_seconds_count{stage=\"log_write\"} 3\n",
           "dsm_send_stage_duration_seconds_count{stage=\"core_queue\"} 3\n",
           "dsm_send_stage_duration_seconds_count{stage=\"quorum_wait\"} 2\n",
           "dsm_peer_push_round_trip_seconds_count{peer=\"http://127.0.0.1:9001\"} 1\n",
           "dsm_peer_push_in_flight{peer=\"http://127.0.0.1:9001\"} 1\n",
           "dsm_replicate_write_duration_seconds_count 1\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing: " << line << "\n" << text;
  }
}

TEST_F(NodeTest, EventsReportPeersTurningDeadAndAlive) {
  std::vector<std::string> events;
  Make(ReplicationMode::kAsync, 2, 1);
  node_->SetEventLog([&](EventLevel, const std::string& e) { events.push_back(e); });
  node_->Tick();
  OkHeartbeats();
  clock_.Advance(milliseconds(400));
  node_->Tick();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_NE(events[0].find("is alive"), std::string::npos) << events[0];
  EXPECT_NE(events[1].find("is dead"), std::string::npos) << events[1];
}

TEST_F(NodeTest, StorageFailureIsReported) {
  Make(ReplicationMode::kAsync, 2);
  log_.FailWrites(Status::IOError("fsync failed"));
  std::optional<SendResult> r;
  Send("m1", &r);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.code(), Code::kIOError);
}

}  // namespace
}  // namespace dsm

namespace dsm {
namespace {

// A node restarted with a push cursor acknowledged by an incarnation of the peer that has since
// been wiped: a retry of a message only this node holds must not be answered 200 before the
// peer's current incarnation acknowledges it (contract 11: no dishonest quorum 200).
TEST_F(NodeTest, PushCursorOfAWipedPeerCountsTowardNoQuorum) {
  ASSERT_TRUE(log_.Append({Msg("m1")}).ok());
  ASSERT_TRUE(log_.SetPushCursor("http://127.0.0.1:9001", PushCursor{"p0@old", 1}).ok());
  Make(ReplicationMode::kSyncQuorum, 2, 1);
  std::optional<SendResult> before;
  Send("m1", &before);  // the peer has not said who it is yet
  EXPECT_FALSE(before.has_value()) << "counted a cursor of an incarnation nobody confirmed";
  node_->Tick();
  OkHeartbeats();  // it is p0@1: the cursor of p0@old is worth nothing
  EXPECT_FALSE(before.has_value());
  EXPECT_EQ(node_->GetStatus().peers[0].push_cursor, 0u);
  ASSERT_EQ(transport_.pending_replicates(), 1u);
  auto push = transport_.TakeReplicate();
  ASSERT_EQ(push.msgs[0].msg_id, "m1") << "the push restarts from the beginning";
  ReplicateReply ack = Ack(1);
  push.done(ack);
  ASSERT_TRUE(before.has_value());
  EXPECT_TRUE(before->status.ok());
  EXPECT_EQ(log_.GetPushCursor(options_.peers[0]), (PushCursor{PeerStream(0), 1}));
}

// A push answered by a new incarnation (wiped between two pushes) moves the cursor to what that
// incarnation holds, never counts what the old one acknowledged.
TEST_F(NodeTest, PushAnswerFromANewIncarnationRestartsTheCursor) {
  MakeIntroduced(ReplicationMode::kSyncQuorum, 2, 1);
  std::optional<SendResult> r1;
  Send("m1", &r1);
  AckPush();
  ASSERT_TRUE(r1.has_value() && r1->status.ok());
  std::optional<SendResult> r2;
  Send("m2", &r2);
  auto push = transport_.TakeReplicate();
  ReplicateReply gap;  // the new incarnation holds nothing of our stream
  gap.gap = true;
  gap.high_water = 0;
  gap.stream = "p0@new";
  push.done(gap);
  EXPECT_FALSE(r2.has_value());
  std::optional<SendResult> retry1;
  Send("m1", &retry1);
  EXPECT_FALSE(retry1.has_value()) << "m1 is held by no current incarnation of the peer";
  auto resend = transport_.TakeReplicate();
  ASSERT_EQ(resend.msgs.size(), 2u);
  ReplicateReply ok = Ack(2, "p0@new");
  resend.done(ok);
  ASSERT_TRUE(retry1.has_value() && r2.has_value());
  EXPECT_TRUE(retry1->status.ok());
  EXPECT_TRUE(r2->status.ok());
}

// A retry of a message that Q current holders hold is a success even when the failure detector
// now sees fewer than Q nodes: 503 would say that nothing was written.
TEST_F(NodeTest, RetryOfAMessageTheQuorumHoldsIsOkWhilePeersAreDead) {
  MakeIntroduced(ReplicationMode::kSyncQuorum, 2, 1);
  std::optional<SendResult> r;
  Send("m1", &r);
  AckPush();
  ASSERT_TRUE(r.has_value() && r->status.ok());
  clock_.Advance(milliseconds(400));
  node_->Tick();
  FailHeartbeats();
  ASSERT_FALSE(node_->GetStatus().peers[0].alive);
  std::optional<SendResult> retry;
  Send("m1", &retry);
  ASSERT_TRUE(retry.has_value());
  EXPECT_TRUE(retry->status.ok()) << retry->status.ToString();
  EXPECT_EQ(retry->outcomes[0].kind, WriteOutcome::Kind::kDuplicate);
  std::optional<SendResult> fresh;
  Send("m2", &fresh);
  ASSERT_TRUE(fresh.has_value());
  EXPECT_EQ(fresh->status.code(), Code::kUnavailable);
  EXPECT_FALSE(Stored("m2"));
}

// Another msg_id at a held position is a conflict: refused, not a duplicate, and the answer's
// high water stops before it so the sender never counts it.
TEST_F(NodeTest, ReplicateRefusesAConflictingPosition) {
  Make(ReplicationMode::kAsync, 2);
  Message m = Msg("x1");
  m.origin = "b@2";
  m.origin_seq = 1;
  ASSERT_TRUE(node_->Replicate({m}).ok());
  Message forged = Msg("forged");
  forged.origin = "b@2";
  forged.origin_seq = 1;
  auto r = node_->Replicate({forged});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->conflict);
  EXPECT_EQ(r->outcomes[0].kind, WriteOutcome::Kind::kConflict);
  EXPECT_EQ(r->high_water, 0u);
  EXPECT_FALSE(Stored("forged"));
  MetricsWriter w;
  node_->WriteMetrics(w);
  EXPECT_NE(w.text().find("dsm_conflicts_total 1"), std::string::npos);
}

// A peer answering a push with a conflict holds that position differently: the quorum waits, the
// problem is named in /status and counted.
TEST_F(NodeTest, ConflictAnswerIsReportedAndNeverCounted) {
  MakeIntroduced(ReplicationMode::kSyncQuorum, 2, 1);
  std::optional<SendResult> r;
  Send("m1", &r);
  auto push = transport_.TakeReplicate();
  ReplicateReply conflict;
  conflict.conflict = true;
  conflict.high_water = 0;
  conflict.stream = PeerStream(0);
  conflict.reason = "conflict at origin_seq 1";
  push.done(conflict);
  EXPECT_FALSE(r.has_value());
  NodeStatus st = node_->GetStatus();
  EXPECT_NE(st.peers[0].push_problem.find("conflict"), std::string::npos)
      << st.peers[0].push_problem;
  EXPECT_EQ(st.peers[0].push_cursor, 0u);
  MetricsWriter w;
  node_->WriteMetrics(w);
  EXPECT_NE(w.text().find("dsm_peer_conflicts_total{peer=\"http://127.0.0.1:9001\"} 1"),
            std::string::npos);
}

// A push the peer refuses as too large (413) is halved until it fits; a single message the peer
// can never take is named in /status.
TEST_F(NodeTest, TooLargeAnswerHalvesTheBatchThenNamesTheMessage) {
  Make(ReplicationMode::kAsync, 2, 1);
  std::optional<SendResult> r;
  for (const char* id : {"m1", "m2", "m3", "m4"}) Send(id, &r);
  node_->Tick();
  OkHeartbeats();
  for (size_t expected : {4u, 2u, 1u}) {
    node_->Tick();
    std::vector<FakeTransport::ReplicateCall> pushes;
    while (transport_.pending_replicates() > 0) pushes.push_back(transport_.TakeReplicate());
    ASSERT_GE(pushes.size(), 1u) << expected;
    EXPECT_EQ(pushes[0].msgs.size(), expected);  // the batch at the cursor
    EXPECT_EQ(pushes[0].msgs.front().origin_seq, 1u);
    pushes[0].done(Status::TooLarge("request larger than the limit"));
    EXPECT_EQ(node_->GetStatus().peers[0].push_problem.empty(), expected > 1);
    // The batches sent behind it are void: even an answer that they were taken counts for
    // nothing (the peer refused what came before them).
    for (size_t i = 1; i < pushes.size(); ++i) pushes[i].done(Ack(4));
    EXPECT_EQ(node_->GetStatus().peers[0].push_cursor, 0u);
  }
  const std::string problem = node_->GetStatus().peers[0].push_problem;
  EXPECT_NE(problem.find("too large"), std::string::npos) << problem;
  EXPECT_NE(problem.find("message 1 "), std::string::npos) << problem;
}

// Pushes are cut to the request size the peer accepts, counting JSON escapes: a control
// character costs 6 bytes.
TEST_F(NodeTest, PushBatchFitsThePeersRequestLimit) {
  Make(ReplicationMode::kAsync, 2, 1);
  std::optional<SendResult> r;
  for (int i = 0; i < 3; ++i) {
    Message m = Msg("c" + std::to_string(i));
    m.payload.assign(200, '\x01');  // 1200 bytes once escaped
    node_->Send({m}, AckMode::kDefault, [&r](SendResult x) { r = std::move(x); });
  }
  node_->Tick();
  HeartbeatReply hb = Hb(0);
  hb.max_request_bytes = 3200;
  transport_.AnswerHeartbeats(hb, 0);
  node_->Tick();
  ASSERT_GE(transport_.pending_replicates(), 1u);
  EXPECT_EQ(transport_.TakeReplicate().msgs.size(), 2u);
}

// A /sync answer that breaks the protocol (entries not after the request's since, or beyond the
// peer's last seq) changes nothing and is counted.
TEST_F(NodeTest, BadSyncAnswerChangesNothing) {
  Make(ReplicationMode::kAsync, 2, 1);
  node_->Tick();
  SyncReply page;
  page.stream = "b@2";
  Message m = Msg("b1");
  m.seq = 7;
  m.origin = "b@2";
  m.origin_seq = 1;
  page.messages = {m};
  page.last_seq = 3;  // seq 7 is beyond it
  transport_.TakeSync().done(page);
  EXPECT_FALSE(Stored("b1"));
  EXPECT_EQ(log_.GetPullCursor(options_.peers[0]).seq, 0u);
  MetricsWriter w;
  node_->WriteMetrics(w);
  EXPECT_NE(w.text().find("dsm_peer_bad_replies_total{peer=\"http://127.0.0.1:9001\"} 1"),
            std::string::npos);
}

// One incarnation's high waters only grow: a heartbeat saying otherwise is not believed (it would
// otherwise feed quorum counts).
TEST_F(NodeTest, HeartbeatWhoseHighWatersGoDownIsIgnored) {
  Make(ReplicationMode::kSyncQuorum, 2, 1);
  node_->Tick();
  HeartbeatReply hb = Hb(0);
  hb.high_waters["c@1"] = 5;
  transport_.AnswerHeartbeats(hb, 0);
  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  hb.high_waters["c@1"] = 2;
  transport_.AnswerHeartbeats(hb, 0);
  MetricsWriter w;
  node_->WriteMetrics(w);
  EXPECT_NE(w.text().find("dsm_peer_bad_replies_total{peer=\"http://127.0.0.1:9001\"} 1"),
            std::string::npos);
}

// However many streams wiped nodes left behind, a pull names at most 1024 of them (a peer refuses
// more than 4096, which would stop every pull).
TEST_F(NodeTest, PullNamesABoundedNumberOfStreams) {
  std::vector<Message> msgs;
  for (int i = 0; i < 1100; ++i) {
    Message m = Msg("s" + std::to_string(i));
    m.origin = "n" + std::to_string(i) + "@1";
    m.origin_seq = 1;
    msgs.push_back(m);
  }
  ASSERT_TRUE(log_.Apply(msgs).ok());
  Make(ReplicationMode::kAsync, 2, 1);
  node_->Tick();
  SyncReply empty;
  empty.stream = PeerStream(0);
  while (transport_.pending_syncs() > 0) {  // the start-up pulls
    auto pull = transport_.TakeSync();
    EXPECT_LE(pull.have.size(), 1024u);
    pull.done(empty);
    node_->Tick();
  }

  // The peer's current stream is always named, however little of it this node holds: it is
  // the stream that grows (its messages arrive by push and must not come back by pull).
  Message live = Msg("live");
  live.origin = PeerStream(0);
  live.origin_seq = 1;
  ASSERT_TRUE(log_.Apply({live}).ok());
  std::optional<SendResult> sent;
  Send("own", &sent);
  OkHeartbeats();  // the peer says which stream is its own
  clock_.Advance(options_.anti_entropy_interval);
  node_->Tick();
  ASSERT_EQ(transport_.pending_syncs(), 1u);
  const std::map<std::string, uint64_t> have = transport_.TakeSync().have;
  EXPECT_LE(have.size(), 1024u);
  EXPECT_EQ(have.count(PeerStream(0)), 1u);
  EXPECT_EQ(have.count(log_.stream_id()), 1u);
}

}  // namespace
}  // namespace dsm

namespace dsm {
namespace {

// A pull whose answer cannot be taken (here: a message over this node's limit) stops the pull
// from that peer: it is named in /status and the log, never silent; a good page clears it.
TEST_F(NodeTest, FailedPullIsNamedInStatus) {
  Make(ReplicationMode::kAsync, 2, 1);
  std::vector<std::string> events;
  node_->SetEventLog([&](EventLevel, const std::string& e) { events.push_back(e); });
  node_->Tick();
  transport_.TakeSync().done(Status::TooLarge("'payload' is 100000 bytes, over the limit"));
  const std::string problem = node_->GetStatus().peers[0].pull_problem;
  EXPECT_NE(problem.find("over the limit"), std::string::npos) << problem;
  node_->Tick();  // events are handed over with the next due work
  bool logged = false;
  for (const std::string& e : events) logged |= e.find("over the limit") != std::string::npos;
  EXPECT_TRUE(logged);
  MetricsWriter w;
  node_->WriteMetrics(w);
  EXPECT_NE(w.text().find("dsm_peer_pull_blocked{peer=\"http://127.0.0.1:9001\"} 1"),
            std::string::npos);
  clock_.Advance(options_.anti_entropy_interval);
  node_->Tick();
  ASSERT_EQ(transport_.pending_syncs(), 1u);
  SyncReply empty;
  empty.stream = "b@2";
  transport_.TakeSync().done(empty);
  EXPECT_EQ(node_->GetStatus().peers[0].pull_problem, "");
}

}  // namespace
}  // namespace dsm

namespace dsm {
namespace {

// Replication's log work goes to the storage executor: while a pulled page waits there (a slow
// disk), the core still takes heartbeat answers and sends heartbeats; the page is applied, with
// its cursor, when the executor gets to it.
TEST_F(NodeTest, ASlowDiskDoesNotHoldUpHeartbeats) {
  std::vector<std::function<void()>> disk;  // the storage executor's queue, run by hand
  options_.id = "a";
  Make(ReplicationMode::kAsync, 2, 1);
  node_.reset();
  node_ = std::make_unique<Node>(options_, &log_, &transport_, &clock_);
  node_->SetStorageExecutor([&disk](std::function<void()> task) { disk.push_back(task); });
  node_->Start();
  node_->Tick();
  SyncReply page;
  page.stream = "b@2";
  Message m = Msg("b1");
  m.seq = 1;
  m.origin = "b@2";
  m.origin_seq = 1;
  page.messages = {m};
  page.last_seq = 1;
  transport_.TakeSync().done(page);
  ASSERT_EQ(disk.size(), 1u) << "the page waits for the disk";
  EXPECT_FALSE(Stored("b1"));
  OkHeartbeats();  // answered while the disk is busy
  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  EXPECT_EQ(transport_.pending_heartbeats(), 1u) << "the next heartbeat goes out on time";
  EXPECT_TRUE(node_->GetStatus().peers[0].alive);
  for (size_t i = 0; i < disk.size(); ++i) disk[i]();  // the disk catches up
  EXPECT_TRUE(Stored("b1"));
  EXPECT_EQ(log_.GetPullCursor(options_.peers[0]), (PullCursor{"b@2", 1}));
}

}  // namespace
}  // namespace dsm

namespace dsm {
namespace {

// A retry of a stored message that the quorum does not (yet) hold, while the failure detector
// sees too few nodes: not 503 ("nothing was written" would be false) but the answer of the write
// it repeats: it waits, and 504 names the msg_id and seq at the deadline.
TEST_F(NodeTest, RetryOfAStoredMessageIsNever503) {
  MakeIntroduced(ReplicationMode::kSyncQuorum, 2, 1);
  std::optional<SendResult> r;
  Send("m1", &r);
  transport_.TakeReplicate().done(Status::Unavailable("refused"));
  clock_.Advance(milliseconds(501));
  node_->Tick();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status.code(), Code::kTimeout);
  FailHeartbeats();
  ASSERT_FALSE(node_->GetStatus().peers[0].alive);
  std::optional<SendResult> retry;
  Send("m1", &retry);
  EXPECT_FALSE(retry.has_value()) << retry->status.ToString();
  clock_.Advance(milliseconds(501));
  node_->Tick();
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->status.code(), Code::kTimeout) << retry->status.ToString();
  EXPECT_EQ(retry->outcomes[0].seq, 1u);
  EXPECT_EQ(log_.LastSeq(), 1u);
}

}  // namespace
}  // namespace dsm

namespace dsm {
namespace {

// A push answer counts only for the positions the push carried: a peer's high water beyond them
// may be another copy of our stream (a data directory restored from an older copy), whose
// msg_ids nobody compared with ours.
TEST_F(NodeTest, PushAnswerCountsOnlyThePositionsItCarried) {
  Make(ReplicationMode::kSyncQuorum, 2, 1);
  std::optional<SendResult> r1, r2;
  Send("m1", &r1);
  Send("m2", &r2);
  node_->Tick();
  HeartbeatReply hb = Hb(0);
  hb.max_request_bytes = 250;  // one message per push
  transport_.AnswerHeartbeats(hb, 0);
  ASSERT_EQ(transport_.pending_replicates(), 1u);
  auto push = transport_.TakeReplicate();
  ASSERT_EQ(push.msgs.size(), 1u);
  ReplicateReply ack = Ack(2);  // the peer says it holds position 2 as well, which we did not send
  push.done(ack);
  ASSERT_TRUE(r1.has_value());
  EXPECT_TRUE(r1->status.ok());
  EXPECT_FALSE(r2.has_value()) << "position 2 was never compared: not counted";
  ASSERT_EQ(transport_.pending_replicates(), 1u);
  EXPECT_EQ(transport_.TakeReplicate().msgs[0].msg_id, "m2") << "it is pushed and compared";
}

}  // namespace
}  // namespace dsm

namespace dsm {
namespace {

// A late answer of a former incarnation (sent before the peer was wiped, delivered after its
// new incarnation spoke) never makes that incarnation current again: what it held is gone.
TEST_F(NodeTest, LateAnswerOfAFormerIncarnationCountsForNothing) {
  MakeIntroduced(ReplicationMode::kSyncQuorum, 2, 1);
  std::optional<SendResult> r;
  Send("m1", &r);
  auto push = transport_.TakeReplicate();  // to p0@1
  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  HeartbeatReply hb = Hb(0, "p0@2");  // wiped meanwhile
  transport_.AnswerHeartbeats(hb, 0);
  ReplicateReply late = Ack(1);  // p0@1, the former incarnation
  push.done(late);
  EXPECT_FALSE(r.has_value()) << "counted an acknowledgement of a wiped incarnation";
  EXPECT_EQ(node_->GetStatus().peers[0].stream, "p0@2");
  clock_.Advance(options_.retry_min);
  node_->Tick();
  ASSERT_EQ(transport_.pending_replicates(), 1u);
  auto resend = transport_.TakeReplicate();
  ReplicateReply ok = Ack(1, "p0@2");
  resend.done(ok);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->status.ok());
}


// A heartbeat answer that shows messages this node lacks starts a pull at once, not at the next
// anti-entropy tick: nothing else brings the messages of a node that does not push to us.
TEST_F(NodeTest, AHeartbeatThatShowsMoreStartsAPull) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  SyncReply empty;
  empty.stream = PeerStream(0);
  while (transport_.pending_syncs() > 0) {  // the start-up pulls: nothing there yet
    transport_.TakeSync().done(empty);
    node_->Tick();
  }

  HeartbeatReply same = Hb(0);
  same.high_waters[PeerStream(0)] = 0;
  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  transport_.AnswerHeartbeats(same, 0);
  node_->Tick();
  EXPECT_EQ(transport_.pending_syncs(), 0u) << "nothing to fetch: no pull before the tick";

  HeartbeatReply more = Hb(0);
  more.high_waters["c@1"] = 3;  // a stream this node holds none of
  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  transport_.AnswerHeartbeats(more, 0);
  node_->Tick();
  EXPECT_EQ(transport_.pending_syncs(), 1u) << "two heartbeat intervals, not the anti-entropy one";
}

// The same while a pull is in flight: another one follows it at once.
TEST_F(NodeTest, AHeartbeatThatShowsMoreDuringAPullPullsAgainAfterIt) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  SyncReply empty;
  empty.stream = PeerStream(0);
  while (transport_.pending_syncs() > 0) {  // the start-up pulls
    transport_.TakeSync().done(empty);
    node_->Tick();
  }
  while (transport_.pending_syncs() == 0) {  // heartbeats until the anti-entropy pull
    clock_.Advance(options_.heartbeat_interval);
    node_->Tick();
    OkHeartbeats();
  }
  auto pull = transport_.TakeSync();
  HeartbeatReply more = Hb(0);
  more.high_waters["c@1"] = 3;
  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  transport_.AnswerHeartbeats(more, 0);
  pull.done(empty);  // it began before the peer had them
  node_->Tick();
  EXPECT_EQ(transport_.pending_syncs(), 1u);
}

// While a stream's pushes arrive, a pulled page is written only up to its first position of that
// stream this node lacks, and the chain ends there (each message would otherwise come twice or
// three times); a heartbeat that shows more of the stream starts no pull. Once no push of it came
// for the heartbeat timeout, the pull carries it again from where it stopped.
TEST_F(NodeTest, APulledPageStopsWhereThePushesBringTheRest) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 2);
  AnswerStartUpPullsEmpty();
  Result<ReplicateResult> pushed = node_->Replicate(StreamPage(PeerStream(0), 1, 3).messages);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  const MonoTime last_push = clock_.Now();

  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  HeartbeatReply ahead = Hb(0);
  ahead.high_waters[PeerStream(0)] = 10;  // its pushes are on their way
  transport_.AnswerHeartbeats(ahead, 0);
  node_->Tick();
  EXPECT_EQ(transport_.pending_syncs(), 0u) << "the stream comes by push: no pull for it";
  HeartbeatReply other = Hb(1);
  other.high_waters["c@1"] = 2;  // a stream that does not come by push
  transport_.AnswerHeartbeats(other, 1);
  node_->Tick();
  ASSERT_EQ(transport_.pending_syncs(), 1u);
  auto pull = transport_.TakeSync();
  ASSERT_EQ(pull.peer, 1u);
  // Peer 1's log: c@1:1, then position 4 of the pushed stream, then c@1:2.
  SyncReply page;
  page.stream = PeerStream(1);
  for (auto [seq, origin, pos] : {std::tuple<uint64_t, std::string, uint64_t>{1, "c@1", 1},
                                  {2, PeerStream(0), 4},
                                  {3, "c@1", 2}}) {
    Message m = Msg(origin + ":" + std::to_string(pos));
    m.seq = seq;
    m.origin = origin;
    m.origin_seq = pos;
    page.messages.push_back(m);
  }
  page.last_seq = 3;
  page.next = 3;
  pull.done(page);
  EXPECT_TRUE(Stored("c@1:1"));
  EXPECT_FALSE(Stored(PeerStream(0) + ":4")) << "the pushes bring it";
  EXPECT_FALSE(Stored("c@1:2")) << "the page ends before the pushed position";
  EXPECT_EQ(log_.GetPullCursor(options_.peers[1]).seq, 1u);
  node_->Tick();
  EXPECT_EQ(transport_.pending_syncs(), 0u) << "the chain ends there";

  // No push for the heartbeat timeout: the pull carries the stream again from where it stopped.
  while (transport_.pending_syncs() == 0) {
    clock_.Advance(options_.heartbeat_interval);
    node_->Tick();
    transport_.AnswerHeartbeats(ahead, 0);
    transport_.AnswerHeartbeats(Hb(1), 1);
    node_->Tick();
  }
  EXPECT_GE(clock_.Now() - last_push, options_.heartbeat_timeout) << "a pull while pushes came";
  pull = transport_.TakeSync();
  ASSERT_EQ(pull.peer, 0u) << "the heartbeat showing more of the stream starts it";
  SyncReply empty;
  empty.stream = PeerStream(0);
  pull.done(empty);
  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  transport_.AnswerHeartbeats(other, 1);
  node_->Tick();
  ASSERT_EQ(transport_.pending_syncs(), 1u);
  pull = transport_.TakeSync();
  ASSERT_EQ(pull.peer, 1u);
  EXPECT_EQ(pull.since, 1u);
  page.messages.erase(page.messages.begin());
  pull.done(page);
  EXPECT_TRUE(Stored(PeerStream(0) + ":4"));
  EXPECT_TRUE(Stored("c@1:2"));
  EXPECT_EQ(log_.GetPullCursor(options_.peers[1]).seq, 3u);
}

// A sender resending positions this node already holds (its cursor fell behind while pulls brought
// them, say after a long cut between the two) appends nothing: its pushes do not hold the pulls
// back, and a heartbeat showing more of its stream starts one at once.
TEST_F(NodeTest, APushOfPositionsHeldAlreadyLeavesTheStreamToThePulls) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 2);
  AnswerStartUpPullsEmpty();
  ASSERT_TRUE(node_->Replicate(StreamPage(PeerStream(0), 1, 3).messages).ok());
  // The pushes stop for the heartbeat timeout (the peers stay alive, showing nothing new).
  const MonoTime last_push = clock_.Now();
  while (clock_.Now() - last_push < options_.heartbeat_timeout) {
    clock_.Advance(options_.heartbeat_interval);
    node_->Tick();
    transport_.AnswerHeartbeats(Hb(0), 0);
    transport_.AnswerHeartbeats(Hb(1), 1);
    node_->Tick();
  }
  ASSERT_EQ(transport_.pending_syncs(), 0u);
  // The same positions pushed again: all duplicates.
  Result<ReplicateResult> again = node_->Replicate(StreamPage(PeerStream(0), 1, 3).messages);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  for (const WriteOutcome& o : again->outcomes) EXPECT_EQ(o.kind, WriteOutcome::Kind::kDuplicate);

  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  HeartbeatReply ahead = Hb(0);
  ahead.high_waters[PeerStream(0)] = 10;
  transport_.AnswerHeartbeats(ahead, 0);
  node_->Tick();
  ASSERT_EQ(transport_.pending_syncs(), 1u) << "the resent positions left the stream to the pushes";
  EXPECT_EQ(transport_.TakeSync().peer, 0u);
}

// ---- The push window ----

class PushWindowTest : public NodeTest {
 protected:
  // One peer, pushes of one message each, a window of three; messages m1..m<n> are written and
  // the peer introduced itself.
  void MakeWithMessages(int n, size_t window = 3) {
    options_.batch_messages = 1;
    options_.push_window = window;
    MakeIntroduced(ReplicationMode::kSyncQuorum, 2, 1);
    for (int i = 1; i <= n; ++i) Send("m" + std::to_string(i), &answers_[i]);
    node_->Tick();
  }

  // The pending pushes, oldest first.
  std::vector<FakeTransport::ReplicateCall> TakePushes() {
    std::vector<FakeTransport::ReplicateCall> calls;
    while (transport_.pending_replicates() > 0) calls.push_back(transport_.TakeReplicate());
    return calls;
  }

  uint64_t Cursor() { return node_->GetStatus().peers[0].push_cursor; }

  // After a tick, the first position of the oldest push then pending (0 when none is).
  uint64_t NextPushFrom() {
    node_->Tick();
    auto pushes = TakePushes();
    return pushes.empty() ? 0 : pushes[0].msgs.at(0).origin_seq;
  }

  std::optional<SendResult> answers_[16];
};

TEST_F(PushWindowTest, SeveralBatchesAreInFlightAtOnce) {
  MakeWithMessages(5);
  auto pushes = TakePushes();
  ASSERT_EQ(pushes.size(), 3u) << "a window of three batches";
  for (size_t i = 0; i < pushes.size(); ++i) {
    EXPECT_EQ(pushes[i].msgs.at(0).origin_seq, i + 1) << "sent in order";
  }
  pushes[0].done(Ack(1));
  node_->Tick();
  auto more = TakePushes();
  ASSERT_EQ(more.size(), 1u) << "an answer frees one place";
  EXPECT_EQ(more[0].msgs.at(0).origin_seq, 4u);
}

TEST_F(PushWindowTest, AnswersAreTakenInTheOrderTheBatchesWereSent) {
  MakeWithMessages(3);
  auto pushes = TakePushes();
  ASSERT_EQ(pushes.size(), 3u);
  pushes[2].done(Ack(3));
  pushes[1].done(Ack(3));
  EXPECT_EQ(Cursor(), 0u) << "nothing counts before the first batch is acknowledged";
  EXPECT_FALSE(answers_[3].has_value());
  pushes[0].done(Ack(3));
  EXPECT_EQ(Cursor(), 3u);
  ASSERT_TRUE(answers_[3].has_value());
  EXPECT_TRUE(answers_[3]->status.ok());
  EXPECT_EQ(log_.GetPushCursor(options_.peers[0]).origin_seq, 3u);
}

// A batch that reached the peer before the one ahead of it is refused as a gap; once the one
// ahead is acknowledged, the refused one is sent again, and the batches sent behind it count
// for nothing (the peer refused them too, whatever their answers say).
TEST_F(PushWindowTest, ABatchThatOvertookTheOneAheadOfItIsSentAgain) {
  MakeWithMessages(3);
  auto pushes = TakePushes();
  ASSERT_EQ(pushes.size(), 3u);
  ReplicateReply gap = Ack(0);
  gap.gap = true;
  pushes[1].done(gap);
  pushes[0].done(Ack(1));
  EXPECT_EQ(Cursor(), 1u) << "the gap of a batch behind another does not move the cursor back";
  pushes[2].done(Ack(3));
  EXPECT_EQ(Cursor(), 1u) << "a batch sent after the refused one counts for nothing";
  EXPECT_EQ(NextPushFrom(), 2u);
}

TEST_F(PushWindowTest, AFailedBatchVoidsTheBatchesBehindIt) {
  MakeWithMessages(3);
  auto pushes = TakePushes();
  ASSERT_EQ(pushes.size(), 3u);
  pushes[0].done(Status::Timeout("no answer"));
  pushes[1].done(Ack(2));
  pushes[2].done(Ack(3));
  EXPECT_EQ(Cursor(), 0u);
  EXPECT_FALSE(answers_[1].has_value()) << "no quorum from batches behind a failed one";
  clock_.Advance(options_.retry_max);
  EXPECT_EQ(NextPushFrom(), 1u);
}

// Void batches still occupy the window until they are answered: the peer is never sent more
// than a window's worth at once.
TEST_F(PushWindowTest, VoidBatchesHoldTheirPlaceUntilAnswered) {
  MakeWithMessages(6);
  auto pushes = TakePushes();
  ASSERT_EQ(pushes.size(), 3u);
  pushes[0].done(Status::Unavailable("refused"));
  clock_.Advance(options_.retry_min);
  node_->Tick();
  auto resent = TakePushes();
  ASSERT_EQ(resent.size(), 1u) << "two void batches are still out";
  pushes[1].done(Ack(2));
  node_->Tick();
  EXPECT_EQ(TakePushes().size(), 1u);
}

// A gap answer to a batch that had nothing ahead of it in flight means the peer lost what it
// acknowledged: the cursor goes back to where the peer is.
TEST_F(PushWindowTest, AGapOfTheFirstBatchInFlightMovesTheCursorBack) {
  MakeWithMessages(4, 1);
  TakePushes()[0].done(Ack(1));
  node_->Tick();
  TakePushes()[0].done(Ack(2));
  EXPECT_EQ(Cursor(), 2u);
  node_->Tick();
  ReplicateReply gap = Ack(1);
  gap.gap = true;
  TakePushes()[0].done(gap);
  EXPECT_EQ(Cursor(), 1u);
  node_->Tick();
  EXPECT_EQ(TakePushes().at(0).msgs.at(0).origin_seq, 2u);
}

// Behind a batch in flight, only full batches leave: a partial one waits for an answer, or until
// it is full.
TEST_F(PushWindowTest, BehindABatchInFlightOnlyFullBatchesLeave) {
  options_.batch_messages = 2;
  options_.push_window = 3;
  MakeIntroduced(ReplicationMode::kSyncQuorum, 2, 1);
  for (int i = 1; i <= 5; ++i) {
    Send("m" + std::to_string(i), &answers_[i]);
    node_->Tick();
  }
  auto pushes = TakePushes();
  ASSERT_EQ(pushes.size(), 3u);
  EXPECT_EQ(pushes[0].msgs.size(), 1u) << "nothing in flight: the first message leaves alone";
  EXPECT_EQ(pushes[1].msgs.size(), 2u) << "the second waited for the third";
  EXPECT_EQ(pushes[1].msgs.at(0).origin_seq, 2u);
  EXPECT_EQ(pushes[2].msgs.size(), 2u);
  pushes[0].done(Ack(1));
  Send("m6", &answers_[6]);
  node_->Tick();
  EXPECT_EQ(TakePushes().size(), 0u) << "a place is free, but m6 alone would be a partial batch";
  Send("m7", &answers_[7]);
  node_->Tick();
  auto full = TakePushes();
  ASSERT_EQ(full.size(), 1u) << "full now";
  EXPECT_EQ(full[0].msgs.size(), 2u);
  EXPECT_EQ(full[0].msgs.at(0).origin_seq, 6u);
  Send("m8", &answers_[8]);
  node_->Tick();
  EXPECT_EQ(TakePushes().size(), 0u) << "m8 waits behind the batches in flight";
  pushes[1].done(Ack(3));
  pushes[2].done(Ack(5));
  EXPECT_EQ(TakePushes().size(), 0u);
  full[0].done(Ack(7));
  ASSERT_TRUE(answers_[7].has_value());
  EXPECT_TRUE(answers_[7]->status.ok());
  // The last answer alone sends it: nothing else happens meanwhile.
  node_->Tick();
  auto alone = TakePushes();
  ASSERT_EQ(alone.size(), 1u) << "with nothing in flight a partial batch leaves at once";
  ASSERT_EQ(alone[0].msgs.size(), 1u);
  EXPECT_EQ(alone[0].msgs[0].origin_seq, 8u);
  alone[0].done(Ack(8));
  ASSERT_TRUE(answers_[8].has_value());
  EXPECT_TRUE(answers_[8]->status.ok());
}

// Batches voided by a new incarnation of the peer carry nothing: the resend does not wait for
// their answers, partial as it is.
TEST_F(PushWindowTest, VoidBatchesHoldNoPartialBatchBack) {
  options_.batch_messages = 4;
  options_.push_window = 3;
  MakeIntroduced(ReplicationMode::kSyncQuorum, 2, 1);
  Send("m1", &answers_[1]);
  node_->Tick();
  auto pushes = TakePushes();
  ASSERT_EQ(pushes.size(), 1u);
  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  transport_.AnswerHeartbeats(Hb(0, "p0@2"), 0);
  node_->Tick();
  auto resent = TakePushes();
  ASSERT_EQ(resent.size(), 1u) << "sent to the new incarnation before the void batch is answered";
  EXPECT_EQ(resent[0].msgs.at(0).origin_seq, 1u);
  pushes[0].done(Ack(1));
  resent[0].done(Ack(1, "p0@2"));
  ASSERT_TRUE(answers_[1].has_value());
  EXPECT_TRUE(answers_[1]->status.ok());
}

// Large messages fill a batch by bytes long before batch_messages: a backlog of them stays
// pipelined.
TEST_F(PushWindowTest, BatchesFullByBytesArePipelined) {
  options_.batch_messages = 100;
  options_.batch_bytes = 2000;
  options_.push_window = 3;
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  for (int i = 1; i <= 6; ++i) {
    Message m = Msg("big" + std::to_string(i));
    m.payload.assign(1000, 'x');
    node_->Send({m}, AckMode::kLocal, [this, i](SendResult res) { answers_[i] = std::move(res); });
  }
  node_->Tick();
  auto pushes = TakePushes();
  ASSERT_EQ(pushes.size(), 3u) << "a window of batches, each cut by batch_bytes";
  uint64_t next = 1;
  for (const auto& push : pushes) {
    ASSERT_FALSE(push.msgs.empty());
    EXPECT_LT(push.msgs.size(), options_.batch_messages);
    EXPECT_EQ(push.msgs.front().origin_seq, next) << "in order, back to back";
    next = push.msgs.back().origin_seq + 1;
  }
}


TEST_F(PushWindowTest, TheWindowIsBoundedInBytes) {
  options_.push_window_bytes = 1;  // one batch at a time, whatever its size
  MakeWithMessages(3);
  EXPECT_EQ(TakePushes().size(), 1u);
}

// A new incarnation of the peer (seen in a heartbeat) voids the window: what was sent to the
// former one is sent again from the start.
TEST_F(PushWindowTest, ANewIncarnationRestartsTheWindow) {
  MakeWithMessages(3);
  auto pushes = TakePushes();
  ASSERT_EQ(pushes.size(), 3u);
  pushes[0].done(Ack(1));
  EXPECT_EQ(Cursor(), 1u);
  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  transport_.AnswerHeartbeats(Hb(0, "p0@2"), 0);
  EXPECT_EQ(Cursor(), 0u);
  pushes[1].done(Ack(2, "p0@2"));
  pushes[2].done(Ack(3, "p0@2"));
  EXPECT_EQ(Cursor(), 0u) << "answers to batches sent before count for nothing";
  EXPECT_EQ(NextPushFrom(), 1u);
}


// ---- Retention (core/retention.cc) ----

class RetentionTest : public NodeTest {
 protected:
  // Sends m1..m<n> (async: acknowledged once local).
  void SendMany(int n) {
    for (int i = 1; i <= n; ++i) {
      std::optional<SendResult> r;
      Send("m" + std::to_string(i), &r);
      ASSERT_TRUE(r.has_value() && r->status.ok());
    }
  }
  // Answers the oldest pending push: the peer holds our stream up to `high_water`.
  void AckPushTo(uint64_t high_water) {
    auto call = transport_.TakeReplicate();
    call.done(Ack(high_water));
  }
  // Runs retention's next step (its interval has passed).
  void RetentionStep() {
    clock_.Advance(options_.retention_interval + options_.heartbeat_interval);
    node_->Tick();
    OkHeartbeats();
  }

  // With --retention-max-bytes 1: m1..m3 sent, peer 0 acknowledges them, peer 1 answers none of
  // their pushes (one batch per message, all in the window) until retention has trimmed them;
  // then those pushes fail and the next one can only tell peer 1 to skip m1..m3. Returns it.
  FakeTransport::ReplicateCall TrimWhatPeer1LacksAndTakeTheSkip() {
    SendMany(3);
    std::vector<FakeTransport::ReplicateCall> pushes;
    while (transport_.pending_replicates() > 0) {
      FakeTransport::ReplicateCall call = transport_.TakeReplicate();
      if (call.peer == 0) {
        call.done(Ack(call.msgs.back().origin_seq));
      } else {
        pushes.push_back(std::move(call));
      }
    }
    EXPECT_EQ(pushes.size(), 3u);
    RetentionStep();
    EXPECT_EQ(log_.FirstSeq(), 4u) << "forced: peer 1's lack does not hold --retention-max-bytes";
    for (auto& push : pushes) push.done(Status::Unavailable("refused"));
    clock_.Advance(options_.retry_max);
    node_->Tick();
    OkHeartbeats();
    EXPECT_EQ(transport_.pending_replicates(), 1u) << node_->GetStatus().peers[1].push_problem;
    FakeTransport::ReplicateCall skip = transport_.TakeReplicate();
    EXPECT_EQ(skip.peer, 1u);
    EXPECT_TRUE(skip.msgs.empty());
    EXPECT_EQ(skip.skip.origin, log_.stream_id());
    EXPECT_EQ(skip.skip.trimmed_through, 3u);
    return skip;
  }

  // Peer 0 trimmed its stream through `through`: its push says so and carries the positions
  // after it, up to `last`.
  Result<ReplicateResult> PushSkipping(uint64_t through, uint64_t last) {
    std::vector<Message> after;
    if (last > through) after = StreamPage(PeerStream(0), through + 1, last).messages;
    return node_->Replicate(std::move(after), PushSkip{PeerStream(0), through});
  }

  // PushSkipping(through, last) waits: a gap, and peer `peer` is asked for the stream from
  // `since`. Returns that request.
  FakeTransport::StreamSyncCall ExpectSkipToWaitFor(uint64_t through, uint64_t last, size_t peer,
                                                    uint64_t since) {
    Result<ReplicateResult> r = PushSkipping(through, last);
    EXPECT_TRUE(r.ok() && r->gap) << "the positions after the skip wait for those it would skip";
    node_->Tick();
    if (transport_.pending_stream_syncs() != 1) {
      ADD_FAILURE() << transport_.pending_stream_syncs() << " stream reads, expected 1";
      return {peer, "", 0, 0, [](Result<SyncReply>) {}};
    }
    FakeTransport::StreamSyncCall call = transport_.TakeStreamSync();
    EXPECT_EQ(call.peer, peer);
    EXPECT_EQ(call.origin, PeerStream(0));
    EXPECT_EQ(call.since, since);
    return call;
  }

  // Peer `peer`'s page of peer 0's stream read for a repair: positions first..last (none when
  // first > last), after a trim of its own through `trimmed_through`.
  static SyncReply Stream0PageOf(size_t peer, uint64_t first, uint64_t last,
                                 uint64_t trimmed_through = 0) {
    SyncReply page = StreamPage(PeerStream(0), first, last);
    page.stream = PeerStream(peer);
    page.trimmed_through = trimmed_through;
    page.last_seq = last;
    return page;
  }

  // Two peers; this node holds peer 0's stream up to 2, and peer 1's last heartbeat shows it no
  // further (it may have received more since: a heartbeat is not taken as evidence). Peer 0's
  // push says it trimmed 3..6 and carries 7 and 8: the skip waits, and peer 1 is asked from 2.
  FakeTransport::StreamSyncCall HoldTwoThenSkipThreeToSix() {
    MakeIntroduced(ReplicationMode::kAsync, 2, 2);
    AnswerStartUpPullsEmpty();
    EXPECT_TRUE(node_->Replicate(StreamPage(PeerStream(0), 1, 2).messages).ok());
    ShowStream0(8, 2);
    return ExpectSkipToWaitFor(6, 8, 1, 2);
  }

  // Every peer's heartbeat shows peer 0's stream up to `own_hw` (peer 0) or `others_hw`; the
  // pulls they start find nothing new in the peers' logs.
  void ShowStream0(uint64_t own_hw, uint64_t others_hw) {
    clock_.Advance(options_.heartbeat_interval);
    node_->Tick();
    for (size_t i = 0; i < options_.peers.size(); ++i) {
      HeartbeatReply hb = Hb(i);
      hb.high_waters[PeerStream(0)] = i == 0 ? own_hw : others_hw;
      transport_.AnswerHeartbeats(hb, i);
    }
    AnswerStartUpPullsEmpty();
  }
};

TEST_F(RetentionTest, TrimsOnlyWhatEveryPeerHolds) {
  options_.retention_max_messages = 2;
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  SendMany(5);
  AckPushTo(1);  // the peer holds m1 only
  RetentionStep();
  EXPECT_EQ(log_.FirstSeq(), 2u) << "m2 and m3 are over the limit but the peer lacks them";
  NodeStatus st = node_->GetStatus();
  EXPECT_EQ(st.first_seq, 2u);
  EXPECT_NE(st.retention_waiting.find("seq 2"), std::string::npos) << st.retention_waiting;

  while (transport_.pending_replicates() > 0) AckPushTo(5);
  RetentionStep();
  EXPECT_EQ(log_.FirstSeq(), 4u) << "the peer holds everything: the limit decides";
  EXPECT_TRUE(node_->GetStatus().retention_waiting.empty());
  MetricsWriter w;
  node_->WriteMetrics(w);
  EXPECT_NE(w.text().find("dsm_retention_trimmed_messages_total 3"), std::string::npos);
  EXPECT_NE(w.text().find("dsm_log_first_seq 4"), std::string::npos);
  EXPECT_NE(w.text().find("dsm_retention_errors_total 0"), std::string::npos);
}

TEST_F(RetentionTest, MaxBytesNeverTrimsWhatFewerThanAQuorumHold) {
  options_.retention_max_bytes = 1;  // every record is over it
  options_.batch_messages = 1;       // a push per message, several in flight
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  SendMany(3);
  RetentionStep();  // the peer acknowledged nothing: only this node holds them
  EXPECT_EQ(log_.FirstSeq(), 1u);
  EXPECT_NE(node_->GetStatus().retention_waiting.find("fewer than 2 nodes hold it"),
            std::string::npos)
      << node_->GetStatus().retention_waiting;
  // The peer takes m1 and m2 (one push each) and refuses m3 for now.
  for (int i = 0; i < 3; ++i) {
    FakeTransport::ReplicateCall call = transport_.TakeReplicate();
    const uint64_t position = call.msgs.back().origin_seq;
    if (position <= 2) {
      call.done(Ack(position));
    } else {
      call.done(Status::Unavailable("refused"));
    }
  }
  RetentionStep();
  EXPECT_EQ(log_.FirstSeq(), 3u) << "a quorum of 2 holds m1 and m2";
}

TEST_F(RetentionTest, MaxBytesTrimsWhatAPeerLacksAndThePushTellsItToSkip) {
  options_.retention_max_bytes = 1;  // every record is over it
  options_.batch_messages = 1;       // a push per message, several in flight
  MakeIntroduced(ReplicationMode::kAsync, 2, 2);
  FakeTransport::ReplicateCall skip = TrimWhatPeer1LacksAndTakeTheSkip();
  skip.done(Ack(3, PeerStream(1)));
  EXPECT_EQ(node_->GetStatus().peers[1].push_cursor, 3u);
  EXPECT_EQ(node_->GetStatus().peers[1].push_trimmed, 3u);
  MetricsWriter w;
  node_->WriteMetrics(w);
  EXPECT_NE(w.text().find("dsm_retention_forced_total 3"), std::string::npos) << w.text();
}

TEST_F(RetentionTest, AgeLimitTrimsOldMessagesAndForgetsTheirIdsLater) {
  options_.retention_max_age = std::chrono::seconds(60);
  options_.dedup_retention = std::chrono::seconds(120);
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  Message old = Msg("old");
  old.ts = clock_.WallSeconds();
  std::optional<SendResult> r;
  node_->Send({old}, AckMode::kDefault, [&](SendResult s) { r = std::move(s); });
  AckPushTo(1);
  RetentionStep();
  EXPECT_EQ(log_.FirstSeq(), 1u) << "not older than 60 s yet";
  clock_.Advance(std::chrono::seconds(60));
  RetentionStep();
  EXPECT_EQ(log_.FirstSeq(), 2u);
  // A retry is still a duplicate...
  r.reset();
  Send("old", &r);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->outcomes[0].kind, WriteOutcome::Kind::kDuplicate);
  // ...until --dedup-retention.
  clock_.Advance(std::chrono::seconds(60));
  RetentionStep();
  r.reset();
  Send("old", &r);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->outcomes[0].kind, WriteOutcome::Kind::kAppended);
}

TEST_F(RetentionTest, ARepairOfTrimmedPositionsSkipsThemAndCountsThem) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  // A page of the peer's log that starts after its retention trimmed positions 1..4 of c@3.
  auto pull = transport_.TakeSync();
  SyncReply page;
  page.stream = PeerStream(0);
  Message m = Msg("c5");
  m.seq = 9;
  m.origin = "c@3";
  m.origin_seq = 5;
  page.messages = {m};
  page.last_seq = 9;
  pull.done(page);
  // Position 5 without 1..4 is a gap: the node repairs the stream from the peer...
  auto repair = transport_.TakeStreamSync();
  EXPECT_EQ(repair.origin, "c@3");
  EXPECT_EQ(repair.since, 0u);
  // ...which says they are gone.
  SyncReply answer;
  answer.stream = PeerStream(0);
  answer.trimmed_through = 4;
  answer.messages = {m};
  answer.messages[0].seq = 9;
  answer.last_seq = 9;
  repair.done(answer);
  EXPECT_EQ(log_.HighWater("c@3"), 5u);
  EXPECT_EQ(log_.TrimmedThrough("c@3"), 4u);
  EXPECT_TRUE(Stored("c5"));
  EXPECT_EQ(node_->GetStatus().peers[0].trimmed_skipped, 4u);
}

TEST_F(RetentionTest, AStreamPageOfATrimmedRangeSaysWhereTheStreamGoesOn) {
  options_.retention_max_messages = 1;
  MakeIntroduced(ReplicationMode::kAsync, 2, 0);
  SendMany(3);
  RetentionStep();  // no peers: everything is held by every peer
  ASSERT_EQ(log_.FirstSeq(), 3u);
  Result<SyncPage> page = node_->SyncStream(log_.stream_id(), 0, 10);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  EXPECT_EQ(page->trimmed_through, 2u);
  ASSERT_EQ(page->messages.size(), 1u);
  EXPECT_EQ(page->messages[0].origin_seq, 3u);
  EXPECT_FALSE(page->more);
  // A push that skips: the receiver moves the stream's high water past the trimmed positions.
  Result<ReplicateResult> r = node_->Replicate({}, PushSkip{"x@9", 7});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(log_.HighWater("x@9"), 7u);
  EXPECT_EQ(r->high_water, 7u);
  // Our own stream is never skipped.
  EXPECT_EQ(node_->Replicate({}, PushSkip{log_.stream_id(), 7}).status().code(),
            Code::kInvalidArgument);
}

TEST_F(RetentionTest, ASkipWaitsForALivePeerThatHoldsThePositions) {
  auto repair = HoldTwoThenSkipThreeToSix();
  EXPECT_EQ(log_.HighWater(PeerStream(0)), 2u);
  EXPECT_EQ(log_.TrimmedThrough(PeerStream(0)), 0u) << "nothing skipped";
  repair.done(Stream0PageOf(1, 3, 10));
  EXPECT_EQ(log_.HighWater(PeerStream(0)), 10u);
  EXPECT_TRUE(Stored("b3") && Stored("b6"));
  EXPECT_EQ(node_->GetStatus().peers[0].trimmed_skipped, 0u);
  // The push, sent again, finds them held; nobody else is asked.
  Result<ReplicateResult> r = PushSkipping(6, 8);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->gap);
  EXPECT_EQ(r->high_water, 10u);
  node_->Tick();
  EXPECT_EQ(transport_.pending_stream_syncs(), 0u);
}

TEST_F(RetentionTest, ASkipTakesWhatEveryHolderTrimmedAndTheRestFromWhoHoldsIt) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 2);
  AnswerStartUpPullsEmpty();
  ShowStream0(10, 10);
  // Peer 0 trimmed 1..6: the skip waits for peer 1.
  auto repair = ExpectSkipToWaitFor(6, 10, 1, 0);
  // Peer 1 trimmed 1..4 itself: those are skipped, 5 and 6 come from it.
  repair.done(Stream0PageOf(1, 5, 10, 4));
  EXPECT_EQ(log_.HighWater(PeerStream(0)), 10u);
  EXPECT_EQ(log_.TrimmedThrough(PeerStream(0)), 4u);
  EXPECT_TRUE(Stored("b5") && Stored("b6"));
  EXPECT_EQ(node_->GetStatus().peers[1].trimmed_skipped, 4u);
  node_->Tick();
  EXPECT_EQ(transport_.pending_stream_syncs(), 0u) << "nothing left to ask for";
}

TEST_F(RetentionTest, ASkipIsTakenOnceEveryLivePeerShowedItLacksThePositionsAndWaitsForNoDeadOne) {
  auto repair = HoldTwoThenSkipThreeToSix();
  // Peer 1 has nothing after 2.
  repair.done(Stream0PageOf(1, 3, 2));
  EXPECT_EQ(log_.HighWater(PeerStream(0)), 2u);
  // The push again: now nobody may hold 3..6.
  Result<ReplicateResult> r = PushSkipping(6, 8);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->gap);
  EXPECT_EQ(log_.HighWater(PeerStream(0)), 8u);
  EXPECT_EQ(log_.TrimmedThrough(PeerStream(0)), 6u);
  EXPECT_EQ(node_->GetStatus().peers[0].trimmed_skipped, 4u);

  // Peer 1 dies: a skip of 9..12 does not wait for it.
  while (node_->GetStatus().peers[1].alive) {
    clock_.Advance(options_.heartbeat_interval);
    node_->Tick();
    transport_.AnswerHeartbeats(Status::Unavailable("down"), 1);
    OkHeartbeats(0);
  }
  r = PushSkipping(12, 13);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->gap);
  EXPECT_EQ(log_.HighWater(PeerStream(0)), 13u);
}

TEST_F(RetentionTest, ASkipWaitsForAPeerNotHeardFromSinceTheStartAndAsksItOnceItAnswers) {
  Make(ReplicationMode::kAsync, 2, 2);
  Result<ReplicateResult> r = PushSkipping(6, 8);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->gap) << "peer 1 may hold 1..6";
  EXPECT_EQ(log_.HighWater(PeerStream(0)), 0u);
  // A push that only skips (its stream holds nothing after the trimmed positions) waits too: a
  // gap, so that the sender backs off.
  r = PushSkipping(6, 6);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->gap);
  EXPECT_EQ(r->high_water, 0u);
  node_->Tick();
  EXPECT_EQ(transport_.pending_stream_syncs(), 0u) << "it cannot be asked before it answers";
  // The peers answer the start-up pulls (they are alive) before any heartbeat: they are asked,
  // one at a time (which of them is peer 0, whose stream it is, no heartbeat said yet).
  AnswerStartUpPullsEmpty();
  std::set<size_t> asked;
  for (int round = 0; round < 3 && log_.HighWater(PeerStream(0)) == 0; ++round) {
    r = PushSkipping(6, 8);
    ASSERT_TRUE(r.ok());
    node_->Tick();
    while (transport_.pending_stream_syncs() > 0) {
      auto repair = transport_.TakeStreamSync();
      asked.insert(repair.peer);
      // Peer 1 holds nothing of the stream; peer 0 trimmed 1..6.
      repair.done(Stream0PageOf(repair.peer, 1, 0, repair.peer == 0 ? 6 : 0));
      node_->Tick();
    }
  }
  EXPECT_EQ(asked.count(1), 1u) << "peer 1 must be asked before the skip";
  EXPECT_EQ(log_.HighWater(PeerStream(0)), 8u);
  EXPECT_EQ(log_.TrimmedThrough(PeerStream(0)), 6u);
}

TEST_F(RetentionTest, APartialSkipNeverPassesOverWhatAPeerOnlyHadNotSuppliedYet) {
  // Peer 0 trimmed its stream through 100; peer 1 trimmed it through 20 and holds 21..; peer 2
  // holds 6..10 only (it trimmed 1..5). This node holds nothing of it.
  MakeIntroduced(ReplicationMode::kAsync, 2, 3);
  AnswerStartUpPullsEmpty();
  ShowStream0(120, 0);
  auto repair = ExpectSkipToWaitFor(100, 101, 1, 0);
  SyncReply b = Stream0PageOf(1, 21, 30, 20);
  b.more = true;
  repair.done(b);
  EXPECT_EQ(log_.TrimmedThrough(PeerStream(0)), 0u) << "peer 2 may hold some of 1..20";
  node_->Tick();
  ASSERT_EQ(transport_.pending_stream_syncs(), 1u);
  repair = transport_.TakeStreamSync();
  ASSERT_EQ(repair.peer, 2u);
  EXPECT_EQ(repair.since, 0u);
  repair.done(Stream0PageOf(2, 6, 10, 5));
  EXPECT_EQ(log_.HighWater(PeerStream(0)), 10u);
  EXPECT_TRUE(Stored("b6") && Stored("b10"));
  // Whatever order the next reads and pushes come in, 21.. are never skipped: answer every
  // request as the peers would until the push is taken.
  for (int round = 0; round < 10 && log_.HighWater(PeerStream(0)) < 101; ++round) {
    AnswerStartUpPullsEmpty();  // the pulls that resume after a repair: nothing new
    Result<ReplicateResult> r = PushSkipping(100, 101);
    ASSERT_TRUE(r.ok());
    node_->Tick();
    while (transport_.pending_stream_syncs() > 0) {
      repair = transport_.TakeStreamSync();
      const uint64_t from = repair.since + 1;
      if (repair.peer == 1) {
        repair.done(Stream0PageOf(1, std::max<uint64_t>(21, from), 120, from <= 20 ? 20 : 0));
      } else if (repair.peer == 2) {
        repair.done(Stream0PageOf(2, std::max<uint64_t>(6, from), 10, from <= 5 ? 5 : 0));
      } else {
        repair.done(Stream0PageOf(repair.peer, 1, 0));
      }
      node_->Tick();
    }
  }
  EXPECT_GE(log_.HighWater(PeerStream(0)), 101u);
  for (int k = 21; k <= 100; ++k) EXPECT_TRUE(Stored("b" + std::to_string(k))) << k;
  EXPECT_FALSE(Stored("b11"));
}

TEST_F(RetentionTest, APushWhoseSkipThePeerDoesNotTakeYetIsSentAgainAfterABackoff) {
  options_.retention_max_bytes = 1;  // every record is over it
  options_.batch_messages = 1;       // a push per message, several in flight
  MakeIntroduced(ReplicationMode::kAsync, 2, 2);
  FakeTransport::ReplicateCall skip = TrimWhatPeer1LacksAndTakeTheSkip();
  // Peer 1 does not skip (another node holds the positions): a gap at 0.
  ReplicateReply gap = Ack(0, PeerStream(1));
  gap.gap = true;
  skip.done(gap);
  NodeStatus st = node_->GetStatus();
  EXPECT_NE(st.peers[1].push_problem.find("does not skip positions 1..3"), std::string::npos)
      << st.peers[1].push_problem;
  EXPECT_EQ(st.peers[1].push_trimmed, 0u);
  node_->Tick();
  EXPECT_EQ(transport_.pending_replicates(), 0u) << "not sent again at once";
  clock_.Advance(options_.retry_max);
  node_->Tick();
  ASSERT_EQ(transport_.pending_replicates(), 1u);
  skip = transport_.TakeReplicate();
  EXPECT_EQ(skip.skip.trimmed_through, 3u);
  skip.done(Ack(3, PeerStream(1)));
  st = node_->GetStatus();
  EXPECT_EQ(st.peers[1].push_cursor, 3u);
  EXPECT_EQ(st.peers[1].push_trimmed, 3u);
  EXPECT_EQ(st.peers[1].push_problem, "");
}

// ---- Membership (core/cluster.cc) ----

constexpr char kNewMember[] = "http://127.0.0.1:9100";

// A heartbeat answer of peer i carrying `membership`.
HeartbeatReply HbWith(size_t i, Membership membership, std::string node_id = "peer") {
  HeartbeatReply r;
  r.node_id = std::move(node_id);
  r.stream = "p" + std::to_string(i) + "@1";
  r.membership = std::move(membership);
  return r;
}

TEST_F(NodeTest, AnAddedMemberIsALearnerCountedInNoQuorumUntilItSaysItIsAVoter) {
  MakeIntroduced(ReplicationMode::kSyncQuorum, 2, 1);
  Result<MemberStatus> added = node_->AddMember(kNewMember);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_EQ(added->role, MemberRole::kLearner);
  ASSERT_EQ(transport_.added_peers().size(), 1u);
  EXPECT_EQ(transport_.added_peers()[0], std::make_pair(size_t{1}, std::string(kNewMember)));
  EXPECT_EQ(log_.GetMembership().value().empty(), false) << "answered once stored";

  // Nothing but a heartbeat goes to it before it answered one (the URL might be this node).
  node_->Tick();
  EXPECT_EQ(transport_.pending_to(1), 1u);
  transport_.AnswerHeartbeats(Hb(1), 1);

  std::optional<SendResult> r;
  Send("m1", &r);
  auto to_learner = transport_.TakeReplicateOf(1);
  to_learner.done(Ack(1, PeerStream(1)));
  EXPECT_FALSE(r.has_value()) << "a learner holding the message is not a second copy that counts";
  EXPECT_EQ(node_->GetStatus().peers[1].role, MemberRole::kLearner);

  // The learner caught up and says so: it counts from then on.
  Membership promoted;
  promoted.version = 2;
  promoted.entries = {MemberEntry{options_.peers[0], "", 0, 0, true},
                      MemberEntry{kNewMember, "n", 1, 0, true}};
  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  transport_.AnswerHeartbeats(HbWith(1, promoted, "n"), 1);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->status.ok()) << r->status.ToString();
  EXPECT_EQ(node_->GetStatus().peers[1].role, MemberRole::kVoter);
  EXPECT_EQ(node_->GetCluster().version, 2u);
}

TEST_F(NodeTest, ARemovedMemberGetsNothingMoreAndCountsForNothing) {
  MakeIntroduced(ReplicationMode::kSyncQuorum, 2, 2);
  std::optional<SendResult> r;
  Send("m1", &r);
  auto late = transport_.TakeReplicateOf(1);  // in flight when the member is removed
  const size_t pending = transport_.pending_to(1);  // its first pull, never answered
  Result<MemberStatus> removed = node_->RemoveMember(options_.peers[1]);
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(removed->role, MemberRole::kRemoved);
  late.done(Ack(1, PeerStream(1)));
  EXPECT_FALSE(r.has_value()) << "the answer of a removed member counts for nothing";

  Send("m2", &r);
  for (int i = 0; i < 20; ++i) {
    clock_.Advance(milliseconds(100));
    node_->Tick();
    transport_.AnswerHeartbeats(Hb(0), 0);
    ASSERT_EQ(transport_.pending_to(1), pending) << "round " << i;
  }
  ASSERT_EQ(node_->GetStatus().peers.size(), 1u);
  EXPECT_EQ(node_->GetStatus().peers[0].url, options_.peers[0]);
  EXPECT_EQ(node_->GetCluster().members.size(), 2u);  // this node and peer 0
}

TEST_F(NodeTest, AChangeThatWouldLeaveFewerVotersThanTheQuorumIsRefused) {
  MakeIntroduced(ReplicationMode::kSyncQuorum, 3, 2);
  Result<MemberStatus> removed = node_->RemoveMember(options_.peers[0]);
  ASSERT_EQ(removed.status().code(), Code::kConflict);
  EXPECT_NE(removed.status().message().find("fewer than --quorum 3"), std::string::npos)
      << removed.status().message();
  EXPECT_EQ(node_->GetCluster().version, 0u);
  EXPECT_TRUE(log_.GetMembership().value().empty()) << "a refused change stores nothing";
  EXPECT_EQ(node_->GetStatus().peers.size(), 2u);

  // A learner is no voter: adding one does not make room for a removal.
  ASSERT_TRUE(node_->AddMember(kNewMember).ok());
  EXPECT_EQ(node_->RemoveMember(options_.peers[0]).status().code(), Code::kConflict);
  // Removing the learner itself is fine.
  EXPECT_TRUE(node_->RemoveMember(kNewMember).ok());
}

TEST_F(NodeTest, BadMembershipChangesAreRefusedAndChangeNothing) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 2);
  EXPECT_EQ(node_->AddMember(options_.peers[0]).status().code(), Code::kConflict);
  EXPECT_EQ(node_->AddMember("http://127.0.0.1:" + std::to_string(options_.port)).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(node_->RemoveMember("nobody").status().code(), Code::kNotFound);
  EXPECT_EQ(node_->RemoveMember("a").status().code(), Code::kConflict);  // this node's id
  EXPECT_EQ(node_->RemoveMember("http://127.0.0.1:" + std::to_string(options_.port))
                .status()
                .code(),
            Code::kConflict)
      << "this node's URL, before it learned it";
  EXPECT_EQ(node_->GetCluster().version, 0u);
  EXPECT_TRUE(log_.GetMembership().value().empty());
  EXPECT_TRUE(transport_.added_peers().empty());
}

TEST_F(NodeTest, TheMembershipSurvivesARestartAndOutranksPeers) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 2);
  ASSERT_TRUE(node_->AddMember(kNewMember).ok());
  ASSERT_TRUE(node_->RemoveMember(options_.peers[1]).ok());
  std::vector<std::string> events;
  node_->Stop();
  node_.reset();
  FakeTransport fresh;
  node_ = std::make_unique<Node>(options_, &log_, &fresh, &clock_);  // the same --peers
  node_->SetEventLog([&](EventLevel, const std::string& e) { events.push_back(e); });
  node_->Start();
  node_->Tick();
  ASSERT_EQ(fresh.added_peers().size(), 1u);
  EXPECT_EQ(fresh.added_peers()[0].second, kNewMember);
  const ClusterStatus c = node_->GetCluster();
  EXPECT_EQ(c.version, 2u);
  std::vector<std::string> urls;
  for (const MemberStatus& m : c.members) urls.push_back(m.url);
  EXPECT_EQ(urls, (std::vector<std::string>{"", options_.peers[0], kNewMember}));
  const bool reported = std::any_of(events.begin(), events.end(), [](const std::string& e) {
    return e.find("--peers") != std::string::npos &&
           e.find("the stored membership is used") != std::string::npos;
  });
  EXPECT_TRUE(reported) << "a --peers that disagrees with the stored membership is reported";
  // Nothing goes to the removed member.
  EXPECT_EQ(fresh.pending_to(1), 0u);
}

TEST_F(NodeTest, AMembershipHeardInAHeartbeatIsMergedAndItsOwnEntryIsNoPeer) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  Membership theirs;
  theirs.version = 4;
  theirs.entries = {MemberEntry{"http://127.0.0.1:9050", "a", 3, 0, false},  // this node
                    MemberEntry{options_.peers[0], "peer", 0, 0, true},
                    MemberEntry{kNewMember, "", 4, 0, false}};
  HeartbeatReply hb = HbWith(0, theirs);
  hb.high_waters = {{PeerStream(0), 5000}};  // this node is far behind: it stays a learner
  clock_.Advance(milliseconds(100));
  node_->Tick();
  transport_.AnswerHeartbeats(hb, 0);
  ASSERT_EQ(transport_.added_peers().size(), 1u) << "one new peer: this node's own URL is none";
  EXPECT_EQ(transport_.added_peers()[0].second, kNewMember);
  const ClusterStatus c = node_->GetCluster();
  EXPECT_EQ(c.version, 4u);
  ASSERT_FALSE(c.members.empty());
  EXPECT_EQ(c.members[0].url, "http://127.0.0.1:9050");
  EXPECT_EQ(c.members[0].role, MemberRole::kLearner);
  EXPECT_FALSE(log_.GetMembership().value().empty()) << "what was heard is stored";
}

TEST_F(NodeTest, ALearnerPromotesItselfOnceItLacksAtMostTheMaximumLag) {
  options_.learner_max_lag = 5;
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  Membership theirs;
  theirs.version = 3;
  theirs.entries = {MemberEntry{"http://127.0.0.1:9050", "a", 3, 0, false},
                    MemberEntry{options_.peers[0], "peer", 0, 0, true}};
  HeartbeatReply hb = HbWith(0, theirs);
  hb.high_waters = {{PeerStream(0), 10}};  // 10 messages this node lacks
  clock_.Advance(milliseconds(100));
  node_->Tick();
  transport_.AnswerHeartbeats(hb, 0);
  EXPECT_EQ(node_->GetStatus().role, MemberRole::kLearner);

  // It pulled 6 of them: 4 behind, within the lag.
  SyncReply page = StreamPage(PeerStream(0), 1, 6);
  ASSERT_TRUE(log_.Apply(page.messages).ok());
  clock_.Advance(milliseconds(100));
  node_->Tick();
  transport_.AnswerHeartbeats(hb, 0);
  EXPECT_EQ(node_->GetStatus().role, MemberRole::kVoter);
  EXPECT_EQ(node_->GetCluster().version, 4u);
  ASSERT_TRUE(node_->Heartbeat().membership.has_value()) << "the promotion is told to peers";
  EXPECT_TRUE(node_->Heartbeat().membership->Find("http://127.0.0.1:9050")->voter);
}

TEST_F(NodeTest, AChangeThatCannotBeStoredIsMadeNowhere) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  log_.SetDiskFull(true);
  Result<MemberStatus> added = node_->AddMember(kNewMember);
  EXPECT_EQ(added.status().code(), Code::kUnavailable) << added.status().ToString();
  EXPECT_NE(added.status().message().find("nothing changed"), std::string::npos);
  EXPECT_EQ(node_->GetCluster().version, 0u);
  EXPECT_TRUE(transport_.added_peers().empty());
  EXPECT_FALSE(node_->Heartbeat().membership.has_value()) << "peers hear of no change";
  log_.SetDiskFull(false);
  EXPECT_TRUE(node_->AddMember(kNewMember).ok());
}

TEST_F(NodeTest, MembershipTravelsWithHeartbeatsBothWays) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  // Before any change, heartbeats carry none.
  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  ASSERT_EQ(transport_.pending_heartbeats(), 1u);
  EXPECT_FALSE(transport_.TakeHeartbeat().membership.has_value());
  // A change made here goes out with the next heartbeats.
  ASSERT_TRUE(node_->AddMember(kNewMember).ok());
  clock_.Advance(options_.heartbeat_interval);
  node_->Tick();
  FakeTransport::HeartbeatCall call = transport_.TakeHeartbeat();
  ASSERT_TRUE(call.membership.has_value());
  EXPECT_EQ(call.membership->version, 1u);
  ASSERT_NE(call.membership->Find(kNewMember), nullptr);
  // One a peer sends with its heartbeat is merged (a removal of the new member, stamped later).
  Membership theirs = *call.membership;
  theirs.Find(kNewMember)->removed = 2;
  theirs.version = 2;
  node_->Heartbeat(&theirs);
  EXPECT_EQ(node_->GetCluster().version, 2u);
  EXPECT_EQ(node_->GetCluster().members.size(), 2u) << "the new member is gone again";
}

TEST_F(NodeTest, AMemberAddedLaterIsNotDeadBeforeItHadItsHeartbeatTimeout) {
  MakeIntroduced(ReplicationMode::kAsync, 2, 1);
  std::vector<std::string> events;
  node_->SetEventLog([&](EventLevel, const std::string& e) { events.push_back(e); });
  clock_.Advance(options_.heartbeat_timeout * 10);  // long after the start
  node_->Tick();
  transport_.AnswerHeartbeats(Hb(0), 0);
  ASSERT_TRUE(node_->AddMember(kNewMember).ok());
  node_->Tick();
  for (const std::string& e : events) {
    EXPECT_EQ(e.find(std::string("peer ") + kNewMember + " is dead"), std::string::npos) << e;
  }
  clock_.Advance(options_.heartbeat_timeout);
  node_->Tick();
  EXPECT_TRUE(std::any_of(events.begin(), events.end(), [](const std::string& e) {
    return e.find(std::string("peer ") + kNewMember + " is dead") != std::string::npos;
  })) << "dead once its own heartbeat timeout passed without an answer";
}

}  // namespace
}  // namespace dsm

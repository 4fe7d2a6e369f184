// DurableConsumer on its own: the in-memory log, the in-memory consumer state (which can hold
// writes back, lose them, or fail them) and a ManualClock, so ack waits, redeliveries and nak
// delays are tested without sleeping. README contract 13 (durable consumers).
#include "src/durable/durable_consumer.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/testing/forwarding_log_store.h"
#include "tests/testing/manual_clock.h"
#include "tests/testing/memory_consumer_state.h"
#include "tests/testing/memory_log_store.h"

namespace dsm {
namespace {

using std::chrono::milliseconds;

// A log whose oldest messages (seq <= trimmed_to) are gone, as after retention trimmed them.
class TrimmedLog final : public ForwardingLogStore {
 public:
  using ForwardingLogStore::ForwardingLogStore;
  uint64_t trimmed_to = 0;

  Result<std::optional<Message>> Get(uint64_t seq) const override {
    if (seq <= trimmed_to) return std::optional<Message>();
    return base_->Get(seq);
  }
  Status Scan(const ScanOptions& opts, const MessageVisitor& visit) const override {
    ScanOptions o = opts;
    o.after = std::max(o.after, trimmed_to);
    return base_->Scan(o, visit);
  }
};

class DurableConsumerTest : public ::testing::Test {
 protected:
  DurableConsumerTest() : log_("n1", "0123456789abcdef"), trimmed_(&log_) {}

  void Append(int n, const std::string& recipient = "bob", const std::string& sender = "alice") {
    std::vector<Message> msgs;
    for (int i = 0; i < n; ++i) {
      Message m;
      m.sender = sender;
      m.recipient = recipient;
      m.payload = "p" + std::to_string(next_payload_++);
      m.msg_id = "m" + std::to_string(next_payload_);
      msgs.push_back(m);
    }
    ASSERT_TRUE(log_.Append(std::move(msgs)).ok());
  }

  // Creates the consumer as DurableConsumers::Put does (stored durably, session 1).
  void Create(ConsumerDefinition def, uint64_t initial = 0) {
    StoredConsumer s;
    s.name = "work";
    s.definition = def;
    s.uid = "0a1b2c3d";
    s.session = 1;
    s.initial = initial;
    s.floor = initial;
    ConsumerChange c;
    c.name = s.name;
    c.erase = true;
    c.create = s;
    ASSERT_TRUE(state_.CommitAndWait({c}).ok());
    consumer_ = std::make_shared<DurableConsumer>(s, &trimmed_, &state_, &clock_);
  }

  // A restart: the consumer is rebuilt from what is stored, with the next session.
  void Restart() {
    consumer_.reset();
    state_.Crash();  // writes not yet durable are lost
    state_.Hold(false);
    Result<std::vector<StoredConsumer>> stored = state_.Load();
    ASSERT_TRUE(stored.ok());
    ASSERT_EQ(stored->size(), 1u);
    StoredConsumer s = (*stored)[0];
    ++s.session;
    ConsumerChange c;
    c.name = s.name;
    c.session = s.session;
    ASSERT_TRUE(state_.CommitAndWait({c}).ok());
    consumer_ = std::make_shared<DurableConsumer>(s, &trimmed_, &state_, &clock_);
  }

  std::vector<Delivery> Fetch(size_t max) {
    Result<FetchResult> r = consumer_->Fetch(max);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->deliveries : std::vector<Delivery>();
  }

  static std::vector<uint64_t> Seqs(const std::vector<Delivery>& ds) {
    std::vector<uint64_t> out;
    for (const Delivery& d : ds) out.push_back(d.message.seq);
    return out;
  }

  // Acks and waits for the outcome (the in-memory state writes at once unless held).
  Result<std::vector<AckOutcome>> Ack(const std::vector<std::string>& ids) {
    std::optional<Result<std::vector<AckOutcome>>> got;
    consumer_->Ack(ids, [&](Result<std::vector<AckOutcome>> r) { got = std::move(r); });
    EXPECT_TRUE(got.has_value()) << "the ack was not answered";
    if (!got) return Status::Timeout("no answer");
    return *got;
  }

  StoredConsumer Stored() {
    Result<std::vector<StoredConsumer>> stored = state_.Load();
    EXPECT_TRUE(stored.ok());
    return stored->empty() ? StoredConsumer{} : (*stored)[0];
  }

  MemoryLogStore log_;
  TrimmedLog trimmed_;
  MemoryConsumerState state_;
  ManualClock clock_;
  std::shared_ptr<DurableConsumer> consumer_;
  int next_payload_ = 0;
};

TEST_F(DurableConsumerTest, HandsOutInLogOrderEachMessageToOneClient) {
  Append(10);
  Create({});
  std::vector<Delivery> a = Fetch(3);
  std::vector<Delivery> b = Fetch(3);
  EXPECT_EQ(Seqs(a), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(Seqs(b), (std::vector<uint64_t>{4, 5, 6}));
  EXPECT_EQ(a[0].delivery, 1u);
  EXPECT_EQ(a[0].ack_id, "0a1b2c3d.1.1.1");
  ConsumerInfo info = consumer_->Info();
  EXPECT_EQ(info.in_flight, 6u);
  EXPECT_EQ(info.pending, 4u);
}

TEST_F(DurableConsumerTest, AnAckIsAnsweredOnlyOnceItIsDurable) {
  Append(3);
  Create({});
  std::vector<Delivery> d = Fetch(3);
  state_.Hold(true);
  std::optional<Result<std::vector<AckOutcome>>> got;
  consumer_->Ack({d[0].ack_id, d[1].ack_id},
                 [&](Result<std::vector<AckOutcome>> r) { got = std::move(r); });
  EXPECT_FALSE(got.has_value()) << "answered before the write was durable";
  EXPECT_EQ(Stored().floor, 0u);
  state_.Release();
  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(got->ok());
  EXPECT_EQ((**got)[0], AckOutcome::kAcked);
  EXPECT_EQ(Stored().floor, 2u);
  EXPECT_EQ(consumer_->Info().ack_floor, 2u);
}

TEST_F(DurableConsumerTest, ManyAcksShareOneWrite) {
  Append(20);
  Create({});
  std::vector<Delivery> d = Fetch(20);
  state_.Hold(true);
  int answered = 0;
  for (const Delivery& x : d) {
    consumer_->Ack({x.ack_id}, [&](Result<std::vector<AckOutcome>> r) {
      EXPECT_TRUE(r.ok());
      ++answered;
    });
  }
  const size_t writes = state_.writes();
  state_.Release();
  EXPECT_EQ(answered, 20);
  EXPECT_EQ(state_.writes(), writes + 1);
  EXPECT_EQ(Stored().floor, 20u);
  EXPECT_TRUE(Stored().acked.empty());
}

TEST_F(DurableConsumerTest, UnacknowledgedIsDeliveredAgainAfterAckWait) {
  Append(2);
  ConsumerDefinition def;
  def.ack_wait_ms = 1000;
  Create(def);
  std::vector<Delivery> first = Fetch(1);
  ASSERT_EQ(Seqs(first), std::vector<uint64_t>{1});
  clock_.Advance(milliseconds(999));
  std::vector<Delivery> next = Fetch(1);
  EXPECT_EQ(Seqs(next), std::vector<uint64_t>{2}) << "seq 1 is still held";
  clock_.Advance(milliseconds(1));
  std::vector<Delivery> again = Fetch(5);
  ASSERT_EQ(Seqs(again), std::vector<uint64_t>{1});
  EXPECT_EQ(again[0].delivery, 2u);
  EXPECT_EQ(consumer_->Info().redelivered, 1u);
}

TEST_F(DurableConsumerTest, ALateAckOfAnEarlierDeliveryIsStaleAndLeavesTheNewOneInFlight) {
  Append(1);
  ConsumerDefinition def;
  def.ack_wait_ms = 100;
  Create(def);
  std::vector<Delivery> first = Fetch(1);
  clock_.Advance(milliseconds(100));
  std::vector<Delivery> second = Fetch(1);
  ASSERT_EQ(second.size(), 1u);
  Result<std::vector<AckOutcome>> late = Ack({first[0].ack_id});
  ASSERT_TRUE(late.ok());
  EXPECT_EQ((*late)[0], AckOutcome::kStale);
  EXPECT_EQ(consumer_->Info().in_flight, 1u);
  EXPECT_EQ(Stored().floor, 0u);
  Result<std::vector<AckOutcome>> current = Ack({second[0].ack_id});
  ASSERT_TRUE(current.ok());
  EXPECT_EQ((*current)[0], AckOutcome::kAcked);
  EXPECT_EQ(Stored().floor, 1u);
  // Once acknowledged, either id is "already acknowledged".
  EXPECT_EQ((*Ack({second[0].ack_id}))[0], AckOutcome::kAlreadyAcked);
}

TEST_F(DurableConsumerTest, AnAckAfterTheDeadlineButBeforeRedeliveryCounts) {
  Append(1);
  ConsumerDefinition def;
  def.ack_wait_ms = 100;
  Create(def);
  std::vector<Delivery> first = Fetch(1);
  clock_.Advance(milliseconds(150));
  consumer_->Tick();
  EXPECT_EQ((*Ack({first[0].ack_id}))[0], AckOutcome::kAcked);
  EXPECT_TRUE(Fetch(1).empty());
}

TEST_F(DurableConsumerTest, NakDelaysTheNextDelivery) {
  Append(1);
  Create({});
  std::vector<Delivery> first = Fetch(1);
  Result<std::vector<AckOutcome>> r = consumer_->Nak({first[0].ack_id}, milliseconds(500));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0], AckOutcome::kNaked);
  EXPECT_EQ(consumer_->Info().pending, 1u);
  clock_.Advance(milliseconds(499));
  EXPECT_TRUE(Fetch(1).empty());
  clock_.Advance(milliseconds(1));
  std::vector<Delivery> again = Fetch(1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].delivery, 2u);
  // A nak without delay: deliverable at once.
  ASSERT_TRUE(consumer_->Nak({again[0].ack_id}, milliseconds(0)).ok());
  EXPECT_EQ(Fetch(1)[0].delivery, 3u);
}

TEST_F(DurableConsumerTest, AfterMaxDeliveriesAMessageIsDeadLetteredAndNoLongerBlocks) {
  Append(3);
  ConsumerDefinition def;
  def.ack_wait_ms = 100;
  def.max_deliveries = 2;
  def.max_in_flight = 1;
  Create(def);
  EXPECT_EQ(Seqs(Fetch(1)), std::vector<uint64_t>{1});
  EXPECT_TRUE(Fetch(1).empty()) << "max_in_flight 1";
  clock_.Advance(milliseconds(100));
  std::vector<Delivery> second = Fetch(1);
  ASSERT_EQ(Seqs(second), std::vector<uint64_t>{1});
  EXPECT_EQ(second[0].delivery, 2u);
  clock_.Advance(milliseconds(100));
  std::vector<Delivery> next = Fetch(1);
  EXPECT_EQ(Seqs(next), std::vector<uint64_t>{2}) << "seq 1 is dead-lettered";
  std::vector<DeadLetter> dead = consumer_->DeadLetters(0, 10);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].seq, 1u);
  EXPECT_EQ(dead[0].deliveries, 2u);
  EXPECT_EQ(consumer_->Info().dead_lettered, 1u);
  ASSERT_EQ(Stored().dead.size(), 1u);
  EXPECT_EQ((*Ack({second[0].ack_id}))[0], AckOutcome::kDeadLettered);
  // The dead letter survives a restart and is not delivered again.
  ASSERT_TRUE(Ack({next[0].ack_id}).ok());
  Restart();
  EXPECT_EQ(Seqs(Fetch(5)), std::vector<uint64_t>{3});
  EXPECT_EQ(consumer_->Info().dead_lettered, 1u);
}

TEST_F(DurableConsumerTest, ANakOfTheLastAllowedDeliveryDeadLetters) {
  Append(1);
  ConsumerDefinition def;
  def.max_deliveries = 1;
  Create(def);
  std::vector<Delivery> d = Fetch(1);
  Result<std::vector<AckOutcome>> r = consumer_->Nak({d[0].ack_id}, milliseconds(0));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0], AckOutcome::kDeadLettered);
  EXPECT_TRUE(Fetch(1).empty());
}

TEST_F(DurableConsumerTest, ARestartDeliversAgainExactlyWhatIsNotAcknowledgedInLogOrder) {
  Append(10);
  Create({});
  std::vector<Delivery> d = Fetch(10);
  // Acknowledge 1, 2, 4, 7 (the floor becomes 2; 4 and 7 are stored above it).
  ASSERT_TRUE(Ack({d[0].ack_id, d[1].ack_id, d[3].ack_id, d[6].ack_id}).ok());
  EXPECT_EQ(Stored().floor, 2u);
  EXPECT_EQ(Stored().acked, (std::vector<uint64_t>{4, 7}));
  // An acknowledgement not yet durable at the crash is not acknowledged.
  state_.Hold(true);
  bool answered = false;
  consumer_->Ack({d[4].ack_id}, [&](Result<std::vector<AckOutcome>>) { answered = true; });
  Restart();
  EXPECT_FALSE(answered);
  EXPECT_EQ(Seqs(Fetch(10)), (std::vector<uint64_t>{3, 5, 6, 8, 9, 10}));
  // Ids issued before the restart are stale and change nothing.
  Result<std::vector<AckOutcome>> old = Ack({d[2].ack_id});
  ASSERT_TRUE(old.ok());
  EXPECT_EQ((*old)[0], AckOutcome::kStale);
  EXPECT_EQ(consumer_->Info().in_flight, 6u);
}

TEST_F(DurableConsumerTest, AnUnknownAckIdFailsTheWholeRequestAndChangesNothing) {
  Append(3);
  Create({});
  std::vector<Delivery> d = Fetch(2);
  const std::vector<std::string> bad = {
      "garbage",           "0a1b2c3d.1.1",       "0a1b2c3d.1.1.1.1", "ffffffff.1.1.1",
      "0a1b2c3d.2.1.1",    "0a1b2c3d.1.3.1",     "0a1b2c3d.1.1.2",   "0a1b2c3d.1.1.0",
      "0A1B2C3D.1.1.1",    "0a1b2c3d.1.-1.1",    "0a1b2c3d.1.99999999999999999999.1",
  };
  for (const std::string& id : bad) {
    Result<std::vector<AckOutcome>> r = Ack({d[0].ack_id, id});
    ASSERT_FALSE(r.ok()) << id;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << id;
    Result<std::vector<AckOutcome>> n = consumer_->Nak({d[1].ack_id, id}, milliseconds(0));
    EXPECT_EQ(n.status().code(), Code::kInvalidArgument) << id;
  }
  EXPECT_EQ(consumer_->Info().in_flight, 2u);
  EXPECT_EQ(consumer_->Info().acked, 0u);
  EXPECT_EQ(Stored().floor, 0u);
}

TEST_F(DurableConsumerTest, MaxInFlightBoundsWhatIsHandedOut) {
  Append(10);
  ConsumerDefinition def;
  def.max_in_flight = 4;
  Create(def);
  std::vector<Delivery> d = Fetch(10);
  EXPECT_EQ(d.size(), 4u);
  EXPECT_FALSE(consumer_->HasRoom());
  ASSERT_TRUE(Ack({d[0].ack_id}).ok());
  EXPECT_EQ(Seqs(Fetch(10)), std::vector<uint64_t>{5});
}

TEST_F(DurableConsumerTest, FiltersSelectBySenderAndRecipient) {
  Append(2, "bob", "alice");
  Append(2, "carol", "alice");
  Append(2, "bob", "dave");
  ConsumerDefinition def;
  def.recipient = "bob";
  def.sender = "dave";
  Create(def);
  EXPECT_EQ(Seqs(Fetch(10)), (std::vector<uint64_t>{5, 6}));
  EXPECT_EQ(consumer_->Info().pending, 0u);
}

TEST_F(DurableConsumerTest, AnOriginStartSkipsWhatWasDoneElsewhereAndNothingElse) {
  Append(6);
  ConsumerDefinition def;
  def.start.kind = ConsumerStart::Kind::kOrigins;
  def.start.origins[log_.stream_id()] = 4;
  Create(def, 0);
  EXPECT_EQ(Seqs(Fetch(10)), (std::vector<uint64_t>{5, 6}));
}

TEST_F(DurableConsumerTest, TheOriginPositionCoversExactlyTheAckFloor) {
  Append(5);
  Create({});
  std::vector<Delivery> d = Fetch(5);
  ASSERT_TRUE(Ack({d[0].ack_id, d[1].ack_id, d[3].ack_id}).ok());
  Result<std::map<std::string, uint64_t>> pos = consumer_->OriginPosition();
  ASSERT_TRUE(pos.ok());
  EXPECT_EQ(*pos, (std::map<std::string, uint64_t>{{log_.stream_id(), 2}}));
}

TEST_F(DurableConsumerTest, APendingMessageTrimmedFromTheLogIsCountedNotAnError) {
  Append(4);
  ConsumerDefinition def;
  def.ack_wait_ms = 100;
  Create(def);
  std::vector<Delivery> d = Fetch(2);  // 1 and 2 in flight
  trimmed_.trimmed_to = 3;             // retention removes 1..3
  clock_.Advance(milliseconds(100));
  EXPECT_EQ(Seqs(Fetch(10)), std::vector<uint64_t>{4});
  EXPECT_EQ(consumer_->Info().trimmed, 2u);
  EXPECT_EQ((*Ack({d[0].ack_id}))[0], AckOutcome::kGone);
}

TEST_F(DurableConsumerTest, AFailedWriteFailsTheAckAndTheMessageStaysDeliverable) {
  Append(1);
  Create({});
  std::vector<Delivery> d = Fetch(1);
  state_.FailWrites(Status::IOError("fsync failed"));
  Result<std::vector<AckOutcome>> r = Ack({d[0].ack_id});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kIOError);
  std::vector<Delivery> again = Fetch(1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].delivery, 2u);
}

TEST_F(DurableConsumerTest, EveryMessageIsDeliveredUntilAcknowledgedWhateverTheInterleaving) {
  // A seeded random mix of fetches, acks, naks, expiries and restarts: at the end, every message
  // was acknowledged exactly once as "acked", and nothing acknowledged durably came back.
  Append(200);
  ConsumerDefinition def;
  def.ack_wait_ms = 50;
  def.max_in_flight = 20;
  Create(def);
  std::mt19937 rng(7);
  std::set<uint64_t> acked;
  std::vector<Delivery> held;
  for (int step = 0; step < 5000 && acked.size() < 200; ++step) {
    switch (rng() % 6) {
      case 0:
      case 1:
        for (Delivery& x : Fetch(1 + rng() % 5)) {
          EXPECT_EQ(acked.count(x.message.seq), 0u) << "acknowledged seq " << x.message.seq
                                                    << " delivered again";
          held.push_back(std::move(x));
        }
        break;
      case 2:
      case 3:
        if (!held.empty()) {
          const size_t i = rng() % held.size();
          Result<std::vector<AckOutcome>> r = Ack({held[i].ack_id});
          ASSERT_TRUE(r.ok());
          if ((*r)[0] == AckOutcome::kAcked) {
            EXPECT_TRUE(acked.insert(held[i].message.seq).second);
          }
          held.erase(held.begin() + static_cast<long>(i));
        }
        break;
      case 4:
        clock_.Advance(milliseconds(rng() % 60));
        break;
      case 5:
        if (rng() % 10 == 0) {
          Restart();
          held.clear();
        }
        break;
    }
  }
  EXPECT_EQ(acked.size(), 200u);
  EXPECT_EQ(Stored().floor, 200u);
}

}  // namespace
}  // namespace dsm

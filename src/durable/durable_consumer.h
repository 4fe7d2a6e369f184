// DurableConsumer: one named consumer of a node's log (docs/api.md, "Durable consumers"): it
// hands out the messages its filter selects, in log order, each to one client at a time, takes
// their acknowledgements, delivers again what is not acknowledged within ack_wait, and
// dead-letters a message after max_deliveries deliveries. Time comes from an injected Clock,
// the log from a LogStore, durability from a ConsumerStateStore: the class starts no thread.
//
// State. `scanned_`: every selected message with seq <= scanned_ has been handed out at least
// once (or was skipped: not selected, covered by a start position of another node, gone from the
// log). Each message handed out and not yet acknowledged is an Entry of `outstanding_`: held by a
// client until its ack deadline, waiting to be delivered again (after an expired deadline or a
// nak), or acknowledged with the write not yet durable. The floor (durable) is the highest seq
// with nothing outstanding at or below it; acknowledgements above it are kept (acked_) and
// stored. A restart loses `outstanding_`: everything above the floor that is not acknowledged or
// dead-lettered is handed out again, in log order.
//
// Ack ids. "<uid>.<session>.<seq>.<delivery>": the consumer's uid (drawn at creation), the
// session (bumped at each load, i.e. node start), the message's seq and its delivery number. An
// ack or nak only applies to the latest delivery of a message: an id of an earlier delivery, or
// of an earlier session, is answered "stale" and changes nothing (the newer delivery stays in
// flight). An id this consumer never issued (another uid, a later session, a seq it never
// delivered, a delivery number it never reached) is an error for the whole request.
//
// Durability. An acknowledgement is answered only once the write that records it (with the new
// floor) is durable; writes are queued in order on the ConsumerStateStore, which groups them.
// Dead letters are written the same way, without a waiter.
//
// Thread safety: all public methods may be called from any thread (one mutex). Lock order: mu_,
// then the log store's reads, then the state store's queue; the store's callbacks take mu_ and
// run without the store's lock. `on_change` (see the constructor) is called with mu_ held and must
// only hand the news off.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/metrics.h"
#include "common/thread_annotations.h"
#include "dsm/clock.h"
#include "dsm/consumer_state.h"
#include "dsm/log_store.h"
#include "dsm/message.h"
#include "dsm/status.h"

namespace dsm {

constexpr size_t kMaxFetchMessages = 1000;  // largest `max` of one fetch
constexpr size_t kMaxAckIds = 1000;         // ack ids per ack or nak request
constexpr uint64_t kMaxNakDelayMs = 24ull * 3600 * 1000;

// One message handed to a client.
struct Delivery {
  Message message;
  uint64_t delivery = 0;  // 1 for the first delivery
  std::string ack_id;
};

struct FetchResult {
  std::vector<Delivery> deliveries;
  // The read stopped at its budget before finding anything: more may be deliverable right away.
  bool more = false;
};

// What an ack or nak did to one id.
enum class AckOutcome {
  kAcked,          // acknowledged (durable when answered)
  kAlreadyAcked,   // it was acknowledged before (or is done: at or below the floor)
  kStale,          // an earlier delivery (or an earlier session): the message is delivered again
  kDeadLettered,   // the message was dead-lettered
  kNaked,          // nak: it will be delivered again (after the delay)
  kGone,           // the message is no longer in the log (trimmed)
};
const char* AckOutcomeName(AckOutcome o);

struct ConsumerInfo {
  std::string name;
  ConsumerDefinition definition;
  uint64_t initial = 0;    // the seq it started after
  uint64_t ack_floor = 0;  // durable: every selected message <= it is done
  uint64_t delivered_up_to = 0;  // scanned_: everything selected up to it was handed out
  uint64_t pending = 0;    // selected, not yet delivered, plus those waiting to be delivered again
  bool pending_exact = true;  // false while the count has not reached the log's end yet
  uint64_t in_flight = 0;  // delivered, held by a client, not yet acknowledged
  uint64_t ack_pending = 0;  // acknowledged, write not yet durable
  uint64_t acked = 0;      // acknowledgements since the node started
  uint64_t delivered = 0;  // deliveries since the node started
  uint64_t redelivered = 0;  // deliveries after the first, since the node started
  uint64_t dead_lettered = 0;  // dead letters stored
  uint64_t trimmed = 0;      // messages that left the log before being acknowledged
  uint64_t session = 0;
};

class DurableConsumer : public std::enable_shared_from_this<DurableConsumer> {
 public:
  // Called with mu_ held when a client waiting for messages may now get some (a redelivery fell
  // due, an ack or nak made room) or when the next deadline changed.
  using ChangeListener = std::function<void()>;

  // `log`, `state` and `clock` must outlive the consumer. `stored` is the consumer as loaded or
  // just created (its session is the current one).
  DurableConsumer(StoredConsumer stored, const LogStore* log, ConsumerStateStore* state,
                  const Clock* clock, ChangeListener on_change = nullptr);
  DurableConsumer(const DurableConsumer&) = delete;
  DurableConsumer& operator=(const DurableConsumer&) = delete;

  const std::string& name() const { return name_; }
  const ConsumerDefinition& definition() const { return definition_; }

  // Hands out up to `max` messages: due redeliveries first (lowest seq first), then new
  // messages in log order, while fewer than max_in_flight are outstanding. Runs Tick() first.
  Result<FetchResult> Fetch(size_t max) LOCKS_EXCLUDED(mu_);

  // Acknowledges `ids` (validated as a whole first: an unknown id fails the call with
  // InvalidArgument and changes nothing). `done` gets one outcome per id once the write is
  // durable (or the write's error), on the calling thread or the state store's commit thread.
  using AckDone = std::function<void(Result<std::vector<AckOutcome>>)>;
  void Ack(const std::vector<std::string>& ids, AckDone done) LOCKS_EXCLUDED(mu_);
  // Makes the latest deliveries of `ids` deliverable again after `delay`. Same validation.
  Result<std::vector<AckOutcome>> Nak(const std::vector<std::string>& ids, Millis delay)
      LOCKS_EXCLUDED(mu_);

  // Expires ack deadlines and nak delays that are due (dead-lettering what reached
  // max_deliveries). Returns the next deadline, if any.
  std::optional<MonoTime> Tick() LOCKS_EXCLUDED(mu_);
  // The next deadline without running anything.
  std::optional<MonoTime> NextDeadline() const LOCKS_EXCLUDED(mu_);

  // Whether something is deliverable now without reading the log (a due redelivery).
  bool HasDueRedelivery() const LOCKS_EXCLUDED(mu_);
  // The seq after which new messages are read (for the append notifier).
  uint64_t ReadPosition() const LOCKS_EXCLUDED(mu_);
  // Room for new messages (fewer than max_in_flight outstanding).
  bool HasRoom() const LOCKS_EXCLUDED(mu_);

  // The counts of GET /consumers/{name}. Counts pending messages from where the last count
  // stopped (at most `count_budget` records per call).
  ConsumerInfo Info(size_t count_budget = 100000) LOCKS_EXCLUDED(mu_);
  // The durable ack floor in origin coordinates (storage/origin_positions.h), with the start
  // position's origins merged in.
  Result<std::map<std::string, uint64_t>> OriginPosition() LOCKS_EXCLUDED(mu_);
  // Dead letters with seq > after, at most `limit`.
  std::vector<DeadLetter> DeadLetters(uint64_t after, size_t limit) const LOCKS_EXCLUDED(mu_);
  // Delivery-to-durable-ack latency (seconds).
  const Histogram& ack_latency() const { return ack_latency_; }

  // After DELETE: every later call fails with NotFound (acks in flight still complete).
  void MarkDeleted() LOCKS_EXCLUDED(mu_);

 private:
  enum class State { kHeld, kWaiting, kAckPending };
  struct Entry {
    uint64_t deliveries = 0;
    State state = State::kHeld;
    MonoTime deadline;      // kHeld: ack deadline; kWaiting: deliverable from then
    MonoTime delivered_at;  // the latest delivery
  };
  struct AckId {
    uint64_t session = 0;
    uint64_t seq = 0;
    uint64_t delivery = 0;
  };

  // Parses and classifies `ids`: InvalidArgument for an id this consumer never issued.
  // Otherwise one outcome per id, where kAcked/kNaked mean "applies to a current delivery".
  Result<std::vector<AckOutcome>> Classify(const std::vector<std::string>& ids,
                                           std::vector<AckId>* parsed) const
      EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<MonoTime> TickLocked(MonoTime now) EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<MonoTime> NextDeadlineLocked() const EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Arms `seq`'s timer.
  void SetTimer(uint64_t seq, Entry* e, MonoTime when) EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClearTimer(uint64_t seq, const Entry& e) EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes `seq` from outstanding_ and stores a dead letter.
  void DeadLetterLocked(uint64_t seq, std::vector<DeadLetter>* out) EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The floor once everything done so far is durable: just below the lowest outstanding entry
  // that is not ack-pending, else scanned_.
  uint64_t CandidateFloor() const EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues a durable write of `dead` with the candidate floor.
  void CommitDead(std::vector<DeadLetter> dead) EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Whether a message read from the log is for this consumer (filters, start origins).
  bool Selected(const Message& m) const;
  std::string MakeAckId(uint64_t seq, uint64_t delivery) const;
  void Changed() EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (on_change_) on_change_();
  }
  // A write made ready under mu_, queued on the state store once mu_ is released (under
  // commit_mu_, so writes are queued in the order their floors were computed).
  struct PendingCommit {
    ConsumerChange change;
    ConsumerStateStore::CommitDone done;
  };
  void QueueCommits(std::vector<PendingCommit> commits) EXCLUSIVE_LOCKS_REQUIRED(commit_mu_)
      LOCKS_EXCLUDED(mu_);
  // Takes the writes prepared under mu_ (to_commit_).
  std::vector<PendingCommit> TakeCommits() EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<PendingCommit> out;
    out.swap(to_commit_);
    return out;
  }
  // The completion of an ack write.
  void AckDurable(const std::vector<std::pair<uint64_t, MonoTime>>& seqs, uint64_t floor,
                  const Status& s) LOCKS_EXCLUDED(mu_);

  const std::string name_;
  const ConsumerDefinition definition_;
  const std::string uid_;
  const uint64_t initial_;
  const uint64_t session_;
  const LogStore* const log_;
  ConsumerStateStore* const state_;
  const Clock* const clock_;
  const ChangeListener on_change_;
  Histogram ack_latency_;

  // Held from the moment a write's floor is computed until the write is queued.
  Mutex commit_mu_ ACQUIRED_BEFORE(mu_);
  mutable Mutex mu_;
  // Writes prepared under mu_, queued once it is released.
  std::vector<PendingCommit> to_commit_ GUARDED_BY(mu_);
  bool deleted_ GUARDED_BY(mu_) = false;
  uint64_t floor_ GUARDED_BY(mu_);       // durable
  uint64_t scanned_ GUARDED_BY(mu_);
  std::map<uint64_t, Entry> outstanding_ GUARDED_BY(mu_);
  size_t ack_pending_ GUARDED_BY(mu_) = 0;  // entries in kAckPending
  size_t held_ GUARDED_BY(mu_) = 0;         // entries in kHeld
  std::set<uint64_t> acked_ GUARDED_BY(mu_);  // durable acks above floor_
  std::map<uint64_t, DeadLetter> dead_ GUARDED_BY(mu_);
  std::set<std::pair<MonoTime, uint64_t>> timers_ GUARDED_BY(mu_);  // (deadline, seq)
  std::set<uint64_t> due_ GUARDED_BY(mu_);  // kWaiting entries deliverable now
  // Pending count: selected messages in (scanned_, counted_to_] not yet handed out.
  uint64_t counted_to_ GUARDED_BY(mu_);
  uint64_t uncounted_pending_ GUARDED_BY(mu_) = 0;
  uint64_t acked_total_ GUARDED_BY(mu_) = 0;
  uint64_t delivered_total_ GUARDED_BY(mu_) = 0;
  uint64_t redelivered_ GUARDED_BY(mu_) = 0;
  uint64_t trimmed_ GUARDED_BY(mu_) = 0;
};

// Parses "<uid>.<session>.<seq>.<delivery>". False when malformed.
bool ParseAckId(std::string_view id, std::string* uid, uint64_t* session, uint64_t* seq,
                uint64_t* delivery);

}  // namespace dsm

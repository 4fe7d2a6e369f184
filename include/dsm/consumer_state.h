// Durable consumers: the definitions and the durable state of the named consumers a node keeps
// (docs/api.md, "Durable consumers"), and ConsumerStateStore, where that state lives.
//
// What is durable about a consumer: its definition, its ack floor (every message it selects with
// seq <= floor is done: acknowledged, dead-lettered, or gone from the log), the acknowledgements
// above the floor, its dead letters, and a session counter bumped each time the node loads it (ack
// ids carry the session, so an id issued before a restart is recognised as such). Who holds which
// message and the ack deadlines are not durable: after a restart every message above the floor
// that is not acknowledged is deliverable again.
//
// Value types are thread-compatible. ConsumerStateStore implementations are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dsm/status.h"

namespace dsm {

// Where a new consumer starts.
struct ConsumerStart {
  enum class Kind {
    kFirst,    // the oldest message the log holds
    kNew,      // after the log's last message when the consumer is created
    kSeq,      // after local seq `seq`
    kOrigins,  // after the per-origin positions `origins` (a position read on another node)
  };
  Kind kind = Kind::kFirst;
  uint64_t seq = 0;
  std::map<std::string, uint64_t> origins;  // origin stream -> origin_seq already done
  bool operator==(const ConsumerStart&) const = default;
};

struct ConsumerDefinition {
  std::optional<std::string> sender;     // only messages from this sender
  std::optional<std::string> recipient;  // only messages to this recipient
  ConsumerStart start;
  uint64_t ack_wait_ms = 30000;  // a delivery not acknowledged within this is delivered again
  uint64_t max_in_flight = 1000;  // delivered and not acknowledged, at most
  uint64_t max_deliveries = 0;    // deliveries of one message before it is dead-lettered; 0 = no limit
  bool operator==(const ConsumerDefinition&) const = default;
};

struct DeadLetter {
  uint64_t seq = 0;
  uint64_t deliveries = 0;  // how often it was delivered
  double when = 0;          // wall time it was dead-lettered (Unix seconds)
  bool operator==(const DeadLetter&) const = default;
};

// One consumer as stored.
struct StoredConsumer {
  std::string name;
  ConsumerDefinition definition;
  std::string uid;        // drawn at creation: tells a consumer from a former one of the same name
  uint64_t initial = 0;   // the local seq the consumer started after
  uint64_t floor = 0;     // every selected message with seq <= floor is done
  uint64_t session = 0;   // bumped at each load
  std::vector<uint64_t> acked;   // acknowledged seqs above the floor, ascending
  std::vector<DeadLetter> dead;  // ascending seq
};

// One atomic change of one consumer's stored state.
struct ConsumerChange {
  std::string name;
  bool erase = false;                     // remove everything stored under `name` first
  std::optional<StoredConsumer> create;   // then write this consumer (definition, floor, session)
  std::optional<uint64_t> floor;          // the new floor: acknowledgements <= it are dropped
  std::optional<uint64_t> session;
  std::vector<uint64_t> acks;             // acknowledgements to add (those above the floor)
  std::vector<DeadLetter> dead;           // dead letters to add
};

class ConsumerStateStore {
 public:
  virtual ~ConsumerStateStore() = default;

  // Every stored consumer, by name.
  virtual Result<std::vector<StoredConsumer>> Load() const = 0;

  // Writes `changes` as ONE atomic write, durable (synced, unless the node runs with fsync off)
  // before `done` is called. Commits are written in call order; concurrent commits are grouped
  // into one write. `done` is called exactly once, on the calling thread or on the store's commit
  // thread, with no lock of the store held. A failed write is sticky: every later commit fails
  // with the same error.
  using CommitDone = std::function<void(Status)>;
  virtual void Commit(std::vector<ConsumerChange> changes, CommitDone done) = 0;

  // Commit, waiting for the outcome. REQUIRES: not called from a CommitDone callback.
  Status CommitAndWait(std::vector<ConsumerChange> changes);
};

}  // namespace dsm

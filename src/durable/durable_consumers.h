// DurableConsumers: the named consumers of one node (docs/api.md, "Durable consumers"): loads
// them at start, creates and deletes them durably, and serves fetches that wait for messages
// (long-polls) without a thread per waiter.
//
// One service thread: it runs each consumer's Tick() at its next deadline (ack deadlines, nak
// delays) and hands messages to the fetches that wait, in arrival order per consumer, when
// something may be deliverable: a matching message became durable (the log's AppendNotifier,
// one registration per consumer with waiters), a redelivery fell due, an ack or nak made room.
// A waiting fetch is answered by its `done` callback on that thread, with messages as soon as
// there are some, else with an empty page at its deadline.
//
// Thread safety: all methods may be called from any thread. Lock order: admin_mu_ (Put, Delete)
// -> a consumer's locks -> the log store's lock -> the notifier -> mu_. mu_ is held only to
// touch the maps below, never while calling a consumer, the log or the notifier. `done` callbacks
// run without any lock held.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/metrics.h"
#include "common/thread_annotations.h"
#include "dsm/clock.h"
#include "dsm/consumer_state.h"
#include "dsm/log_store.h"
#include "dsm/status.h"
#include "src/durable/durable_consumer.h"
#include "storage/append_notifier.h"

namespace dsm {

struct DurableConsumersOptions {
  size_t max_consumers = 1000;
  size_t max_waiters = 10000;  // fetches waiting on all consumers; more get 503
};

// A valid consumer name: 1..64 of [A-Za-z0-9_-] (no dot: names appear in ack ids' messages and
// metric labels as they are).
bool ValidConsumerName(std::string_view name);

class DurableConsumers {
 public:
  // `log`, `state`, `clock` and `notifier` (may be null: waiting fetches then only wake for
  // redeliveries and at their deadline) must outlive this object.
  DurableConsumers(const LogStore* log, ConsumerStateStore* state, const Clock* clock,
                   AppendNotifier* notifier, DurableConsumersOptions options = {});
  ~DurableConsumers();  // Stop()
  DurableConsumers(const DurableConsumers&) = delete;
  DurableConsumers& operator=(const DurableConsumers&) = delete;

  // Loads the stored consumers (each gets a new session, written durably) and starts the service
  // thread. REQUIRES: called once, before anything else.
  Status Start() LOCKS_EXCLUDED(mu_, admin_mu_);
  // Answers every waiting fetch with an empty page and joins the thread; later calls get
  // Unavailable. Idempotent.
  void Stop() LOCKS_EXCLUDED(mu_);

  // Creates `name` (durably) or checks that it exists with this definition. *created tells which.
  // Errors: Conflict (exists with another definition), InvalidArgument (a start the log cannot
  // give), Unavailable (too many consumers, stopping), the state store's write error.
  Result<ConsumerInfo> Put(const std::string& name, const ConsumerDefinition& def, bool* created)
      LOCKS_EXCLUDED(mu_, admin_mu_);
  // Removes `name` and its stored state (durably). Waiting fetches get NotFound.
  Status Delete(const std::string& name) LOCKS_EXCLUDED(mu_, admin_mu_);
  // The consumer, or NotFound.
  Result<std::shared_ptr<DurableConsumer>> Find(const std::string& name) const LOCKS_EXCLUDED(mu_);
  std::vector<std::shared_ptr<DurableConsumer>> All() const LOCKS_EXCLUDED(mu_);

  // Fetches up to `max` messages of `name`; with nothing to hand out and wait > 0, waits up to
  // `wait` for some. `gone()` tells whether the client left (its fetch is then dropped rather than
  // handed messages). `done` is called exactly once, on the calling thread or the service thread.
  using FetchDone = std::function<void(Result<FetchResult>)>;
  void Fetch(const std::string& name, size_t max, Millis wait, std::function<bool()> gone,
             FetchDone done) LOCKS_EXCLUDED(mu_);

  // Per consumer: pending, in flight, acks, redeliveries, dead letters, trimmed, ack latency.
  void WriteMetrics(MetricsWriter& w) LOCKS_EXCLUDED(mu_);

  // Fetches waiting now.
  size_t waiting() const LOCKS_EXCLUDED(mu_);

 private:
  struct Waiter {
    uint64_t id = 0;
    std::shared_ptr<DurableConsumer> consumer;
    size_t max = 0;
    MonoTime deadline;
    std::function<bool()> gone;
    FetchDone done;
  };
  // The append notifier's registration of one consumer with waiters (service thread only).
  class Hook;
  struct Arm {
    std::shared_ptr<Hook> hook;
    AppendNotifier::Ticket ticket = 0;
  };

  // Marks `name` as worth a look by the service thread. From any thread, any lock but mu_ held.
  void Wake(const std::string& name) LOCKS_EXCLUDED(mu_);
  std::shared_ptr<DurableConsumer> Make(StoredConsumer stored);
  void Run() LOCKS_EXCLUDED(mu_);  // the service thread
  // Hands messages to the waiters of `name`, in order, while there are some.
  void Serve(const std::string& name) LOCKS_EXCLUDED(mu_);
  // Registers `name`'s hook with the notifier unless it is registered.
  void ArmHook(const std::string& name, const DurableConsumer& c) LOCKS_EXCLUDED(mu_);
  void Disarm(const std::string& name) LOCKS_EXCLUDED(mu_);

  const LogStore* const log_;
  ConsumerStateStore* const state_;
  const Clock* const clock_;
  AppendNotifier* const notifier_;
  const DurableConsumersOptions options_;

  Mutex admin_mu_ ACQUIRED_BEFORE(mu_);  // serializes Put and Delete
  mutable Mutex mu_;
  // Notified by Wake(), by a new waiter and by Stop().
  CondVar cv_;
  bool started_ GUARDED_BY(mu_) = false;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::map<std::string, std::shared_ptr<DurableConsumer>> consumers_ GUARDED_BY(mu_);
  std::map<std::string, std::deque<Waiter>> waiters_ GUARDED_BY(mu_);
  size_t waiting_ GUARDED_BY(mu_) = 0;
  std::set<std::pair<MonoTime, uint64_t>> waiter_deadlines_ GUARDED_BY(mu_);
  uint64_t next_waiter_ GUARDED_BY(mu_) = 1;
  std::set<std::string> woken_ GUARDED_BY(mu_);
  std::map<std::string, Arm> arms_ GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace dsm

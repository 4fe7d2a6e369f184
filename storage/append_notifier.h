// AppendNotifier: tells live readers (long-polls, event streams) that a message they wait for has
// become durable, without a thread or a poll loop per reader. A log store calls Notify() after
// each durable write that appended records, with the seq, sender and recipient of each new
// record; a reader registers a one-shot AppendWaiter with its position and filters and is called
// once a matching message lies after its position.
//
// Waiters are indexed by their most selective filter (recipient, else sender, else none), so a
// write wakes only the waiters one of its messages matches: a reader of one recipient is not
// disturbed by other recipients' traffic, and with nobody waiting Notify() is one atomic load.
//
// How a reader avoids missing a message: register first, then read the log from its position.
// A write published before the registration is visible to that read; a write published after
// it notifies the waiter. (This relies on stores calling Notify() inside the critical section
// that publishes the write, before their LastSeq() can show it.) A wake-up can therefore be
// spurious (the reader already read the message); readers re-check the log.
//
// Thread safety: all methods may be called concurrently from any thread. OnAppend() runs on the
// writing thread, inside the store's publishing critical section and without the notifier's
// lock: it must only hand the work off (queue it, wake a thread), never block, never call back
// into the log store or the notifier. Cancel() waits for a call of that registration's
// OnAppend() in progress on another thread, so once it returns the waiter's owner may go away.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"

namespace dsm {

// What live readers filter on, for one record a write appended. The views point into the
// write's messages and are valid during Notify() only.
struct AppendedMessage {
  uint64_t seq = 0;
  std::string_view sender;
  std::string_view recipient;
};

// A reader's filters: a message matches when it passes every filter that is set.
struct AppendFilter {
  std::optional<std::string> sender;
  std::optional<std::string> recipient;
};

class AppendWaiter {
 public:
  virtual ~AppendWaiter() = default;
  // Called at most once per registration, with the seq of a matching durable message after the
  // registered position. See the thread-safety contract above.
  virtual void OnAppend(uint64_t seq) = 0;
};

class AppendNotifier {
 public:
  using Ticket = uint64_t;  // identifies one registration; never 0

  AppendNotifier() = default;
  AppendNotifier(const AppendNotifier&) = delete;
  AppendNotifier& operator=(const AppendNotifier&) = delete;

  // Registers `waiter` for the first message with seq > `after` that matches `filter`. The
  // registration ends when the waiter is called or cancelled. The notifier keeps `waiter` alive
  // until then.
  Ticket Wait(std::shared_ptr<AppendWaiter> waiter, uint64_t after, const AppendFilter& filter)
      LOCKS_EXCLUDED(mu_);
  // Ends a registration. Returns true if it was still waiting, false if it was already called
  // (or never existed). Either way, when Cancel returns, OnAppend for it is not running and will
  // not run: a call in progress on another thread is waited for. REQUIRES: not called from
  // OnAppend.
  bool Cancel(Ticket ticket) LOCKS_EXCLUDED(mu_);

  // Called by the log store after a durable write, inside the critical section that publishes
  // it. `appended` lists the records of the write in seq order; `last_seq` is the log's last seq
  // after it.
  void Notify(std::span<const AppendedMessage> appended, uint64_t last_seq) LOCKS_EXCLUDED(mu_);

  // The highest last_seq notified so far (0 before the first write).
  uint64_t last_seq() const { return last_seq_.load(); }
  // Registrations currently waiting.
  size_t waiting() const { return waiting_.load(); }

 private:
  struct Entry {
    std::shared_ptr<AppendWaiter> waiter;
    uint64_t after = 0;
    AppendFilter filter;
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  using Index =
      std::unordered_map<std::string, std::unordered_set<Ticket>, StringHash, std::equal_to<>>;

  // Removes `ticket` from the index it is filed under.
  void Unindex(Ticket ticket, const Entry& e) EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A registration that is being called: its waiter and the seq it is called with.
  struct Woken {
    Ticket ticket;
    std::shared_ptr<AppendWaiter> waiter;
    uint64_t seq;
  };
  // Ends registration `it`, to be called with `seq`: moves it into *woken and calling_.
  void Take(std::unordered_map<Ticket, Entry>::iterator it, uint64_t seq, std::vector<Woken>* woken)
      EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the waiters of `tickets` that `m` wakes.
  void Collect(const std::unordered_set<Ticket>& tickets, const AppendedMessage& m,
               std::vector<Woken>* woken) EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::atomic<uint64_t> last_seq_{0};
  std::atomic<size_t> waiting_{0};  // entries_.size(), readable without mu_

  Mutex mu_;
  Ticket next_ticket_ GUARDED_BY(mu_) = 1;
  std::unordered_map<Ticket, Entry> entries_ GUARDED_BY(mu_);
  Index by_recipient_ GUARDED_BY(mu_);                     // waiters with a recipient filter
  Index by_sender_ GUARDED_BY(mu_);                        // sender filter only
  std::unordered_set<Ticket> unfiltered_ GUARDED_BY(mu_);  // no filter
  std::unordered_set<Ticket> calling_ GUARDED_BY(mu_);     // taken, OnAppend not returned
  // Notified by Notify() when its tickets leave calling_ (their OnAppend calls returned);
  // Cancel() of a ticket being called waits on it.
  CondVar called_cv_;
};

}  // namespace dsm

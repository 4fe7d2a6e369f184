#include "storage/append_notifier.h"

#include <algorithm>

namespace dsm {
namespace {

bool Matches(const AppendFilter& f, const AppendedMessage& m) {
  if (f.sender && *f.sender != m.sender) return false;
  if (f.recipient && *f.recipient != m.recipient) return false;
  return true;
}

}  // namespace

AppendNotifier::Ticket AppendNotifier::Wait(std::shared_ptr<AppendWaiter> waiter, uint64_t after,
                                            const AppendFilter& filter) {
  MutexLock lock(&mu_);
  const Ticket ticket = next_ticket_++;
  if (filter.recipient) {
    by_recipient_[*filter.recipient].insert(ticket);
  } else if (filter.sender) {
    by_sender_[*filter.sender].insert(ticket);
  } else {
    unfiltered_.insert(ticket);
  }
  entries_.emplace(ticket, Entry{std::move(waiter), after, filter});
  waiting_.store(entries_.size());
  return ticket;
}

bool AppendNotifier::Cancel(Ticket ticket) {
  std::shared_ptr<AppendWaiter> released;  // destroyed after the lock is released
  MutexLock lock(&mu_);
  auto it = entries_.find(ticket);
  if (it == entries_.end()) {
    while (calling_.count(ticket) != 0) called_cv_.Wait(&mu_);
    return false;
  }
  Unindex(ticket, it->second);
  released = std::move(it->second.waiter);
  entries_.erase(it);
  waiting_.store(entries_.size());
  lock.Unlock();
  return true;
}

void AppendNotifier::Unindex(Ticket ticket, const Entry& e) {
  auto drop = [ticket](Index& index, const std::string& key) {
    auto it = index.find(key);
    if (it == index.end()) return;
    it->second.erase(ticket);
    if (it->second.empty()) index.erase(it);
  };
  if (e.filter.recipient) {
    drop(by_recipient_, *e.filter.recipient);
  } else if (e.filter.sender) {
    drop(by_sender_, *e.filter.sender);
  } else {
    unfiltered_.erase(ticket);
  }
}

void AppendNotifier::Take(std::unordered_map<Ticket, Entry>::iterator it, uint64_t seq,
                          std::vector<Woken>* woken) {
  const Ticket ticket = it->first;
  woken->push_back(Woken{ticket, std::move(it->second.waiter), seq});
  Unindex(ticket, it->second);
  entries_.erase(it);
  calling_.insert(ticket);
}

void AppendNotifier::Collect(const std::unordered_set<Ticket>& tickets, const AppendedMessage& m,
                             std::vector<Woken>* woken) {
  std::vector<Ticket> fire;
  for (Ticket t : tickets) {
    const Entry& e = entries_.at(t);
    if (m.seq > e.after && Matches(e.filter, m)) fire.push_back(t);
  }
  // `tickets` may be destroyed by Take (Unindex): it is not used after this point.
  for (Ticket t : fire) Take(entries_.find(t), m.seq, woken);
}

void AppendNotifier::Notify(std::span<const AppendedMessage> appended, uint64_t last_seq) {
  uint64_t prev = last_seq_.load();
  while (prev < last_seq && !last_seq_.compare_exchange_weak(prev, last_seq)) {
  }
  if (waiting_.load() == 0 || appended.empty()) return;

  std::vector<Woken> woken;
  {
    MutexLock lock(&mu_);
    // Unfiltered waiters: every message matches, so each wakes with the first one after it.
    if (!unfiltered_.empty()) {
      std::vector<Ticket> fire;
      for (Ticket t : unfiltered_) {
        if (entries_.at(t).after < appended.back().seq) fire.push_back(t);
      }
      for (Ticket t : fire) {
        auto it = entries_.find(t);
        auto first = std::upper_bound(
            appended.begin(), appended.end(), it->second.after,
            [](uint64_t after, const AppendedMessage& m) { return after < m.seq; });
        Take(it, first->seq, &woken);
      }
    }
    for (const AppendedMessage& m : appended) {
      if (by_recipient_.empty() && by_sender_.empty()) break;
      if (auto it = by_recipient_.find(m.recipient); it != by_recipient_.end()) {
        Collect(it->second, m, &woken);
      }
      if (auto it = by_sender_.find(m.sender); it != by_sender_.end()) {
        Collect(it->second, m, &woken);
      }
    }
    waiting_.store(entries_.size());
  }
  if (woken.empty()) return;
  for (Woken& w : woken) w.waiter->OnAppend(w.seq);
  {
    MutexLock lock(&mu_);
    for (const Woken& w : woken) calling_.erase(w.ticket);
  }
  called_cv_.NotifyAll();
}

}  // namespace dsm

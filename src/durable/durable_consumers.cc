#include "src/durable/durable_consumers.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/ids.h"
#include "storage/origin_positions.h"

// Lock order: see durable_consumers.h. The notifier calls Hook::OnAppend with the log store's lock
// held; it only takes mu_ (Wake). Cancel() of a registration (which waits for its OnAppend) is
// called without mu_.

namespace dsm {

class DurableConsumers::Hook final : public AppendWaiter {
 public:
  Hook(DurableConsumers* owner, std::string name) : owner_(owner), name_(std::move(name)) {}
  void OnAppend(uint64_t) override {
    armed.store(false);
    owner_->Wake(name_);
  }
  std::atomic<bool> armed{false};

 private:
  DurableConsumers* const owner_;
  const std::string name_;
};

bool ValidConsumerName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

DurableConsumers::DurableConsumers(const LogStore* log, ConsumerStateStore* state,
                                   const Clock* clock, AppendNotifier* notifier,
                                   DurableConsumersOptions options)
    : log_(log), state_(state), clock_(clock), notifier_(notifier), options_(options) {}

DurableConsumers::~DurableConsumers() { Stop(); }

std::shared_ptr<DurableConsumer> DurableConsumers::Make(StoredConsumer stored) {
  std::string name = stored.name;
  return std::make_shared<DurableConsumer>(std::move(stored), log_, state_, clock_,
                                           [this, name] { Wake(name); });
}

Status DurableConsumers::Start() {
  MutexLock admin(&admin_mu_);
  Result<std::vector<StoredConsumer>> stored = state_->Load();
  if (!stored.ok()) return stored.status();
  std::vector<ConsumerChange> sessions;
  for (StoredConsumer& c : *stored) {
    ++c.session;  // ack ids issued before this start are recognised as stale
    ConsumerChange change;
    change.name = c.name;
    change.session = c.session;
    sessions.push_back(std::move(change));
  }
  if (!sessions.empty()) {
    if (Status s = state_->CommitAndWait(std::move(sessions)); !s.ok()) return s;
  }
  MutexLock lock(&mu_);
  for (StoredConsumer& c : *stored) {
    std::string name = c.name;
    consumers_[name] = Make(std::move(c));
  }
  started_ = true;
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void DurableConsumers::Stop() {
  std::map<std::string, std::deque<Waiter>> waiters;
  std::map<std::string, Arm> arms;
  {
    MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    cv_.NotifyAll();
  }
  if (thread_.joinable()) thread_.join();
  {
    MutexLock lock(&mu_);
    waiters.swap(waiters_);
    arms.swap(arms_);
    waiting_ = 0;
    waiter_deadlines_.clear();
  }
  for (auto& [name, arm] : arms) {
    if (notifier_ != nullptr && arm.ticket != 0) notifier_->Cancel(arm.ticket);
  }
  for (auto& [name, queue] : waiters) {
    for (Waiter& w : queue) w.done(FetchResult{});
  }
}

Result<ConsumerInfo> DurableConsumers::Put(const std::string& name, const ConsumerDefinition& def,
                                           bool* created) {
  MutexLock admin(&admin_mu_);
  *created = false;
  {
    MutexLock lock(&mu_);
    if (stopping_ || !started_) return Status::Unavailable("durable consumers are not running");
    if (auto it = consumers_.find(name); it != consumers_.end()) {
      if (!(it->second->definition() == def)) {
        return Status::Conflict("consumer '" + name +
                                "' exists with another definition (DELETE it first to change it)");
      }
      std::shared_ptr<DurableConsumer> c = it->second;
      lock.Unlock();
      return c->Info();
    }
    if (consumers_.size() >= options_.max_consumers) {
      return Status::Unavailable("too many consumers (" + std::to_string(options_.max_consumers) +
                                 ")");
    }
  }
  StoredConsumer stored;
  stored.name = name;
  stored.definition = def;
  stored.uid = RandomHex(8);
  stored.session = 1;
  const uint64_t last = log_->LastSeq();
  switch (def.start.kind) {
    case ConsumerStart::Kind::kFirst:
      stored.initial = 0;
      break;
    case ConsumerStart::Kind::kNew:
      stored.initial = last;
      break;
    case ConsumerStart::Kind::kSeq:
      if (def.start.seq > last) {
        return Status::InvalidArgument("'start' seq " + std::to_string(def.start.seq) +
                                       " is beyond the log's last seq " + std::to_string(last));
      }
      stored.initial = def.start.seq;
      break;
    case ConsumerStart::Kind::kOrigins: {
      Result<uint64_t> start = ResumeStart(*log_, def.start.origins);
      if (!start.ok()) return start.status();
      stored.initial = *start;
      break;
    }
  }
  stored.floor = stored.initial;
  ConsumerChange change;
  change.name = name;
  change.erase = true;
  change.create = stored;
  std::vector<ConsumerChange> changes;
  changes.push_back(std::move(change));
  if (Status s = state_->CommitAndWait(std::move(changes)); !s.ok()) return s;
  std::shared_ptr<DurableConsumer> c = Make(std::move(stored));
  {
    MutexLock lock(&mu_);
    consumers_[name] = c;
  }
  *created = true;
  return c->Info();
}

Status DurableConsumers::Delete(const std::string& name) {
  MutexLock admin(&admin_mu_);
  std::shared_ptr<DurableConsumer> c;
  std::deque<Waiter> waiters;
  {
    MutexLock lock(&mu_);
    auto it = consumers_.find(name);
    if (it == consumers_.end()) return Status::NotFound("no consumer named '" + name + "'");
    c = it->second;
  }
  ConsumerChange change;
  change.name = name;
  change.erase = true;
  std::vector<ConsumerChange> changes;
  changes.push_back(std::move(change));
  if (Status s = state_->CommitAndWait(std::move(changes)); !s.ok()) return s;
  c->MarkDeleted();
  {
    MutexLock lock(&mu_);
    consumers_.erase(name);
    if (auto it = waiters_.find(name); it != waiters_.end()) {
      waiters.swap(it->second);
      waiters_.erase(it);
    }
    for (const Waiter& w : waiters) waiter_deadlines_.erase({w.deadline, w.id});
    waiting_ -= waiters.size();
  }
  Disarm(name);
  for (Waiter& w : waiters) w.done(Status::NotFound("consumer '" + name + "' was deleted"));
  return Status::Ok();
}

Result<std::shared_ptr<DurableConsumer>> DurableConsumers::Find(const std::string& name) const {
  MutexLock lock(&mu_);
  if (stopping_ || !started_) return Status::Unavailable("durable consumers are not running");
  auto it = consumers_.find(name);
  if (it == consumers_.end()) return Status::NotFound("no consumer named '" + name + "'");
  return it->second;
}

std::vector<std::shared_ptr<DurableConsumer>> DurableConsumers::All() const {
  MutexLock lock(&mu_);
  std::vector<std::shared_ptr<DurableConsumer>> out;
  for (const auto& [name, c] : consumers_) out.push_back(c);
  return out;
}

size_t DurableConsumers::waiting() const {
  MutexLock lock(&mu_);
  return waiting_;
}

void DurableConsumers::Wake(const std::string& name) {
  MutexLock lock(&mu_);
  woken_.insert(name);
  cv_.NotifyOne();
}

void DurableConsumers::Fetch(const std::string& name, size_t max, Millis wait,
                             std::function<bool()> gone, FetchDone done) {
  Result<std::shared_ptr<DurableConsumer>> c = Find(name);
  if (!c.ok()) return done(c.status());
  Result<FetchResult> r = (*c)->Fetch(max);
  if (!r.ok() || !r->deliveries.empty() || wait.count() == 0) return done(std::move(r));
  {
    MutexLock lock(&mu_);
    if (!stopping_ && waiting_ < options_.max_waiters) {
      Waiter w;
      w.id = next_waiter_++;
      w.consumer = *c;
      w.max = max;
      w.deadline = clock_->Now() + wait;
      w.gone = std::move(gone);
      w.done = std::move(done);
      waiter_deadlines_.emplace(w.deadline, w.id);
      waiters_[name].push_back(std::move(w));
      ++waiting_;
      woken_.insert(name);  // the service thread registers for appends, then looks again
      cv_.NotifyOne();
      return;
    }
    if (!stopping_) {
      lock.Unlock();
      return done(Status::Unavailable("too many waiting fetches (" +
                                      std::to_string(options_.max_waiters) + ")"));
    }
  }
  done(FetchResult{});
}

void DurableConsumers::ArmHook(const std::string& name, const DurableConsumer& c) {
  if (notifier_ == nullptr) return;
  std::shared_ptr<Hook> hook;
  {
    MutexLock lock(&mu_);
    Arm& arm = arms_[name];
    if (!arm.hook) arm.hook = std::make_shared<Hook>(this, name);
    if (arm.hook->armed.load()) return;
    arm.hook->armed.store(true);
    hook = arm.hook;
  }
  AppendFilter filter;
  filter.recipient = c.definition().recipient;
  filter.sender = c.definition().sender;
  const AppendNotifier::Ticket ticket = notifier_->Wait(hook, c.ReadPosition(), filter);
  MutexLock lock(&mu_);
  if (auto it = arms_.find(name); it != arms_.end() && it->second.hook == hook) {
    it->second.ticket = ticket;
  }
}

void DurableConsumers::Disarm(const std::string& name) {
  AppendNotifier::Ticket ticket = 0;
  {
    MutexLock lock(&mu_);
    auto it = arms_.find(name);
    if (it == arms_.end()) return;
    ticket = it->second.ticket;
    arms_.erase(it);
  }
  if (notifier_ != nullptr && ticket != 0) notifier_->Cancel(ticket);
}

void DurableConsumers::Serve(const std::string& name) {
  for (;;) {
    Waiter w;
    {
      MutexLock lock(&mu_);
      auto it = waiters_.find(name);
      if (it == waiters_.end() || it->second.empty()) return;
      w = std::move(it->second.front());
      it->second.pop_front();
      waiter_deadlines_.erase({w.deadline, w.id});
      --waiting_;
    }
    if (w.gone && w.gone()) {
      w.done(FetchResult{});  // nobody reads it; settles the request
      continue;
    }
    // Register first, then read: a message made durable after the read began wakes us again.
    ArmHook(name, *w.consumer);
    Result<FetchResult> r = w.consumer->Fetch(w.max);
    if (!r.ok() || !r->deliveries.empty()) {
      w.done(std::move(r));
      continue;
    }
    MutexLock lock(&mu_);
    if (stopping_) {
      lock.Unlock();
      w.done(FetchResult{});
      return;
    }
    if (r->more) woken_.insert(name);  // the read budget ran out: go on in the next pass
    waiter_deadlines_.emplace(w.deadline, w.id);
    ++waiting_;
    waiters_[name].push_front(std::move(w));
    return;
  }
}

void DurableConsumers::Run() {
  MutexLock lock(&mu_);
  while (!stopping_) {
    // The next deadline: a waiting fetch's, or a consumer's timer.
    std::vector<std::shared_ptr<DurableConsumer>> all;
    for (const auto& [name, c] : consumers_) all.push_back(c);
    lock.Unlock();
    std::optional<MonoTime> next;
    for (const auto& c : all) {
      std::optional<MonoTime> d = c->NextDeadline();
      if (d && (!next || *d < *next)) next = d;
    }
    lock.Lock();
    if (!waiter_deadlines_.empty() && (!next || waiter_deadlines_.begin()->first < *next)) {
      next = waiter_deadlines_.begin()->first;
    }
    while (!stopping_ && woken_.empty()) {
      if (!next) {
        cv_.Wait(&mu_);
      } else if (!cv_.WaitUntil(&mu_, *next)) {
        break;  // a deadline
      }
    }
    if (stopping_) break;
    std::set<std::string> woken;
    woken.swap(woken_);
    const MonoTime now = clock_->Now();
    std::vector<std::string> expired;  // consumers with a waiter past its deadline
    for (const auto& [deadline, id] : waiter_deadlines_) {
      if (deadline > now) break;
      for (const auto& [name, queue] : waiters_) {
        for (const Waiter& w : queue) {
          if (w.id == id) expired.push_back(name);
        }
      }
    }
    lock.Unlock();
    for (const auto& c : all) {
      std::optional<MonoTime> d = c->NextDeadline();
      if (d && *d <= now) {
        c->Tick();
        if (c->HasDueRedelivery()) woken.insert(c->name());
      }
    }
    for (const std::string& name : woken) Serve(name);
    // Waiters past their deadline: one last look, then an answer whatever it holds.
    for (const std::string& name : expired) {
      for (;;) {
        Waiter w;
        {
          MutexLock l(&mu_);
          auto it = waiters_.find(name);
          if (it == waiters_.end()) break;
          auto pos = std::find_if(it->second.begin(), it->second.end(),
                                  [&](const Waiter& x) { return x.deadline <= now; });
          if (pos == it->second.end()) break;
          w = std::move(*pos);
          it->second.erase(pos);
          waiter_deadlines_.erase({w.deadline, w.id});
          --waiting_;
        }
        Result<FetchResult> r = (w.gone && w.gone()) ? Result<FetchResult>(FetchResult{})
                                                     : w.consumer->Fetch(w.max);
        w.done(std::move(r));
      }
    }
    lock.Lock();
  }
}

void DurableConsumers::WriteMetrics(MetricsWriter& w) {
  std::vector<std::shared_ptr<DurableConsumer>> all = All();
  std::vector<ConsumerInfo> infos;
  for (const auto& c : all) infos.push_back(c->Info());
  struct Gauge {
    const char* name;
    const char* type;
    const char* help;
    uint64_t ConsumerInfo::*field;
  };
  const Gauge gauges[] = {
      {"dsm_consumer_pending", "gauge",
       "Messages a durable consumer selects that wait to be delivered (first time or again).",
       &ConsumerInfo::pending},
      {"dsm_consumer_in_flight", "gauge",
       "Deliveries of a durable consumer held by clients and not yet acknowledged.",
       &ConsumerInfo::in_flight},
      {"dsm_consumer_acks_total", "counter",
       "Acknowledgements of a durable consumer made durable since the node started.",
       &ConsumerInfo::acked},
      {"dsm_consumer_deliveries_total", "counter",
       "Deliveries of a durable consumer since the node started (redeliveries included).",
       &ConsumerInfo::delivered},
      {"dsm_consumer_redeliveries_total", "counter",
       "Deliveries after the first (ack wait expired, nak) since the node started.",
       &ConsumerInfo::redelivered},
      {"dsm_consumer_dead_letters", "gauge",
       "Messages a durable consumer dead-lettered after max_deliveries (stored).",
       &ConsumerInfo::dead_lettered},
      {"dsm_consumer_trimmed_total", "counter",
       "Messages that left the log before a durable consumer had them acknowledged.",
       &ConsumerInfo::trimmed},
  };
  for (const Gauge& g : gauges) {
    w.Family(g.name, g.type, g.help);
    for (const ConsumerInfo& i : infos) {
      w.Sample(g.name, {{"consumer", i.name}}, static_cast<double>(i.*(g.field)));
    }
  }
  w.Family("dsm_consumer_ack_seconds", "histogram",
           "Time from a delivery of a durable consumer to its acknowledgement being durable.");
  for (size_t i = 0; i < all.size(); ++i) {
    w.HistogramSamples("dsm_consumer_ack_seconds", {{"consumer", infos[i].name}},
                       all[i]->ack_latency().Read());
  }
  w.Family("dsm_consumer_waiting_fetches", "gauge",
           "Fetches of durable consumers waiting for messages (long-polls).");
  w.Sample("dsm_consumer_waiting_fetches", static_cast<double>(waiting()));
}

}  // namespace dsm

#include "src/http/consumers.h"

#include <pistache/peer.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <exception>
#include <functional>
#include <utility>

#include "src/http/json_codec.h"
#include "src/http/query.h"

// Lock order: a consumer's mu_ -> the log store's lock -> the notifier's lock -> the hub's mu_.
// The notifier calls Consumer::OnAppend with the store's lock held, which only takes the hub's
// mu_ (Wake). The hub thread holds its mu_ only to take work, never while running a consumer.
// Write completions (on the connection's event-loop thread) take no consumer lock.

namespace dsm::http {
namespace {

namespace Http = Pistache::Http;
using SteadyClock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// Log records a consumer visits per run before it yields the hub thread to others; it goes on
// in its next run.
constexpr size_t kReadBudget = 4096;
// The reconnection delay an event stream suggests to EventSource clients.
constexpr int kRetryMs = 2000;

std::map<std::string, std::string> RawQuery(const Pistache::Rest::Request& req) {
  const auto& q = req.query();
  return std::map<std::string, std::string>(q.parameters_begin(), q.parameters_end());
}

Result<std::map<std::string, uint64_t>> ParseResume(const std::string& raw) {
  const Status bad = Status::InvalidArgument(
      "'resume' must be a JSON object {\"<origin>\": <origin_seq>, ...} of at most " +
      std::to_string(kMaxResumeOrigins) + " origins");
  Result<std::string> text = PercentDecode(raw, "resume");
  if (!text.ok()) return text.status();
  Result<rapidjson::Document> doc = json::Parse(*text);
  if (!doc.ok() || !doc->IsObject() || doc->MemberCount() > kMaxResumeOrigins) return bad;
  std::map<std::string, uint64_t> resume;
  for (auto it = doc->MemberBegin(); it != doc->MemberEnd(); ++it) {
    if (it->name.GetStringLength() == 0 || it->name.GetStringLength() > json::kMaxIdBytes ||
        !it->value.IsUint64()) {
      return bad;
    }
    resume[std::string(it->name.GetString(), it->name.GetStringLength())] = it->value.GetUint64();
  }
  return resume;
}

// True when `m` is covered by the resume vector: already delivered elsewhere.
bool Delivered(const LiveQuery& q, const Message& m) {
  if (q.resume.empty()) return false;
  auto it = q.resume.find(m.origin);
  return it != q.resume.end() && m.origin_seq <= it->second;
}

}  // namespace

bool IsLiveListing(const std::map<std::string, std::string>& raw_query) {
  return raw_query.count("wait_ms") > 0 || raw_query.count("resume") > 0;
}

Result<LiveQuery> ParseLiveQuery(const std::map<std::string, std::string>& raw_query,
                                 const std::optional<std::string>& last_event_id) {
  Result<ListingQuery> base = ParseListingQuery(raw_query);
  if (!base.ok()) return base.status();
  LiveQuery q;
  q.after = base->after;
  if (base->limit) q.limit = *base->limit;
  q.sender = std::move(base->sender);
  q.recipient = std::move(base->recipient);
  if (const std::string* wait = FindParam(raw_query, "wait_ms")) {
    Result<std::string> text = PercentDecode(*wait, "wait_ms");
    if (!text.ok()) return text.status();
    std::optional<uint64_t> v = ParseDecimalU64(*text);
    if (!v || *v > kMaxWaitMs) {
      return Status::InvalidArgument("'wait_ms' must be an integer from 0 to " +
                                     std::to_string(kMaxWaitMs));
    }
    q.wait = Millis(*v);
  }
  if (const std::string* resume = FindParam(raw_query, "resume")) {
    Result<std::map<std::string, uint64_t>> r = ParseResume(*resume);
    if (!r.ok()) return r.status();
    q.resume = std::move(r).value();
  }
  if (last_event_id) {
    std::string_view id = *last_event_id;
    while (!id.empty() && id.front() == ' ') id.remove_prefix(1);
    while (!id.empty() && id.back() == ' ') id.remove_suffix(1);
    std::optional<uint64_t> v = ParseDecimalU64(id);
    if (!v) {
      return Status::InvalidArgument(
          "'Last-Event-ID' must be the id of an event of this node's stream (a seq)");
    }
    q.after = *v;
  }
  return q;
}

// ---------------------------------------------------------------------------------------------
// Consumers

class ConsumerHub::Consumer : public AppendWaiter, public std::enable_shared_from_this<Consumer> {
 public:
  Consumer(ConsumerHub* hub, ReplyPtr reply, LiveQuery query, uint64_t position)
      : hub_(hub), reply_(std::move(reply)), query_(std::move(query)), position_(position) {}

  // From the log's writer thread (see AppendNotifier): only queues this consumer.
  void OnAppend(uint64_t) override { hub_->Wake(shared_from_this()); }

  // On the hub thread: woken by a write, a write completion or itself.
  virtual void Run() LOCKS_EXCLUDED(mu_) = 0;
  // On the hub thread: its deadline passed.
  virtual void OnDeadline() LOCKS_EXCLUDED(mu_) = 0;
  // The hub is stopping (its thread has ended).
  virtual void Shutdown() LOCKS_EXCLUDED(mu_) = 0;

  uint64_t id = 0;                  // set by Admit
  std::atomic<bool> queued{false};  // in the hub's ready list

 protected:
  // What one read step found.
  struct ReadStep {
    Status status;
    uint64_t bound = 0;         // the log's last seq when the step began
    uint64_t visited = 0;       // the last seq the step looked at (0: none)
    bool budget_spent = false;  // stopped by kReadBudget: more may lie between visited and bound
    bool stopped = false;       // stopped because `take` said so
  };

  // Re-registers with the notifier for a message after position_.
  void Register() EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Unregister();
    AppendFilter filter;
    filter.sender = query_.sender;
    filter.recipient = query_.recipient;
    ticket_ = hub_->notifier_->Wait(shared_from_this(), position_, filter);
  }
  void Unregister() EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ticket_ != 0) hub_->notifier_->Cancel(ticket_);
    ticket_ = 0;
  }

  // Visits the messages after position_ that match the query and are not covered by its resume
  // vector, in seq order, until `take` returns false, at most kReadBudget records. The
  // recipient index narrows the scan; the sender filter is applied here so the budget bounds
  // the work however selective it is. `take` runs with mu_ held.
  ReadStep Read(const std::function<bool(const Message&)>& take) EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ReadStep step;
    step.bound = hub_->log_->LastSeq();
    ScanOptions scan;
    scan.after = position_;
    scan.recipient = query_.recipient;
    size_t visited = 0;
    step.status = hub_->log_->Scan(scan, [&](const Message& m) {
      if (step.stopped) return false;
      step.visited = m.seq;
      const bool wanted = (!query_.sender || m.sender == *query_.sender) && !Delivered(query_, m);
      if (wanted && !take(m)) {
        step.stopped = true;
        return false;
      }
      if (++visited >= kReadBudget) {
        step.budget_spent = true;
        return false;
      }
      return true;
    });
    return step;
  }

  ConsumerHub* const hub_;
  const ReplyPtr reply_;
  const LiveQuery query_;

  Mutex mu_;                           // serializes Run, OnDeadline and Shutdown
  uint64_t position_ GUARDED_BY(mu_);  // everything up to it was handled
  AppendNotifier::Ticket ticket_ GUARDED_BY(mu_) = 0;
  bool done_ GUARDED_BY(mu_) = false;
};

// A long-poll: one page, answered as soon as it holds a message or at its deadline.
class ConsumerHub::PollConsumer final : public Consumer {
 public:
  using Consumer::Consumer;

  void Run() override {
    MutexLock lock(&mu_);
    if (done_) return;
    if (reply_->peer().expired()) return Finish(nullptr);  // the client left
    // Register first, then read: a message published after the read began wakes us again.
    if (query_.wait.count() > 0) Register();
    Page page = ReadPage();
    if (!page.status.ok() || page.count > 0 || query_.wait.count() == 0) return Finish(&page);
    if (page.partial) hub_->Wake(shared_from_this());  // go on reading in the next run
  }

  void OnDeadline() override {
    MutexLock lock(&mu_);
    if (done_) return;
    Unregister();
    Page page = ReadPage();
    Finish(&page);
  }

  void Shutdown() override {
    MutexLock lock(&mu_);
    if (done_) return;
    Page page;
    page.body = EmptyPageBody();
    Finish(&page);
  }

 private:
  struct Page {
    Status status;
    std::string body;
    size_t count = 0;
    bool partial = false;  // the read budget ran out before the page was complete
  };

  // {"messages":[],"more":false,"next":position_,"last_seq":...}.
  std::string EmptyPageBody() const EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    rapidjson::StringBuffer buf;
    json::Writer w(buf);
    w.StartObject();
    w.Key("messages");
    w.StartArray();
    w.EndArray();
    w.Key("more");
    w.Bool(false);
    w.Key("next");
    w.Uint64(position_);
    w.Key("last_seq");
    w.Uint64(hub_->log_->LastSeq());
    w.Key("first_seq");
    w.Uint64(hub_->log_->FirstSeq());
    w.EndObject();
    return BufferText(buf);
  }

  // Reads the page after position_ and advances position_ past what it covered.
  Page ReadPage() EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Page page;
    rapidjson::StringBuffer buf;
    json::Writer w(buf);
    w.StartObject();
    w.Key("messages");
    w.StartArray();
    uint64_t last = 0;
    bool full = false;
    bool more = false;
    ReadStep step = Read([&](const Message& m) EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (full) {
        more = true;  // one more matches after a full page
        return false;
      }
      json::WriteMessage(w, m);
      ++page.count;
      last = m.seq;
      full = page.count >= query_.limit || buf.GetSize() >= hub_->options_.page_bytes;
      return true;
    });
    if (!step.status.ok()) {
      page.status = step.status;
      return page;
    }
    // Everything up to `next` was looked at: a later request may start there.
    uint64_t next;
    if (more) {
      next = last;
    } else if (step.budget_spent) {
      next = step.visited;
      page.partial = true;
      more = true;  // the rest of the range is unread
    } else {
      next = std::max({last, step.bound, position_});
    }
    position_ = std::max(position_, next);
    w.EndArray();
    w.Key("more");
    w.Bool(more);
    w.Key("next");
    w.Uint64(position_);
    w.Key("last_seq");
    w.Uint64(std::max(step.bound, step.visited));
    w.Key("first_seq");
    w.Uint64(hub_->log_->FirstSeq());
    w.EndObject();
    page.body = BufferText(buf);
    return page;
  }

  // Answers (page == nullptr: the client is gone) and leaves the hub.
  void Finish(const Page* page) EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    done_ = true;
    Unregister();
    if (page != nullptr) {
      if (page->status.ok()) {
        reply_->Send(200, page->body);
      } else {
        reply_->SendError(page->status);
      }
    } else {
      reply_->Send(200, EmptyPageBody());  // nobody reads it; settles the reply
    }
    hub_->Remove(id);
  }
};

// A Server-Sent Events stream: writes events as they become durable, one chunk in flight.
class ConsumerHub::StreamConsumer final : public Consumer {
 public:
  StreamConsumer(ConsumerHub* hub, ReplyPtr reply, LiveQuery query, uint64_t position,
                 std::weak_ptr<Pistache::Tcp::Peer> peer, std::string preamble)
      : Consumer(hub, std::move(reply), std::move(query), position),
        peer_(std::move(peer)),
        loop_thread_(std::this_thread::get_id()),
        write_started_(SteadyClock::now()),
        pending_(std::move(preamble)) {}

  void Run() override {
    MutexLock lock(&mu_);
    if (done_) return;
    if (broken_ || peer_.expired()) return Close();
    if (in_flight_) return;  // its completion runs us again
    Register();
    std::string text = std::move(pending_);
    pending_.clear();
    if (const uint64_t first = hub_->log_->FirstSeq(); position_ + 1 < first) {
      // Retention trimmed what this stream would have sent next: it says so, then goes on.
      AppendTrimmedEvent(&text, position_ + 1, first);
      position_ = first - 1;
    }
    ReadStep step = Read([&](const Message& m) EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (!text.empty() && text.size() >= hub_->options_.chunk_bytes) return false;
      AppendEvent(&text, m);
      position_ = m.seq;
      return true;
    });
    if (!step.status.ok()) {
      spdlog::warn("event stream ended: {}", step.status.ToString());
      return Close();
    }
    if (!step.stopped) {
      // Everything up to the bound (or to where the budget ran out) was looked at.
      position_ = std::max(position_, step.budget_spent ? step.visited : step.bound);
    }
    if (!text.empty()) {
      Write(std::move(text));  // its completion runs us again if more is waiting
      return;
    }
    // Idle: the next keep-alive is due an interval after the last write began.
    hub_->Schedule(id, write_started_ + hub_->options_.keepalive_interval);
    if (step.budget_spent) hub_->Wake(shared_from_this());
  }

  void OnDeadline() override {
    MutexLock lock(&mu_);
    if (done_) return;
    if (broken_ || peer_.expired()) return Close();
    const auto now = SteadyClock::now();
    if (in_flight_) {
      if (now - write_started_ >= hub_->options_.stall_timeout) {
        spdlog::info("event stream cut: the client read nothing for {} ms",
                     hub_->options_.stall_timeout.count());
        return Close();
      }
      hub_->Schedule(id, write_started_ + hub_->options_.stall_timeout);
      return;
    }
    if (now < write_started_ + hub_->options_.keepalive_interval) {
      // An early deadline (the stall check of a write that has settled since).
      hub_->Schedule(id, write_started_ + hub_->options_.keepalive_interval);
      return;
    }
    Write(": keep-alive\n\n");
  }

  void Shutdown() override {
    MutexLock lock(&mu_);
    if (done_) return;
    done_ = true;
    Unregister();
  }

 private:
  static void AppendEvent(std::string* text, const Message& m) {
    rapidjson::StringBuffer buf;
    json::Writer w(buf);
    json::WriteMessage(w, m);  // JSON escapes line breaks: the data fits on one line
    text->append("id: ");
    text->append(std::to_string(m.seq));
    text->append("\ndata: ");
    text->append(buf.GetString(), buf.GetSize());
    text->append("\n\n");
  }

  // An event named "trimmed": seqs from..first - 1 were trimmed before this stream sent them. Its
  // id moves Last-Event-ID past them.
  static void AppendTrimmedEvent(std::string* text, uint64_t from, uint64_t first) {
    text->append("event: trimmed\nid: " + std::to_string(first - 1) +
                 "\ndata: {\"from_seq\":" + std::to_string(from) +
                 ",\"first_seq\":" + std::to_string(first) + "}\n\n");
  }

  // Sends `text` as one chunk of the chunked answer. REQUIRES: !in_flight_.
  void Write(std::string text) EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::shared_ptr<Pistache::Tcp::Peer> peer = peer_.lock();
    if (!peer || hub_->gate_->stopping) return Close();
    char size_line[32];
    const int n = std::snprintf(size_line, sizeof(size_line), "%zx\r\n", text.size());
    std::string frame;
    frame.reserve(text.size() + 16);
    frame.append(size_line, static_cast<size_t>(n));
    frame.append(text);
    frame.append("\r\n");
    in_flight_ = true;
    write_started_ = SteadyClock::now();
    // The next look: the keep-alive, or the stall check if that comes first.
    hub_->Schedule(id, write_started_ + std::min(hub_->options_.keepalive_interval,
                                                 hub_->options_.stall_timeout));
    std::shared_ptr<StreamConsumer> self =
        std::static_pointer_cast<StreamConsumer>(shared_from_this());
    try {
      const size_t size = frame.size();
      std::optional<Pistache::Async::Promise<ssize_t>> written;
      auto send = [&] { written.emplace(peer->send(Pistache::RawBuffer(std::move(frame), size))); };
      if (!WhileOpen(send)) {
        in_flight_ = false;
        return Close();
      }
      // Attached outside the connection's lock: a write that already settled runs it here.
      if (hub_->options_.attach_delay.count() > 0) {
        std::this_thread::sleep_for(hub_->options_.attach_delay);
      }
      written->then([self](ssize_t) { self->OnWritten(true); },
                    [self](std::exception_ptr) { self->OnWritten(false); });
    } catch (const std::exception& e) {
      in_flight_ = false;
      spdlog::warn("event stream write failed: {}", e.what());
      Close();
    }
  }

  // A write settled. Usually this runs on the connection's event-loop thread, where Pistache
  // reads its idle clock: the clock is restarted here. But when the write settled before the hub
  // thread attached this continuation, it runs on the hub thread, where the clock must not be
  // touched; then the connection's loop runs this again (Connection::RunOnLoop), so every write
  // restarts the clock right after it settled. Takes no consumer lock.
  void OnWritten(bool ok, bool hopped = false) {
    if (!ok) {
      broken_ = true;
    } else if (std::this_thread::get_id() == loop_thread_) {
      if (std::shared_ptr<Pistache::Tcp::Peer> peer = peer_.lock()) {
        try {
          Http::Handler::getParser(peer)->reset();
        } catch (const std::exception&) {
          // The connection is being torn down.
        }
      }
    } else if (!hopped && HopToLoop()) {
      return;  // still in flight until the loop has run it
    }
    in_flight_ = false;
    hub_->Wake(shared_from_this());
  }

  // Has the connection's event loop run OnWritten again. False when it cannot (closed connection,
  // stopping server).
  bool HopToLoop() {
    const std::shared_ptr<Connection>& c = reply_->connection();
    if (c == nullptr || hub_->gate_->stopping) return false;
    std::shared_ptr<StreamConsumer> self =
        std::static_pointer_cast<StreamConsumer>(shared_from_this());
    return c->RunOnLoop([self] { self->OnWritten(true, true); });
  }

  // Runs `write` while the connection is open (see http::Connection); false once it is closed.
  template <typename Write>
  bool WhileOpen(Write&& write) {
    const std::shared_ptr<Connection>& c = reply_->connection();
    if (c == nullptr) {
      write();
      return true;
    }
    return c->IfOpen(write);
  }

  // Ends the stream: the connection is closed.
  void Close() EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    done_ = true;
    Unregister();
    if (std::shared_ptr<Pistache::Tcp::Peer> peer = peer_.lock()) ShutdownConnection(peer);
    hub_->Remove(id);
  }

  const std::weak_ptr<Pistache::Tcp::Peer> peer_;
  const std::thread::id loop_thread_;   // the connection's event-loop thread
  std::atomic<bool> in_flight_{false};  // a chunk was handed to Pistache and has not settled
  std::atomic<bool> broken_{false};     // a write failed: the client is gone
  SteadyClock::time_point write_started_ GUARDED_BY(mu_);
  std::string pending_ GUARDED_BY(mu_);  // text to send before the next events
};

// ---------------------------------------------------------------------------------------------
// The hub

ConsumerHub::ConsumerHub(LogStore* log, AppendNotifier* notifier, std::shared_ptr<Gate> gate,
                         ConsumerOptions options)
    : log_(log), notifier_(notifier), gate_(std::move(gate)), options_(options) {
  thread_ = std::thread([this] { Run(); });
}

ConsumerHub::~ConsumerHub() { Stop(); }

void ConsumerHub::Poll(const Pistache::Rest::Request& req, const ReplyPtr& reply) {
  Result<LiveQuery> q = ParseLiveQuery(RawQuery(req), std::nullopt);
  if (!q.ok()) return reply->SendError(q.status());
  uint64_t position = q->after;
  if (!q->resume.empty()) {
    Result<uint64_t> start = ResumeStart(*log_, q->resume);
    if (!start.ok()) return reply->SendError(start.status());
    position = std::max(position, *start);
  }
  const Millis wait = std::min(q->wait, options_.max_wait);
  q->wait = wait;
  auto consumer = std::make_shared<PollConsumer>(this, reply, std::move(q).value(), position);
  Status refusal;
  if (!Admit(consumer, &refusal)) return reply->SendError(refusal);
  if (wait.count() > 0) {
    // While it waits the connection is idle for Pistache: its keep-alive timeout applies, not
    // the header timeout (max_wait stays below it).
    if (std::shared_ptr<Pistache::Tcp::Peer> peer = reply->peer().lock()) peer->setIdle(true);
    Schedule(consumer->id, SteadyClock::now() + wait);
  }
  Wake(consumer);
}

void ConsumerHub::Stream(const Pistache::Rest::Request& req, const ReplyPtr& reply) {
  std::optional<std::string> last_event_id;
  if (auto raw = req.headers().tryGetRaw("Last-Event-ID")) last_event_id = raw->value();
  Result<LiveQuery> q = ParseLiveQuery(RawQuery(req), last_event_id);
  if (!q.ok()) return reply->SendError(q.status());
  if (q->wait.count() > 0) {
    return reply->SendError(Status::InvalidArgument("'wait_ms' is for GET /messages only"));
  }
  uint64_t position = q->after;
  if (!q->resume.empty()) {
    Result<uint64_t> start = ResumeStart(*log_, q->resume);
    if (!start.ok()) return reply->SendError(start.status());
    position = std::max(position, *start);
  }
  {
    MutexLock lock(&mu_);
    if (stopping_) return reply->SendError(Status::Unavailable("shutting down"));
    if (consumers_.size() >= options_.max_consumers) {
      return reply->SendError(Status::Unavailable("too many live readers (" +
                                                  std::to_string(options_.max_consumers) + ")"));
    }
  }
  std::weak_ptr<Pistache::Tcp::Peer> peer;
  std::optional<Http::ResponseStream> stream = reply->StartEventStream(&peer);
  if (!stream) return;
  try {
    stream->flush();  // the status line and headers
  } catch (const std::exception&) {
    return;  // the client left
  }
  // The connection now carries a stream: Pistache's keep-alive timeout applies to it, and each
  // written chunk restarts that clock.
  if (std::shared_ptr<Pistache::Tcp::Peer> p = peer.lock()) p->setIdle(true);
  std::string preamble = "retry: " + std::to_string(kRetryMs) + "\n: dsm event stream of " +
                         log_->stream_id() + " after seq " + std::to_string(position) + "\n\n";
  auto consumer = std::make_shared<StreamConsumer>(this, reply, std::move(q).value(), position,
                                                   peer, std::move(preamble));
  Status refusal;
  if (!Admit(consumer, &refusal)) {
    if (std::shared_ptr<Pistache::Tcp::Peer> p = peer.lock()) ::shutdown(p->fd(), SHUT_RDWR);
    return;
  }
  Schedule(consumer->id, SteadyClock::now() + options_.keepalive_interval);
  Wake(consumer);
}

bool ConsumerHub::Admit(const std::shared_ptr<Consumer>& c, Status* refusal) {
  MutexLock lock(&mu_);
  if (stopping_) {
    *refusal = Status::Unavailable("shutting down");
    return false;
  }
  if (consumers_.size() >= options_.max_consumers) {
    *refusal = Status::Unavailable("too many live readers (" +
                                   std::to_string(options_.max_consumers) + ")");
    return false;
  }
  c->id = next_id_++;
  consumers_.emplace(c->id, c);
  return true;
}

void ConsumerHub::Remove(uint64_t id) {
  MutexLock lock(&mu_);
  consumers_.erase(id);
  if (auto it = deadline_of_.find(id); it != deadline_of_.end()) {
    deadlines_.erase({it->second, id});
    deadline_of_.erase(it);
  }
}

void ConsumerHub::Wake(std::shared_ptr<Consumer> c) {
  if (c->queued.exchange(true)) return;  // already queued
  MutexLock lock(&mu_);
  ready_.push_back(std::move(c));
  cv_.NotifyOne();
}

void ConsumerHub::Schedule(uint64_t id, SteadyClock::time_point when) {
  MutexLock lock(&mu_);
  if (consumers_.count(id) == 0) return;
  if (auto it = deadline_of_.find(id); it != deadline_of_.end()) {
    deadlines_.erase({it->second, id});
    it->second = when;
  } else {
    deadline_of_.emplace(id, when);
  }
  const bool earliest = deadlines_.empty() || when < deadlines_.begin()->first;
  deadlines_.emplace(when, id);
  if (earliest) cv_.NotifyOne();
}

void ConsumerHub::Run() {
  MutexLock lock(&mu_);
  while (!stopping_) {
    if (ready_.empty()) {
      if (deadlines_.empty()) {
        while (!stopping_ && ready_.empty() && deadlines_.empty()) cv_.Wait(&mu_);
      } else {
        // Also wakes when an earlier deadline is scheduled meanwhile.
        const SteadyClock::time_point until = deadlines_.begin()->first;
        while (!stopping_ && ready_.empty() &&
               (deadlines_.empty() || deadlines_.begin()->first >= until)) {
          if (!cv_.WaitUntil(&mu_, until)) break;
        }
      }
      if (stopping_) break;
    }
    std::vector<std::shared_ptr<Consumer>> woken;
    woken.swap(ready_);
    std::vector<std::shared_ptr<Consumer>> due;
    const SteadyClock::time_point now = SteadyClock::now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      const uint64_t id = deadlines_.begin()->second;
      deadlines_.erase(deadlines_.begin());
      deadline_of_.erase(id);
      if (auto it = consumers_.find(id); it != consumers_.end()) due.push_back(it->second);
    }
    lock.Unlock();
    for (const std::shared_ptr<Consumer>& c : woken) {
      c->queued = false;  // a wake-up from now on queues it again
      c->Run();
    }
    for (const std::shared_ptr<Consumer>& c : due) c->OnDeadline();
    woken.clear();
    due.clear();
    lock.Lock();
  }
}

void ConsumerHub::Stop() {
  {
    MutexLock lock(&mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    cv_.NotifyAll();
  }
  if (thread_.joinable()) thread_.join();
  std::map<uint64_t, std::shared_ptr<Consumer>> remaining;
  {
    MutexLock lock(&mu_);
    remaining.swap(consumers_);
    ready_.clear();
    deadlines_.clear();
    deadline_of_.clear();
  }
  for (auto& [id, c] : remaining) c->Shutdown();
}

size_t ConsumerHub::active() const {
  MutexLock lock(&mu_);
  return consumers_.size();
}

}  // namespace dsm::http

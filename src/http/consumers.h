// Consumers: the live readers of the HTTP API (docs/api.md).
//  - GET /messages?after=N&wait_ms=T: a long-poll. Answers at once when a matching message after
//    N exists, else as soon as one is durable, else with an empty page after T.
//  - GET /messages/stream?after=N: a Server-Sent Events stream, one event per matching message in
//    log order (id = seq, data = the message JSON), comment keep-alives while idle; it resumes
//    after the Last-Event-ID header when the client reconnects.
// Both take the sender/recipient filters of /messages, and `resume`, a position valid on any
// node: {origin: origin_seq} of the messages already delivered (see docs/api.md, "Following a
// recipient across nodes").
//
// No thread per reader: each reader is a small object registered with the log's AppendNotifier
// (storage/append_notifier.h) and, while it waits, with the hub's deadline set. One hub thread
// reads the log for readers that were woken and writes their answers or events through
// Pistache's asynchronous writes; an event stream writes its next chunk only once the previous
// one reached the socket, so a slow client costs one chunk of memory, not a queue.
//
// Connection timeouts: a waiting long-poll and an event stream are marked idle for Pistache, so
// its keep-alive timeout applies to them instead of the (short) header timeout. The longest wait
// is therefore kept below the keep-alive timeout, and a stream writes a keep-alive comment (which
// restarts Pistache's clock, on the connection's event-loop thread) well within it.
//
// Thread safety: Poll() and Stream() run on the request's event-loop thread (in the handler);
// Stop() on the thread that shuts the server down. The hub thread and the log's writer threads
// call in through the consumers; see consumers.cc for the lock order.
#pragma once

#include <pistache/router.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"
#include "dsm/log_store.h"
#include "dsm/status.h"
#include "src/http/reply.h"
#include "storage/append_notifier.h"
#include "storage/origin_positions.h"

namespace dsm::http {

constexpr uint64_t kMaxWaitMs = 30000;          // largest wait_ms of a long-poll
constexpr size_t kDefaultLivePageLimit = 1000;  // messages per long-poll page without `limit`
constexpr size_t kMaxResumeOrigins = 4096;      // entries of a `resume` position

struct ConsumerOptions {
  // A long-poll waits at most this long, whatever wait_ms says (kept below the connection's
  // keep-alive timeout).
  std::chrono::milliseconds max_wait{kMaxWaitMs};
  // An idle event stream writes a comment this often.
  std::chrono::milliseconds keepalive_interval{15000};
  // An event stream whose last write has not reached the socket for this long is cut.
  std::chrono::milliseconds stall_timeout{60000};
  // Long-polls waiting plus streams open; more are refused with 503.
  size_t max_consumers = 10000;
  // A long-poll page stops growing past about this many bytes of JSON (at least one message).
  size_t page_bytes = 1 << 20;
  // An event stream writes at most about this many bytes per chunk (at least one event).
  size_t chunk_bytes = 64 << 10;
  // Tests only: the hub thread waits this long between handing a chunk to Pistache and attaching
  // the continuation of its write, so that the write settles first and its continuation runs on
  // the hub thread (as it does when the machine is loaded). 0 in production.
  std::chrono::microseconds attach_delay{0};
};

// The parameters of a live read.
struct LiveQuery {
  uint64_t after = 0;                    // read seq > after (Last-Event-ID wins on a stream)
  size_t limit = kDefaultLivePageLimit;  // long-poll page size, 1..kMaxListingLimit
  std::optional<std::string> sender;
  std::optional<std::string> recipient;
  std::chrono::milliseconds wait{0};  // long-poll only, 0..kMaxWaitMs
  // origin stream -> highest origin_seq already delivered: those messages are skipped, and the
  // read starts at the first local seq that may hold one that is not.
  std::map<std::string, uint64_t> resume;
};

// True when a GET /messages request asks for a live answer (it has wait_ms or resume).
bool IsLiveListing(const std::map<std::string, std::string>& raw_query);

// Parses the (undecoded) query parameters of a live read: after, limit, sender, recipient,
// wait_ms, resume (JSON object {origin: origin_seq}, percent-encoded). `last_event_id`, when
// given, is the Last-Event-ID header of a stream request (a seq; it replaces `after`). Unknown
// names are ignored. Errors: InvalidArgument naming the parameter.
Result<LiveQuery> ParseLiveQuery(const std::map<std::string, std::string>& raw_query,
                                 const std::optional<std::string>& last_event_id);

// The local position a `resume` vector starts from (storage/origin_positions.h).
using ::dsm::ResumeStart;

class ConsumerHub {
 public:
  // `log`, `notifier` and `gate` must outlive the hub. Starts the hub thread.
  ConsumerHub(LogStore* log, AppendNotifier* notifier, std::shared_ptr<Gate> gate,
              ConsumerOptions options);
  ~ConsumerHub();  // Stop()
  ConsumerHub(const ConsumerHub&) = delete;
  ConsumerHub& operator=(const ConsumerHub&) = delete;

  // Serves GET /messages with wait_ms or resume. REQUIRES: in the request's handler.
  void Poll(const Pistache::Rest::Request& req, const ReplyPtr& reply);
  // Serves GET /messages/stream. REQUIRES: in the request's handler.
  void Stream(const Pistache::Rest::Request& req, const ReplyPtr& reply);

  // Answers every waiting long-poll with its (empty) page, ends every stream's registration,
  // and joins the hub thread. Later requests get 503. Streams' connections are cut by the
  // server (Gate::CutStreams). Idempotent.
  void Stop() LOCKS_EXCLUDED(mu_);

  // Long-polls waiting plus streams open.
  size_t active() const LOCKS_EXCLUDED(mu_);

  class Consumer;  // a live reader (consumers.cc)

 private:
  friend class Consumer;
  class PollConsumer;
  class StreamConsumer;

  // Registers `c` (false: refused, the hub is full or stopping).
  bool Admit(const std::shared_ptr<Consumer>& c, Status* refusal) LOCKS_EXCLUDED(mu_);
  // Forgets `c`: it is done.
  void Remove(uint64_t id) LOCKS_EXCLUDED(mu_);
  // Queues `c` to run on the hub thread. Callable from any thread, under the log's lock.
  void Wake(std::shared_ptr<Consumer> c) LOCKS_EXCLUDED(mu_);
  // Sets `c`'s one deadline (replacing the previous one).
  void Schedule(uint64_t id, std::chrono::steady_clock::time_point when) LOCKS_EXCLUDED(mu_);
  void Run() LOCKS_EXCLUDED(mu_);  // the hub thread

  LogStore* const log_;
  AppendNotifier* const notifier_;
  const std::shared_ptr<Gate> gate_;
  const ConsumerOptions options_;

  mutable Mutex mu_;
  // Notified by Wake(), Schedule() of an earlier deadline, and Stop().
  CondVar cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  uint64_t next_id_ GUARDED_BY(mu_) = 1;
  std::map<uint64_t, std::shared_ptr<Consumer>> consumers_ GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Consumer>> ready_ GUARDED_BY(mu_);
  std::set<std::pair<std::chrono::steady_clock::time_point, uint64_t>> deadlines_ GUARDED_BY(mu_);
  std::map<uint64_t, std::chrono::steady_clock::time_point> deadline_of_ GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace dsm::http

// Answers of the HTTP server (internal to src/http, used by server.cc):
//  - Reply: one request's answer, sent at most once, from any thread (a /send is answered by the
//    thread that completes its quorum wait);
//  - Listing: a JSON listing of messages, streamed chunk by chunk as fast as the client reads it;
//  - Gate: what the server shares with answers that may complete after it began shutting down.
//
// Thread safety: Reply::Send/SendError from any thread; Reply::StartStream and Listing on the
// event-loop thread of the request's connection only (where Pistache runs handlers and write
// completions). Gate members are guarded as annotated.
#pragma once

#include <pistache/http.h>
#include <pistache/peer.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/thread_annotations.h"
#include "dsm/log_store.h"
#include "dsm/message.h"
#include "dsm/status.h"
#include "src/http/json_codec.h"

namespace dsm::http {

// A listing is one ordinary answer while it stays below this size, else it is streamed in chunks
// of about this size.
constexpr size_t kListingChunkBytes = 64 << 10;

// The one mapping from a Status to an HTTP error answer: the status code (json::HttpStatusForCode)
// and the reason ("storage failure: ..." for IOError).
struct ErrorAnswer {
  int http;
  std::string reason;
};
ErrorAnswer ErrorFor(const Status& s);

inline std::string BufferText(const rapidjson::StringBuffer& buf) {
  return std::string(buf.GetString(), buf.GetSize());
}

// One client connection as the server's threads see it. Pistache 0.0.5 addresses a queued write
// (and ::shutdown here addresses a socket) by descriptor number, and a new connection may be
// given that number once this one is closed: bytes meant for a client that left would reach
// another one. So anything another thread writes to a connection, or shuts down, goes through
// IfOpen, and the connection's event loop marks it closed (EdgeHandler::onDisconnection) before
// Pistache closes the descriptor. Writes made on the event-loop thread itself (handlers and write
// completions) are ordered with the disconnection by that thread.
class Connection {
 public:
  // `transport`: the Pistache transport (one per event loop) that serves the connection.
  explicit Connection(Pistache::Tcp::Transport* transport = nullptr) : transport_(transport) {}

  // Runs `act` (which hands bytes to Pistache or shuts the socket down) while the connection is
  // open, under its lock; returns false, without running it, once it is closed.
  template <typename Act>
  bool IfOpen(Act&& act) LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    if (!open_) return false;
    act();
    return true;
  }
  void MarkClosed() LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    open_ = false;
  }

  // Has the connection's event-loop thread run `fn` about a millisecond from now; from any thread.
  // Pistache runs a write's continuation on that thread only if it was attached before the write
  // settled, which another thread cannot ensure (the loop may write and settle first); a one-shot
  // timer of the connection's transport can, since its continuation is attached before the timer
  // is handed over. `fn` also runs (on that thread) if the timer fails. Returns false, and never
  // runs `fn`, when the connection is closed or has no transport.
  bool RunOnLoop(std::function<void()> fn);

  // Whether a request of the connection was handed to a handler and its answer not yet given
  // (the edge refuses requests that arrive meanwhile: src/http/edge.h). BeginAnswer: by the edge,
  // when it dispatches a request; EndAnswer: by whatever hands the whole answer to the network on
  // the connection's event-loop thread (the last chunk of a Listing, the edge's own answers);
  // SendAnswer: by another thread (Reply::SendAs). Under the lock, so that once the client can
  // have the answer, answering() is false.
  void BeginAnswer() LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    answering_ = true;
  }
  void EndAnswer() LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    answering_ = false;
  }
  bool answering() LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return answering_;
  }
  // IfOpen(act), where `act` hands the whole answer to Pistache: the answer is given once it
  // returns (answering() is false from then on, atomically with the hand-over).
  template <typename Act>
  bool SendAnswer(Act&& act) LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    if (!open_) return false;
    act();
    answering_ = false;
    return true;
  }

 private:
  Pistache::Tcp::Transport* const transport_;
  bool answering_ GUARDED_BY(mu_) = false;
  Mutex mu_;
  bool open_ GUARDED_BY(mu_) = true;
};

// Peer data key of a connection's Connection (set when Pistache accepts it).
inline constexpr char kConnectionKey[] = "dsm.connection";
// The Connection of `peer`, or null when it has none.
std::shared_ptr<Connection> ConnectionOf(const Pistache::Tcp::Peer& peer);
// Shuts the socket of `peer` down (both directions) unless the connection is already closed.
void ShutdownConnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer);
// The bytes of a whole answer, laid out as ResponseWriter::send does: status line, `headers`,
// Content-Length, blank line, body (left out when `head_only`).
std::string AnswerBytes(Pistache::Http::Version version, Pistache::Http::Code code,
                        const Pistache::Http::Header::Collection& headers, const std::string& body,
                        bool head_only);

// Lets answers that complete late (a quorum outcome on another thread) find out whether the server
// still delivers them, and lets the server's Shutdown() wait for answers in flight.
struct Gate {
  // Held while an answer is handed to Pistache, so that shutdown cannot stop the event loops under
  // it.
  Mutex mu;
  bool closed GUARDED_BY(mu) = false;  // set once, when the event loops are about to stop

  Mutex settle_mu;
  // Notified by the settling of an answer's write (Reply::SendAs) when in_flight drops to zero;
  // the server's Shutdown() waits on it.
  CondVar settled;
  int in_flight GUARDED_BY(settle_mu) = 0;  // answers handed over whose write has not settled

  std::atomic<bool> stopping{false};  // set when shutdown begins: listings stop early

  // Connections that carry (or carried) a streamed listing. Shutdown cuts them: a listing waiting
  // for a stalled client would otherwise keep its connection open.
  Mutex streams_mu;
  std::vector<std::weak_ptr<Pistache::Tcp::Peer>> streams GUARDED_BY(streams_mu);

  void AddStream(const std::weak_ptr<Pistache::Tcp::Peer>& peer) LOCKS_EXCLUDED(streams_mu);
  void CutStreams() LOCKS_EXCLUDED(streams_mu);
};

// One request's answer: JSON, sent at most once. Dropped silently once the gate is closed. The
// answer to a HEAD request has the headers of the GET answer (Content-Length included) and no
// body. After an answer that says "Connection: close" (the edge says so unless the client asked
// for keep-alive), the connection is shut down once the answer is written.
//
// The answer is laid out here and handed to the connection with Tcp::Peer::send, not with
// ResponseWriter::send: the promise that ResponseWriter::send returns is settled by Pistache's
// event loop without that promise's lock, so a continuation attached to it from another thread
// (the log's commit thread answering a /send, a quorum answer) races with the settling and can
// crash the process or be lost. Peer::send's own promise is settled under its lock.
class Reply {
 public:
  // `version`: the request's HTTP version, which the answer's status line repeats.
  Reply(Pistache::Http::ResponseWriter writer, Pistache::Http::Version version,
        std::shared_ptr<Gate> gate, bool head_only = false);
  // A request nobody answered (a completion dropped without being called) still gets an answer
  // rather than a connection left waiting: 500.
  ~Reply();
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;

  // Adds a header to the answer (before it is sent; `name` and `value` are constants of the
  // server, never request data).
  void AddHeader(std::string name, std::string value) LOCKS_EXCLUDED(mu_);

  // Sends a JSON body. `allow` lists the methods of a 405 answer. No-op when already answered.
  void Send(int http, const std::string& body,
            const std::vector<Pistache::Http::Method>* allow = nullptr) LOCKS_EXCLUDED(mu_);
  // Sends a body of another media type (e.g. the Prometheus text format of /metrics).
  void SendAs(int http, const std::string& body, const Pistache::Http::Mime::MediaType& type,
              const std::vector<Pistache::Http::Method>* allow = nullptr) LOCKS_EXCLUDED(mu_);
  // {"status":"error","reason":...} with the status of ErrorFor(s).
  void SendError(const Status& s) LOCKS_EXCLUDED(mu_);

  // Starts a chunked 200 answer (status line and headers are written on the stream's flush) and
  // sets *peer to the connection. nullopt when already answered or the server is stopping.
  // REQUIRES: on the connection's event-loop thread.
  std::optional<Pistache::Http::ResponseStream> StartStream(
      std::weak_ptr<Pistache::Tcp::Peer>* peer) LOCKS_EXCLUDED(mu_);
  // Same, for a Server-Sent Events stream: Content-Type text/event-stream, Cache-Control
  // no-cache. REQUIRES: on the connection's event-loop thread.
  std::optional<Pistache::Http::ResponseStream> StartEventStream(
      std::weak_ptr<Pistache::Tcp::Peer>* peer) LOCKS_EXCLUDED(mu_);
  // The request's connection (expired once the client is gone).
  std::weak_ptr<Pistache::Tcp::Peer> peer() const { return writer_.getPeer(); }
  // What other threads must write to it through (null when the connection had none).
  const std::shared_ptr<Connection>& connection() const { return connection_; }

  const Gate& gate() const { return *gate_; }
  // A HEAD request: the answer has no body.
  bool head_only() const { return head_only_; }
  // The answer says "Connection: close": the connection is shut down once it is written.
  bool closes_connection() const { return closes_connection_; }
  // Marks the whole answer as handed to the network (Connection::EndAnswer).
  void EndAnswer() const {
    if (connection_) connection_->EndAnswer();
  }

 private:
  Mutex mu_;
  bool answered_ GUARDED_BY(mu_) = false;
  Pistache::Http::ResponseWriter writer_;
  const Pistache::Http::Version version_;
  const std::shared_ptr<Gate> gate_;
  std::shared_ptr<Connection> connection_;  // set at construction, on the event-loop thread
  const bool head_only_;
  bool closes_connection_ = false;  // set at construction
};

using ReplyPtr = std::shared_ptr<Reply>;

// Where a listing's messages come from, a chunk at a time.
class ListingSource {
 public:
  virtual ~ListingSource() = default;
  // Visits the next messages in order until `visit` returns false (the chunk is full) or none
  // remain (then *exhausted = true).
  virtual Status Next(const std::function<bool(const Message&)>& visit, bool* exhausted) = 0;
};

// Messages of the log in seq order: those after `scan.after` matching its filters, at most `limit`
// of them. Each chunk is a new Scan from the last seq listed. Without a limit the listing ends at
// the last seq the log had when it began, so a busy log cannot keep it going forever.
class ScanSource final : public ListingSource {
 public:
  // `log` must outlive the source.
  ScanSource(const LogStore* log, ScanOptions scan, std::optional<size_t> limit);
  Status Next(const std::function<bool(const Message&)>& visit, bool* exhausted) override;

  // With a limit: a matching message exists after the ones listed.
  bool more() const { return more_; }
  // Without a limit: the last seq the log had when the listing began.
  uint64_t last() const { return last_; }

 private:
  const LogStore* const log_;
  ScanOptions scan_;  // scan_.after: the last seq listed
  const std::optional<size_t> limit_;
  size_t remaining_;  // with a limit: how many more may be listed
  const uint64_t last_;
  bool more_ = false;
};

// Messages already read (a page of Node::Sync or Node::SyncStream).
class VectorSource final : public ListingSource {
 public:
  explicit VectorSource(std::vector<Message> msgs) : msgs_(std::move(msgs)) {}
  Status Next(const std::function<bool(const Message&)>& visit, bool* exhausted) override;

 private:
  std::vector<Message> msgs_;
  size_t next_ = 0;
};

// Writes the fields after "messages" once the listing is complete, given how many messages were
// listed and the seq of the last one (0 when none).
using TrailerWriter = std::function<void(json::Writer& w, size_t count, uint64_t last_seq)>;

// Answers {"messages":[...], <trailer>}. A listing that fits in one chunk is one ordinary answer.
// A longer one is streamed (chunked transfer encoding), and each chunk is produced only once the
// previous one has been written to the socket (the write's promise), so memory stays at about one
// chunk per listing however long the listing and however slow the client, and no event-loop
// thread ever waits for a client. If the log fails or the server stops once streaming has begun,
// the connection is cut, so the client sees an incomplete answer rather than a short listing.
class Listing : public std::enable_shared_from_this<Listing> {
 public:
  // Starts the listing; it keeps itself alive until done. REQUIRES: on the connection's
  // event-loop thread (in the request's handler).
  static void Run(ReplyPtr reply, std::unique_ptr<ListingSource> source, TrailerWriter trailer);

  Listing(ReplyPtr reply, std::unique_ptr<ListingSource> source, TrailerWriter trailer);

 private:
  void Pump();         // produces the next chunk and sends it
  bool StartStream();  // sends the status line and headers of the chunked answer
  void SendChunk(bool last);
  void Fail(const Status& s);
  void Cut(const std::string& why);

  ReplyPtr reply_;
  std::unique_ptr<ListingSource> source_;
  TrailerWriter trailer_;
  rapidjson::StringBuffer buf_;
  json::Writer w_;          // writes into buf_, which is emptied after each chunk
  bool in_handler_ = true;  // the first chunk is produced inside the request's handler
  bool streaming_ = false;
  std::weak_ptr<Pistache::Tcp::Peer> peer_;
  size_t count_ = 0;
  uint64_t last_seq_ = 0;
};

}  // namespace dsm::http

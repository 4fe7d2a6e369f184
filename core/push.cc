// The push replicator: ships this node's own stream to each peer from a durable cursor, in
// batches cut to what the peer accepts, and records what the peer's incarnation acknowledged.
#include <fmt/format.h>

#include <algorithm>

#include "common/planted_bugs.h"
#include "core/node_impl.h"

namespace dsm {
namespace {

// An upper bound of the JSON bytes of `s` as a string value: quotes, and escapes of control
// characters (6 bytes), quotes and backslashes (2 bytes); other bytes go through as they are.
size_t JsonStringBytes(std::string_view s) {
  size_t n = 2;
  for (unsigned char c : s) {
    n += c < 0x20 ? 6 : (c == '"' || c == '\\') ? 2 : 1;
  }
  return n;
}

// The bytes of a /replicate request around its messages: {"msgs":[...]}.
constexpr size_t kEnvelopeBytes = 16;

// An upper bound of the bytes `m` adds to a /replicate request: its strings, escaped, plus the
// field names, numbers and separators.
size_t EncodedBytes(const Message& m) {
  constexpr size_t kFieldsAndNumbers = 160;
  return kFieldsAndNumbers + JsonStringBytes(m.msg_id) + JsonStringBytes(m.sender) +
         JsonStringBytes(m.recipient) + JsonStringBytes(m.payload) + JsonStringBytes(m.origin);
}

// The newest batch in flight to `p` that counts (of the current epoch; older ones were voided by
// a rewind), or null.
const PushInFlight* NewestCounting(const PeerState& p) {
  const PushInFlight* newest = nullptr;
  for (const PushInFlight& b : p.push_window) {
    if (b.epoch == p.push_epoch) newest = &b;
  }
  return newest;
}

}  // namespace

bool Node::Impl::PushDue(const PeerState& p, uint64_t own_hw, MonoTime now) const {
  // Pushes wait until the peer's incarnation is known: a cursor is only meaningful for it.
  if (p.push_reading || p.stream.empty() || p.push_sent >= own_hw || now < p.push_not_before) {
    return false;
  }
  if (p.push_window.size() >= std::max<size_t>(1, options.push_window)) return false;
  // Behind a batch in flight, the next one leaves only once it is full (a backlog: a catch-up, a
  // burst of batch publishes); what comes meanwhile waits for the answer and leaves with the
  // next batch. Under steady load a push per durable group would otherwise carry only that
  // group, and each push costs a request on both sides (about as much as the /send itself).
  // Batches voided by a rewind (kept until answered) carry nothing: they hold nothing back.
  const PushInFlight* newest = NewestCounting(p);
  if (newest != nullptr && !newest->full_by_bytes && own_hw - p.push_sent < p.push_max_messages) {
    return false;
  }
  size_t bytes = 0;
  for (const PushInFlight& b : p.push_window) bytes += b.bytes;
  return bytes < options.push_window_bytes || p.push_window.empty();
}

void Node::Impl::StartPush(const Actions::Push& push) {
  // The newest messages are read from memory, here: the push of a message leaves on the turn
  // that learnt it is durable. Older ones are read from disk, on the storage executor.
  auto recent = log->ReadOwnRecent(push.from, push.max_messages, options.batch_bytes);
  if (recent && (recent->ok() || recent->status().code() != Code::kTrimmed)) {
    SendPush(push, std::move(*recent), 0);
    return;
  }
  Store([this, push] {
    Result<std::vector<Message>> batch =
        log->ReadOrigin(log->stream_id(), push.from, push.max_messages, options.batch_bytes);
    uint64_t trimmed_through = 0;
    if (!batch.ok() && batch.status().code() == Code::kTrimmed) {
      // Retention removed positions the peer lacks (--retention-max-bytes does not wait for
      // peers): the batch tells it to skip them, and carries what follows.
      Result<uint64_t> run = log->TrimmedRun(log->stream_id(), push.from);
      if (run.ok() && *run > push.from) {
        trimmed_through = *run;
        batch = log->ReadOrigin(log->stream_id(), trimmed_through, push.max_messages,
                                options.batch_bytes);
        if (!batch.ok() && batch.status().code() == Code::kTrimmed) {
          batch = std::vector<Message>();
        }
      } else if (!run.ok()) {
        batch = run.status();
      }
    }
    SendPush(push, std::move(batch), trimmed_through);
  });
}

// Sends the next push batch of our stream for `push.peer`, read from its position. The batch is
// cut to what the peer accepts as one request (by the encoded size of its messages, an upper
// bound), but always holds at least one message: one the peer can never accept is reported when
// its 413 comes back.
void Node::Impl::SendPush(const Actions::Push& push, Result<std::vector<Message>> batch,
                          uint64_t trimmed_through) {
  size_t bytes = kEnvelopeBytes;
  size_t n = 0;
  bool full_by_bytes = false;
  if (batch.ok()) {
    size_t payload = 0;
    for (const Message& m : *batch) {
      const size_t more = EncodedBytes(m) + 1;
      if (n > 0 && bytes + more > push.max_bytes) break;
      bytes += more;
      payload += m.payload.size();
      ++n;
    }
    // Cut to the request limit here, or (short of batch_messages, with over half of it) by the
    // read's payload budget of batch_bytes.
    full_by_bytes =
        n < batch->size() || (n < push.max_messages && payload * 2 >= options.batch_bytes);
    batch->resize(n);
  }
  uint64_t id = 0;
  std::function<void()> wake;
  std::shared_ptr<Histogram> round_trip;
  {
    MutexLock lock(&mu);
    if (stopped) return;
    PeerState& p = peers[push.peer];
    p.push_reading = false;
    round_trip = p.push_round_trip;
    wake = wakeup;
    const MonoTime now = clock->Now();
    if (push.epoch != p.push_epoch) {
      n = 0;  // the window was rewound while we read: what we read may start at the wrong place
      trimmed_through = 0;
    } else if (!batch.ok() || (n == 0 && trimmed_through == 0)) {
      p.push_not_before = now + options.retry_max;
      if (!batch.ok()) {
        ++p.read_errors;
        p.push_problem = "reading our log for a push failed: " + batch.status().ToString();
        ErrorEvent(p, now, fmt::format("push to {}: {}", p.url, p.push_problem));
      }
      n = 0;
    } else {
      PushInFlight b;
      b.id = id = ++p.push_next_id;
      b.epoch = p.push_epoch;
      b.from = push.from;
      b.last = n > 0 ? batch->back().origin_seq : trimmed_through;
      b.messages = n;
      b.skip_through = trimmed_through;
      b.bytes = bytes;
      b.full_by_bytes = full_by_bytes;
      b.first = NewestCounting(p) == nullptr;
      p.push_window.push_back(std::move(b));
      p.push_sent = p.push_window.back().last;
    }
  }
  if (n > 0 || trimmed_through > 0) {
    PushSkip skip;
    if (trimmed_through > 0) skip = PushSkip{log->stream_id(), trimmed_through};
    // Sent from here, before the next batch can be read: batches leave in the order of the window.
    transport->Replicate(push.peer, std::move(batch.value()), std::move(skip),
                         [this, peer = push.peer, id, sent = clock->Now(),
                          round_trip = std::move(round_trip)](Result<ReplicateReply> r) {
                           round_trip->Observe(
                               std::chrono::duration<double>(clock->Now() - sent).count());
                           Post([this, peer, id, r = std::move(r)]() mutable {
                             OnPushed(peer, id, std::move(r));
                           });
                         });
  }
  if (wake) wake();  // the replication thread decides the next batch
}

void Node::Impl::OnPushed(size_t peer, uint64_t id, Result<ReplicateReply> r) {
  AfterExchange(
      peer, r.ok(), [&](PeerState& p, MonoTime now, Actions& a) EXCLUSIVE_LOCKS_REQUIRED(mu) {
        auto it = std::find_if(p.push_window.begin(), p.push_window.end(),
                               [&](const PushInFlight& b) { return b.id == id; });
        if (it == p.push_window.end()) return;
        if (r.ok() && it->epoch == p.push_epoch && !NoteStream(p, r->stream, now, &a)) {
          // A late answer of a former incarnation: resend to the current one.
          RewindPush(p);
          p.push_not_before = now + options.retry_min;
        }
        if (it->epoch != p.push_epoch) {
          // Sent before a rewind (or NoteStream just saw a new incarnation): counts for nothing.
          p.push_window.erase(it);
          return;
        }
        it->answered = true;
        it->reply = std::move(r);
        TakePushAnswers(p, now, a);
      });
}

void Node::Impl::TakePushAnswers(PeerState& p, MonoTime now, Actions& a) {
  const uint64_t before = p.push_cursor;
  for (auto it = p.push_window.begin(); it != p.push_window.end();) {
    if (it->epoch != p.push_epoch) {
      it = it->answered ? p.push_window.erase(it) : std::next(it);
      continue;
    }
    if (!it->answered) break;
    const PushInFlight b = std::move(*it);
    it = p.push_window.erase(it);
    TakePushAnswer(p, b, now);
  }
  if (p.push_cursor != before) {
    if (p.push_cursor > before) p.pushed += p.push_cursor - before;
    a.persist_push.emplace_back(p.index, PushCursor{p.push_stream, p.push_cursor});
    CollectSatisfied(&a);
  }
}

void Node::Impl::TakePushAnswer(PeerState& p, const PushInFlight& b, MonoTime now) {
  const Result<ReplicateReply>& r = b.reply;
  p.push_unreachable = !r.ok() && (r.status().code() == Code::kUnavailable ||
                                   r.status().code() == Code::kTimeout);
  if (!r.ok()) {
    RewindPush(p);
    ++p.push_errors;
    p.push_backoff = std::clamp(p.push_backoff * 2, options.retry_min, options.retry_max);
    p.push_not_before = now + p.push_backoff;
    if (r.status().code() != Code::kTooLarge) {
      // Unreachable peers are the failure detector's business; other refusals are named.
      if (r.status().code() != Code::kUnavailable && r.status().code() != Code::kTimeout) {
        p.push_problem = "push refused: " + r.status().ToString();
        ErrorEvent(p, now, fmt::format("push to {}: {}", p.url, p.push_problem));
      }
      return;
    }
    // 413: the peer takes less in one request than we sent. Halve the batch; a single message it
    // refuses can never be delivered by push: say so, by name, and keep trying slowly (the peer
    // may be reconfigured; its pulls may still fetch the message).
    ++p.too_large;
    p.push_max_messages = std::max<size_t>(1, b.messages / 2);
    p.push_max_bytes = b.bytes / 2 + kEnvelopeBytes;
    if (b.messages > 1) {
      p.push_not_before = now;
      p.push_problem.clear();
      return;
    }
    p.push_problem = fmt::format(
        "message {} of our stream is too large for peer {} ({} bytes encoded; the peer accepts "
        "requests of up to {} bytes, this node {}): {}",
        b.from + 1, p.url, b.bytes,
        p.peer_max_request > 0 ? std::to_string(p.peer_max_request) : std::string("?"),
        MaxRequestBytes(options), r.status().message());
    p.push_not_before = now + options.retry_max;
    ErrorEvent(p, now, p.push_problem);
    return;
  }
  const uint64_t own_hw = log->HighWater(log->stream_id());
  // Only positions this batch carried, and those before it (every batch before it in the window
  // was taken), are known to hold OUR messages (the peer compared each msg_id): what it holds
  // beyond them may be another copy of the stream (a data directory restored from an older copy
  // handed those positions out again).
  uint64_t cursor = std::min(r->high_water, b.last);
  std::string fork;
  if (r->high_water > own_hw) {
    fork = fmt::format(
        "peer holds our stream up to {}, beyond its end {}: this node's data directory was "
        "restored from an older copy? Its next positions will conflict",
        r->high_water, own_hw);
    ErrorEvent(p, now, fmt::format("push to {}: {}", p.url, fork));
  }
  // A batch that told the peer to skip positions trimmed here, answered with the peer exactly
  // where the batch began: the peer did not skip, because another of its peers may still hold
  // them and it takes them from there first (Node::Impl::SkipUnheld).
  const bool skip_waits = b.skip_through > 0 && cursor == b.from;
  if (r->gap) {
    // The peer lacks positions before this batch. When batches were in flight ahead of it, it
    // may only have taken this one first: resend from the cursor. When none were, the peer lost
    // what it acknowledged: resend from where it is.
    if (b.first) {
      if (!skip_waits) {
        Event(EventLevel::kWarning,
              fmt::format("peer {} holds our stream only up to {}: resending from there", p.url,
                          cursor));
      }
    } else {
      cursor = std::max(cursor, p.push_cursor);
    }
  }
  p.push_cursor = cursor;
  if (r->conflict) {
    RewindPush(p);
    ++p.conflicts;
    p.push_problem =
        fmt::format("conflict: peer {} holds another message at position {} of our stream: {}",
                    p.url, cursor + 1, r->reason);
    ErrorEvent(p, now, p.push_problem);
    p.push_backoff = options.retry_max;
    p.push_not_before = now + options.retry_max;
    return;
  }
  if (skip_waits) {
    // Sent again after a while.
    RewindPush(p);
    p.push_problem = fmt::format(
        "peer {} does not skip positions {}..{} of our stream (trimmed here by "
        "--retention-max-bytes) yet: it takes them from a node that still holds them first",
        p.url, b.from + 1, b.skip_through);
    p.push_backoff = std::clamp(p.push_backoff * 2, options.retry_min, options.retry_max);
    p.push_not_before = now + p.push_backoff;
    return;
  }
  if (b.skip_through > b.from && cursor > b.from) {
    const uint64_t passed = std::min(cursor, b.skip_through);
    p.push_trimmed += passed - b.from;
    Event(EventLevel::kWarning,
          fmt::format("push to {}: positions {}..{} of this node's stream were trimmed "
                      "(--retention-max-bytes) before the peer got them; it is past them now "
                      "(it skipped them, or took them from another node that held them)",
                      p.url, b.from + 1, passed));
  }
  p.push_problem = fork;
  // Grow back towards the full batch after a 413 shrank it.
  p.push_max_messages = std::min(std::max<size_t>(1, options.batch_messages),
                                 std::max<size_t>(p.push_max_messages, b.messages * 2));
  p.push_max_bytes = std::min(MaxRequestBytes(options), std::max(p.push_max_bytes, b.bytes * 2));
  p.push_backoff = Millis(0);
  p.push_not_before = now;
  if (cursor < b.last) {
    RewindPush(p);  // a gap, or an answer that does not cover the batch: resend the rest
    return;
  }
}

}  // namespace dsm

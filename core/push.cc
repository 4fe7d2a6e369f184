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

}  // namespace

// Reads the next push batch of our stream for `push.peer` and sends it. The batch is cut to what
// the peer accepts as one request (by the encoded size of its messages, an upper bound), but
// always holds at least one message: one the peer can never accept is reported by OnPushed.
void Node::Impl::StartPush(const Actions::Push& push) {
  Result<std::vector<Message>> batch =
      log->ReadOrigin(log->stream_id(), push.from, push.max_messages, options.batch_bytes);
  if (!batch.ok() || batch->empty()) {
    MutexLock lock(&mu);
    PeerState& p = peers[push.peer];
    p.push_in_flight = false;
    const MonoTime now = clock->Now();
    p.push_not_before = now + options.retry_max;
    if (!batch.ok()) {
      ++p.read_errors;
      p.push_problem = "reading our log for a push failed: " + batch.status().ToString();
      ErrorEvent(p, now, fmt::format("push to {}: {}", p.url, p.push_problem));
    }
    return;
  }
  size_t bytes = kEnvelopeBytes;
  size_t n = 0;
  for (const Message& m : *batch) {
    const size_t more = EncodedBytes(m) + 1;
    if (n > 0 && bytes + more > push.max_bytes) break;
    bytes += more;
    ++n;
  }
  batch->resize(n);
  const uint64_t last = batch->back().origin_seq;
  transport->Replicate(push.peer, std::move(batch.value()),
                       [this, peer = push.peer, n, bytes, last](Result<ReplicateReply> r) {
                         Post([this, peer, n, bytes, last, r = std::move(r)]() mutable {
                           OnPushed(peer, n, bytes, last, std::move(r));
                         });
                       });
}

void Node::Impl::OnPushed(size_t peer, size_t sent, size_t sent_bytes, uint64_t last_sent,
                          Result<ReplicateReply> r) {
  AfterExchange(
      peer, r.ok(), [&](PeerState& p, MonoTime now, Actions& a) EXCLUSIVE_LOCKS_REQUIRED(mu) {
        p.push_in_flight = false;
        if (!r.ok()) {
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
          // 413: the peer takes less in one request than we sent. Halve the batch; a single
          // message it refuses can never be delivered by push: say so, by name, and keep trying
          // slowly (the peer may be reconfigured; its pulls may still fetch the message).
          ++p.too_large;
          p.push_max_messages = std::max<size_t>(1, sent / 2);
          p.push_max_bytes = sent_bytes / 2 + kEnvelopeBytes;
          if (sent > 1) {
            p.push_not_before = now;
            p.push_problem.clear();
            return;
          }
          p.push_problem = fmt::format(
              "message {} of our stream is too large for peer {} ({} bytes encoded; the peer "
              "accepts "
              "requests of up to {} bytes, this node {}): {}",
              p.push_cursor + 1, p.url, sent_bytes,
              p.peer_max_request > 0 ? std::to_string(p.peer_max_request) : std::string("?"),
              MaxRequestBytes(options), r.status().message());
          p.push_not_before = now + options.retry_max;
          ErrorEvent(p, now, p.push_problem);
          return;
        }
        const uint64_t own_hw = log->HighWater(log->stream_id());
        if (!NoteStream(p, r->stream, now, &a)) {
          p.push_not_before = now + options.retry_min;  // resend to the current incarnation
          return;
        }
        // Only positions this batch carried are known to hold OUR messages (the peer compared
        // each msg_id): what it holds beyond them may be another copy of the stream (a data
        // directory restored from an older copy handed those positions out again).
        const uint64_t cursor = std::min(r->high_water, last_sent);
        std::string fork;
        if (r->high_water > own_hw) {
          fork = fmt::format(
              "peer holds our stream up to {}, beyond its end {}: this node's data directory "
              "was restored from an older copy? Its next positions will conflict",
              r->high_water, own_hw);
          ErrorEvent(p, now, fmt::format("push to {}: {}", p.url, fork));
        }
        if (cursor > p.push_cursor) p.pushed += cursor - p.push_cursor;
        if (r->gap) {
          Event(EventLevel::kWarning,
                fmt::format("peer {} holds our stream only up to {}: resending from there", p.url,
                            cursor));
        }
        p.push_cursor = cursor;
        a.persist_push.emplace_back(p.index, PushCursor{p.push_stream, p.push_cursor});
        if (r->conflict) {
          ++p.conflicts;
          p.push_problem = fmt::format(
              "conflict: peer {} holds another message at position {} of our stream: {}", p.url,
              cursor + 1, r->reason);
          ErrorEvent(p, now, p.push_problem);
          p.push_backoff = options.retry_max;
          p.push_not_before = now + options.retry_max;
          return;
        }
        p.push_problem = fork;
        // Grow back towards the full batch after a 413 shrank it.
        p.push_max_messages = std::min(std::max<size_t>(1, options.batch_messages),
                                       std::max<size_t>(p.push_max_messages, sent * 2));
        p.push_max_bytes =
            std::min(MaxRequestBytes(options), std::max(p.push_max_bytes, sent_bytes * 2));
        p.push_backoff = Millis(0);
        p.push_not_before = now;
        CollectSatisfied(&a);
      });
}

}  // namespace dsm

// Transport: how a node's replication core talks to its peers (POST /replicate, POST /sync,
// GET /heartbeat). The runtime implementation is the libcurl peer client (src/http); tests use
// the in-memory SimNetwork (tests/testing).
//
// Contract: every call returns at once and invokes `done` exactly once, later, on a thread of the
// transport's choosing (never inside the call itself), with the peer's answer or with a non-OK
// Status (Unavailable: refused/unreachable; Timeout: no answer within the deadline;
// InvalidArgument: an https peer's certificate is not trusted, or this node's TLS files are
// unusable; an HTTP error answer maps to the Code of its status with the body's reason, except
// /replicate's 409 gap and conflict answers, which are OK ReplicateReplies with gap or conflict
// set).
// `done` must not block for long: it runs on the transport's event loop.
// Thread safety: all methods may be called concurrently from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dsm/membership.h"
#include "dsm/message.h"
#include "dsm/status.h"

namespace dsm {

struct HeartbeatReply {
  std::string node_id;
  double time = 0;     // peer's wall clock, seconds
  std::string stream;  // the peer's own stream id
  // How far the peer holds each origin stream (its LogStore::HighWaters(), less the streams it
  // leaves out to keep the answer bounded: see Node::Heartbeat).
  std::map<std::string, uint64_t> high_waters;
  // The largest request body the peer accepts (MaxRequestBytes), 0 when it did not say.
  uint64_t max_request_bytes = 0;
  // The peer's cluster membership, once a membership change was made (absent before).
  std::optional<Membership> membership;
};

struct ReplicateReply {
  // The peer's high water of the pushed stream after applying the batch. On a gap the peer
  // answers 409 and this is how far it has the stream (the sender rewinds to it). On a conflict
  // (the peer holds another msg_id at a pushed position) it is the position before the first
  // conflicting one: how far the peer holds the stream as the sender wrote it.
  uint64_t high_water = 0;
  bool gap = false;
  bool conflict = false;
  std::string reason;  // the peer's words for a gap or a conflict
  std::string stream;  // the peer's own stream id (its incarnation), "" when it did not say
};

struct SyncReply {
  std::string stream;             // the peer's own stream id (identifies its data directory)
  std::vector<Message> messages;  // entries with peer seq > since, in order, seq = peer seq
  bool more = false;              // entries remain after the last one returned
  uint64_t last_seq = 0;          // the peer's last seq
  // Where the page ends in the peer's seq space: the next page starts after it. At least the
  // last returned entry's seq, and beyond it when the peer skipped entries the puller already
  // holds (see Transport::Sync). 0 when the peer did not say (then the last entry's seq counts).
  uint64_t next = 0;
  // SyncStream only: the positions of the stream at or below this are no longer held by the peer
  // (its retention trimmed them); the messages follow it. 0 = none.
  uint64_t trimmed_through = 0;
};

// What a push says besides its messages: the positions of `origin` at or below
// `trimmed_through` were trimmed by the sender before the peer got them, so the peer skips them
// (LogStore::SkipTrimmed). trimmed_through = 0 for every other push.
struct PushSkip {
  std::string origin;
  uint64_t trimmed_through = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // `peer` indexes the node's peer list: NodeOptions::peers, then the peers added by membership
  // changes (AddPeer).
  // A membership change added a peer at `url` with index `peer`: the next one (the list only
  // grows; a removed member keeps its index and is no longer called).
  virtual void AddPeer(size_t peer, const std::string& url) = 0;
  // GET /heartbeat; with `membership` (once a membership change was made) POST /heartbeat
  // carrying it, so that membership travels both ways.
  virtual void Heartbeat(size_t peer, std::optional<Membership> membership,
                         std::function<void(Result<HeartbeatReply>)> done) = 0;
  // Pushes messages of one origin stream, in origin_seq order, after `skip` (when it skips
  // anything, the messages are of skip.origin and may be none).
  virtual void Replicate(size_t peer, std::vector<Message> msgs, PushSkip skip,
                         std::function<void(Result<ReplicateReply>)> done) = 0;
  // Reads the peer's log after `since` (POST /sync {"since","limit","have"}). `have` is how far
  // the puller holds each origin stream: the peer leaves out the entries it covers (positions at
  // or below those high waters) and says in SyncReply::next how far it looked.
  virtual void Sync(size_t peer, uint64_t since, size_t limit,
                    std::map<std::string, uint64_t> have,
                    std::function<void(Result<SyncReply>)> done) = 0;
  // Reads one origin stream from the peer (POST /sync {"origin","since","limit"}): the positions
  // with origin_seq > since, in order, including positions whose message the peer stores under
  // another origin (a msg_id accepted twice). Repairs what a seq-space pull cannot show.
  virtual void SyncStream(size_t peer, std::string origin, uint64_t since, size_t limit,
                          std::function<void(Result<SyncReply>)> done) = 0;
};

}  // namespace dsm

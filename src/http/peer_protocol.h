// The node-to-node endpoints' bodies, apart from any HTTP server: parsing a /sync request and
// writing the answers of /heartbeat, /replicate and a /sync page's trailer. The Pistache server
// (src/http/server.cc) and the simulation's peer server (tests/sim) both answer through these
// functions, so the simulation speaks the same bytes as a real node.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/node.h"
#include "dsm/status.h"
#include "dsm/transport.h"
#include "src/http/json_codec.h"

namespace dsm::http {

// POST /sync {"since":N,"limit":M,"origin":S,"have":{stream:n,...}}; every field is optional.
struct SyncRequest {
  uint64_t since = 0;
  std::optional<size_t> limit;  // 1..kMaxListingLimit; none = everything after since (streamed)
  std::optional<std::string> origin;     // one origin stream, by origin_seq
  std::map<std::string, uint64_t> have;  // how far the puller holds each stream
};

// A `have` map naming more streams than this is refused.
inline constexpr size_t kMaxHaveStreams = 4096;

// InvalidArgument naming the field when the body is not such a request.
Result<SyncRequest> ParseSyncRequest(std::string_view body);

// The header in which a node names its own stream id on every request to a peer: a heartbeat
// that carries it tells the peer who calls (Node::Heartbeat's caller_stream).
inline constexpr const char* kStreamHeader = "X-Dsm-Stream";
// Whether `s` has the shape of a stream id, "<node id>@<incarnation>": at most 128 characters,
// a node id (ValidNodeId), '@', and an incarnation of the same characters.
bool ValidStreamId(std::string_view s);

// An answer: HTTP status and JSON body.
struct PeerAnswer {
  int status = 200;
  std::string body;
};

// The answer to GET /heartbeat.
PeerAnswer HeartbeatAnswer(const HeartbeatReply& hb);

// The answer to POST /replicate of messages at `positions` (origin, origin_seq of each input, in
// order) that Node::Replicate answered with `r`; `stream` is this node's own stream id; `batch`
// tells the {"msgs":[...]} form from the seed's {"msg":{...}}. 409 for a conflict or a gap.
// REQUIRES: r.outcomes.size() == positions.size().
PeerAnswer ReplicateAnswer(const ReplicateResult& r,
                           const std::vector<std::pair<std::string, uint64_t>>& positions,
                           const std::string& stream, bool batch);

// The fields that close a /sync page after its "messages" array.
void WriteSyncTrailer(json::Writer& w, bool more, uint64_t next, uint64_t last_seq,
                      const std::string& stream);
// The fields a page of one stream ({"origin":...} request) adds after the trailer: "origin", and
// "trimmed_through" when positions after the request's `since` are no longer held.
void WriteStreamPageFields(json::Writer& w, const std::string& origin, uint64_t trimmed_through);

// The optional {"origin":S,"trimmed_through":N} of a /replicate body: the sender's retention
// trimmed positions 1..N of stream S, which the receiver skips (PushSkip{} when absent).
// InvalidArgument when only one is given or either is malformed.
Result<PushSkip> ParsePushSkip(const rapidjson::Value& body);

}  // namespace dsm::http

// JSON codec shared by the HTTP server (src/http/server.*) and the peer client
// (src/http/peer_client.*): parsing request/response bodies safely and writing messages.
//
// Parsing always uses RapidJSON's iterative parser with UTF-8 validation
// (kParseIterativeFlag | kParseValidateEncodingFlag; kParseStopWhenDoneFlag is NOT used: trailing
// garbage after the value is an error), so deep nesting cannot overflow the stack and invalid
// UTF-8 is rejected (a body that is all ASCII, valid as it stands, is parsed without the
// per-character check). Numbers reach the codec as text (kParseNumbersAsStringsFlag) and are
// converted here, never by RapidJSON's own string-to-double code: integers become Int/Uint/Int64/
// Uint64 values exactly as RapidJSON types them, every other number the correctly rounded double
// (std::from_chars), so a `ts` written by WriteMessage parses back to the same bits. Pure
// functions, thread-compatible.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "dsm/message.h"
#include "dsm/status.h"
#include "dsm/transport.h"

namespace dsm::json {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr size_t kMaxIdBytes = 256;  // msg_id, sender, recipient, origin

// Parses a whole body. Errors: InvalidArgument("invalid JSON at offset N: <reason>"), N the byte
// offset RapidJSON reports (for a number: where it begins). Integers beyond 64 bits become
// doubles. A number beyond the range of double ("1e400", "-1e309", and, refused by RapidJSON's
// scanner before any conversion, any exponent above 308 plus the fraction digits, even "0e400")
// gets "Number too big to be stored in double."; one too small for it ("1e-400") becomes a zero
// of its sign, the nearest double.
Result<rapidjson::Document> Parse(std::string_view body);

enum class MessageSource {
  kClient,  // /send: msg_id, sender, recipient optional (defaults filled by the caller);
            // origin/origin_seq/seq ignored
  kPeer,    // /replicate, /sync replies: msg_id required; origin and origin_seq go together
            // (both or neither); seq taken when present
};

// Validates one message object. Field rules: msg_id, sender, recipient, origin are strings of
// 1..kMaxIdBytes bytes; payload a string of at most max_payload_bytes (missing = ""); ts a finite
// number (missing = 0, the caller fills it in); origin_seq and seq non-negative integers.
// Errors name the field: InvalidArgument("'sender' must be a string of 1..256 bytes"),
// TooLarge("'payload' is 2000000 bytes, more than the limit of 1048576").
Result<Message> ParseMessage(const rapidjson::Value& v, MessageSource source,
                             size_t max_payload_bytes);

// Writes {"seq","msg_id","sender","recipient","payload","ts","origin","origin_seq"}.
void WriteMessage(Writer& w, const Message& m);
std::string MessageToJson(const Message& m);

// Peer protocol bodies (see docs/api.md).
// POST /replicate request: {"msgs":[...]}.
std::string EncodeReplicateRequest(const std::vector<Message>& msgs, const PushSkip& skip = {});
// POST /sync request: {"since":N,"limit":M,"have":{origin:high water,...}} ("have" only when
// not empty).
std::string EncodeSyncRequest(uint64_t since, size_t limit,
                              const std::map<std::string, uint64_t>& have = {});
// POST /sync request for one origin stream: {"origin":O,"since":N,"limit":M}; as for
// EncodeSyncRequest, limit 0 leaves the page size to the peer and larger ones are clamped to the
// peer's maximum.
std::string EncodeSyncStreamRequest(const std::string& origin, uint64_t since, size_t limit);
// A membership as heartbeats carry it: {"version":N,"members":[{"url","id","added","removed",
// "voter"},...]}. Decoding checks it like client input (well-formed URLs, stamps within the
// version and in order, at most kMaxMembers, no URL twice); `what` names the body in errors.
void WriteMembership(Writer& w, const Membership& m);
Result<Membership> DecodeMembership(const rapidjson::Value& v, const char* what);
// POST /heartbeat request: {"membership":{...}} (the caller's membership, shared both ways).
std::string EncodeHeartbeatRequest(const Membership& m);
Result<Membership> ParseHeartbeatRequest(std::string_view body);
// Replies, from the HTTP status and body of a peer's answer. A non-2xx status becomes the
// matching Status code with the body's "reason" (409 on /replicate: an OK reply with gap=true).
Result<HeartbeatReply> DecodeHeartbeatReply(long http_status, std::string_view body);
Result<ReplicateReply> DecodeReplicateReply(long http_status, std::string_view body);
Result<SyncReply> DecodeSyncReply(long http_status, std::string_view body,
                                  size_t max_payload_bytes);

// Maps an HTTP status to a Status code (2xx -> kOk, 400 -> kInvalidArgument, 404 -> kNotFound,
// 409 -> kConflict, 413 -> kTooLarge, 503 -> kUnavailable, 504 -> kTimeout, other 5xx -> kIOError).
Code CodeForHttpStatus(long http_status);
// The inverse, for error answers.
int HttpStatusForCode(Code code);

// {"status":"error","reason":"..."}
std::string ErrorBody(std::string_view reason);

}  // namespace dsm::json

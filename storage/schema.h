// The on-disk key schema of a dsm data directory (one RocksDB database). Shared by
// RocksLogStore and offline tools (dbdump) so the layout is written down once; see
// storage/format.md for the full description and the recovery rules.
//
// Column families:
//   "default"  unused
//   "log"      BE64(seq)                        -> record (storage/record.h)
//   "msgid"    msg_id                           -> BE64(seq)
//   "origin"   origin + '\0' + BE64(origin_seq) -> BE64(seq)
//   "inbox"    lp(recipient) + BE64(seq)        -> empty (format version 2: recipient index)
//   "consumers" lp(name) + tag [+ BE64(seq)]     -> durable consumers' state (format version 3;
//                                                  storage/consumer_schema.h)
//   "meta"     "format_version"                 -> BE64(format version)
//              "node_id"                        -> node id
//              "incarnation"                    -> 16 lowercase hex chars
//              "hwm\0" + origin                 -> BE64(high water of that origin)
//              "push\0" + peer_url              -> BE64(push cursor, an origin_seq of our stream)
//              "pull\0" + peer_url              -> lp(peer_stream) + BE64(peer seq)
//              "first_seq"                      -> BE64(first seq not trimmed; absent = 1)
//              "trim\0" + origin                -> BE64(positions of origin not held at/below)
//              "tmark\0" + BE64(seq)            -> fixed64 ts bits: a trim step that removed up
//                                                  to seq, its newest record's ts
//              "dedup_head"                     -> BE64(msg_id entries of seqs <= it forgotten)
// BE64 = 8-byte big-endian u64 (sorts numerically); lp = varint length + bytes.
//
// Pure functions and constants, thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "dsm/log_store.h"

namespace dsm::schema {

// Version of the whole layout. A database with a higher version is refused; versions 1 (no
// "inbox" family) and 2 (no "consumers" family) are upgraded in place when opened
// (storage/format.md).
inline constexpr uint64_t kFormatVersion = 3;

inline constexpr char kDefaultFamily[] = "default";
inline constexpr char kLogFamily[] = "log";
inline constexpr char kMsgIdFamily[] = "msgid";
inline constexpr char kOriginFamily[] = "origin";
inline constexpr char kMetaFamily[] = "meta";
inline constexpr char kInboxFamily[] = "inbox";  // since format version 2
inline constexpr char kConsumersFamily[] = "consumers";  // since format version 3

inline constexpr std::string_view kFormatVersionKey = "format_version";
inline constexpr std::string_view kNodeIdKey = "node_id";
inline constexpr std::string_view kIncarnationKey = "incarnation";
// Prefixes of the per-origin and per-peer meta keys (each ends with '\0').
inline constexpr std::string_view kHighWaterPrefix{"hwm\0", 4};
inline constexpr std::string_view kPushCursorPrefix{"push\0", 5};
inline constexpr std::string_view kPullCursorPrefix{"pull\0", 5};
// Retention (storage/format.md, "Retention").
inline constexpr std::string_view kFirstSeqKey = "first_seq";
inline constexpr std::string_view kDedupHeadKey = "dedup_head";
inline constexpr std::string_view kTrimmedPrefix{"trim\0", 5};
inline constexpr std::string_view kTrimMarkPrefix{"tmark\0", 6};

inline constexpr int kIncarnationHexChars = 16;

std::string LogKey(uint64_t seq);

// origin + '\0' + BE64(origin_seq). REQUIRES: origin has no '\0'.
std::string OriginKey(std::string_view origin, uint64_t origin_seq);
// Splits an "origin" family key. Returns false if it is malformed.
bool ParseOriginKey(std::string_view key, std::string_view* origin, uint64_t* origin_seq);

// lp(recipient) + BE64(seq): one entry per log record, so one recipient's messages are a
// contiguous, seq-ordered key range.
std::string InboxKey(std::string_view recipient, uint64_t seq);
// lp(recipient): the common prefix of one recipient's inbox keys.
std::string InboxPrefix(std::string_view recipient);
// Splits an "inbox" family key. Returns false if it is malformed.
bool ParseInboxKey(std::string_view key, std::string_view* recipient, uint64_t* seq);

std::string HighWaterKey(std::string_view origin);
std::string PushCursorKey(std::string_view peer_url);
std::string PullCursorKey(std::string_view peer_url);
std::string TrimmedKey(std::string_view origin);
std::string TrimMarkKey(uint64_t seq);
// The seq of a "tmark\0" + BE64(seq) key. Returns false if it is malformed.
bool ParseTrimMarkKey(std::string_view key, uint64_t* seq);
// A trim mark's value: the bits of the newest removed record's ts, fixed64 little-endian.
std::string EncodeTrimMarkValue(double ts);
// Returns false if `value` is not exactly 8 bytes.
bool DecodeTrimMarkValue(std::string_view value, double* ts);

std::string EncodePullCursor(const PullCursor& cursor);
// Returns false if `value` is not exactly an encoded cursor.
bool DecodePullCursor(std::string_view value, PullCursor* cursor);

// BE64(origin_seq) + the peer's stream id (the rest of the value). A bare 8-byte value (written by
// format versions before the peer's stream was recorded) decodes with an empty peer_stream.
std::string EncodePushCursor(const PushCursor& cursor);
// Returns false if `value` is shorter than 8 bytes.
bool DecodePushCursor(std::string_view value, PushCursor* cursor);

// Decodes an 8-byte BE64 value. Returns false if its size is not 8.
bool DecodeSeqValue(std::string_view value, uint64_t* v);

}  // namespace dsm::schema

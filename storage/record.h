// Record codec: how one Message is stored as the value of a log entry. The key (the local seq) is
// not part of the record.
//
// Layout, version 1 (varints and length prefixes from common/encoding.h):
//   u8      version (= 1)
//   lp      msg_id
//   lp      sender
//   lp      recipient
//   lp      payload
//   lp      origin
//   fixed64 origin_seq   (little-endian)
//   fixed64 ts           (little-endian bit pattern of the IEEE-754 double)
// where lp = varint64 length followed by that many bytes.
//
// Decoding never guesses: an unknown version, a truncated field or trailing bytes are
// Corruption errors naming the seq and the problem. A new layout gets a new version byte; old
// versions stay decodable.
//
// Pure functions, thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "dsm/message.h"
#include "dsm/status.h"

namespace dsm {

inline constexpr uint8_t kRecordVersion = 1;

// Appends the record of `msg` (all fields but seq) to *dst.
void AppendRecord(std::string* dst, const Message& msg);
// Same, but with `origin` and `origin_seq` in place of msg.origin and msg.origin_seq (a message
// adopted into a stream is encoded without copying it).
void AppendRecord(std::string* dst, const Message& msg, std::string_view origin,
                  uint64_t origin_seq);

// The record of `msg` (all fields but seq).
std::string EncodeRecord(const Message& msg);

// Decodes the record stored under `seq`; the result carries `seq`.
// Errors: Corruption("record at seq N: <problem>").
Result<Message> DecodeRecord(uint64_t seq, std::string_view record);

}  // namespace dsm

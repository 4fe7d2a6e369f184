// The key schema and value encodings of the "consumers" column family (format version 3): the
// durable state of the node's named consumers (include/dsm/consumer_state.h). Shared by
// RocksConsumerState and the offline tools (dsm-dbdump); storage/format.md describes the layout.
//
// Every key of one consumer starts with lp(name), so a consumer is one contiguous key range
// (DELETE removes it with one range deletion), followed by a tag byte:
//   lp(name) + 'd'             -> definition record (below)
//   lp(name) + 'f'             -> BE64(ack floor)
//   lp(name) + 's'             -> BE64(session)
//   lp(name) + 'a' + BE64(seq) -> empty: seq is acknowledged (above the floor)
//   lp(name) + 'x' + BE64(seq) -> dead letter: varint deliveries + fixed64 wall time bits
// Definition record, version 1:
//   u8 version (1), lp uid, fixed64 initial, u8 has_sender, [lp sender], u8 has_recipient,
//   [lp recipient], u8 start kind (0 first, 1 new, 2 seq, 3 origins), fixed64 start seq,
//   varint origin count, (lp origin, fixed64 origin_seq)*, varint ack_wait_ms,
//   varint max_in_flight, varint max_deliveries.
// Decoding rejects an unknown version, a truncated field and trailing bytes.
//
// Pure functions, thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "dsm/consumer_state.h"
#include "dsm/status.h"
#include "storage/schema.h"

namespace dsm::schema {

inline constexpr char kConsumerDefinitionTag = 'd';
inline constexpr char kConsumerFloorTag = 'f';
inline constexpr char kConsumerSessionTag = 's';
inline constexpr char kConsumerAckTag = 'a';
inline constexpr char kConsumerDeadTag = 'x';

// lp(name): the common prefix of a consumer's keys.
std::string ConsumerPrefix(std::string_view name);
// lp(name) + tag.
std::string ConsumerKey(std::string_view name, char tag);
// lp(name) + tag + BE64(seq).
std::string ConsumerSeqKey(std::string_view name, char tag, uint64_t seq);

// A parsed "consumers" key. `seq` only for the 'a' and 'x' tags.
struct ConsumerKeyParts {
  std::string_view name;
  char tag = 0;
  uint64_t seq = 0;
};
// Returns false if `key` is malformed (unknown tag, wrong length).
bool ParseConsumerKey(std::string_view key, ConsumerKeyParts* parts);

// The definition record of `c` (definition, uid, initial position).
std::string EncodeConsumerDefinition(const StoredConsumer& c);
// Fills c->definition, c->uid and c->initial. Errors: Corruption naming the problem.
Status DecodeConsumerDefinition(std::string_view value, StoredConsumer* c);

std::string EncodeDeadLetter(const DeadLetter& d);
// Returns false if `value` is not exactly an encoded dead letter. Sets d->deliveries, d->when.
bool DecodeDeadLetter(std::string_view value, DeadLetter* d);

}  // namespace dsm::schema

// Fuzz target: the storage decoders that read bytes from disk - the record codec
// (storage/record.h) and the key/value decoders of storage/schema.h. Any input must decode or be
// refused with Corruption, never crash; whatever decodes must re-encode to an equal value.
#include <bit>
#include <cstring>
#include <string>
#include <string_view>

#include "dsm/log_store.h"
#include "fuzz/fuzz_target.h"
#include "storage/record.h"
#include "storage/schema.h"

namespace {

bool SameMessage(const dsm::Message& a, const dsm::Message& b) {
  // ts compared by bit pattern: a NaN read from disk must survive a round trip too.
  return a.seq == b.seq && a.msg_id == b.msg_id && a.sender == b.sender &&
         a.recipient == b.recipient && a.payload == b.payload && a.origin == b.origin &&
         a.origin_seq == b.origin_seq &&
         std::bit_cast<uint64_t>(a.ts) == std::bit_cast<uint64_t>(b.ts);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  dsm::Result<dsm::Message> m = dsm::DecodeRecord(42, in);
  if (m.ok()) {
    DSM_FUZZ_CHECK(m->seq == 42, "decoded record lost its seq");
    dsm::Result<dsm::Message> again = dsm::DecodeRecord(42, dsm::EncodeRecord(*m));
    DSM_FUZZ_CHECK(again.ok(), "a decoded record does not decode after re-encoding");
    DSM_FUZZ_CHECK(SameMessage(*m, *again), "record round trip changed the message");
  } else {
    DSM_FUZZ_CHECK(m.status().code() == dsm::Code::kCorruption, "refusal is not Corruption");
    DSM_FUZZ_CHECK(m.status().message().rfind("record at seq 42: ", 0) == 0,
                   "refusal does not name the seq");
  }

  std::string_view origin;
  uint64_t origin_seq = 0;
  if (dsm::schema::ParseOriginKey(in, &origin, &origin_seq)) {
    DSM_FUZZ_CHECK(dsm::schema::OriginKey(origin, origin_seq) == in,
                   "origin key does not round-trip");
  }
  dsm::PullCursor cursor;
  if (dsm::schema::DecodePullCursor(in, &cursor)) {
    dsm::PullCursor again;
    DSM_FUZZ_CHECK(dsm::schema::DecodePullCursor(dsm::schema::EncodePullCursor(cursor), &again) &&
                       again == cursor,
                   "pull cursor does not round-trip");
  }
  uint64_t v = 0;
  if (dsm::schema::DecodeSeqValue(in, &v)) {
    DSM_FUZZ_CHECK(size == 8, "a seq value that is not 8 bytes decoded");
  }
  return 0;
}

// Fuzz target: the JSON parsers of src/http/json_codec.h, on both sides of the wire - request
// bodies as the server reads them (/send messages, /replicate batches, /sync requests) and peer
// replies as the peer client reads them (/heartbeat, /replicate, /sync). Any input must parse or
// be refused with a Status, never crash; every parsed number is finite, and a parsed message
// satisfies the field rules and reads back (ts to the bit) from the JSON it is written as.
#include <rapidjson/document.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_target.h"
#include "src/http/json_codec.h"

namespace {

constexpr size_t kMaxPayload = 4096;

void CheckMessage(const rapidjson::Value& v, dsm::json::MessageSource source) {
  dsm::Result<dsm::Message> m = dsm::json::ParseMessage(v, source, kMaxPayload);
  if (!m.ok()) {
    const dsm::Code c = m.status().code();
    DSM_FUZZ_CHECK(c == dsm::Code::kInvalidArgument || c == dsm::Code::kTooLarge,
                   "message refused with an unexpected code");
    return;
  }
  DSM_FUZZ_CHECK(m->payload.size() <= kMaxPayload, "payload over the limit accepted");
  for (const std::string* id : {&m->msg_id, &m->sender, &m->recipient, &m->origin}) {
    DSM_FUZZ_CHECK(id->size() <= dsm::json::kMaxIdBytes, "id over the limit accepted");
  }
  if (source == dsm::json::MessageSource::kPeer) {
    DSM_FUZZ_CHECK(!m->msg_id.empty(), "peer message without msg_id accepted");
  }
  // What was accepted is written back as valid JSON that parses to the same message.
  std::string text = dsm::json::MessageToJson(*m);
  dsm::Result<rapidjson::Document> doc = dsm::json::Parse(text);
  DSM_FUZZ_CHECK(doc.ok(), "MessageToJson wrote invalid JSON");
  dsm::Result<dsm::Message> back =
      dsm::json::ParseMessage(*doc, dsm::json::MessageSource::kPeer, kMaxPayload);
  if (!m->msg_id.empty() && back.ok()) {
    DSM_FUZZ_CHECK(back->payload == m->payload && back->sender == m->sender &&
                       back->recipient == m->recipient && back->msg_id == m->msg_id,
                   "message JSON round trip changed it");
    DSM_FUZZ_CHECK(std::bit_cast<uint64_t>(back->ts) == std::bit_cast<uint64_t>(m->ts),
                   "message JSON round trip changed its ts");
  }
}

// Every number of a parsed document is a finite value (walked without recursion: documents nest
// deeply).
void CheckNumbers(const rapidjson::Value& root) {
  std::vector<const rapidjson::Value*> pending = {&root};
  while (!pending.empty()) {
    const rapidjson::Value* v = pending.back();
    pending.pop_back();
    if (v->IsDouble()) DSM_FUZZ_CHECK(std::isfinite(v->GetDouble()), "non-finite number parsed");
    if (v->IsArray()) {
      for (const rapidjson::Value& e : v->GetArray()) pending.push_back(&e);
    } else if (v->IsObject()) {
      for (auto it = v->MemberBegin(); it != v->MemberEnd(); ++it) pending.push_back(&it->value);
    }
  }
}

void CheckMessages(const rapidjson::Value& v) {
  if (v.IsArray()) {
    for (const rapidjson::Value& e : v.GetArray()) {
      CheckMessage(e, dsm::json::MessageSource::kPeer);
      CheckMessage(e, dsm::json::MessageSource::kClient);
    }
  } else {
    CheckMessage(v, dsm::json::MessageSource::kPeer);
    CheckMessage(v, dsm::json::MessageSource::kClient);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  dsm::Result<rapidjson::Document> doc = dsm::json::Parse(in);
  if (doc.ok()) {
    const rapidjson::Document& d = *doc;
    CheckNumbers(d);
    CheckMessages(d);
    if (d.IsObject()) {
      for (const char* field : {"msg", "msgs", "messages"}) {
        auto it = d.FindMember(field);
        if (it != d.MemberEnd()) CheckMessages(it->value);
      }
    }
  } else {
    DSM_FUZZ_CHECK(doc.status().code() == dsm::Code::kInvalidArgument,
                   "parse refusal with an unexpected code");
  }
  // Peer replies, as a (possibly hostile) peer could send them, with each status class.
  for (long http : {200L, 409L, 503L}) {
    (void)dsm::json::DecodeHeartbeatReply(http, in);
    (void)dsm::json::DecodeReplicateReply(http, in);
    dsm::Result<dsm::SyncReply> sync = dsm::json::DecodeSyncReply(http, in, kMaxPayload);
    if (sync.ok()) {
      for (const dsm::Message& m : sync->messages) {
        DSM_FUZZ_CHECK(m.payload.size() <= kMaxPayload, "sync reply payload over the limit");
      }
    }
  }
  return 0;
}

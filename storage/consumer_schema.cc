#include "storage/consumer_schema.h"

#include <bit>
#include <future>
#include <memory>
#include <utility>

#include "common/encoding.h"

namespace dsm {

Status ConsumerStateStore::CommitAndWait(std::vector<ConsumerChange> changes) {
  auto done = std::make_shared<std::promise<Status>>();
  std::future<Status> outcome = done->get_future();
  Commit(std::move(changes), [done](Status s) { done->set_value(std::move(s)); });
  return outcome.get();
}

namespace schema {
namespace {

constexpr uint8_t kDefinitionVersion = 1;

bool IsSeqTag(char tag) { return tag == kConsumerAckTag || tag == kConsumerDeadTag; }
bool IsPlainTag(char tag) {
  return tag == kConsumerDefinitionTag || tag == kConsumerFloorTag || tag == kConsumerSessionTag;
}

void PutOptional(std::string* dst, const std::optional<std::string>& s) {
  dst->push_back(s ? 1 : 0);
  if (s) PutLengthPrefixed(dst, *s);
}

bool GetOptional(std::string_view* in, std::optional<std::string>* s) {
  if (in->empty()) return false;
  const char has = in->front();
  in->remove_prefix(1);
  if (has == 0) {
    s->reset();
    return true;
  }
  std::string_view v;
  if (has != 1 || !GetLengthPrefixed(in, &v)) return false;
  *s = std::string(v);
  return true;
}

}  // namespace

std::string ConsumerPrefix(std::string_view name) {
  std::string key;
  PutLengthPrefixed(&key, name);
  return key;
}

std::string ConsumerKey(std::string_view name, char tag) {
  std::string key = ConsumerPrefix(name);
  key.push_back(tag);
  return key;
}

std::string ConsumerSeqKey(std::string_view name, char tag, uint64_t seq) {
  std::string key = ConsumerKey(name, tag);
  PutBigEndian64(&key, seq);
  return key;
}

bool ParseConsumerKey(std::string_view key, ConsumerKeyParts* parts) {
  if (!GetLengthPrefixed(&key, &parts->name) || parts->name.empty() || key.empty()) return false;
  parts->tag = key.front();
  key.remove_prefix(1);
  parts->seq = 0;
  if (IsPlainTag(parts->tag)) return key.empty();
  if (!IsSeqTag(parts->tag) || key.size() != 8) return false;
  parts->seq = DecodeBigEndian64(key);
  return true;
}

std::string EncodeConsumerDefinition(const StoredConsumer& c) {
  const ConsumerDefinition& d = c.definition;
  std::string v;
  v.push_back(static_cast<char>(kDefinitionVersion));
  PutLengthPrefixed(&v, c.uid);
  PutFixed64(&v, c.initial);
  PutOptional(&v, d.sender);
  PutOptional(&v, d.recipient);
  v.push_back(static_cast<char>(d.start.kind));
  PutFixed64(&v, d.start.seq);
  PutVarint64(&v, d.start.origins.size());
  for (const auto& [origin, origin_seq] : d.start.origins) {
    PutLengthPrefixed(&v, origin);
    PutFixed64(&v, origin_seq);
  }
  PutVarint64(&v, d.ack_wait_ms);
  PutVarint64(&v, d.max_in_flight);
  PutVarint64(&v, d.max_deliveries);
  return v;
}

Status DecodeConsumerDefinition(std::string_view in, StoredConsumer* c) {
  auto bad = [](const char* what) {
    return Status::Corruption(std::string("consumer definition: ") + what);
  };
  if (in.empty()) return bad("empty");
  if (static_cast<uint8_t>(in.front()) != kDefinitionVersion) return bad("unknown version");
  in.remove_prefix(1);
  ConsumerDefinition& d = c->definition;
  std::string_view uid;
  if (!GetLengthPrefixed(&in, &uid) || !GetFixed64(&in, &c->initial)) return bad("truncated");
  c->uid = std::string(uid);
  if (!GetOptional(&in, &d.sender) || !GetOptional(&in, &d.recipient) || in.empty()) {
    return bad("truncated filter");
  }
  const uint8_t kind = static_cast<uint8_t>(in.front());
  in.remove_prefix(1);
  if (kind > static_cast<uint8_t>(ConsumerStart::Kind::kOrigins)) return bad("unknown start");
  d.start.kind = static_cast<ConsumerStart::Kind>(kind);
  uint64_t origins = 0;
  if (!GetFixed64(&in, &d.start.seq) || !GetVarint64(&in, &origins)) return bad("truncated start");
  d.start.origins.clear();
  for (uint64_t i = 0; i < origins; ++i) {
    std::string_view origin;
    uint64_t origin_seq = 0;
    if (!GetLengthPrefixed(&in, &origin) || !GetFixed64(&in, &origin_seq)) {
      return bad("truncated start origins");
    }
    d.start.origins[std::string(origin)] = origin_seq;
  }
  if (!GetVarint64(&in, &d.ack_wait_ms) || !GetVarint64(&in, &d.max_in_flight) ||
      !GetVarint64(&in, &d.max_deliveries)) {
    return bad("truncated limits");
  }
  if (!in.empty()) return bad("trailing bytes");
  return Status::Ok();
}

std::string EncodeDeadLetter(const DeadLetter& d) {
  std::string v;
  PutVarint64(&v, d.deliveries);
  PutFixed64(&v, std::bit_cast<uint64_t>(d.when));
  return v;
}

bool DecodeDeadLetter(std::string_view value, DeadLetter* d) {
  uint64_t bits = 0;
  if (!GetVarint64(&value, &d->deliveries) || !GetFixed64(&value, &bits) || !value.empty()) {
    return false;
  }
  d->when = std::bit_cast<double>(bits);
  return true;
}

}  // namespace schema
}  // namespace dsm

#include "storage/schema.h"

#include <bit>

#include "common/encoding.h"

namespace dsm::schema {
namespace {

std::string PrefixedKey(std::string_view prefix, std::string_view name) {
  std::string key;
  key.reserve(prefix.size() + name.size());
  key.append(prefix);
  key.append(name);
  return key;
}

}  // namespace

std::string LogKey(uint64_t seq) { return BigEndian64(seq); }

std::string OriginKey(std::string_view origin, uint64_t origin_seq) {
  std::string key;
  key.reserve(origin.size() + 9);
  key.append(origin);
  key.push_back('\0');
  PutBigEndian64(&key, origin_seq);
  return key;
}

bool ParseOriginKey(std::string_view key, std::string_view* origin, uint64_t* origin_seq) {
  if (key.size() < 9 || key[key.size() - 9] != '\0') return false;
  *origin = key.substr(0, key.size() - 9);
  if (origin->find('\0') != std::string_view::npos) return false;
  *origin_seq = DecodeBigEndian64(key.substr(key.size() - 8));
  return true;
}

std::string InboxKey(std::string_view recipient, uint64_t seq) {
  std::string key;
  key.reserve(recipient.size() + 10 + 8);
  PutLengthPrefixed(&key, recipient);
  PutBigEndian64(&key, seq);
  return key;
}

std::string InboxPrefix(std::string_view recipient) {
  std::string key;
  key.reserve(recipient.size() + 10);
  PutLengthPrefixed(&key, recipient);
  return key;
}

bool ParseInboxKey(std::string_view key, std::string_view* recipient, uint64_t* seq) {
  if (!GetLengthPrefixed(&key, recipient) || key.size() != 8) return false;
  *seq = DecodeBigEndian64(key);
  return true;
}

std::string HighWaterKey(std::string_view origin) { return PrefixedKey(kHighWaterPrefix, origin); }
std::string PushCursorKey(std::string_view peer_url) {
  return PrefixedKey(kPushCursorPrefix, peer_url);
}
std::string PullCursorKey(std::string_view peer_url) {
  return PrefixedKey(kPullCursorPrefix, peer_url);
}

std::string TrimmedKey(std::string_view origin) { return PrefixedKey(kTrimmedPrefix, origin); }

std::string TrimMarkKey(uint64_t seq) { return PrefixedKey(kTrimMarkPrefix, LogKey(seq)); }

bool ParseTrimMarkKey(std::string_view key, uint64_t* seq) {
  if (!key.starts_with(kTrimMarkPrefix)) return false;
  return DecodeSeqValue(key.substr(kTrimMarkPrefix.size()), seq);
}

std::string EncodeTrimMarkValue(double ts) {
  std::string out;
  PutFixed64(&out, std::bit_cast<uint64_t>(ts));
  return out;
}

bool DecodeTrimMarkValue(std::string_view value, double* ts) {
  uint64_t bits = 0;
  if (value.size() != 8 || !GetFixed64(&value, &bits)) return false;
  *ts = std::bit_cast<double>(bits);
  return true;
}

std::string EncodePullCursor(const PullCursor& cursor) {
  std::string value;
  value.reserve(cursor.peer_stream.size() + 10 + 8);
  PutLengthPrefixed(&value, cursor.peer_stream);
  PutBigEndian64(&value, cursor.seq);
  return value;
}

bool DecodePullCursor(std::string_view value, PullCursor* cursor) {
  std::string_view stream;
  if (!GetLengthPrefixed(&value, &stream) || value.size() != 8) return false;
  cursor->peer_stream.assign(stream.data(), stream.size());
  cursor->seq = DecodeBigEndian64(value);
  return true;
}

std::string EncodePushCursor(const PushCursor& cursor) {
  std::string value;
  value.reserve(8 + cursor.peer_stream.size());
  PutBigEndian64(&value, cursor.origin_seq);
  value += cursor.peer_stream;
  return value;
}

bool DecodePushCursor(std::string_view value, PushCursor* cursor) {
  if (value.size() < 8) return false;
  cursor->origin_seq = DecodeBigEndian64(value.substr(0, 8));
  cursor->peer_stream.assign(value.substr(8));
  return true;
}

bool DecodeSeqValue(std::string_view value, uint64_t* v) {
  if (value.size() != 8) return false;
  *v = DecodeBigEndian64(value);
  return true;
}

}  // namespace dsm::schema

#include "src/http/json_codec.h"

#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <system_error>
#include <utility>

#include "common/peer_url.h"
#include "src/http/message_json.h"
#include "src/http/utf8.h"

namespace dsm::json {
namespace {

using http::IsValidUtf8;
using http::SanitizeUtf8;

// Numbers are handed to DocumentBuilder as text: RapidJSON only checks their grammar and range.
constexpr unsigned kParseFlags = rapidjson::kParseIterativeFlag |
                                 rapidjson::kParseValidateEncodingFlag |
                                 rapidjson::kParseNumbersAsStringsFlag;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Whether every byte of `s` is ASCII (below 0x80), eight at a time. An ASCII body is valid UTF-8
// as it stands, so its parse skips RapidJSON's per-character encoding check (escapes are checked
// either way); most bodies are.
bool IsAscii(std::string_view s) {
  constexpr uint64_t kHighBits = 0x8080808080808080;
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, s.data() + i, sizeof word);
    if ((word & kHighBits) != 0) return false;
  }
  for (; i < s.size(); ++i) {
    if (static_cast<unsigned char>(s[i]) >= 0x80) return false;
  }
  return true;
}

// For the text of a JSON number that std::from_chars found out of the range of double: true when
// its magnitude is too large, false when it is too small (it rounds to zero). The decimal order of
// its first significant digit tells them apart: above 308 for the first, below -322 for the second.
bool AboveDoubleRange(std::string_view text) {
  constexpr int64_t kExponentCap = 1'000'000'000;  // far beyond both limits; no overflow
  size_t i = text.empty() || text[0] != '-' ? 0 : 1;
  int64_t order = 0;  // the number is below 10^order and at least 10^(order-1)
  bool significant = false;
  for (; i < text.size() && IsDigit(text[i]); ++i) {
    if (significant || text[i] != '0') {
      significant = true;
      ++order;
    }
  }
  if (i < text.size() && text[i] == '.') {
    for (++i; i < text.size() && IsDigit(text[i]); ++i) {
      if (significant) continue;
      if (text[i] == '0') {
        --order;
      } else {
        significant = true;
      }
    }
  }
  if (!significant) return false;  // zero is never out of range
  int64_t exponent = 0;
  bool exponent_negative = false;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) exponent_negative = text[i++] == '-';
    for (; i < text.size() && IsDigit(text[i]); ++i) {
      exponent = std::min(exponent * 10 + (text[i] - '0'), kExponentCap);
    }
  }
  return order + (exponent_negative ? -exponent : exponent) > 0;
}

// The SAX handler Parse builds its document with. Every event goes to the document as RapidJSON's
// own parsing would send it, except numbers: they arrive as text (kParseNumbersAsStringsFlag) and
// are converted here, so RapidJSON's string-to-double code (internal/strtod.h, which returns
// garbage or has undefined behaviour for some significands with exponents) never runs.
class DocumentBuilder {
 public:
  explicit DocumentBuilder(rapidjson::Document* doc) : doc_(doc) {}

  // Whether the parse stopped because a number was beyond the range of double.
  bool number_too_big() const { return number_too_big_; }

  bool Null() { return doc_->Null(); }
  bool Bool(bool b) { return doc_->Bool(b); }
  bool Int(int i) { return doc_->Int(i); }
  bool Uint(unsigned u) { return doc_->Uint(u); }
  bool Int64(int64_t i) { return doc_->Int64(i); }
  bool Uint64(uint64_t u) { return doc_->Uint64(u); }
  bool Double(double d) { return doc_->Double(d); }
  bool String(const char* s, rapidjson::SizeType length, bool copy) {
    return doc_->String(s, length, copy);
  }
  bool StartObject() { return doc_->StartObject(); }
  bool Key(const char* s, rapidjson::SizeType length, bool copy) {
    return doc_->Key(s, length, copy);
  }
  bool EndObject(rapidjson::SizeType members) { return doc_->EndObject(members); }
  bool StartArray() { return doc_->StartArray(); }
  bool EndArray(rapidjson::SizeType elements) { return doc_->EndArray(elements); }

  // `text` matches the JSON number grammar (RapidJSON checked it). An integer is typed as
  // RapidJSON types it - Uint up to 2^32-1, Uint64 up to 2^64-1, Int down to -2^31, Int64 down to
  // -2^63 (so "-0" is the integer 0) - and anything else, fractions, exponents and integers
  // beyond 64 bits, is the correctly rounded double. Returns false (the parse stops) for a number
  // beyond the range of double.
  bool RawNumber(const char* text, rapidjson::SizeType length, bool /*copy*/) {
    const std::string_view number(text, length);
    const bool negative = !number.empty() && number[0] == '-';
    if (number.find_first_of(".eE") == std::string_view::npos) {
      uint64_t magnitude = 0;
      const char* digits = number.data() + (negative ? 1 : 0);
      auto [end, ec] = std::from_chars(digits, number.data() + number.size(), magnitude);
      if (ec == std::errc() && end == number.data() + number.size()) {
        constexpr uint64_t kInt32Magnitude = uint64_t{1} << 31;
        constexpr uint64_t kInt64Magnitude = uint64_t{1} << 63;
        if (!negative) {
          return magnitude <= std::numeric_limits<uint32_t>::max()
                     ? doc_->Uint(static_cast<unsigned>(magnitude))
                     : doc_->Uint64(magnitude);
        }
        // Two's complement negation of the magnitude (well defined for -2^31 and -2^63 too).
        if (magnitude <= kInt32Magnitude) {
          return doc_->Int(static_cast<int32_t>(static_cast<uint32_t>(uint64_t{0} - magnitude)));
        }
        if (magnitude <= kInt64Magnitude) {
          return doc_->Int64(static_cast<int64_t>(uint64_t{0} - magnitude));
        }
      }
      // Beyond 64 bits: a double, as RapidJSON makes it.
    }
    double value = 0.0;
    auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (ec == std::errc::result_out_of_range) {
      if (AboveDoubleRange(number)) {
        number_too_big_ = true;
        return false;
      }
      value = negative ? -0.0 : 0.0;
    } else if (ec != std::errc() || end != number.data() + number.size()) {
      return false;  // not a number after all: the parse stops with a handler error
    }
    return doc_->Double(value);
  }

 private:
  rapidjson::Document* doc_;
  bool number_too_big_ = false;
};

// How many bytes of a peer's error body are quoted when it has no "reason".
constexpr size_t kQuotedBodyBytes = 200;

Status MakeStatus(Code code, std::string msg) {
  switch (code) {
    case Code::kOk:
      return Status::Ok();
    case Code::kNotFound:
      return Status::NotFound(std::move(msg));
    case Code::kCorruption:
      return Status::Corruption(std::move(msg));
    case Code::kIOError:
      return Status::IOError(std::move(msg));
    case Code::kInvalidArgument:
      return Status::InvalidArgument(std::move(msg));
    case Code::kTooLarge:
      return Status::TooLarge(std::move(msg));
    case Code::kUnavailable:
      return Status::Unavailable(std::move(msg));
    case Code::kTimeout:
      return Status::Timeout(std::move(msg));
    case Code::kConflict:
      return Status::Conflict(std::move(msg));
    case Code::kTrimmed:
      return Status::Trimmed(std::move(msg));
  }
  return Status::IOError(std::move(msg));
}

void WriteString(Writer& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

std::string_view StringOf(const rapidjson::Value& v) {
  return std::string_view(v.GetString(), v.GetStringLength());
}

std::string IdRule(const char* field) {
  return std::string("'") + field + "' must be a string of 1.." + std::to_string(kMaxIdBytes) +
         " bytes";
}

// An identifier field (msg_id, sender, recipient, origin). Leaves *out untouched when absent.
Status ParseIdField(const rapidjson::Value& obj, const char* field, std::string* out,
                    bool* present) {
  *present = false;
  auto it = obj.FindMember(field);
  if (it == obj.MemberEnd()) return Status::Ok();
  const rapidjson::Value& v = it->value;
  if (!v.IsString() || v.GetStringLength() == 0 || v.GetStringLength() > kMaxIdBytes) {
    return Status::InvalidArgument(IdRule(field));
  }
  std::string_view s = StringOf(v);
  if (!IsValidUtf8(s)) {
    return Status::InvalidArgument(std::string("'") + field + "' is not valid UTF-8");
  }
  out->assign(s.data(), s.size());
  *present = true;
  return Status::Ok();
}

// A non-negative integer field. Leaves *out untouched when absent.
Status ParseUintField(const rapidjson::Value& obj, const char* field, uint64_t* out,
                      bool* present) {
  *present = false;
  auto it = obj.FindMember(field);
  if (it == obj.MemberEnd()) return Status::Ok();
  if (!it->value.IsUint64()) {
    return Status::InvalidArgument(std::string("'") + field + "' must be a non-negative integer");
  }
  *out = it->value.GetUint64();
  *present = true;
  return Status::Ok();
}

// The error reason carried by a peer's non-2xx answer.
std::string ReasonOf(long http_status, std::string_view body) {
  Result<rapidjson::Document> doc = Parse(body);
  if (doc.ok() && doc->IsObject()) {
    const rapidjson::Document& d = *doc;
    auto it = d.FindMember("reason");
    if (it != d.MemberEnd() && it->value.IsString()) {
      return SanitizeUtf8(StringOf(it->value));
    }
  }
  std::string quoted = SanitizeUtf8(body.substr(0, kQuotedBodyBytes));
  std::string reason = "HTTP " + std::to_string(http_status);
  if (!quoted.empty()) reason += ": " + quoted;
  return reason;
}

// Parses a 2xx body as an object. Errors: Corruption naming `what`.
Result<rapidjson::Document> ParseReplyObject(std::string_view body, const char* what) {
  Result<rapidjson::Document> doc = Parse(body);
  if (!doc.ok()) {
    return Status::Corruption(std::string("invalid ") + what + ": " + doc.status().message());
  }
  if (!doc->IsObject()) {
    return Status::Corruption(std::string("invalid ") + what + ": not a JSON object");
  }
  return doc;
}

Status ReplyFieldError(const char* what, const std::string& problem) {
  return Status::Corruption(std::string("invalid ") + what + ": " + problem);
}

}  // namespace

Result<rapidjson::Document> Parse(std::string_view body) {
  // A raw NUL byte is never valid JSON (inside strings it must be escaped). Rejecting it here also
  // keeps RapidJSON from taking it for the end of the input.
  if (const void* nul = std::memchr(body.data(), '\0', body.size())) {
    size_t offset = static_cast<const char*>(nul) - body.data();
    return Status::InvalidArgument("invalid JSON at offset " + std::to_string(offset) +
                                   ": NUL byte");
  }
  rapidjson::Document doc;
  // The stream Document::Parse(text, length) reads from (it also skips a UTF-8 byte order mark).
  rapidjson::MemoryStream bytes(body.data(), body.size());
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in(bytes);
  rapidjson::Reader reader;
  DocumentBuilder builder(&doc);
  rapidjson::ParseResult result;
  const bool ascii = IsAscii(body);
  auto generate = [&](rapidjson::Document&) {
    result = ascii ? reader.Parse<kParseFlags & ~rapidjson::kParseValidateEncodingFlag>(in, builder)
                   : reader.Parse<kParseFlags>(in, builder);
    return !result.IsError();
  };
  doc.Populate(generate);
  if (result.IsError()) {
    // A number refused by the builder stops the parse where the number begins.
    const rapidjson::ParseErrorCode code =
        builder.number_too_big() ? rapidjson::kParseErrorNumberTooBig : result.Code();
    return Status::InvalidArgument("invalid JSON at offset " + std::to_string(result.Offset()) +
                                   ": " + rapidjson::GetParseError_En(code));
  }
  return doc;
}

Result<Message> ParseMessage(const rapidjson::Value& v, MessageSource source,
                             size_t max_payload_bytes) {
  if (!v.IsObject()) return Status::InvalidArgument("a message must be a JSON object");
  Message m;
  bool present = false;
  Status s = ParseIdField(v, "msg_id", &m.msg_id, &present);
  if (!s.ok()) return s;
  if (!present && source == MessageSource::kPeer) {
    return Status::InvalidArgument("'msg_id' is required");
  }
  s = ParseIdField(v, "sender", &m.sender, &present);
  if (!s.ok()) return s;
  s = ParseIdField(v, "recipient", &m.recipient, &present);
  if (!s.ok()) return s;

  if (auto it = v.FindMember("payload"); it != v.MemberEnd()) {
    if (!it->value.IsString()) return Status::InvalidArgument("'payload' must be a string");
    std::string_view payload = StringOf(it->value);
    if (payload.size() > max_payload_bytes) {
      return Status::TooLarge("'payload' is " + std::to_string(payload.size()) +
                              " bytes, more than the limit of " +
                              std::to_string(max_payload_bytes));
    }
    if (!IsValidUtf8(payload)) return Status::InvalidArgument("'payload' is not valid UTF-8");
    m.payload.assign(payload.data(), payload.size());
  }

  if (auto it = v.FindMember("ts"); it != v.MemberEnd()) {
    if (!it->value.IsNumber() || !std::isfinite(it->value.GetDouble())) {
      return Status::InvalidArgument("'ts' must be a finite number (seconds since the epoch)");
    }
    m.ts = it->value.GetDouble();
  }

  if (source == MessageSource::kPeer) {
    bool has_origin = false;
    bool has_origin_seq = false;
    s = ParseIdField(v, "origin", &m.origin, &has_origin);
    if (!s.ok()) return s;
    s = ParseUintField(v, "origin_seq", &m.origin_seq, &has_origin_seq);
    if (!s.ok()) return s;
    if (has_origin != has_origin_seq) {
      return Status::InvalidArgument("'origin' and 'origin_seq' must be given together");
    }
    if (has_origin && m.origin_seq == 0) {
      return Status::InvalidArgument("'origin_seq' must be at least 1");
    }
    s = ParseUintField(v, "seq", &m.seq, &present);
    if (!s.ok()) return s;
  }
  return m;
}

void WriteMessage(Writer& w, const Message& m) { WriteMessageObject(w, m, WriteString); }

std::string MessageToJson(const Message& m) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  WriteMessage(w, m);
  return std::string(buf.GetString(), buf.GetSize());
}

std::string EncodeReplicateRequest(const std::vector<Message>& msgs, const PushSkip& skip) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  if (skip.trimmed_through > 0) {
    w.Key("origin");
    WriteString(w, skip.origin);
    w.Key("trimmed_through");
    w.Uint64(skip.trimmed_through);
  }
  w.Key("msgs");
  w.StartArray();
  for (const Message& m : msgs) WriteMessage(w, m);
  w.EndArray();
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

std::string EncodeSyncStreamRequest(const std::string& origin, uint64_t since, size_t limit) {
  constexpr size_t kMaxLimit = 10000;
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("origin");
  w.String(origin.data(), static_cast<rapidjson::SizeType>(origin.size()));
  w.Key("since");
  w.Uint64(since);
  if (limit > 0) {
    w.Key("limit");
    w.Uint64(std::min(limit, kMaxLimit));
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

std::string EncodeSyncRequest(uint64_t since, size_t limit,
                              const std::map<std::string, uint64_t>& have) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("since");
  w.Uint64(since);
  // The server takes 1..10000; 0 asks for everything after `since` (a streamed answer).
  if (limit > 0) {
    w.Key("limit");
    w.Uint64(std::min<size_t>(limit, 10000));
  }
  if (!have.empty()) {
    w.Key("have");
    w.StartObject();
    for (const auto& [origin, high_water] : have) {
      w.Key(origin.data(), static_cast<rapidjson::SizeType>(origin.size()));
      w.Uint64(high_water);
    }
    w.EndObject();
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}


Result<Membership> DecodeMembership(const rapidjson::Value& v, const char* what) {
  auto bad = [&](const std::string& problem) {
    return ReplyFieldError(what, "'membership' " + problem);
  };
  if (!v.IsObject()) return bad("must be an object");
  Membership m;
  auto version = v.FindMember("version");
  if (version == v.MemberEnd() || !version->value.IsUint64()) {
    return bad("needs a non-negative integer 'version'");
  }
  m.version = version->value.GetUint64();
  auto members = v.FindMember("members");
  if (members == v.MemberEnd() || !members->value.IsArray() ||
      members->value.Size() > kMaxMembers) {
    return bad("needs 'members', an array of at most " + std::to_string(kMaxMembers));
  }
  for (const rapidjson::Value& e : members->value.GetArray()) {
    if (!e.IsObject()) return bad("members must be objects");
    auto url = e.FindMember("url");
    auto id = e.FindMember("id");
    auto added = e.FindMember("added");
    auto removed = e.FindMember("removed");
    auto voter = e.FindMember("voter");
    if (url == e.MemberEnd() || !url->value.IsString() || id == e.MemberEnd() ||
        !id->value.IsString() || id->value.GetStringLength() > kMaxIdBytes ||
        added == e.MemberEnd() || !added->value.IsUint64() || removed == e.MemberEnd() ||
        !removed->value.IsUint64() || voter == e.MemberEnd() || !voter->value.IsBool()) {
      return bad("members need 'url', 'id' (a string), 'added', 'removed' (integers), 'voter'");
    }
    MemberEntry entry;
    entry.url = std::string(StringOf(url->value));
    Result<std::string> normal = NormalizePeerUrl(entry.url);
    if (!normal.ok() || *normal != entry.url) return bad("member URL '" + entry.url + "' is malformed");
    entry.node_id = std::string(StringOf(id->value));
    entry.added = added->value.GetUint64();
    entry.removed = removed->value.GetUint64();
    entry.voter = voter->value.GetBool();
    if ((entry.removed != 0 && entry.removed <= entry.added) ||
        std::max(entry.added, entry.removed) > m.version) {
      return bad("member " + entry.url + " has stamps beyond the version or out of order");
    }
    if (m.Find(entry.url) != nullptr) return bad("lists " + entry.url + " twice");
    m.Insert(std::move(entry));
  }
  return m;
}


void WriteMembership(Writer& w, const Membership& m) {
  auto str = [&w](const std::string& s) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  };
  w.StartObject();
  w.Key("version");
  w.Uint64(m.version);
  w.Key("members");
  w.StartArray();
  for (const MemberEntry& e : m.entries) {
    w.StartObject();
    w.Key("url");
    str(e.url);
    w.Key("id");
    str(e.node_id);
    w.Key("added");
    w.Uint64(e.added);
    w.Key("removed");
    w.Uint64(e.removed);
    w.Key("voter");
    w.Bool(e.voter);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
}

std::string EncodeHeartbeatRequest(const Membership& m) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("membership");
  WriteMembership(w, m);
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

Result<Membership> ParseHeartbeatRequest(std::string_view body) {
  Result<rapidjson::Document> doc = Parse(body);
  if (!doc.ok()) return doc.status();
  const Status shape = Status::InvalidArgument("the body must be {\"membership\": {...}}");
  if (!doc->IsObject() || doc->MemberCount() != 1) return shape;
  auto m = doc->FindMember("membership");
  if (m == doc->MemberEnd()) return shape;
  Result<Membership> membership = DecodeMembership(m->value, "heartbeat request");
  if (!membership.ok()) return Status::InvalidArgument(membership.status().message());
  return membership;
}

Result<HeartbeatReply> DecodeHeartbeatReply(long http_status, std::string_view body) {
  constexpr const char* kWhat = "heartbeat reply";
  Code code = CodeForHttpStatus(http_status);
  if (code != Code::kOk) return MakeStatus(code, ReasonOf(http_status, body));
  Result<rapidjson::Document> doc = ParseReplyObject(body, kWhat);
  if (!doc.ok()) return doc.status();
  const rapidjson::Document& d = *doc;

  HeartbeatReply reply;
  auto node_id = d.FindMember("node_id");
  if (node_id == d.MemberEnd() || !node_id->value.IsString()) {
    return ReplyFieldError(kWhat, "'node_id' must be a string");
  }
  reply.node_id.assign(node_id->value.GetString(), node_id->value.GetStringLength());
  auto time = d.FindMember("time");
  if (time == d.MemberEnd() || !time->value.IsNumber()) {
    return ReplyFieldError(kWhat, "'time' must be a number");
  }
  reply.time = time->value.GetDouble();
  if (auto it = d.FindMember("stream"); it != d.MemberEnd()) {
    if (!it->value.IsString()) return ReplyFieldError(kWhat, "'stream' must be a string");
    reply.stream.assign(it->value.GetString(), it->value.GetStringLength());
  }
  if (auto it = d.FindMember("high_waters"); it != d.MemberEnd()) {
    if (!it->value.IsObject()) return ReplyFieldError(kWhat, "'high_waters' must be an object");
    for (auto m = it->value.MemberBegin(); m != it->value.MemberEnd(); ++m) {
      if (!m->value.IsUint64()) {
        return ReplyFieldError(kWhat, "'high_waters' values must be non-negative integers");
      }
      reply.high_waters[std::string(StringOf(m->name))] = m->value.GetUint64();
    }
  }
  if (auto it = d.FindMember("max_request_bytes"); it != d.MemberEnd()) {
    if (!it->value.IsUint64()) {
      return ReplyFieldError(kWhat, "'max_request_bytes' must be a non-negative integer");
    }
    reply.max_request_bytes = it->value.GetUint64();
  }
  if (auto it = d.FindMember("membership"); it != d.MemberEnd()) {
    Result<Membership> m = DecodeMembership(it->value, kWhat);
    if (!m.ok()) return m.status();
    reply.membership = std::move(m).value();
  }
  return reply;
}

Result<ReplicateReply> DecodeReplicateReply(long http_status, std::string_view body) {
  constexpr const char* kWhat = "replicate reply";
  Code code = CodeForHttpStatus(http_status);
  bool gap = code == Code::kConflict;
  if (code != Code::kOk && !gap) return MakeStatus(code, ReasonOf(http_status, body));
  Result<rapidjson::Document> doc = ParseReplyObject(body, kWhat);
  if (!doc.ok()) {
    // A 409 that is not ours (no body to read a high water from) is an ordinary conflict.
    if (gap) return Status::Conflict(ReasonOf(http_status, body));
    return doc.status();
  }
  const rapidjson::Document& d = *doc;
  ReplicateReply reply;
  reply.gap = gap;
  auto hw = d.FindMember("high_water");
  if (hw == d.MemberEnd() || !hw->value.IsUint64()) {
    if (gap) return Status::Conflict(ReasonOf(http_status, body));
    return ReplyFieldError(kWhat, "'high_water' must be a non-negative integer");
  }
  reply.high_water = hw->value.GetUint64();
  if (auto it = d.FindMember("stream"); it != d.MemberEnd()) {
    if (!it->value.IsString()) return ReplyFieldError(kWhat, "'stream' must be a string");
    reply.stream.assign(it->value.GetString(), it->value.GetStringLength());
  }
  if (gap) {
    // A 409 is a gap unless it says it is a conflict.
    if (auto it = d.FindMember("conflict"); it != d.MemberEnd() && it->value.IsTrue()) {
      reply.gap = false;
      reply.conflict = true;
    }
    reply.reason = ReasonOf(http_status, body);
  }
  return reply;
}

Result<SyncReply> DecodeSyncReply(long http_status, std::string_view body,
                                  size_t max_payload_bytes) {
  constexpr const char* kWhat = "sync reply";
  Code code = CodeForHttpStatus(http_status);
  if (code != Code::kOk) return MakeStatus(code, ReasonOf(http_status, body));
  Result<rapidjson::Document> doc = ParseReplyObject(body, kWhat);
  if (!doc.ok()) return doc.status();
  const rapidjson::Document& d = *doc;

  SyncReply reply;
  auto stream = d.FindMember("stream");
  if (stream == d.MemberEnd() || !stream->value.IsString() ||
      stream->value.GetStringLength() == 0) {
    return ReplyFieldError(kWhat, "'stream' must be a non-empty string");
  }
  reply.stream.assign(stream->value.GetString(), stream->value.GetStringLength());
  auto last_seq = d.FindMember("last_seq");
  if (last_seq == d.MemberEnd() || !last_seq->value.IsUint64()) {
    return ReplyFieldError(kWhat, "'last_seq' must be a non-negative integer");
  }
  reply.last_seq = last_seq->value.GetUint64();
  if (auto it = d.FindMember("more"); it != d.MemberEnd()) {
    if (!it->value.IsBool()) return ReplyFieldError(kWhat, "'more' must be a boolean");
    reply.more = it->value.GetBool();
  }
  if (auto it = d.FindMember("next"); it != d.MemberEnd()) {
    if (!it->value.IsUint64()) {
      return ReplyFieldError(kWhat, "'next' must be a non-negative integer");
    }
    reply.next = it->value.GetUint64();
  }
  if (auto it = d.FindMember("trimmed_through"); it != d.MemberEnd()) {
    if (!it->value.IsUint64()) {
      return ReplyFieldError(kWhat, "'trimmed_through' must be a non-negative integer");
    }
    reply.trimmed_through = it->value.GetUint64();
  }
  auto messages = d.FindMember("messages");
  if (messages == d.MemberEnd() || !messages->value.IsArray()) {
    return ReplyFieldError(kWhat, "'messages' must be an array");
  }
  const auto& arr = messages->value.GetArray();
  reply.messages.reserve(arr.Size());
  for (rapidjson::SizeType i = 0; i < arr.Size(); ++i) {
    Result<Message> m = ParseMessage(arr[i], MessageSource::kPeer, max_payload_bytes);
    if (!m.ok()) {
      return ReplyFieldError(kWhat, "messages[" + std::to_string(i) + "]: " + m.status().message());
    }
    if (m->seq == 0) {
      return ReplyFieldError(kWhat, "messages[" + std::to_string(i) + "]: 'seq' is required");
    }
    reply.messages.push_back(std::move(m).value());
  }
  return reply;
}

Code CodeForHttpStatus(long http_status) {
  if (http_status >= 200 && http_status < 300) return Code::kOk;
  switch (http_status) {
    case 400:
      return Code::kInvalidArgument;
    case 404:
      return Code::kNotFound;
    case 408:
      return Code::kTimeout;
    case 409:
      return Code::kConflict;
    case 410:
      return Code::kTrimmed;
    case 413:
      return Code::kTooLarge;
    case 503:
      return Code::kUnavailable;
    case 504:
      return Code::kTimeout;
    default:
      break;
  }
  if (http_status >= 400 && http_status < 500) return Code::kInvalidArgument;
  return Code::kIOError;
}

int HttpStatusForCode(Code code) {
  switch (code) {
    case Code::kOk:
      return 200;
    case Code::kNotFound:
      return 404;
    case Code::kInvalidArgument:
      return 400;
    case Code::kTooLarge:
      return 413;
    case Code::kConflict:
      return 409;
    case Code::kTrimmed:
      return 410;
    case Code::kUnavailable:
      return 503;
    case Code::kTimeout:
      return 504;
    case Code::kCorruption:
    case Code::kIOError:
      return 500;
  }
  return 500;
}

std::string ErrorBody(std::string_view reason) {
  std::string text = SanitizeUtf8(reason);
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("status");
  w.String("error");
  w.Key("reason");
  WriteString(w, text);
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

}  // namespace dsm::json

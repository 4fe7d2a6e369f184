#include "tools/dbdump/text.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cmath>
#include <cstdio>
#include <ctime>

#include "src/http/message_json.h"
#include "src/http/utf8.h"
#include "storage/consumer_schema.h"
#include "storage/schema.h"

namespace dsm::dbdump {
namespace {

void AppendHexByte(std::string* out, unsigned char b) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->append("\\x");
  out->push_back(kHex[b >> 4]);
  out->push_back(kHex[b & 0xf]);
}

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

void WriteString(rapidjson::Writer<rapidjson::StringBuffer>& w, std::string_view s) {
  if (http::IsValidUtf8(s)) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  } else {
    const std::string clean = http::SanitizeUtf8(s);
    w.String(clean.data(), static_cast<rapidjson::SizeType>(clean.size()));
  }
}

std::string Quoted(std::string_view raw) { return "'" + Escape(raw) + "'"; }

}  // namespace

std::string Escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '\\':
          out.append("\\\\");
          break;
        case '\0':
          out.append("\\0");
          break;
        case '\n':
          out.append("\\n");
          break;
        case '\r':
          out.append("\\r");
          break;
        case '\t':
          out.append("\\t");
          break;
        default:
          if (c < 0x20 || c == 0x7f) {
            AppendHexByte(&out, c);
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    const size_t len = http::Utf8SequenceLength(s.substr(i));
    // C1 control characters (U+0080..U+009F) are escaped like the C0 ones.
    const bool c1_control = len == 2 && c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0;
    if (len == 0 || c1_control) {
      const size_t n = len == 0 ? 1 : len;
      for (size_t k = 0; k < n; ++k) AppendHexByte(&out, static_cast<unsigned char>(s[i + k]));
      i += n;
    } else {
      out.append(s.data() + i, len);
      i += len;
    }
  }
  return out;
}

size_t DisplayWidth(std::string_view text) {
  size_t width = 0;
  for (char c : text) {
    if (!IsContinuationByte(c)) ++width;
  }
  return width;
}

std::string Fit(std::string_view text, size_t width) {
  if (width == 0 || DisplayWidth(text) <= width) return std::string(text);
  constexpr std::string_view kEllipsis = "...";
  const size_t keep = width > kEllipsis.size() ? width - kEllipsis.size() : width;
  size_t columns = 0;
  size_t end = 0;
  while (end < text.size()) {
    if (!IsContinuationByte(text[end])) {
      if (columns == keep) break;
      ++columns;
    }
    ++end;
  }
  std::string out(text.substr(0, end));
  if (width > kEllipsis.size()) out.append(kEllipsis);
  return out;
}

std::string FormatTimestamp(double ts) {
  // Years 0..9999 (ISO-8601 without an expanded year).
  constexpr double kMin = -62167219200.0;  // 0000-01-01T00:00:00Z
  constexpr double kMax = 253402300800.0;  // 10000-01-01T00:00:00Z
  if (!std::isfinite(ts) || ts < kMin || ts >= kMax) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.17g", ts);
    return buf;
  }
  const double millis = std::floor(ts * 1000.0);
  auto total_ms = static_cast<int64_t>(millis);
  int64_t secs = total_ms / 1000;
  int64_t ms = total_ms % 1000;
  if (ms < 0) {
    ms += 1000;
    secs -= 1;
  }
  const auto t = static_cast<std::time_t>(secs);
  std::tm tm{};
  if (::gmtime_r(&t, &tm) == nullptr) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.17g", ts);
    return buf;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

std::string MessageJson(const Message& m) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  json::WriteMessageObject(w, m, WriteString);
  return std::string(buf.GetString(), buf.GetSize());
}

std::string DescribeKey(LogFamily family, std::string_view key) {
  switch (family) {
    case LogFamily::kLog: {
      uint64_t seq = 0;
      if (schema::DecodeSeqValue(key, &seq)) return "log seq " + std::to_string(seq);
      return "log key " + Quoted(key);
    }
    case LogFamily::kMsgId:
      return "msgid " + Quoted(key);
    case LogFamily::kOrigin: {
      std::string_view origin;
      uint64_t origin_seq = 0;
      if (schema::ParseOriginKey(key, &origin, &origin_seq)) {
        return "origin " + Escape(origin) + "#" + std::to_string(origin_seq);
      }
      return "origin key " + Quoted(key);
    }
    case LogFamily::kMeta:
      return "meta " + Quoted(key);
    case LogFamily::kInbox: {
      std::string_view recipient;
      uint64_t seq = 0;
      if (schema::ParseInboxKey(key, &recipient, &seq)) {
        return "inbox " + Quoted(recipient) + " seq " + std::to_string(seq);
      }
      return "inbox key " + Quoted(key);
    }
    case LogFamily::kConsumers: {
      schema::ConsumerKeyParts k;
      if (!schema::ParseConsumerKey(key, &k)) return "consumers key " + Quoted(key);
      std::string out = "consumers " + Quoted(k.name) + " ";
      switch (k.tag) {
        case schema::kConsumerDefinitionTag:
          return out + "definition";
        case schema::kConsumerFloorTag:
          return out + "floor";
        case schema::kConsumerSessionTag:
          return out + "session";
        case schema::kConsumerAckTag:
          return out + "ack seq " + std::to_string(k.seq);
        default:
          return out + "dead letter seq " + std::to_string(k.seq);
      }
    }
    case LogFamily::kDefault:
      return "default " + Quoted(key);
  }
  return Quoted(key);
}

}  // namespace dsm::dbdump

#include "src/http/query.h"

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <system_error>

#include "src/http/json_codec.h"
#include "src/http/utf8.h"

namespace dsm::http {
namespace {

Result<std::string> IdParam(const std::string& raw, const char* name) {
  Result<std::string> v = PercentDecode(raw, name);
  if (!v.ok()) return v;
  if (v->empty() || v->size() > json::kMaxIdBytes) {
    return Status::InvalidArgument(std::string("'") + name + "' must be 1.." +
                                   std::to_string(json::kMaxIdBytes) + " bytes");
  }
  return v;
}

}  // namespace

const std::string* FindParam(const std::map<std::string, std::string>& raw, const char* name) {
  auto it = raw.find(name);
  return it == raw.end() ? nullptr : &it->second;
}

std::optional<uint64_t> ParseDecimalU64(std::string_view text) {
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [stop, ec] = std::from_chars(text.data(), end, v);  // digits only for an unsigned type
  if (text.empty() || ec != std::errc() || stop != end) return std::nullopt;
  return v;
}

Result<std::string> PercentDecode(std::string_view value, std::string_view name) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      int hi = i + 1 < value.size() ? HexDigitValue(value[i + 1]) : -1;
      int lo = i + 2 < value.size() ? HexDigitValue(value[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return Status::InvalidArgument("invalid percent-encoding in '" + std::string(name) + "'");
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  if (!IsValidUtf8(out)) {
    return Status::InvalidArgument("'" + std::string(name) + "' is not valid UTF-8");
  }
  return out;
}

Result<ListingQuery> ParseListingQuery(const std::map<std::string, std::string>& raw) {
  ListingQuery q;
  if (const std::string* after = FindParam(raw, "after")) {
    Result<std::string> text = PercentDecode(*after, "after");
    if (!text.ok()) return text.status();
    std::optional<uint64_t> v = ParseDecimalU64(*text);
    if (!v) return Status::InvalidArgument("'after' must be a non-negative integer");
    q.after = *v;
  }
  if (const std::string* limit = FindParam(raw, "limit")) {
    Result<std::string> text = PercentDecode(*limit, "limit");
    if (!text.ok()) return text.status();
    std::optional<uint64_t> v = ParseDecimalU64(*text);
    if (!v || *v < 1 || *v > kMaxListingLimit) {
      return Status::InvalidArgument("'limit' must be an integer from 1 to " +
                                     std::to_string(kMaxListingLimit));
    }
    q.limit = static_cast<size_t>(*v);
  }
  if (const std::string* sender = FindParam(raw, "sender")) {
    Result<std::string> v = IdParam(*sender, "sender");
    if (!v.ok()) return v.status();
    q.sender = std::move(v).value();
  }
  if (const std::string* recipient = FindParam(raw, "recipient")) {
    Result<std::string> v = IdParam(*recipient, "recipient");
    if (!v.ok()) return v.status();
    q.recipient = std::move(v).value();
  }
  return q;
}

}  // namespace dsm::http

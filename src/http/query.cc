#include "src/http/query.h"

#include <cstdint>
#include <optional>
#include <string>

#include "src/http/json_codec.h"
#include "src/http/utf8.h"

namespace dsm::http {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decimal digits only (no sign, no spaces), at most UINT64_MAX.
std::optional<uint64_t> ParseUint(std::string_view text) {
  if (text.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - digit) / 10) return std::nullopt;
    v = v * 10 + digit;
  }
  return v;
}

const std::string* Find(const std::map<std::string, std::string>& raw, const char* name) {
  auto it = raw.find(name);
  return it == raw.end() ? nullptr : &it->second;
}

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

Result<std::string> PercentDecode(std::string_view value, std::string_view name) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      int hi = i + 1 < value.size() ? HexValue(value[i + 1]) : -1;
      int lo = i + 2 < value.size() ? HexValue(value[i + 2]) : -1;
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
  if (const std::string* after = Find(raw, "after")) {
    Result<std::string> text = PercentDecode(*after, "after");
    if (!text.ok()) return text.status();
    std::optional<uint64_t> v = ParseUint(*text);
    if (!v) return Status::InvalidArgument("'after' must be a non-negative integer");
    q.after = *v;
  }
  if (const std::string* limit = Find(raw, "limit")) {
    Result<std::string> text = PercentDecode(*limit, "limit");
    if (!text.ok()) return text.status();
    std::optional<uint64_t> v = ParseUint(*text);
    if (!v || *v < 1 || *v > kMaxListingLimit) {
      return Status::InvalidArgument("'limit' must be an integer from 1 to " +
                                     std::to_string(kMaxListingLimit));
    }
    q.limit = static_cast<size_t>(*v);
  }
  if (const std::string* sender = Find(raw, "sender")) {
    Result<std::string> v = IdParam(*sender, "sender");
    if (!v.ok()) return v.status();
    q.sender = std::move(v).value();
  }
  if (const std::string* recipient = Find(raw, "recipient")) {
    Result<std::string> v = IdParam(*recipient, "recipient");
    if (!v.ok()) return v.status();
    q.recipient = std::move(v).value();
  }
  return q;
}

}  // namespace dsm::http

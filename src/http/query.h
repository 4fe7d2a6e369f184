// Query strings of the HTTP API: percent-decoding (Pistache hands query values over undecoded) and
// the validated parameters of GET /messages. Pure functions, thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "dsm/status.h"

namespace dsm::http {

constexpr size_t kMaxListingLimit = 10000;  // largest `limit` of /messages and /sync

// A decimal number of decimal digits only (no sign, no spaces), at most UINT64_MAX; nullopt for
// anything else, the empty string included.
std::optional<uint64_t> ParseDecimalU64(std::string_view text);

// 0..15 for a hex digit (either case), -1 otherwise. Inline: the authentication library
// (dsm_auth, src/http/auth.cc) uses it without linking the rest of this file.
inline int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The raw value of query parameter `name`, or nullptr when the query does not have it.
const std::string* FindParam(const std::map<std::string, std::string>& raw, const char* name);

// Decodes %XX escapes and '+' (a space, as in HTML forms; a literal plus is %2B). The result must
// be valid UTF-8. Errors: InvalidArgument naming `name`.
Result<std::string> PercentDecode(std::string_view value, std::string_view name);

struct ListingQuery {
  uint64_t after = 0;                    // list seq > after
  std::optional<size_t> limit;           // 1..kMaxListingLimit; none = everything (streamed)
  std::optional<std::string> sender;     // only messages from this sender
  std::optional<std::string> recipient;  // only messages to this recipient
};

// Parses GET /messages parameters from raw (undecoded) query values. Unknown names are ignored.
// Errors: InvalidArgument naming the parameter, e.g. "'limit' must be an integer from 1 to 10000".
Result<ListingQuery> ParseListingQuery(const std::map<std::string, std::string>& raw);

}  // namespace dsm::http

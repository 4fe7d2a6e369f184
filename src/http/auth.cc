#include "src/http/auth.h"

#include <cctype>
#include <cstdint>
#include <string>

#include "src/http/query.h"

namespace dsm::http {
namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IsVisibleAscii(char c) { return c >= 0x21 && c <= 0x7e; }

// A cookie value's bytes as RFC 6265's cookie-octet allows them (';' never reaches here).
bool IsCookieOctet(char c) { return IsVisibleAscii(c) && c != '"' && c != ',' && c != '\\'; }

// Strict percent-decoding of a cookie value: nullopt on a bad escape or a byte outside the
// allowed sets.
std::optional<std::string> DecodeCookieValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    if (!IsCookieOctet(c)) return std::nullopt;
    if (c != '%') {
      out.push_back(c);
      continue;
    }
    if (v.size() - i < 3) return std::nullopt;  // fewer than two characters follow the '%'
    const int hi = HexDigitValue(v[i + 1]);
    const int lo = HexDigitValue(v[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    const char decoded = static_cast<char>(hi * 16 + lo);
    if (!IsVisibleAscii(decoded)) return std::nullopt;
    out.push_back(decoded);
    i += 2;
  }
  return out;
}

}  // namespace

bool TokenEquals(std::string_view expected, std::string_view presented) {
  // Every byte of `expected` is visited once whatever `presented` holds; a length mismatch is
  // folded into the same accumulator instead of returning early.
  volatile uint8_t diff = expected.size() == presented.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const uint8_t p = i < presented.size() ? static_cast<uint8_t>(presented[i]) : 0;
    diff = diff | (static_cast<uint8_t>(expected[i]) ^ p);
  }
  return diff == 0 && !expected.empty();
}

Status ValidateToken(std::string_view token, std::string_view option) {
  if (token.empty() || token.size() > kMaxTokenBytes) {
    return Status::InvalidArgument(std::string(option) + " must be 1.." +
                                   std::to_string(kMaxTokenBytes) + " characters long");
  }
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return Status::InvalidArgument(std::string(option) +
                                     " may only hold visible ASCII characters (no spaces or "
                                     "control characters)");
    }
  }
  return Status::Ok();
}

std::optional<std::string_view> PresentedToken(std::optional<std::string_view> authorization,
                                               std::optional<std::string_view> dsm_token) {
  if (authorization) {
    std::string_view v = TrimSpaces(*authorization);
    constexpr std::string_view kBearer = "bearer";
    if (v.size() > kBearer.size() && EqualsIgnoreCase(v.substr(0, kBearer.size()), kBearer) &&
        (v[kBearer.size()] == ' ' || v[kBearer.size()] == '\t')) {
      return TrimSpaces(v.substr(kBearer.size()));
    }
  }
  if (dsm_token) return TrimSpaces(*dsm_token);
  return std::nullopt;
}

std::optional<std::string> CookieToken(std::string_view cookie_header) {
  while (!cookie_header.empty()) {
    const size_t semi = cookie_header.find(';');
    const std::string_view pair = cookie_header.substr(0, semi);
    cookie_header =
        semi == std::string_view::npos ? std::string_view() : cookie_header.substr(semi + 1);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos || TrimSpaces(pair.substr(0, eq)) != kTokenCookie) continue;
    // The first cookie of that name decides, whatever follows it.
    const std::string_view value = TrimSpaces(pair.substr(eq + 1));
    if (value.empty() || value.size() > 3 * kMaxTokenBytes) return std::nullopt;
    std::optional<std::string> token = DecodeCookieValue(value);
    if (!token || token->empty()) return std::nullopt;
    return token;
  }
  return std::nullopt;
}

std::string RoutePath(std::string_view path) {
  size_t q = path.find('?');
  if (q != std::string_view::npos) path = path.substr(0, q);
  std::string normal;
  for (char c : path) {
    if (c == '/' && !normal.empty() && normal.back() == '/') continue;
    normal.push_back(c);
  }
  while (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  return normal;
}

Scope ScopeOf(std::string_view path) {
  const std::string normal = RoutePath(path);
  if (normal == "/replicate" || normal == "/sync" || normal == "/heartbeat") return Scope::kCluster;
  // Membership changes (the route's pattern, or a request's path under it).
  if (normal == "/cluster/members" || normal.starts_with("/cluster/members/")) {
    return Scope::kCluster;
  }
  if (normal == "/" || normal == "/dashboard" || normal == "/dashboard/app.js" ||
      normal == "/dashboard/style.css") {
    return Scope::kPublic;
  }
  return Scope::kClient;
}

std::optional<std::string> EffectiveToken(std::string_view path, const Credentials& credentials) {
  if (credentials.header_token) return credentials.header_token;
  // The cookie travels with every request the browser makes to this host, cross-site form posts
  // included: it only authenticates reads of client endpoints.
  if (!credentials.read || !credentials.cookie || ScopeOf(path) != Scope::kClient) {
    return std::nullopt;
  }
  return CookieToken(*credentials.cookie);
}

Status AuthPolicy::Check(std::string_view path, std::optional<std::string_view> presented) const {
  const std::string_view token = presented.value_or(std::string_view());
  const Scope scope = ScopeOf(path);
  if (scope == Scope::kPublic) return Status::Ok();
  if (scope == Scope::kCluster) {
    if (cluster_token_.empty() || TokenEquals(cluster_token_, token)) return Status::Ok();
    return Status::InvalidArgument(presented ? "invalid cluster token" : "cluster token required");
  }
  if (client_token_.empty()) return Status::Ok();
  // Both comparisons always run, so the answer's timing does not tell which token matched.
  const bool client_ok = TokenEquals(client_token_, token);
  const bool cluster_ok = !cluster_token_.empty() && TokenEquals(cluster_token_, token);
  if (client_ok || cluster_ok) return Status::Ok();
  return Status::InvalidArgument(presented ? "invalid client token" : "client token required");
}

Status AuthPolicy::Check(std::string_view path, const Credentials& credentials) const {
  const std::optional<std::string> token = EffectiveToken(path, credentials);
  return Check(path, token ? std::optional<std::string_view>(*token) : std::nullopt);
}

}  // namespace dsm::http

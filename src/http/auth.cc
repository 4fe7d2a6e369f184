#include "src/http/auth.h"

#include <cctype>
#include <cstdint>
#include <string>

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

Scope ScopeOf(std::string_view path) {
  size_t q = path.find('?');
  if (q != std::string_view::npos) path = path.substr(0, q);
  // As the router matches: runs of '/' count as one, a trailing '/' is ignored.
  std::string normal;
  for (char c : path) {
    if (c == '/' && !normal.empty() && normal.back() == '/') continue;
    normal.push_back(c);
  }
  while (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  if (normal == "/replicate" || normal == "/sync" || normal == "/heartbeat") return Scope::kCluster;
  return Scope::kClient;
}

Status AuthPolicy::Check(std::string_view path, std::optional<std::string_view> presented) const {
  const std::string_view token = presented.value_or(std::string_view());
  if (ScopeOf(path) == Scope::kCluster) {
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

}  // namespace dsm::http

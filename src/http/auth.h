// Shared-secret authentication of HTTP requests (docs/api.md, "Authentication").
//
// Two optional tokens guard a node:
//  - the cluster token (--cluster-token / DSM_CLUSTER_TOKEN) guards the internal endpoints
//    (/replicate, /sync, /heartbeat); every node of a cluster is configured with the same one and
//    its peer client sends it on every request;
//  - the client token (--client-token / DSM_CLIENT_TOKEN) guards every other endpoint (/send,
//    /messages, /status, and whatever client endpoints are added). The cluster token is accepted
//    there as well: whoever holds it may already write into the cluster.
// An endpoint whose token is not configured is open. A request presents a token as
// "Authorization: Bearer <token>" or "X-Dsm-Token: <token>". Tokens are compared in constant time
// (the time depends only on the configured token's length) and never logged or echoed.
//
// Pure functions and an immutable policy object: thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "dsm/status.h"

namespace dsm::http {

// The header a peer client sends its cluster token in.
inline constexpr char kAuthorizationHeader[] = "Authorization";
inline constexpr char kTokenHeader[] = "X-Dsm-Token";
inline constexpr size_t kMaxTokenBytes = 1024;

// Whether `presented` equals `expected`, without an early exit: the running time depends only on
// expected.size(), never on where the strings differ nor on presented.size().
bool TokenEquals(std::string_view expected, std::string_view presented);

// Checks that a configured token is usable in an HTTP header: 1..kMaxTokenBytes visible ASCII
// characters (0x21..0x7e), so it cannot inject header lines. `option` names the flag in the error
// ("--cluster-token must be ..."); the token itself never appears in it.
Status ValidateToken(std::string_view token, std::string_view option);

// The token carried by a request: the value of "Authorization: Bearer <token>" (scheme matched
// case-insensitively), else of "X-Dsm-Token". nullopt when neither is present.
std::optional<std::string_view> PresentedToken(std::optional<std::string_view> authorization,
                                               std::optional<std::string_view> dsm_token);

enum class Scope {
  kCluster,  // internal endpoints: /replicate, /sync, /heartbeat
  kClient,   // everything else
};

// The scope of a request path (the resource, without the query string).
Scope ScopeOf(std::string_view path);

class AuthPolicy {
 public:
  // Empty tokens leave their scope open.
  AuthPolicy(std::string cluster_token, std::string client_token)
      : cluster_token_(std::move(cluster_token)), client_token_(std::move(client_token)) {}

  // OK, or the reason for a 401 (which names the missing token kind, never a token).
  Status Check(std::string_view path, std::optional<std::string_view> presented) const;

  bool open() const { return cluster_token_.empty() && client_token_.empty(); }

 private:
  const std::string cluster_token_;
  const std::string client_token_;
};

}  // namespace dsm::http

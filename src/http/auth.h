// Shared-secret authentication of HTTP requests (docs/api.md, "Authentication").
//
// Two optional tokens guard a node:
//  - the cluster token (--cluster-token / DSM_CLUSTER_TOKEN) guards the internal endpoints
//    (/replicate, /sync, /heartbeat); every node of a cluster is configured with the same one and
//    its peer client sends it on every request;
//  - the client token (--client-token / DSM_CLIENT_TOKEN) guards every other endpoint (/send,
//    /messages, /status, and whatever client endpoints are added). The cluster token is accepted
//    there as well: whoever holds it may already write into the cluster.
// The dashboard's static files (/, /dashboard, /dashboard/app.js, /dashboard/style.css) hold no
// data and are public. An endpoint whose token is not configured is open. A request presents a
// token as "Authorization: Bearer <token>" or "X-Dsm-Token: <token>"; a read (GET or HEAD) of a
// client endpoint may instead carry the client token in the cookie "dsm_token" (percent-encoded),
// which is how the dashboard's event stream authenticates (a browser's EventSource sends no
// headers of its own). Writes and the internal endpoints never accept the cookie, so a forged
// cross-site request cannot write with it. Tokens are compared in constant time (the time depends
// only on the configured token's length) and never logged or echoed.
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
// The request header holding cookies, and the cookie that may hold the client token.
inline constexpr char kCookieHeader[] = "Cookie";
inline constexpr char kTokenCookie[] = "dsm_token";
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

// The client token carried by a Cookie header's value ("a=1; dsm_token=<percent-encoded>"):
// cookies are separated by ';' with optional spaces or tabs around names and values; the first
// cookie named exactly kTokenCookie counts, percent-decoded. nullopt when there is none, when its
// value is empty or longer than 3 * kMaxTokenBytes, when a '%' is not followed by two hex digits,
// or when the value or the decoded token holds anything but visible ASCII (0x21..0x7e; the value
// may not hold a double quote, a comma or a backslash either, as in RFC 6265's cookie-octet). '+'
// stands for itself.
std::optional<std::string> CookieToken(std::string_view cookie_header);

enum class Scope {
  kPublic,   // the dashboard's static files: /, /dashboard, /dashboard/app.js, /dashboard/style.css
  kCluster,  // internal endpoints: /replicate, /sync, /heartbeat; membership changes:
             // /cluster/members and what is under it
  kClient,   // everything else, unknown paths included
};

// A request path as the router matches it: the query string cut off, runs of '/' counted as one,
// a trailing '/' ignored ("//dashboard//app.js/?x" -> "/dashboard/app.js").
std::string RoutePath(std::string_view path);

// The scope of a request path (the resource, without the query string). Paths are compared
// exactly after the router's normalisation (RoutePath).
Scope ScopeOf(std::string_view path);

// What a request presents to authenticate, copied out of its head.
struct Credentials {
  std::optional<std::string> header_token;  // PresentedToken() of its headers
  std::optional<std::string> cookie;        // the value of its Cookie header
  bool read = false;                        // GET or HEAD
};

// The token that counts for a request on `path`: the header token when there is one; else, for a
// read of a client-scope path, CookieToken(cookie); else none.
std::optional<std::string> EffectiveToken(std::string_view path, const Credentials& credentials);

class AuthPolicy {
 public:
  // Empty tokens leave their scope open.
  AuthPolicy(std::string cluster_token, std::string client_token)
      : cluster_token_(std::move(cluster_token)), client_token_(std::move(client_token)) {}

  // OK, or the reason for a 401 (which names the missing token kind, never a token). Public paths
  // are always OK.
  Status Check(std::string_view path, std::optional<std::string_view> presented) const;
  // Check(path, EffectiveToken(path, credentials)).
  Status Check(std::string_view path, const Credentials& credentials) const;

  bool open() const { return cluster_token_.empty() && client_token_.empty(); }

 private:
  const std::string cluster_token_;
  const std::string client_token_;
};

}  // namespace dsm::http

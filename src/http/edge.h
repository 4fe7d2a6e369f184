// The edge of the HTTP server: everything that happens to a connection before a handler runs, and
// every limit that protects the node from its clients (docs/operations.md, "Limits at the edge").
//  - Connections: at most max_connections open (a reserve of them kept for cluster peers),
//    beyond which a new connection gets 503 and is closed; at most max_connections_per_ip from
//    one address other than a peer's, beyond which that address's oldest connection not waiting
//    for an answer is shut down (a new one is refused with 503 only if they all wait).
//  - Request heads are read by a RequestHeadScanner (src/http/request_head.h) before Pistache's
//    parser sees a byte: over max_header_bytes or max_header_lines -> 431; malformed (a bad
//    request line, whitespace before a colon, several Content-Length or Host headers...) -> 400;
//    Transfer-Encoding -> 411; a body over the request size limit -> 413. Each answered with the
//    JSON error body, and the connection is closed.
//  - Once a head is complete, before its body is read: a Host that is not a loopback name while
//    the node listens on a loopback address (unless in allowed_hosts) -> 403 (DNS rebinding); an
//    Origin that is not http(s):// + the request's Host -> 403 (cross-site requests); a missing
//    or wrong token -> 401 (src/http/auth.h); a body that would take the bodies being read by
//    the whole node over max_inflight_body_bytes -> 503. So an unauthenticated client never makes
//    the node hold its body.
//  - One request at a time per connection: Pistache 0.0.5's parser drops whatever follows the
//    first request of a read (upstream #1034), and answers that complete later (a quorum /send, a
//    streamed listing) would be interleaved with those of the requests behind them. Bytes that run
//    past the end of a request in the read that completes it are refused before anything is
//    dispatched (400 "pipelined requests are not supported", close); bytes arriving while an
//    answer is still pending close the connection (an answer in between would be taken for the
//    pending one's). Clients send the next request once they have the answer, as every HTTP/1.1
//    client does by default.
//  - The connection is closed after an answer that says "Connection: close" (src/http/reply.h).
//  - Protocol errors get a JSON 4xx (Pistache would answer text, or a 500 for a bad header); an
//    exception escaping routing a JSON 500.
//
// Thread safety: one EdgeHandler per event-loop thread (Pistache clones it); they share an
// EdgeState, whose members are atomics or guarded as annotated. Per-connection state lives in the
// connection's peer data and is used on its event-loop thread only.
#pragma once

#include <pistache/http.h>
#include <pistache/router.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "dsm/status.h"
#include "src/http/auth.h"

namespace dsm::http {

struct EdgeOptions {
  std::shared_ptr<const AuthPolicy> auth;
  size_t max_request_bytes = 0;     // the largest Content-Length (413 beyond)
  size_t max_header_bytes = 16 << 10;  // request line + header lines (431 beyond)
  size_t max_header_lines = 100;       // (431 beyond)
  // Bodies being read by the whole node, counted by their declared Content-Length (503 beyond;
  // 0 = no limit).
  size_t max_inflight_body_bytes = 0;
  int max_connections = 0;         // 0 = no limit
  int max_connections_per_ip = 0;  // 0 = no limit
  // Addresses (numeric, as accepted connections show them) of the configured peers: exempt from
  // the per-address cap, and allowed into the connection slots reserved for peers.
  std::vector<std::string> peer_addresses;
  // Connection slots only peer addresses may use (<= max_connections / 2).
  int reserved_peer_connections = 0;
  // Host check (DNS rebinding): when the node listens on a loopback address, a request whose Host
  // names anything but localhost, 127.x.y.z or [::1] (any port), or a host listed here
  // (lower case, without port), is refused.
  bool check_host = false;
  std::vector<std::string> allowed_hosts;
};

// The Pistache handler of a server: routes with `router`.
std::shared_ptr<Pistache::Http::Handler> MakeEdgeHandler(
    std::shared_ptr<Pistache::Rest::Router> router, EdgeOptions options);

// What a request presents to authenticate (src/http/auth.h), copied out of its parsed head. Of
// several Cookie headers Pistache keeps the raw value of the first only.
Credentials RequestCredentials(const Pistache::Http::Request& req);

// Answers 401 with a JSON error and a WWW-Authenticate challenge, and closes the connection.
void SendUnauthorized(Pistache::Http::ResponseWriter& response, const Status& why);

// Whether `host` (an address or a name, without port; brackets allowed around IPv6) is a loopback
// name: localhost, 127.0.0.0/8, ::1.
bool IsLoopbackHost(std::string_view host);

// The host of a Host header value or URL authority ("h:1", "[::1]:2", "h"), lower case, without
// port and brackets; *port gets the port (0 when absent). nullopt when malformed.
std::optional<std::string> AuthorityHost(std::string_view authority, int* port);

// Whether an Origin header value ("scheme://host[:port]") names the same site as the request's
// Host header value (same host and port; a missing port is the scheme's default).
bool SameOrigin(std::string_view origin, std::string_view host_header);

}  // namespace dsm::http

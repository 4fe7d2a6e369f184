// ProbeListen: checks, before dsm-node opens or creates anything, that the HTTP server will be
// able to listen on its address, so that a node started on a port in use fails without leaving a
// new data directory (with a new incarnation) behind.
//
// It binds and listens on host:port the way the server does (the first address getaddrinfo
// gives that can be bound, SO_REUSEADDR), then closes the socket. Another process can still take
// the port between the probe and the server's own bind: the server then fails as before.
//
// Thread-safe (no state).
#pragma once

#include <cstdint>
#include <string>

#include "dsm/status.h"

namespace dsm {

// OK when a server could listen on host:port now (port 0, an ephemeral port, always can).
// Otherwise Unavailable("cannot listen on H:P: <reason>"), the error HttpServer::Start gives.
Status ProbeListen(const std::string& host, uint16_t port);

}  // namespace dsm

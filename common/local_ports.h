// Ports on 127.0.0.1 for servers that tests and benchmarks start as separate processes, which
// must be told their port before they bind it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dsm/status.h"

namespace dsm {

// `n` distinct TCP ports on 127.0.0.1, each free when picked (a bind to it succeeds; all are held
// until every one is found, then released). They are chosen at random below the kernel's
// ephemeral range (/proc/sys/net/ipv4/ip_local_port_range), from kLowestPickedPort up: the kernel
// takes the local port of every outgoing connection, and of every bind to port 0, from that
// range, so a port found there by binding to port 0 could be taken by any connection before its
// server binds it (a node then failed to start with "Address already in use" while other tests
// ran). Below the range only another explicit bind can take it. When the range starts too low to
// leave room, ports from binds to port 0 instead.
Result<std::vector<uint16_t>> PickLoopbackPorts(size_t n);

inline constexpr uint16_t kLowestPickedPort = 10000;

}  // namespace dsm

// Peer URLs ("http://host:port", "https://host:port"): parsing, normalizing, and telling whether
// one names this node.
// Pure functions, thread-compatible.
#pragma once

#include <string>
#include <string_view>

#include "dsm/status.h"

namespace dsm {

// Splits "http[s]://host:port" (an optional trailing slash allowed) into scheme ("http" or
// "https"), host and port. Returns false when malformed.
bool SplitUrl(std::string_view url, std::string* scheme, std::string* host, int* port);
bool SplitUrl(std::string_view url, std::string* host, int* port);

// Whether `host` names this machine's loopback or all of its addresses.
bool IsLocalHost(const std::string& host);

// Whether a peer at host:port is this node, listening on own_host:own_port.
bool IsSelf(const std::string& host, int port, const std::string& own_host, int own_port);

// "http://host:port" or "https://host:port" with an optional trailing slash, host a DNS name, an
// IPv4 address or a bracketed IPv6 address, port 1..65535. Returns the URL without the trailing
// slash.
Result<std::string> NormalizePeerUrl(std::string_view url);

}  // namespace dsm

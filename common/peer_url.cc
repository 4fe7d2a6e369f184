// Peer URLs: parsing, normalizing, and telling whether one names this node.
#include "common/peer_url.h"

#include <cctype>

namespace dsm {
namespace {

bool IsHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

}  // namespace

bool SplitUrl(std::string_view url, std::string* scheme, std::string* host, int* port) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return false;
  *scheme = std::string(url.substr(0, scheme_end));
  if (*scheme != "http" && *scheme != "https") return false;
  std::string_view rest = url.substr(scheme_end + 3);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  size_t colon;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos || close < 2) return false;
    for (char c : rest.substr(1, close - 1)) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
    }
    colon = close + 1;
    if (colon >= rest.size() || rest[colon] != ':') return false;
  } else {
    colon = rest.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    for (char c : rest.substr(0, colon)) {
      if (!IsHostChar(c)) return false;
    }
  }
  std::string_view port_text = rest.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5) return false;
  int p = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + (c - '0');
  }
  if (p < 1 || p > 65535) return false;
  *host = std::string(rest.substr(0, colon));
  *port = p;
  return true;
}

bool SplitUrl(std::string_view url, std::string* host, int* port) {
  std::string scheme;
  return SplitUrl(url, &scheme, host, port);
}

bool IsLocalHost(const std::string& host) {
  return host == "localhost" || host == "0.0.0.0" || host == "::" || host == "[::]" ||
         host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

bool IsSelf(const std::string& host, int port, const std::string& own_host, int own_port) {
  if (port != own_port) return false;
  if (host == own_host) return true;
  return IsLocalHost(host) && IsLocalHost(own_host);
}

Result<std::string> NormalizePeerUrl(std::string_view url) {
  std::string scheme;
  std::string host;
  int port = 0;
  if (!SplitUrl(url, &scheme, &host, &port)) {
    return Status::InvalidArgument("malformed peer URL '" + std::string(url) +
                                   "': expected http://host:port or https://host:port");
  }
  return scheme + "://" + host + ":" + std::to_string(port);
}

}  // namespace dsm

// RequestHeadScanner: watches the head (request line and headers) of each request on one
// connection as its bytes arrive, so that a request Pistache 0.0.5 cannot parse safely is refused
// before its body reaches Pistache's parser. Pistache's chunked-body parser reads past the end of
// its buffer (strtol on bytes that need not be terminated; found by the ASan job on a malformed
// chunked body), so any request with a Transfer-Encoding header is refused (411: send a
// Content-Length). No client of dsm sends chunked requests.
//
// One scanner per connection, used from that connection's event-loop thread only.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dsm::http {

class RequestHeadScanner {
 public:
  enum class Verdict {
    kNeedMore,          // the head is not complete yet: feeding it to the parser is safe
    kOk,                // the head is complete and acceptable
    kTransferEncoding,  // the head carries Transfer-Encoding: refuse the request
  };

  // Heads longer than `max_head_bytes` are not scanned further (the parser refuses them anyway).
  explicit RequestHeadScanner(size_t max_head_bytes) : max_head_bytes_(max_head_bytes) {}

  // The next bytes of the current request (leading empty lines are skipped, as the parser does).
  Verdict Feed(std::string_view bytes);
  // The current request is complete: the next bytes begin a new one.
  void Reset();

 private:
  const size_t max_head_bytes_;
  std::string head_;
  Verdict verdict_ = Verdict::kNeedMore;
};

}  // namespace dsm::http

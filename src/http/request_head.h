// RequestHeadScanner: reads the head (request line and headers) of each request on one
// connection as its bytes arrive, exactly as Pistache 0.0.5's request parser will, so that a
// request Pistache cannot parse safely is refused before its body reaches Pistache's parser:
//  - Pistache's chunked-body parser reads past the end of its buffer (strtol on bytes that need
//    not be terminated; found by the ASan job on a malformed chunked body), so any request with a
//    Transfer-Encoding header is refused (411: send a Content-Length). No client of dsm sends
//    chunked requests.
//  - Pistache reserves memory for the whole declared body before reading any of it
//    (std::string::reserve of the Content-Length, fatal in sanitizer builds for huge values), and
//    reads the value leniently (std::stoull: a sign, a digit prefix). A Content-Length that is not
//    a decimal number of at most 64 bits is malformed (400); one above the request size limit is
//    refused (413: such a request could never be accepted anyway).
// The head is split where Pistache splits it, not where a careful HTTP parser would: the request
// target runs to the next space (CR and LF included), lines end only at CRLF, and a header name
// runs to the next ':' (across line ends), so that no spelling hides a header from the scanner that
// Pistache then acts on (fuzz_http found such spellings: a value ending in a bare LF, an empty
// line inside the target).
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
    kNeedMore,           // the head is not complete yet: feeding it to the parser is safe
    kOk,                 // the head is complete and acceptable
    kTransferEncoding,   // the head carries Transfer-Encoding: refuse the request (411)
    kBadContentLength,   // a Content-Length is not a decimal number of at most 64 bits (400)
    kTooLarge,           // a Content-Length is above the request size limit (413)
  };

  // `max_head_bytes` is the request size limit: a head longer than it is not scanned further (the
  // parser refuses it anyway), and a body declared longer than it is refused.
  explicit RequestHeadScanner(size_t max_head_bytes) : max_head_bytes_(max_head_bytes) {}

  // The next bytes of the current request.
  Verdict Feed(std::string_view bytes);
  // The current request is complete: the next bytes begin a new one.
  void Reset();

 private:
  // Where the head being read is, in the terms of Pistache's RequestLineStep and HeadersStep.
  enum class State {
    kMethod,         // up to the first ' '
    kTarget,         // up to the next ' ' (path and query; CR and LF are ordinary bytes here)
    kVersion,        // up to the first CRLF
    kHeaderStart,    // a CRLF here ends the head; anything else begins a header name
    kHeaderName,     // up to the next ':'
    kHeaderSpaces,   // spaces after the ':'
    kHeaderValue,    // up to the next CRLF
  };

  // Ends the header just read (name_, value_). Returns the verdict it gives (kNeedMore: none).
  Verdict EndHeader();

  const size_t max_head_bytes_;
  size_t scanned_ = 0;         // bytes of the current head seen so far
  State state_ = State::kMethod;
  bool pending_cr_ = false;    // the last byte seen was a CR that may begin a CRLF
  std::string name_;           // of the header being read (bounded by max_head_bytes_)
  std::string value_;
  Verdict verdict_ = Verdict::kNeedMore;
};

}  // namespace dsm::http

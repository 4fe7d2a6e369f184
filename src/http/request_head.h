// RequestHeadScanner: reads each request of one connection as its bytes arrive, before any of them
// reaches Pistache 0.0.5's request parser, and decides whether the request may reach it at all.
// Everything here is a linear scan with O(1) work per byte and memory bounded by the head limit:
//  - The head (request line and header lines) is capped: more than `max_head_bytes` bytes or more
//    than `max_header_lines` header lines is refused (431) as soon as the limit is crossed.
//    Pistache's own head parser costs more than linear time in the number of header lines (a
//    100,000-line head took 7 s of an event-loop thread), so it must never see such a head.
//  - The syntax is checked strictly (RFC 9112), so that no spelling means one thing here and
//    another to Pistache or to a proxy in front of the node (request smuggling): a request line
//    that is not METHOD SP TARGET SP HTTP/1.x CRLF, a header name with anything but token
//    characters (whitespace before the colon included, §5.1), a folded header line, a control
//    byte in a value (a bare CR or LF included), several Content-Length headers (§6.3) or several
//    Host headers are refused (400).
//  - Pistache's chunked-body parser reads past the end of its buffer (strtol on bytes that need
//    not be terminated; found by the ASan job), so any request with a Transfer-Encoding header is
//    refused (411: send a Content-Length). No client of dsm sends chunked requests.
//  - Pistache reserves memory for the whole declared body before reading any of it and reads the
//    value leniently (std::stoull: a sign, a digit prefix). A Content-Length that is not a decimal
//    number of at most 64 bits is malformed (400); one above `max_body_bytes` is refused (413).
//  - Once the head is complete, the scanner counts the body's bytes: bytes beyond the end of the
//    request (a pipelined request) are reported, so that the caller never hands Pistache more than
//    one request at a time (its parser drops whatever follows the first request of a read).
// The head's fields that the edge checks before the body is read (src/http/edge.h: the token,
// Host, Origin, the body's size) are kept: the first value of each.
//
// One scanner per connection, used from that connection's event-loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dsm::http {

// What the scanner keeps of a complete head. Header values are the first of each name, without
// the blanks around them.
struct RequestHead {
  std::string method;
  std::string target;  // as sent (path and query)
  std::string version;  // "HTTP/1.0" or "HTTP/1.1"
  uint64_t content_length = 0;  // 0 without the header
  std::optional<std::string> host;
  std::optional<std::string> origin;
  std::optional<std::string> authorization;
  std::optional<std::string> dsm_token;  // X-Dsm-Token
  std::optional<std::string> cookie;
  std::optional<std::string> connection;
  size_t header_lines = 0;
};

class RequestHeadScanner {
 public:
  struct Limits {
    size_t max_head_bytes = 16 << 10;  // request line, header lines and the blank line
    size_t max_header_lines = 100;
    size_t max_body_bytes = 0;  // the largest Content-Length accepted
  };

  enum class Verdict {
    kNeedMore,          // the head is not complete yet
    kHead,              // the head became complete with these bytes (head() holds it); the bytes
                        // after it, if any, are body bytes of this request
    kBody,              // body bytes of the current request (its head was reported before)
    kPipelined,         // these bytes run past the end of the current request: refuse it (400)
    kBadRequest,        // malformed head (400, reason())
    kHeadTooLarge,      // the head is over a limit (431, reason())
    kTransferEncoding,  // the head carries Transfer-Encoding: refuse the request (411)
    kTooLarge,          // the Content-Length is above max_body_bytes (413)
  };

  explicit RequestHeadScanner(Limits limits) : limits_(limits) {}

  // The next bytes of the connection. Once a refusal is returned, every later call returns it
  // again (the caller closes the connection).
  Verdict Feed(std::string_view bytes);
  // The current request was handed over whole: the next bytes begin a new one.
  void Reset();

  // Whether bytes of the current request were fed since the last Reset().
  bool started() const { return head_bytes_ > 0; }
  // Whether the whole current request (head and body) has arrived.
  bool complete() const { return state_ == State::kBody && body_left_ == 0; }
  // REQUIRES: a verdict of kHead, kBody or kPipelined was returned since the last Reset().
  const RequestHead& head() const { return head_; }
  // Why the request was refused (for kBadRequest and kHeadTooLarge).
  const std::string& reason() const { return reason_; }

 private:
  enum class State {
    kMethod,      // token characters up to ' '
    kTarget,      // visible characters up to ' '
    kVersion,     // "HTTP/1.x" then CRLF
    kLineStart,   // CRLF here ends the head; a token character begins a header name
    kName,        // token characters up to ':'
    kValue,       // up to CRLF
    kLineEnd,     // a CR was read: LF must follow
    kBody,        // the head is complete: counting body bytes
  };

  Verdict Refuse(Verdict v, std::string reason);
  // Ends the header line just read (name_, value_); returns a refusal or kNeedMore.
  Verdict EndHeader();
  Verdict EndHead();

  const Limits limits_;
  State state_ = State::kMethod;
  State after_cr_ = State::kLineStart;  // where a CRLF leads (kLineStart or kBody)
  size_t head_bytes_ = 0;
  size_t content_lengths_ = 0;
  size_t hosts_ = 0;
  uint64_t body_left_ = 0;
  std::string name_;   // lower case, of the header being read
  std::string value_;  // kept only for the headers of RequestHead (see Wanted())
  bool keep_value_ = false;
  RequestHead head_;
  std::string reason_;
  Verdict refused_ = Verdict::kNeedMore;  // a refusal, once given
};

}  // namespace dsm::http

#include "src/http/request_head.h"

#include <utility>

#include "src/http/query.h"

namespace dsm::http {
namespace {

// RFC 9110 §5.6.2: tchar.
bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

// A byte allowed in a field value (VCHAR, SP, HTAB, obs-text): anything but the controls.
bool IsValueChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view TrimBlanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The field of `head` that keeps the first value of header `name` (lower case), or null.
std::optional<std::string>* Field(RequestHead& head, std::string_view name) {
  if (name == "host") return &head.host;
  if (name == "origin") return &head.origin;
  if (name == "authorization") return &head.authorization;
  if (name == "x-dsm-token") return &head.dsm_token;
  if (name == "cookie") return &head.cookie;
  if (name == "connection") return &head.connection;
  return nullptr;
}

constexpr size_t kMaxMethodBytes = 16;
constexpr std::string_view kVersionPrefix = "HTTP/1.";

}  // namespace

RequestHeadScanner::Verdict RequestHeadScanner::Refuse(Verdict v, std::string reason) {
  refused_ = v;
  reason_ = std::move(reason);
  return v;
}

RequestHeadScanner::Verdict RequestHeadScanner::EndHeader() {
  const std::string_view value = TrimBlanks(value_);
  if (name_ == "transfer-encoding") return Refuse(Verdict::kTransferEncoding, "");
  if (name_ == "content-length") {
    if (++content_lengths_ > 1) {
      return Refuse(Verdict::kBadRequest, "several Content-Length headers");
    }
    const std::optional<uint64_t> n = ParseDecimalU64(value);
    if (!n) return Refuse(Verdict::kBadRequest, "Content-Length must be a decimal number");
    if (*n > limits_.max_body_bytes) return Refuse(Verdict::kTooLarge, "");
    head_.content_length = *n;
  } else if (name_ == "host" && ++hosts_ > 1) {
    return Refuse(Verdict::kBadRequest, "several Host headers");
  }
  if (std::optional<std::string>* field = Field(head_, name_); field && !*field) {
    *field = std::string(value);
  }
  name_.clear();
  value_.clear();
  keep_value_ = false;
  return Verdict::kNeedMore;
}

RequestHeadScanner::Verdict RequestHeadScanner::Feed(std::string_view bytes) {
  if (refused_ != Verdict::kNeedMore) return refused_;
  Verdict verdict = state_ == State::kBody ? Verdict::kBody : Verdict::kNeedMore;
  for (size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (state_ == State::kBody) {
      // Whatever follows the head: body bytes, and nothing beyond them.
      const uint64_t rest = bytes.size() - i;
      if (rest > body_left_) return Verdict::kPipelined;  // not sticky: nothing was refused yet
      body_left_ -= rest;
      return verdict;
    }
    if (++head_bytes_ > limits_.max_head_bytes) {
      return Refuse(Verdict::kHeadTooLarge, "request head larger than the limit of " +
                                                std::to_string(limits_.max_head_bytes) + " bytes");
    }
    switch (state_) {
      case State::kMethod:
        if (c == ' ' && !head_.method.empty()) {
          state_ = State::kTarget;
        } else if (IsTokenChar(c) && head_.method.size() < kMaxMethodBytes) {
          head_.method.push_back(c);
        } else {
          return Refuse(Verdict::kBadRequest, "malformed request line");
        }
        break;
      case State::kTarget:
        if (c == ' ' && !head_.target.empty()) {
          state_ = State::kVersion;
        } else if (static_cast<unsigned char>(c) > 0x20 && c != 0x7f) {
          head_.target.push_back(c);
        } else {
          return Refuse(Verdict::kBadRequest, "malformed request line");
        }
        break;
      case State::kVersion:
        if (head_.version.size() < kVersionPrefix.size()) {
          if (c != kVersionPrefix[head_.version.size()]) {
            return Refuse(Verdict::kBadRequest, "malformed request line");
          }
          head_.version.push_back(c);
        } else if (head_.version.size() == kVersionPrefix.size()) {
          if (c != '0' && c != '1') {
            return Refuse(Verdict::kBadRequest, "unsupported HTTP version");
          }
          head_.version.push_back(c);
        } else if (c == '\r') {
          state_ = State::kLineEnd;
          after_cr_ = State::kLineStart;
        } else {
          return Refuse(Verdict::kBadRequest, "malformed request line");
        }
        break;
      case State::kLineStart:
        if (c == '\r') {
          state_ = State::kLineEnd;
          after_cr_ = State::kBody;
          break;
        }
        if (c == ' ' || c == '\t') {
          return Refuse(Verdict::kBadRequest, "folded header line (obs-fold)");
        }
        if (++head_.header_lines > limits_.max_header_lines) {
          return Refuse(Verdict::kHeadTooLarge, "more than " +
                                                    std::to_string(limits_.max_header_lines) +
                                                    " header lines");
        }
        state_ = State::kName;
        [[fallthrough]];
      case State::kName:
        if (c == ':' && !name_.empty()) {
          state_ = State::kValue;
          keep_value_ = name_ == "content-length" || Field(head_, name_) != nullptr;
        } else if (IsTokenChar(c)) {
          name_.push_back(Lower(c));
        } else if (c == ' ' || c == '\t') {
          return Refuse(Verdict::kBadRequest, "whitespace in a header name");
        } else {
          return Refuse(Verdict::kBadRequest, "malformed header line");
        }
        break;
      case State::kValue:
        if (c == '\r') {
          state_ = State::kLineEnd;
          after_cr_ = State::kLineStart;
          if (Verdict v = EndHeader(); v != Verdict::kNeedMore) return v;
        } else if (IsValueChar(c)) {
          if (keep_value_) value_.push_back(c);
        } else {
          return Refuse(Verdict::kBadRequest, "control character in a header value");
        }
        break;
      case State::kLineEnd:
        if (c != '\n') return Refuse(Verdict::kBadRequest, "a CR not followed by LF");
        state_ = after_cr_;
        if (state_ == State::kBody) {
          body_left_ = head_.content_length;
          verdict = Verdict::kHead;
        }
        break;
      case State::kBody:
        break;  // handled above
    }
  }
  return verdict;
}

void RequestHeadScanner::Reset() {
  state_ = State::kMethod;
  after_cr_ = State::kLineStart;
  head_bytes_ = 0;
  content_lengths_ = 0;
  hosts_ = 0;
  body_left_ = 0;
  name_.clear();
  value_.clear();
  keep_value_ = false;
  head_ = RequestHead();
  reason_.clear();
  refused_ = Verdict::kNeedMore;
}

}  // namespace dsm::http

#include "src/http/request_head.h"

#include <cctype>
#include <cstdint>
#include <optional>

#include "src/http/query.h"

namespace dsm::http {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// Whether header name `name` is `lower_name` (given in lower case), ignoring case and the blanks
// around it (Pistache matches the name exactly but for case: this is the larger set).
bool IsHeader(std::string_view name, std::string_view lower_name) {
  name = Trim(name);
  if (name.size() != lower_name.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(name[i])) != lower_name[i]) return false;
  }
  return true;
}

// The verdict on one Content-Length value (RFC 9110: 1*DIGIT).
RequestHeadScanner::Verdict CheckContentLength(std::string_view value, size_t limit) {
  using Verdict = RequestHeadScanner::Verdict;
  const std::optional<uint64_t> n = ParseDecimalU64(Trim(value));
  if (!n) return Verdict::kBadContentLength;
  return *n > limit ? Verdict::kTooLarge : Verdict::kNeedMore;
}

}  // namespace

RequestHeadScanner::Verdict RequestHeadScanner::EndHeader() {
  Verdict v = Verdict::kNeedMore;
  if (IsHeader(name_, "transfer-encoding")) {
    v = Verdict::kTransferEncoding;
  } else if (IsHeader(name_, "content-length")) {
    v = CheckContentLength(value_, max_head_bytes_);
  }
  name_.clear();
  value_.clear();
  return v;
}

RequestHeadScanner::Verdict RequestHeadScanner::Feed(std::string_view bytes) {
  for (char c : bytes) {
    if (verdict_ != Verdict::kNeedMore) return verdict_;
    if (++scanned_ > max_head_bytes_) {
      verdict_ = Verdict::kOk;  // the parser refuses a head this long
      return verdict_;
    }
    // A CRLF ends the version, a header value and (at a header's start) the head. A CR is held
    // until the next byte shows whether it begins one.
    const bool crlf = pending_cr_ && c == '\n';
    const bool held_cr = pending_cr_;
    pending_cr_ = false;
    switch (state_) {
      case State::kMethod:
        if (c == ' ') state_ = State::kTarget;
        break;
      case State::kTarget:
        if (c == ' ') state_ = State::kVersion;
        break;
      case State::kVersion:
        if (crlf) {
          state_ = State::kHeaderStart;
        } else {
          pending_cr_ = c == '\r';
        }
        break;
      case State::kHeaderStart:
        if (crlf) {
          verdict_ = Verdict::kOk;
          return verdict_;
        }
        if (!held_cr && c == '\r') {
          pending_cr_ = true;
          break;
        }
        if (held_cr) name_.push_back('\r');  // a CR not followed by LF begins a name
        state_ = State::kHeaderName;
        [[fallthrough]];
      case State::kHeaderName:
        if (c == ':') {
          state_ = State::kHeaderSpaces;
        } else {
          name_.push_back(c);
        }
        break;
      case State::kHeaderSpaces:
        if (c == ' ') break;
        state_ = State::kHeaderValue;
        [[fallthrough]];
      case State::kHeaderValue:
        if (crlf) {
          value_.pop_back();  // the CR, stored while it could still have been part of the value
          state_ = State::kHeaderStart;
          verdict_ = EndHeader();
        } else {
          value_.push_back(c);
          pending_cr_ = c == '\r';
        }
        break;
    }
  }
  return verdict_;
}

void RequestHeadScanner::Reset() {
  scanned_ = 0;
  state_ = State::kMethod;
  pending_cr_ = false;
  name_.clear();
  value_.clear();
  verdict_ = Verdict::kNeedMore;
}

}  // namespace dsm::http

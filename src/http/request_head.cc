#include "src/http/request_head.h"

#include <cctype>

namespace dsm::http {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

bool IsTransferEncoding(std::string_view name) {
  constexpr std::string_view kName = "transfer-encoding";
  name = Trim(name);
  if (name.size() != kName.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(name[i])) != kName[i]) return false;
  }
  return true;
}

}  // namespace

RequestHeadScanner::Verdict RequestHeadScanner::Feed(std::string_view bytes) {
  if (verdict_ != Verdict::kNeedMore) return verdict_;
  if (head_.empty()) {
    while (!bytes.empty() && (bytes.front() == '\r' || bytes.front() == '\n')) {
      bytes.remove_prefix(1);
    }
  }
  const size_t searched = head_.size() > 3 ? head_.size() - 3 : 0;
  const size_t room = max_head_bytes_ > head_.size() ? max_head_bytes_ - head_.size() : 0;
  head_.append(bytes.substr(0, room));
  // The head ends at the first empty line ("\r\n\r\n", or "\n\n" from lenient clients).
  size_t end = head_.find("\n\r\n", searched > 0 ? searched - 1 : 0);
  size_t end_lf = head_.find("\n\n", searched > 0 ? searched - 1 : 0);
  if (end == std::string::npos || (end_lf != std::string::npos && end_lf < end)) end = end_lf;
  if (end == std::string::npos) {
    if (head_.size() >= max_head_bytes_) verdict_ = Verdict::kOk;  // the parser refuses it
    return verdict_;
  }
  std::string_view head(head_.data(), end);
  size_t line_start = head.find('\n');  // skip the request line
  while (line_start != std::string_view::npos) {
    const size_t next = head.find('\n', line_start + 1);
    std::string_view line = head.substr(line_start + 1, next == std::string_view::npos
                                                            ? std::string_view::npos
                                                            : next - line_start - 1);
    const size_t colon = line.find(':');
    if (colon != std::string_view::npos && IsTransferEncoding(line.substr(0, colon))) {
      verdict_ = Verdict::kTransferEncoding;
      return verdict_;
    }
    line_start = next;
  }
  verdict_ = Verdict::kOk;
  return verdict_;
}

void RequestHeadScanner::Reset() {
  head_.clear();
  verdict_ = Verdict::kNeedMore;
}

}  // namespace dsm::http

#include "src/http/json_numbers.h"

namespace dsm::json {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsNumberChar(char c) {
  return IsDigit(c) || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

// The length of the JSON number grammar's longest match at in[at...] (what RapidJSON reads):
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, or 0 when there is none. Sets *zero when every
// significand digit is 0 and *exponent when an exponent part was matched.
size_t MatchNumber(std::string_view in, size_t at, bool* zero, bool* exponent) {
  size_t i = at;
  *zero = true;
  *exponent = false;
  if (i < in.size() && in[i] == '-') ++i;
  if (i >= in.size() || !IsDigit(in[i])) return 0;
  if (in[i] == '0') {
    ++i;
  } else {
    while (i < in.size() && IsDigit(in[i])) {
      if (in[i] != '0') *zero = false;
      ++i;
    }
  }
  if (i + 1 < in.size() && in[i] == '.' && IsDigit(in[i + 1])) {
    ++i;
    while (i < in.size() && IsDigit(in[i])) {
      if (in[i] != '0') *zero = false;
      ++i;
    }
  }
  if (i < in.size() && (in[i] == 'e' || in[i] == 'E')) {
    size_t j = i + 1;
    if (j < in.size() && (in[j] == '+' || in[j] == '-')) ++j;
    if (j < in.size() && IsDigit(in[j])) {
      while (j < in.size() && IsDigit(in[j])) ++j;
      *exponent = true;
      i = j;
    }
  }
  return i - at;
}

}  // namespace

bool RewriteZeroExponentNumbers(std::string_view in, std::string* out) {
  std::string rewritten;
  bool changed = false;
  bool in_string = false;
  for (size_t i = 0; i < in.size();) {
    const char c = in[i];
    if (in_string) {
      if (c == '\\') {
        i += 2;
        continue;
      }
      if (c == '"') in_string = false;
      ++i;
      continue;
    }
    if (c == '"') {
      in_string = true;
      ++i;
      continue;
    }
    if (!IsNumberChar(c)) {
      ++i;
      continue;
    }
    // A run of number characters outside strings: only its grammatical prefix is a number.
    bool zero = false;
    bool exponent = false;
    const size_t len = MatchNumber(in, i, &zero, &exponent);
    if (len > 0 && zero && exponent) {
      if (!changed) {
        rewritten.assign(in.data(), in.size());
        changed = true;
      }
      const bool negative = in[i] == '-';
      std::string zero_text = negative ? "-0.0" : "0.0";  // fits: "0e5" is 3, "-0e5" is 4
      zero_text.resize(len, ' ');
      rewritten.replace(i, len, zero_text);
    }
    i += len > 0 ? len : 1;
    while (i < in.size() && IsNumberChar(in[i])) ++i;  // the rest of the run
  }
  if (changed) *out = std::move(rewritten);
  return changed;
}

}  // namespace dsm::json

#include "common/ids.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <random>

namespace dsm {
namespace {

std::mt19937_64& Generator() {
  thread_local std::mt19937_64 gen([] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }());
  return gen;
}

constexpr char kHex[] = "0123456789abcdef";

}  // namespace

std::string RandomHex(int hex_chars) {
  std::string out;
  out.reserve(hex_chars);
  uint64_t bits = 0;
  for (int i = 0; i < hex_chars; ++i) {
    if (i % 16 == 0) bits = Generator()();
    out.push_back(kHex[bits & 0xf]);
    bits >>= 4;
  }
  return out;
}

std::string NewUuid() {
  std::string hex = RandomHex(32);
  hex[12] = '4';                                  // version 4
  hex[16] = kHex[8 | (hex[16] % 4)];              // variant 10xx
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

bool ValidNodeId(std::string_view id) {
  if (id.empty() || id.size() > kMaxNodeIdChars) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

}  // namespace dsm

// Identifiers: random message ids (UUID v4 text) and data-directory incarnations (hex), and the
// shape of a node id. Thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dsm {

// "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", from a per-thread generator seeded by the OS.
std::string NewUuid();
// `hex_chars` random lowercase hex digits.
std::string RandomHex(int hex_chars);

// A node id (--id): 1 to kMaxNodeIdChars letters, digits, '.', '_' and '-'.
inline constexpr size_t kMaxNodeIdChars = 64;
bool ValidNodeId(std::string_view id);

}  // namespace dsm

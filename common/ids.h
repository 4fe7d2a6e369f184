// Random identifiers: message ids (UUID v4 text) and data-directory incarnations (hex).
// Thread-safe.
#pragma once

#include <string>

namespace dsm {

// "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", from a per-thread generator seeded by the OS.
std::string NewUuid();
// `hex_chars` random lowercase hex digits.
std::string RandomHex(int hex_chars);

}  // namespace dsm

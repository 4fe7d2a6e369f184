// A guard in front of RapidJSON 1.1's full-precision number parsing (kParseFullPrecisionFlag):
// a number whose significand is all zeros but that carries an exponent ("0e308", "-0.00e100")
// reaches internal::StrtodDiyFp with a zero mantissa, calls __builtin_clzll(0) (undefined) and
// comes back as garbage (0e308 parsed as -6e-269 in a GCC -O2 build). Found by fuzz/json_fuzzer.
//
// ZeroExponentNumbers rewrites every such number, outside strings, into the same value spelled
// without an exponent ("0.0", "-0.0", padded with spaces to the same length, so error offsets
// stay right); everything else is left as is. Pure functions, thread-compatible.
#pragma once

#include <string>
#include <string_view>

namespace dsm::json {

// Returns true and sets *out to the rewritten text when `in` holds such a number; false (and
// leaves *out alone) otherwise.
bool RewriteZeroExponentNumbers(std::string_view in, std::string* out);

}  // namespace dsm::json

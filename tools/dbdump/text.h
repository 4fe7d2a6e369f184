// Text helpers of dsm-dbdump: how stored bytes, keys, timestamps and messages are shown. Keys
// and values of a data directory may hold any bytes; everything printed on one line is escaped
// so that a line stays a line and every byte can be told apart.
//
// Pure functions, thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "dsm/message.h"
#include "storage/log_reader.h"

namespace dsm::dbdump {

// `s` for one-line display: valid UTF-8 text other than control characters is kept; '\\' becomes
// "\\\\", NUL "\\0", newline "\\n", carriage return "\\r", tab "\\t", and every other control
// byte or byte outside a valid UTF-8 sequence "\\xNN".
std::string Escape(std::string_view s);

// Columns `text` occupies on a terminal, counting one per UTF-8 code point.
size_t DisplayWidth(std::string_view text);

// `text` cut to at most `width` columns (on a code point boundary), ending with "..." when cut.
// width 0 means no limit.
std::string Fit(std::string_view text, size_t width);

// `ts` (seconds since the Unix epoch) as ISO-8601 UTC with milliseconds,
// "2023-11-14T22:13:20.250Z". A value outside years 0..9999 or not finite is printed as a number.
std::string FormatTimestamp(double ts);

// The JSON object GET /messages shows for `m`: {"seq","msg_id","sender","recipient","payload",
// "ts","origin","origin_seq"} (origin fields only when the message has an origin). Text that is
// not valid UTF-8 has its invalid bytes replaced by '?'.
std::string MessageJson(const Message& m);

// Where an entry lives, for reports: "log seq 7", "msgid 'm-1'", "origin node1@0a1b#3",
// "inbox 'bob' seq 7", "meta 'hwm\\0node1@0a1b'", "default 'k'". Malformed keys are shown
// escaped ("log key '\\x00\\x01'").
std::string DescribeKey(LogFamily family, std::string_view key);

}  // namespace dsm::dbdump

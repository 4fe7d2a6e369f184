// The JSON object of a message, as every answer of the API shows it: {"seq","msg_id","sender",
// "recipient","payload","ts"} and, once the message belongs to a stream, "origin" and
// "origin_seq". Shared by the HTTP codec (src/http/json_codec.h) and dsm-dbdump, which differ
// only in how they write a string (dsm-dbdump replaces bytes that are not UTF-8, since it reads
// possibly damaged data). Header-only; thread-compatible.
#pragma once

#include <cmath>
#include <string_view>

#include "dsm/message.h"

namespace dsm::json {

// `write_string(w, s)` writes one string value.
template <typename Writer, typename WriteString>
void WriteMessageObject(Writer& w, const Message& m, WriteString write_string) {
  w.StartObject();
  w.Key("seq");
  w.Uint64(m.seq);
  w.Key("msg_id");
  write_string(w, m.msg_id);
  w.Key("sender");
  write_string(w, m.sender);
  w.Key("recipient");
  write_string(w, m.recipient);
  w.Key("payload");
  write_string(w, m.payload);
  w.Key("ts");
  w.Double(std::isfinite(m.ts) ? m.ts : 0.0);
  // A message not yet assigned to a stream has no origin to show (and an empty origin would not
  // parse back).
  if (!m.origin.empty()) {
    w.Key("origin");
    write_string(w, m.origin);
    w.Key("origin_seq");
    w.Uint64(m.origin_seq);
  }
  w.EndObject();
}

}  // namespace dsm::json

#include "storage/record.h"

#include <bit>

#include "common/encoding.h"

namespace dsm {
namespace {

Status Corrupt(uint64_t seq, std::string_view problem) {
  std::string msg = "record at seq " + std::to_string(seq) + ": ";
  msg.append(problem);
  return Status::Corruption(std::move(msg));
}

}  // namespace

void AppendRecord(std::string* dst, const Message& msg) {
  AppendRecord(dst, msg, msg.origin, msg.origin_seq);
}

void AppendRecord(std::string* dst, const Message& msg, std::string_view origin,
                  uint64_t origin_seq) {
  constexpr size_t kMaxVarint = 10;
  dst->reserve(dst->size() + 1 + msg.msg_id.size() + msg.sender.size() + msg.recipient.size() +
               msg.payload.size() + origin.size() + 5 * kMaxVarint + 16);
  dst->push_back(static_cast<char>(kRecordVersion));
  PutLengthPrefixed(dst, msg.msg_id);
  PutLengthPrefixed(dst, msg.sender);
  PutLengthPrefixed(dst, msg.recipient);
  PutLengthPrefixed(dst, msg.payload);
  PutLengthPrefixed(dst, origin);
  PutFixed64(dst, origin_seq);
  PutFixed64(dst, std::bit_cast<uint64_t>(msg.ts));
}

std::string EncodeRecord(const Message& msg) {
  std::string out;
  AppendRecord(&out, msg);
  return out;
}

Result<Message> DecodeRecord(uint64_t seq, std::string_view in) {
  if (in.empty()) return Corrupt(seq, "empty record");
  const uint8_t version = static_cast<uint8_t>(in.front());
  if (version != kRecordVersion) {
    return Corrupt(seq, "unknown record version " + std::to_string(version));
  }
  in.remove_prefix(1);

  Message msg;
  msg.seq = seq;
  struct Field {
    const char* name;
    std::string* out;
  };
  const Field fields[] = {{"msg_id", &msg.msg_id},
                          {"sender", &msg.sender},
                          {"recipient", &msg.recipient},
                          {"payload", &msg.payload},
                          {"origin", &msg.origin}};
  for (const Field& f : fields) {
    std::string_view value;
    if (!GetLengthPrefixed(&in, &value)) {
      return Corrupt(seq, std::string("truncated ") + f.name);
    }
    f.out->assign(value.data(), value.size());
  }
  if (!GetFixed64(&in, &msg.origin_seq)) return Corrupt(seq, "truncated origin_seq");
  uint64_t ts_bits = 0;
  if (!GetFixed64(&in, &ts_bits)) return Corrupt(seq, "truncated ts");
  msg.ts = std::bit_cast<double>(ts_bits);
  if (!in.empty()) {
    return Corrupt(seq, std::to_string(in.size()) + " trailing bytes");
  }
  return msg;
}

}  // namespace dsm

#include "tools/dbdump/consumers.h"

#include <map>
#include <memory>
#include <utility>

#include "storage/consumer_schema.h"
#include "storage/schema.h"
#include "tools/dbdump/text.h"

namespace dsm::dbdump {

Status ReadConsumers(const LogReader& reader, std::vector<StoredConsumer>* out,
                     const std::function<void(std::string where, std::string problem)>& problem) {
  std::map<std::string, StoredConsumer> found;
  std::unique_ptr<LogReader::RawCursor> it = reader.NewRawCursor(LogFamily::kConsumers);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string where = DescribeKey(LogFamily::kConsumers, it->key());
    schema::ConsumerKeyParts k;
    if (!schema::ParseConsumerKey(it->key(), &k)) {
      problem(where, "malformed consumers key");
      continue;
    }
    StoredConsumer& c = found[std::string(k.name)];
    c.name = std::string(k.name);
    const std::string_view value = it->value();
    switch (k.tag) {
      case schema::kConsumerDefinitionTag:
        if (Status s = schema::DecodeConsumerDefinition(value, &c); !s.ok()) {
          problem(where, s.message());
          c.uid.clear();
        }
        break;
      case schema::kConsumerFloorTag:
        if (!schema::DecodeSeqValue(value, &c.floor)) problem(where, "malformed floor");
        break;
      case schema::kConsumerSessionTag:
        if (!schema::DecodeSeqValue(value, &c.session)) problem(where, "malformed session");
        break;
      case schema::kConsumerAckTag:
        if (!value.empty()) problem(where, "an acknowledgement has an empty value");
        c.acked.push_back(k.seq);
        break;
      default: {
        DeadLetter d;
        d.seq = k.seq;
        if (!schema::DecodeDeadLetter(value, &d)) {
          problem(where, "malformed dead letter");
        } else {
          c.dead.push_back(d);
        }
        break;
      }
    }
  }
  if (!it->status().ok()) return it->status();
  for (auto& [name, c] : found) {
    if (c.uid.empty()) {
      problem(DescribeKey(LogFamily::kConsumers,
                          schema::ConsumerKey(name, schema::kConsumerDefinitionTag)),
              "consumer has no (readable) definition");
      continue;
    }
    out->push_back(std::move(c));
  }
  return Status::Ok();
}

std::string ConsumerSummary(const StoredConsumer& c) {
  const ConsumerDefinition& d = c.definition;
  std::string s;
  if (d.recipient) s += "recipient '" + Escape(*d.recipient) + "', ";
  if (d.sender) s += "sender '" + Escape(*d.sender) + "', ";
  s += "started after seq " + std::to_string(c.initial) + ", ack floor " +
       std::to_string(c.floor) + ", " + std::to_string(c.acked.size()) +
       " acknowledgements above it, " + std::to_string(c.dead.size()) + " dead letters, session " +
       std::to_string(c.session);
  return s;
}

}  // namespace dsm::dbdump

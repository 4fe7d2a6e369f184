// The durable consumers stored in a data directory's "consumers" family
// (storage/consumer_schema.h), read for dsm-dbdump's metadata dump and --verify.
//
// Functions of a LogReader; thread-compatible.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "dsm/consumer_state.h"
#include "dsm/status.h"
#include "storage/log_reader.h"

namespace dsm::dbdump {

// Reads every consumer, in name order. Each malformed entry is passed to `problem` (where, as
// DescribeKey shows it, and what is wrong) and left out; a consumer without a definition is
// reported and left out. Errors: the family's scan failed (Corruption for damage).
Status ReadConsumers(const LogReader& reader, std::vector<StoredConsumer>* out,
                     const std::function<void(std::string where, std::string problem)>& problem);

// "recipient 'bob', start first, ack floor 7, 2 acknowledgements above it, 1 dead letter,
// session 3" for the metadata table.
std::string ConsumerSummary(const StoredConsumer& c);

}  // namespace dsm::dbdump

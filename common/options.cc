#include "dsm/options.h"

namespace dsm {

const char* ModeName(ReplicationMode mode) {
  return mode == ReplicationMode::kSyncQuorum ? "sync_quorum" : "async";
}

}  // namespace dsm

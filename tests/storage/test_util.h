// Helpers shared by the storage tests: a temporary directory removed at scope exit and message
// builders. Thread-compatible.
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "dsm/message.h"

namespace dsm::storage_test {

// A fresh directory under the system temp directory, removed with its contents on destruction.
class ScopedTempDir {
 public:
  ScopedTempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "dsm-storage-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~ScopedTempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  // Empty if the directory could not be created.
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A client message as /send would hand it to Append().
inline Message ClientMsg(std::string msg_id, std::string sender = "alice",
                         std::string recipient = "bob", std::string payload = "hello",
                         double ts = 1700000000.25) {
  Message m;
  m.msg_id = std::move(msg_id);
  m.sender = std::move(sender);
  m.recipient = std::move(recipient);
  m.payload = std::move(payload);
  m.ts = ts;
  return m;
}

// A message of stream `origin` at position `origin_seq`, as a peer would send it.
inline Message PeerMsg(std::string msg_id, std::string origin, uint64_t origin_seq,
                       std::string payload = "from a peer") {
  Message m = ClientMsg(std::move(msg_id), "carol", "all", std::move(payload), 1700000001.5);
  m.origin = std::move(origin);
  m.origin_seq = origin_seq;
  return m;
}

}  // namespace dsm::storage_test

#pragma once
// The virtual services kipvs added, kept in a file so that its ownership of
// them survives a crash. A cluster IP's address is bound after its virtual
// service is there (agent/sync.h says why); killed in between, kipvs would
// see an IPVS service on an unbound address after a restart, take it for
// someone else's, and leave it for good if its Service was deleted meanwhile
// (nor would --cleanup take it). So the keys go into this file before they
// go into the kernel, and a restart or --cleanup counts them as kipvs's.
//
// The file lives on a tmpfs (/run/kipvs by default), which a reboot empties
// together with the IPVS table, and is named after the network namespace,
// whose IPVS table it describes. Written whole, to a temporary name and
// renamed, so it is never seen half written. One key per line:
//   TCP 10.96.0.1 443
//   UDP fd00::a 53

#include <expected>
#include <filesystem>
#include <set>
#include <string>

#include "base/error.h"
#include "ipvs/model.h"

namespace kipvs::agent {

class OwnedServicesFile {
 public:
  // No file: records and remembers nothing (tests, --state-dir "").
  OwnedServicesFile() = default;
  explicit OwnedServicesFile(std::filesystem::path path) : path_(std::move(path)) {}
  // dir/services-<inode of this process's network namespace>; disabled when
  // dir is empty.
  [[nodiscard]] static std::expected<OwnedServicesFile, Error> for_this_namespace(const std::string& dir);

  [[nodiscard]] bool enabled() const { return !path_.empty(); }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

  // The recorded keys; none when the file does not exist. A file that is not
  // kipvs's format, or larger than 64 MiB, is an error naming the line.
  [[nodiscard]] std::expected<std::set<ipvs::ServiceKey>, Error> load() const;
  // The record's text for these keys, and one more key added to it: the
  // caller keeps the text and adds to it (a first sync records 10,000
  // services a piece at a time: rendering them all again for each piece is
  // quadratic).
  [[nodiscard]] static std::string render(const std::set<ipvs::ServiceKey>& keys);
  static void append_line(std::string& text, const ipvs::ServiceKey& key);
  // Replaces the record with `text` (creating the folder if needed).
  [[nodiscard]] std::expected<void, Error> store_text(const std::string& text) const;
  // Deletes the file (--cleanup); absent is fine.
  [[nodiscard]] std::expected<void, Error> remove() const;

 private:
  std::filesystem::path path_;
};

}  // namespace kipvs::agent

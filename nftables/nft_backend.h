#pragma once
// The kernel side of kipvs's nftables table: one small interface, a
// libnftables implementation, and a stateful fake with the kernel's answers,
// like the IPVS Backend. Each apply() is one nftables transaction: it all
// happens or none of it does.
//
// Errors carry an errno-style code where one can be told (ENOENT: the table
// or an element is missing) and libnftables' own message text. Not
// thread-safe: the agent's one thread owns it.

#include <cstddef>
#include <expected>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "ipvs/backend.h"
#include "nftables/nft_ruleset.h"

namespace kipvs::nftables {

class NftBackend {
 public:
  virtual ~NftBackend() = default;
  [[nodiscard]] virtual std::expected<void, Error> apply(const NftUpdate& update) = 0;
  // ENOENT when there is no table.
  [[nodiscard]] virtual std::expected<void, Error> delete_table() = 0;
  // `nft list table inet kipvs` output.
  [[nodiscard]] virtual std::expected<std::string, Error> list_table() = 0;
  // Whether the table is there (someone may have flushed the ruleset); a
  // cheap question, without the sets' elements.
  [[nodiscard]] virtual std::expected<bool, Error> table_present() = 0;
};

// libnftables: a context per run, output and errors captured in buffers.
class LibNftBackend final : public NftBackend {
 public:
  [[nodiscard]] static std::expected<std::unique_ptr<LibNftBackend>, Error> open();
  ~LibNftBackend() override;
  LibNftBackend(const LibNftBackend&) = delete;
  LibNftBackend& operator=(const LibNftBackend&) = delete;

  [[nodiscard]] std::expected<void, Error> apply(const NftUpdate& update) override;
  [[nodiscard]] std::expected<void, Error> delete_table() override;
  [[nodiscard]] std::expected<std::string, Error> list_table() override;
  [[nodiscard]] std::expected<bool, Error> table_present() override;
  // Runs any script as one transaction; returns its output.
  [[nodiscard]] std::expected<std::string, Error> run(const std::string& script);

 private:
  LibNftBackend() = default;
};

}  // namespace kipvs::nftables

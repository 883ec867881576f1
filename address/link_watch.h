#pragma once
// Tells when a network link is deleted, from rtnetlink's link multicast
// group. `kube-proxy --cleanup` (and an operator's `ip link del`) removes the
// dummy interface and with it every virtual IP: kipvs's periodic resync
// would repair it up to a sync period later, this lets it repair at once.
//
// Non-blocking: the agent waits for fd() to be readable on its io_context
// and then calls read_events(). Not thread-safe: the agent's thread owns it.

#include <expected>
#include <memory>
#include <span>
#include <string>

#include "ipvs/backend.h"

namespace kipvs::address {

class LinkWatch {
 public:
  [[nodiscard]] static std::expected<std::unique_ptr<LinkWatch>, Error> open();
  ~LinkWatch();
  LinkWatch(const LinkWatch&) = delete;
  LinkWatch& operator=(const LinkWatch&) = delete;

  [[nodiscard]] int fd() const { return fd_; }
  // Reads every queued message; true when one of them deleted the link
  // named `name`. ENOBUFS (the kernel dropped messages) also answers true:
  // the deletion may have been among them.
  [[nodiscard]] std::expected<bool, Error> read_events(const std::string& name);

 private:
  explicit LinkWatch(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// Whether a buffer of rtnetlink messages holds an RTM_DELLINK for `name`.
// Pure, for tests.
[[nodiscard]] bool deletes_link(std::span<const char> messages, const std::string& name);

}  // namespace kipvs::address

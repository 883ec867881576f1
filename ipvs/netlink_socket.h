#pragma once
// The bound on a round trip to the kernel. Every netlink socket kipvs talks
// through (IPVS, rtnetlink, ctnetlink, nftables) gets it as its send and
// receive timeout, so a kernel that never answers fails one operation with
// EAGAIN instead of hanging the agent's only thread.

#include <chrono>
#include <expected>
#include <string>

#include "ipvs/backend.h"

namespace kipvs::ipvs {

inline constexpr std::chrono::milliseconds kNetlinkTimeout{5000};

// SO_SNDTIMEO and SO_RCVTIMEO on fd; the error names `what`.
[[nodiscard]] std::expected<void, Error> set_socket_timeouts(int fd, std::chrono::milliseconds timeout,
                                                             const std::string& what);
// The socket's SO_RCVTIMEO (0: it waits for ever).
[[nodiscard]] std::chrono::milliseconds receive_timeout(int fd);

}  // namespace kipvs::ipvs

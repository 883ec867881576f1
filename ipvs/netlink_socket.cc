#include "ipvs/netlink_socket.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <ctime>
#include <system_error>

namespace kipvs::ipvs {

std::expected<void, Error> set_socket_timeouts(int fd, std::chrono::milliseconds timeout,
                                               const std::string& what) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
    const int code = errno;
    return std::unexpected(Error{code, what + " socket timeouts: " + std::generic_category().message(code)});
  }
  return {};
}

std::chrono::milliseconds receive_timeout(int fd) {
  timeval tv{};
  socklen_t length = sizeof tv;
  if (getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &length) != 0) return std::chrono::milliseconds{0};
  return std::chrono::seconds{tv.tv_sec} +
         std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::microseconds{tv.tv_usec});
}

}  // namespace kipvs::ipvs

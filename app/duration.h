#pragma once
// Durations written as Go writes them (time.ParseDuration / Duration.String),
// because kube-proxy's configuration and flags use that syntax: "30s",
// "1m30s", "500ms", "1.5h", "0". Kept apart from the config so flags, the
// config file and /configz share one parser and one printer.

#include <chrono>
#include <expected>
#include <string>
#include <string_view>

#include "base/error.h"

namespace kipvs::app {

// Parses a Go duration: an optional sign, then one or more decimal numbers,
// each with an optional fraction and a unit (ns, us, µs, ms, s, m, h). "0"
// alone needs no unit. The error says what is wrong, without the input.
[[nodiscard]] std::expected<std::chrono::nanoseconds, Error> parse_duration(std::string_view text);

// Go's Duration.String(): "1h0m0s", "1m30s", "1.5s", "500ms", "0s".
[[nodiscard]] std::string format_duration(std::chrono::nanoseconds duration);

}  // namespace kipvs::app

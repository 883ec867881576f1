#include "app/duration.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

namespace kipvs::app {
namespace {

struct Unit {
  std::string_view name;
  std::int64_t nanoseconds;
};

constexpr Unit kUnits[] = {
    {"ns", 1},
    {"us", 1'000},
    {"\xc2\xb5s", 1'000},  // U+00B5 micro sign
    {"\xce\xbcs", 1'000},  // U+03BC Greek mu, which Go also accepts
    {"ms", 1'000'000},
    {"s", 1'000'000'000},
    {"m", 60'000'000'000},
    {"h", 3'600'000'000'000},
};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

std::expected<std::chrono::nanoseconds, Error> parse_duration(std::string_view text) {
  if (text.empty()) return std::unexpected(Error{.message = "empty duration"});
  bool negative = false;
  if (text.front() == '-' || text.front() == '+') {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text == "0") return std::chrono::nanoseconds{0};
  if (text.empty()) return std::unexpected(Error{.message = "a sign without a number"});

  // Each step is checked against the int64 range, as Go does (durations up
  // to about 292 years).
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t total = 0;
  while (!text.empty()) {
    std::size_t i = 0;
    std::uint64_t whole = 0;
    while (i < text.size() && is_digit(text[i])) {
      const auto digit = static_cast<std::uint64_t>(text[i] - '0');
      if (whole > (kMax - digit) / 10) return std::unexpected(Error{.message = "duration out of range"});
      whole = whole * 10 + digit;
      ++i;
    }
    const bool had_whole = i > 0;
    std::uint64_t fraction = 0;
    std::uint64_t scale = 1;
    bool had_fraction = false;
    if (i < text.size() && text[i] == '.') {
      ++i;
      while (i < text.size() && is_digit(text[i])) {
        // Digits past nanosecond precision cannot matter; stop scaling then.
        if (scale < 1'000'000'000'000'000'000ULL) {
          fraction = fraction * 10 + static_cast<unsigned>(text[i] - '0');
          scale *= 10;
        }
        had_fraction = true;
        ++i;
      }
    }
    if (!had_whole && !had_fraction) return std::unexpected(Error{.message = "expected a number"});
    text.remove_prefix(i);

    // The unit is everything up to the next number, as Go reads it.
    std::size_t unit_end = 0;
    while (unit_end < text.size() && text[unit_end] != '.' && !is_digit(text[unit_end])) ++unit_end;
    const std::string_view unit_name = text.substr(0, unit_end);
    const auto unit = std::ranges::find(kUnits, unit_name, &Unit::name);
    if (unit == std::ranges::end(kUnits)) {
      if (unit_name.empty())
        return std::unexpected(Error{.message = "missing unit (one of ns, us, ms, s, m, h)"});
      return std::unexpected(Error{.message = "unknown unit (expected one of ns, us, ms, s, m, h)"});
    }
    text.remove_prefix(unit->name.size());

    const auto per_unit = static_cast<std::uint64_t>(unit->nanoseconds);
    std::uint64_t term = 0;
    if (__builtin_mul_overflow(whole, per_unit, &term))
      return std::unexpected(Error{.message = "duration out of range"});
    // The fraction in floating point, as Go computes it; below a nanosecond
    // it is truncated.
    term += static_cast<std::uint64_t>(static_cast<long double>(fraction) * per_unit / scale);
    if (term > kMax || total > kMax - term) return std::unexpected(Error{.message = "duration out of range"});
    total += term;
  }
  const auto value = static_cast<std::int64_t>(total);
  return std::chrono::nanoseconds{negative ? -value : value};
}

std::string format_duration(std::chrono::nanoseconds duration) {
  const std::int64_t ns = duration.count();
  if (ns == 0) return "0s";
  const bool negative = ns < 0;
  // Unsigned so the most negative value negates without overflow.
  std::uint64_t u = negative ? 0 - static_cast<std::uint64_t>(ns) : static_cast<std::uint64_t>(ns);

  // Prints u / 10^precision with the trailing zeros of the fraction dropped.
  auto fixed = [](std::uint64_t value, int precision) {
    std::string fraction;
    bool significant = false;
    for (int digit = 0; digit < precision; ++digit) {
      const auto d = static_cast<char>('0' + value % 10);
      value /= 10;
      if (d != '0') significant = true;
      if (significant) fraction.insert(fraction.begin(), d);
    }
    std::string out = std::to_string(value);
    if (!fraction.empty()) out += "." + fraction;
    return out;
  };

  std::string out;
  if (u < 1'000'000'000ULL) {
    // Below a second Go picks the largest unit that keeps a whole part.
    if (u < 1'000ULL) {
      out = std::to_string(u) + "ns";
    } else if (u < 1'000'000ULL) {
      out = fixed(u, 3) + "\xc2\xb5s";
    } else {
      out = fixed(u, 6) + "ms";
    }
  } else {
    const std::uint64_t seconds_ns = u % 60'000'000'000ULL;
    std::uint64_t minutes = u / 60'000'000'000ULL;
    out = fixed(seconds_ns, 9) + "s";
    if (minutes > 0) {
      const std::uint64_t hours = minutes / 60;
      minutes %= 60;
      out = std::to_string(minutes) + "m" + out;
      if (hours > 0) out = std::to_string(hours) + "h" + out;
    }
  }
  return negative ? "-" + out : out;
}

}  // namespace kipvs::app

#pragma once
// Bounds the memory one parsed JSON value may take. Boost.JSON's parser
// needs many times the text's size (a 16-byte value per "0," in a long
// array, plus its stack while the array is open: 16 MiB of text can take
// 256 MiB), so a byte cap on the text alone does not bound memory.
//
// A CappedResource hands out memory from the heap and throws
// ParseMemoryExceeded once the bytes it has live would pass its cap. One is
// made per value (a watch frame, a list page); the parser's stack and a
// monotonic arena for the value both draw from it, and the parser turns the
// exception into a parse failure. Thread-safe: a page may be freed on the
// thread that decoded it.
#include <atomic>
#include <cstddef>
#include <new>
#include <string>

#include <boost/json/storage_ptr.hpp>

namespace kipvs::k8s {

class ParseMemoryExceeded : public std::bad_alloc {
 public:
  [[nodiscard]] const char* what() const noexcept override { return "parse memory cap exceeded"; }
};

class CappedResource final : public boost::json::memory_resource {
 public:
  explicit CappedResource(std::size_t cap) : cap_(cap) {}

  [[nodiscard]] std::size_t cap() const { return cap_; }
  [[nodiscard]] std::size_t live() const { return live_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::size_t peak() const { return peak_.load(std::memory_order_relaxed); }

 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override;
  [[nodiscard]] bool do_is_equal(const boost::json::memory_resource& other) const noexcept override {
    return this == &other;
  }

  const std::size_t cap_;
  std::atomic<std::size_t> live_{0};
  std::atomic<std::size_t> peak_{0};
};

// A shared CappedResource, to give a parser as its temporary storage and to
// parse_arena() as the arena's upstream.
[[nodiscard]] boost::json::storage_ptr capped_resource(std::size_t cap);

// "64 MiB", "256 KiB": a cap for a log line.
[[nodiscard]] std::string memory_text(std::size_t bytes);

// Storage for one parsed value: a monotonic arena (a value's many small
// allocations cost one pointer bump each, and are freed together with the
// value) whose blocks come from `upstream`.
[[nodiscard]] boost::json::storage_ptr parse_arena(boost::json::storage_ptr upstream);

}  // namespace kipvs::k8s

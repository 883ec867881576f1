#include "k8s/parse_memory.h"

#include <algorithm>
#include <cstddef>

#include <boost/json/monotonic_resource.hpp>

namespace kipvs::k8s {
namespace {

constexpr std::size_t kFirstBlock = 4096;  // a Service takes a few KiB; blocks double from here

// Each block carries its size in front: the size a caller passes back is not
// to be trusted (Boost 1.81's monotonic_resource returns its blocks with a
// smaller one than it asked for).
std::size_t header_bytes(std::size_t align) {
  return std::max(align, alignof(std::max_align_t));
}

}  // namespace

void* CappedResource::do_allocate(std::size_t bytes, std::size_t align) {
  std::size_t live = live_.load(std::memory_order_relaxed);
  do {
    if (bytes > cap_ - std::min(cap_, live)) throw ParseMemoryExceeded();
  } while (!live_.compare_exchange_weak(live, live + bytes, std::memory_order_relaxed));
  std::size_t peak = peak_.load(std::memory_order_relaxed);
  while (live + bytes > peak && !peak_.compare_exchange_weak(peak, live + bytes, std::memory_order_relaxed)) {
  }
  const std::size_t header = header_bytes(align);
  void* raw = nullptr;
  try {
    raw = ::operator new(header + bytes, std::align_val_t(header));
  } catch (...) {
    live_.fetch_sub(bytes, std::memory_order_relaxed);
    throw;
  }
  *static_cast<std::size_t*>(raw) = bytes;
  return static_cast<unsigned char*>(raw) + header;
}

void CappedResource::do_deallocate(void* p, std::size_t, std::size_t align) {
  const std::size_t header = header_bytes(align);
  void* raw = static_cast<unsigned char*>(p) - header;
  live_.fetch_sub(*static_cast<std::size_t*>(raw), std::memory_order_relaxed);
  ::operator delete(raw, std::align_val_t(header));
}

std::string memory_text(std::size_t bytes) {
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " bytes";
}

boost::json::storage_ptr capped_resource(std::size_t cap) {
  return boost::json::make_shared_resource<CappedResource>(cap);
}

boost::json::storage_ptr parse_arena(boost::json::storage_ptr upstream) {
  return boost::json::make_shared_resource<boost::json::monotonic_resource>(kFirstBlock, std::move(upstream));
}

}  // namespace kipvs::k8s

#pragma once
// A protobuf writer for tests: builds the API server's messages field by
// field, so a test can hand the decoder exactly the bytes it means to,
// including ones no API server writes.

#include <cstdint>
#include <string>
#include <string_view>

namespace kipvs::test {

class Pb {
 public:
  Pb& integer(std::uint32_t number, std::int64_t value) {
    tag(number, 0);
    varint(static_cast<std::uint64_t>(value));  // negative int32/int64: sign-extended, as Go writes them
    return *this;
  }
  Pb& string(std::uint32_t number, std::string_view text) {
    tag(number, 2);
    varint(text.size());
    bytes_.append(text);
    return *this;
  }
  Pb& message(std::uint32_t number, const Pb& inner) { return string(number, inner.bytes_); }
  Pb& fixed32(std::uint32_t number) {
    tag(number, 5);
    bytes_.append(4, '\x01');
    return *this;
  }
  Pb& fixed64(std::uint32_t number) {
    tag(number, 1);
    bytes_.append(8, '\x02');
    return *this;
  }
  Pb& raw(std::string_view bytes) {
    bytes_.append(bytes);
    return *this;
  }
  [[nodiscard]] const std::string& bytes() const { return bytes_; }

  // "k8s\0" + runtime.Unknown{typeMeta{apiVersion, kind}, raw}.
  [[nodiscard]] std::string envelope(std::string_view api_version, std::string_view kind) const {
    Pb unknown;
    unknown.message(1, Pb().string(1, api_version).string(2, kind)).string(2, bytes_);
    return std::string("k8s\0", 4) + unknown.bytes_;
  }

 private:
  void tag(std::uint32_t number, std::uint32_t wire) { varint((std::uint64_t{number} << 3) | wire); }
  void varint(std::uint64_t value) {
    while (value >= 0x80) {
      bytes_.push_back(static_cast<char>((value & 0x7f) | 0x80));
      value >>= 7;
    }
    bytes_.push_back(static_cast<char>(value));
  }

  std::string bytes_;
};

// metav1.ObjectMeta with a name and namespace.
inline Pb pb_meta(std::string_view ns, std::string_view name, std::string_view resource_version = "1") {
  return Pb().string(1, name).string(3, ns).string(6, resource_version);
}

}  // namespace kipvs::test

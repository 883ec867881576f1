#pragma once
// The one error type every folder returns at its boundary, as
// std::expected<T, Error>: an errno where the system gave one, and for bad
// input the place it came from and the field at fault, so a message can
// name them.

#include <string>

namespace kipvs {

// The members' {} initializers keep -Wmissing-field-initializers quiet for
// the short forms Error{code, message}.
struct Error {
  int code = 0;           // errno value (positive) when the kernel or libc gave one, else 0
  std::string message{};  // what failed: names the operation, the object or the expectation
  std::string field{};    // the input's field at fault: "ipvs.syncPeriod", "--cluster-cidr", ...
  std::string source{};   // where the input came from: "/etc/kipvs/config.yaml:12", a kubeconfig

  // "source: field: message", leaving out the parts that are empty.
  [[nodiscard]] std::string text() const {
    std::string out;
    if (!source.empty()) out += source + ": ";
    if (!field.empty()) out += field + ": ";
    return out + message;
  }
};

}  // namespace kipvs

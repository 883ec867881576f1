#include "agent/owned_services.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>

namespace kipvs::agent {
namespace {

constexpr std::uintmax_t kMaxFileBytes = 64ULL * 1024 * 1024;

std::optional<ipvs::Protocol> protocol_named(std::string_view name) {
  if (name == "TCP") return ipvs::Protocol::kTcp;
  if (name == "UDP") return ipvs::Protocol::kUdp;
  if (name == "SCTP") return ipvs::Protocol::kSctp;
  return std::nullopt;
}

std::optional<ipvs::ServiceKey> parse_line(std::string_view line) {
  const auto first = line.find(' ');
  const auto second = first == std::string_view::npos ? first : line.find(' ', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  const auto protocol = protocol_named(line.substr(0, first));
  const auto address = ipvs::Address::parse(line.substr(first + 1, second - first - 1));
  const auto port_text = line.substr(second + 1);
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (!protocol || !address || ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535)
    return std::nullopt;
  return ipvs::ServiceKey{.family = address->family,
                          .protocol = *protocol,
                          .address = *address,
                          .port = static_cast<std::uint16_t>(port),
                          .fwmark = 0};
}

}  // namespace

std::expected<OwnedServicesFile, Error> OwnedServicesFile::for_this_namespace(const std::string& dir) {
  if (dir.empty()) return OwnedServicesFile();
  struct stat namespace_stat {};
  if (::stat("/proc/self/ns/net", &namespace_stat) != 0)
    return std::unexpected(
        Error{.message = std::string("cannot identify the network namespace: ") + std::strerror(errno)});
  return OwnedServicesFile(
      std::filesystem::path(dir) /
      ("services-" + std::to_string(static_cast<unsigned long long>(namespace_stat.st_ino))));
}

std::expected<std::set<ipvs::ServiceKey>, Error> OwnedServicesFile::load() const {
  std::set<ipvs::ServiceKey> keys;
  if (!enabled()) return keys;
  std::error_code error;
  const auto size = std::filesystem::file_size(path_, error);
  if (error == std::errc::no_such_file_or_directory) return keys;
  if (error) return std::unexpected(Error{.message = path_.string() + ": " + error.message()});
  if (size > kMaxFileBytes)
    return std::unexpected(Error{.message = path_.string() + ": " + std::to_string(size) +
                                            " bytes, more than the 64 MiB allowed"});
  std::ifstream in(path_);
  if (!in) return std::unexpected(Error{.message = path_.string() + ": cannot be read"});
  std::size_t number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.empty() || line.starts_with('#')) continue;
    auto key = parse_line(line);
    if (!key) {
      return std::unexpected(Error{.message = path_.string() + ":" + std::to_string(number) + ": \"" +
                                              line.substr(0, 80) + "\" is not \"PROTOCOL ADDRESS PORT\""});
    }
    keys.insert(*key);
  }
  return keys;
}

std::string OwnedServicesFile::render(const std::set<ipvs::ServiceKey>& keys) {
  std::string text = "# The IPVS virtual services kipvs added in this network namespace.\n";
  for (const auto& key : keys) append_line(text, key);
  return text;
}

void OwnedServicesFile::append_line(std::string& text, const ipvs::ServiceKey& key) {
  if (key.fwmark != 0) return;
  text += ipvs::protocol_name(key.protocol);
  text += ' ';
  text += key.address.to_string();
  text += ' ';
  text += std::to_string(key.port);
  text += '\n';
}

std::expected<void, Error> OwnedServicesFile::store_text(const std::string& text) const {
  if (!enabled()) return {};
  std::error_code error;
  std::filesystem::create_directories(path_.parent_path(), error);
  if (error) return std::unexpected(Error{.message = path_.parent_path().string() + ": " + error.message()});
  const auto partial = path_.string() + ".part";
  {
    std::ofstream out(partial, std::ios::trunc);
    out << text;
    if (!out.flush()) return std::unexpected(Error{.message = partial + ": cannot be written"});
  }
  std::filesystem::rename(partial, path_, error);
  if (error) return std::unexpected(Error{.message = path_.string() + ": " + error.message()});
  return {};
}

std::expected<void, Error> OwnedServicesFile::remove() const {
  if (!enabled()) return {};
  std::error_code error;
  std::filesystem::remove(path_, error);
  if (error) return std::unexpected(Error{.message = path_.string() + ": " + error.message()});
  return {};
}

}  // namespace kipvs::agent

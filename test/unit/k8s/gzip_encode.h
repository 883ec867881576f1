#pragma once
// A gzip member made with Beast's deflater (header, raw deflate, CRC-32,
// size), for tests that need a compressed body.

#include <cstdint>
#include <string>

#include <boost/beast/zlib/deflate_stream.hpp>
#include <boost/crc.hpp>

namespace kipvs::test {

inline std::string gzip_encode(const std::string& plain) {
  namespace zlib = boost::beast::zlib;
  std::string out("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", 10);
  zlib::deflate_stream deflater;
  deflater.reset(6, 15, 8, zlib::Strategy::normal);
  std::string buffer(plain.size() + 1024, '\0');
  zlib::z_params zs;
  zs.next_in = plain.data();
  zs.avail_in = plain.size();
  zs.next_out = buffer.data();
  zs.avail_out = buffer.size();
  boost::system::error_code ec;
  deflater.write(zs, zlib::Flush::finish, ec);
  if (ec && ec != zlib::error::end_of_stream) return {};
  out.append(buffer.data(), buffer.size() - zs.avail_out);
  boost::crc_32_type crc;
  crc.process_bytes(plain.data(), plain.size());
  for (const auto word :
       {static_cast<std::uint32_t>(crc.checksum()), static_cast<std::uint32_t>(plain.size())}) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((word >> (8 * i)) & 0xff));
  }
  return out;
}

}  // namespace kipvs::test

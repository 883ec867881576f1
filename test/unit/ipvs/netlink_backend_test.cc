// NetlinkBackend over a scripted kernel: a transport that decodes each
// request with the codec, applies it to a FakeBackend and answers the way the
// kernel does (one ack per request, dumps ending in NLMSG_DONE). This tests
// batching, sequence matching, per-operation errors and the reopen-and-retry
// path without a kernel; the real socket is tested in the VM ([kernel]).

#include "ipvs/netlink_backend.h"

#include <catch2/catch.hpp>
#include <cerrno>
#include <deque>
#include <filesystem>
#include <optional>
#include <set>

#include "ipvs/fake_backend.h"
#include "ipvs/netlink_codec.h"
#include "ipvs/sockopt_reader.h"

namespace {

using namespace kipvs::ipvs;
using kipvs::Error;
namespace nl = kipvs::ipvs::netlink;
using Kind = Operation::Kind;

constexpr std::uint16_t kFamily = 0x21;
constexpr std::uint32_t kPort = 4711;

class ScriptedKernel final : public NetlinkTransport {
 public:
  FakeBackend table;
  int opens = 0;
  int sends = 0;
  std::size_t largest_send = 0;
  int acks = 0;  // NLMSG_ERROR answers queued (acknowledgements and errors)
  // The next N sends vanish (a stuck kernel): the receive then times out.
  int swallow_sends = 0;
  // Answers per datagram for dumps (the kernel fills ~32 KiB skbs).
  std::size_t dump_entries_per_datagram = 2;
  // The service at this index is dumped twice, as the kernel does when
  // another namespace adds a service while the dump is between datagrams.
  std::optional<std::size_t> dump_service_twice;

  std::expected<void, Error> open() override {
    ++opens;
    open_ = true;
    queue_.clear();
    return {};
  }
  void close() override {
    open_ = false;
    queue_.clear();
  }
  bool is_open() const override { return open_; }
  std::uint16_t family_id() const override { return kFamily; }
  std::uint32_t port_id() const override { return kPort; }
  std::uint64_t receive_syscalls() const override { return receives_; }

  std::expected<std::span<const std::uint8_t>, Error> receive() override {
    ++receives_;
    if (!open_) return std::unexpected(Error{ENOTCONN, "closed"});
    if (queue_.empty()) return std::unexpected(Error{ETIMEDOUT, "netlink receive: Connection timed out"});
    current_ = std::move(queue_.front());
    queue_.pop_front();
    return std::span<const std::uint8_t>(current_);
  }

  std::expected<void, Error> send(std::span<const std::uint8_t> bytes) override {
    if (!open_) return std::unexpected(Error{ENOTCONN, "closed"});
    ++sends;
    largest_send = std::max(largest_send, bytes.size());
    if (swallow_sends > 0) {
      --swallow_sends;
      return {};
    }
    nl::MessageReader reader(bytes);
    std::vector<std::uint8_t> acks;
    while (true) {
      auto message = reader.next();
      REQUIRE(message.has_value());
      if (!message->has_value()) break;
      const nl::Message& m = **message;
      REQUIRE(m.type == kFamily);
      REQUIRE(m.port_id == kPort);
      const nl::Header reply{kFamily, m.sequence, 0, kPort};
      auto genl = nl::decode_genl(m, kFamily);
      REQUIRE(genl.has_value());
      int error = 0;
      switch (genl->command) {
        case nl::Command::kNewService:
        case nl::Command::kSetService:
        case nl::Command::kDelService:
        case nl::Command::kNewDest:
        case nl::Command::kSetDest:
        case nl::Command::kDelDest:
          error = apply(*genl);
          break;
        case nl::Command::kGetService: {
          REQUIRE((m.flags & nl::kFlagDump) == nl::kFlagDump);
          auto services = table.list_services();
          std::vector<std::uint8_t> chunk;
          for (std::size_t i = 0; i < services->size(); ++i) {
            nl::encode_service_answer(chunk, nl::Header{kFamily, m.sequence, nl::kFlagMulti, kPort},
                                      (*services)[i]);
            if ((i + 1) % dump_entries_per_datagram == 0) queue_.push_back(std::exchange(chunk, {}));
          }
          if (dump_service_twice) {
            nl::encode_service_answer(chunk, nl::Header{kFamily, m.sequence, nl::kFlagMulti, kPort},
                                      (*services)[*dump_service_twice]);
          }
          nl::encode_done(chunk, reply);
          queue_.push_back(std::move(chunk));
          continue;
        }
        case nl::Command::kGetDest: {
          auto key = nl::decode_service_key(*genl);
          REQUIRE(key.has_value());
          auto destinations = table.list_destinations(*key);
          std::vector<std::uint8_t> chunk;
          for (std::size_t i = 0; i < destinations->size(); ++i) {
            nl::encode_destination_answer(chunk, nl::Header{kFamily, m.sequence, nl::kFlagMulti, kPort},
                                          (*destinations)[i]);
            if ((i + 1) % dump_entries_per_datagram == 0) queue_.push_back(std::exchange(chunk, {}));
          }
          nl::encode_done(chunk, reply);
          queue_.push_back(std::move(chunk));
          continue;
        }
        case nl::Command::kGetConfig: {
          std::vector<std::uint8_t> answer;
          nl::encode_config_answer(answer, reply, table.get_timeouts().value());
          queue_.push_back(std::move(answer));
          continue;
        }
        case nl::Command::kSetConfig: {
          auto timeouts = nl::decode_config(*genl);
          REQUIRE(timeouts.has_value());
          auto set = table.set_timeouts(*timeouts);
          error = set ? 0 : set.error().code;
          break;
        }
        case nl::Command::kGetInfo: {
          std::vector<std::uint8_t> answer;
          nl::encode_info_answer(answer, reply, table.get_info().value());
          queue_.push_back(std::move(answer));
          continue;
        }
        case nl::Command::kFlush:
          (void)table.flush();
          break;
        default:
          error = EINVAL;
      }
      // The kernel acks a request with NLM_F_ACK, and any failed request.
      if ((m.flags & nl::kFlagAck) != 0 || error != 0) {
        nl::encode_ack(acks, nl::Header{kFamily, m.sequence, m.flags, kPort}, error);
        ++this->acks;
        // Each ack is its own datagram, as the kernel sends them.
        queue_.push_back(std::exchange(acks, {}));
      }
    }
    return {};
  }

 private:
  int apply(const nl::GenlMessage& genl) {
    Operation op;
    auto key = nl::decode_service_key(genl);
    REQUIRE(key.has_value());
    switch (genl.command) {
      case nl::Command::kNewService:
      case nl::Command::kSetService: {
        auto service = nl::decode_service(genl);
        REQUIRE(service.has_value());
        op.service = service->service;
        op.kind = genl.command == nl::Command::kNewService ? Kind::kAddService : Kind::kEditService;
        break;
      }
      case nl::Command::kDelService:
        op.service.key = *key;
        op.kind = Kind::kDeleteService;
        break;
      case nl::Command::kDelDest: {
        op.service.key = *key;
        auto dkey = nl::decode_destination_key(genl, key->family);
        REQUIRE(dkey.has_value());
        op.destination.key = *dkey;
        op.kind = Kind::kDeleteDestination;
        break;
      }
      default: {
        op.service.key = *key;
        auto destination = nl::decode_destination(genl, key->family);
        REQUIRE(destination.has_value());
        op.destination = destination->destination;
        op.kind = genl.command == nl::Command::kNewDest ? Kind::kAddDestination : Kind::kEditDestination;
      }
    }
    auto results = table.apply(std::span(&op, 1));
    return results[0] ? 0 : results[0].error().code;
  }

  bool open_ = false;
  std::deque<std::vector<std::uint8_t>> queue_;
  std::vector<std::uint8_t> current_;
  std::uint64_t receives_ = 0;
};

Service service(std::uint32_t n) {
  Service s;
  s.key.address = *Address::parse("10.96.0.0");
  s.key.address.bytes[2] = static_cast<std::uint8_t>(n >> 8);
  s.key.address.bytes[3] = static_cast<std::uint8_t>(n);
  s.key.port = 80;
  s.scheduler = "rr";
  return s;
}

Destination destination(std::uint32_t n) {
  Destination d;
  d.key.address = *Address::parse("10.244.0.0");
  d.key.address.bytes[2] = static_cast<std::uint8_t>(n >> 8);
  d.key.address.bytes[3] = static_cast<std::uint8_t>(n);
  d.key.port = 8080;
  d.forwarding = Forwarding::kMasq;
  return d;
}

std::vector<Operation> program(std::uint32_t services, std::uint32_t destinations_each) {
  std::vector<Operation> ops;
  for (std::uint32_t s = 0; s < services; ++s) {
    ops.push_back(Operation{Kind::kAddService, service(s), {}});
    for (std::uint32_t d = 0; d < destinations_each; ++d) {
      ops.push_back(Operation{Kind::kAddDestination, service(s), destination(d)});
    }
  }
  return ops;
}

struct Rig {
  ScriptedKernel* kernel;
  NetlinkBackend backend;
};

std::unique_ptr<Rig> make_rig(NetlinkOptions options = {}) {
  auto kernel = std::make_unique<ScriptedKernel>();
  ScriptedKernel* raw = kernel.get();
  return std::unique_ptr<Rig>(new Rig{raw, NetlinkBackend(std::move(kernel), options)});
}

}  // namespace

TEST_CASE("the socket-option reads are given up only for a refusal that lasts", "[netlink]") {
  for (int code : {EPERM, EACCES, ENOPROTOOPT, EOPNOTSUPP, EINVAL}) CHECK(sockopt_refusal_lasts(code));
  // The kernel's interruptible lock, a short allocation: netlink answers that
  // one read, and the next tries the options again.
  for (int code : {EINTR, ENOMEM, EAGAIN}) CHECK_FALSE(sockopt_refusal_lasts(code));
}

TEST_CASE("apply packs many requests into each sendmsg", "[netlink]") {
  auto rig = make_rig();
  const auto ops = program(100, 10);  // 1100 operations
  auto results = rig->backend.apply(ops);
  REQUIRE(results.size() == ops.size());
  for (const auto& r : results) REQUIRE(r.has_value());
  CHECK(rig->kernel->table.service_count() == 100);
  CHECK(rig->kernel->table.destination_count() == 1000);

  const auto counters = rig->backend.counters();
  CHECK(counters.messages_sent == 1100);
  CHECK(counters.sendmsg_calls == static_cast<std::uint64_t>(rig->kernel->sends));
  // About 64 KiB per sendmsg, so well under one call per rule.
  CHECK(counters.sendmsg_calls >= 2);
  CHECK(counters.sendmsg_calls <= 5);
  CHECK(rig->kernel->largest_send <= NetlinkOptions{}.batch_bytes);
  CHECK(counters.reopens == 0);
}

TEST_CASE("batches respect the message limit", "[netlink]") {
  NetlinkOptions options;
  options.max_batch_messages = 7;
  auto rig = make_rig(options);
  const auto ops = program(3, 9);  // 30 operations
  auto results = rig->backend.apply(ops);
  for (const auto& r : results) REQUIRE(r.has_value());
  CHECK(rig->backend.counters().sendmsg_calls == 5);  // ceil(30 / 7)
}

TEST_CASE("one failed operation reports its own error, the others apply", "[netlink]") {
  // Either way of asking for answers, and batches that end on a failure
  // (7 requests per batch: the 7th, 11th) or on a success.
  const bool acknowledge_each = GENERATE(false, true);
  const std::size_t batch = GENERATE(std::size_t{1024}, std::size_t{7});
  CAPTURE(acknowledge_each, batch);
  auto rig = make_rig({.max_batch_messages = batch, .acknowledge_each = acknowledge_each});
  auto ops = program(2, 3);
  // A duplicate destination in the middle and an edit of a missing one.
  ops.insert(ops.begin() + 3, Operation{Kind::kAddDestination, service(0), destination(1)});
  ops.push_back(Operation{Kind::kEditDestination, service(1), destination(77)});
  Service unknown = service(9);
  unknown.scheduler = "nope";
  ops.push_back(Operation{Kind::kAddService, unknown, {}});

  auto results = rig->backend.apply(ops);
  REQUIRE(results.size() == ops.size());
  std::vector<int> codes;
  for (const auto& r : results) codes.push_back(r ? 0 : r.error().code);
  const std::vector<int> expected{0, 0, 0, EEXIST, 0, 0, 0, 0, 0, ENOENT, ENOENT};
  CHECK(codes == expected);
  CHECK(results[3].error().message == "add destination 10.244.0.1:8080 to TCP 10.96.0.0:80: File exists");
  CHECK(results[9].error().message ==
        "edit destination 10.244.0.77:8080 in TCP 10.96.0.1:80: No such file or directory");
  CHECK(rig->kernel->table.destination_count() == 6);
  CHECK(rig->backend.counters().failed_operations == 3);
  // Answers: one per request, or the three failures and each batch's last
  // request (the 11th failed: it is both).
  const int batches = batch == 7 ? 2 : 1;
  CHECK(rig->kernel->acks == (acknowledge_each ? 11 : 3 + batches - 1));
}

TEST_CASE("asking only for a batch's last answer, a success in the middle is not waited for", "[netlink]") {
  auto rig = make_rig({.max_batch_messages = 4});
  const auto ops = program(2, 4);  // 10 operations: batches of 4, 4, 2
  auto results = rig->backend.apply(ops);
  for (const auto& r : results) CHECK(r.has_value());
  CHECK(rig->kernel->acks == 3);
  CHECK(rig->kernel->table.destination_count() == 8);
  CHECK(rig->backend.counters().sendmsg_calls == 3);
}

TEST_CASE("a stuck socket is reopened and the batch retried once", "[netlink]") {
  auto rig = make_rig();
  rig->kernel->swallow_sends = 1;
  const auto ops = program(2, 2);
  auto results = rig->backend.apply(ops);
  for (const auto& r : results) REQUIRE(r.has_value());
  CHECK(rig->kernel->table.destination_count() == 4);
  CHECK(rig->backend.counters().reopens == 1);
  CHECK(rig->kernel->opens == 2);
}

TEST_CASE("a socket that stays stuck fails every unanswered operation", "[netlink]") {
  auto rig = make_rig();
  rig->kernel->swallow_sends = 2;
  const auto ops = program(1, 1);
  auto results = rig->backend.apply(ops);
  REQUIRE(results.size() == 2);
  for (const auto& r : results) {
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().code == ETIMEDOUT);
  }
  CHECK_THAT(results[1].error().message,
             Catch::StartsWith("add destination 10.244.0.0:8080 to TCP 10.96.0.0:80: "));
  CHECK(rig->backend.counters().reopens == 2);
  // The next call works on a fresh socket.
  auto again = rig->backend.apply(ops);
  for (const auto& r : again) CHECK(r.has_value());
}

TEST_CASE("list_all reads multi-part dumps for every service", "[netlink]") {
  auto rig = make_rig();
  rig->kernel->dump_entries_per_datagram = 3;
  (void)rig->backend.apply(program(7, 5));
  REQUIRE(rig->kernel->table.set_connections(service(2).key, destination(4).key, 9, 10));

  auto all = rig->backend.list_all();
  REQUIRE(all.has_value());
  auto expected = rig->kernel->table.list_all();
  REQUIRE(all->size() == expected->size());
  for (std::size_t i = 0; i < all->size(); ++i) {
    CHECK((*all)[i].service.service == (*expected)[i].service.service);
    REQUIRE((*all)[i].destinations.size() == 5);
    for (std::size_t j = 0; j < 5; ++j) {
      CHECK((*all)[i].destinations[j].destination == (*expected)[i].destinations[j].destination);
      CHECK((*all)[i].destinations[j].active_connections ==
            (*expected)[i].destinations[j].active_connections);
    }
  }
  // A missing service's dump is empty, as in the kernel.
  auto none = rig->backend.list_destinations(service(99).key);
  REQUIRE(none.has_value());
  CHECK(none->empty());
}

TEST_CASE("a service the kernel dumps twice is listed once", "[netlink]") {
  auto rig = make_rig();
  (void)rig->backend.apply(program(4, 2));
  rig->kernel->dump_service_twice = 1;
  auto all = rig->backend.list_all();
  REQUIRE(all.has_value());
  REQUIRE(all->size() == 4);
  std::set<kipvs::ipvs::ServiceKey> listed;
  for (const auto& entry : *all) {
    listed.insert(entry.service.service.key);
    CHECK(entry.destinations.size() == 2);
  }
  std::set<kipvs::ipvs::ServiceKey> programmed;
  const auto in_kernel = rig->kernel->table.list_services();
  REQUIRE(in_kernel.has_value());
  for (const auto& state : *in_kernel) programmed.insert(state.service.key);
  CHECK(listed == programmed);
}

TEST_CASE("a dump whose socket times out is retried from the start", "[netlink]") {
  auto rig = make_rig();
  (void)rig->backend.apply(program(3, 0));
  rig->kernel->swallow_sends = 1;
  auto services = rig->backend.list_services();
  REQUIRE(services.has_value());
  CHECK(services->size() == 3);  // not 3 plus a partial first attempt
  CHECK(rig->backend.counters().reopens == 1);
}

TEST_CASE("timeouts, info and flush go through the kernel", "[netlink]") {
  auto rig = make_rig();
  REQUIRE(rig->backend.set_timeouts(Timeouts{0, 30, 0}).has_value());
  CHECK(rig->backend.get_timeouts().value() == Timeouts{900, 30, 300});
  auto rejected = rig->backend.set_timeouts(Timeouts{0xffffffffU, 0, 0});
  REQUIRE_FALSE(rejected.has_value());
  CHECK(rejected.error().code == EINVAL);
  CHECK_THAT(rejected.error().message, Catch::StartsWith("set timeouts"));
  CHECK(rig->backend.get_info().value().version == 0x010201);
  (void)rig->backend.apply(program(2, 1));
  REQUIRE(rig->backend.flush().has_value());
  CHECK(rig->kernel->table.service_count() == 0);
}

TEST_CASE("on a kernel without IPVS, opening fails with an error", "[netlink]") {
  if (std::filesystem::exists("/proc/net/ip_vs")) {
    WARN("this kernel has IPVS; the [kernel] tests cover opening");
    return;
  }
  auto backend = NetlinkBackend::open();
  REQUIRE_FALSE(backend.has_value());
  CHECK(backend.error().code != 0);
  CHECK_THAT(backend.error().message, Catch::Contains("IPVS") || Catch::Contains("netlink"));
}

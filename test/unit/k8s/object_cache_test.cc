#include "k8s/object_cache.h"

#include <vector>

#include <catch2/catch.hpp>

namespace kipvs::k8s {
namespace {

Service service(std::string ns, std::string name, std::string cluster_ip) {
  Service s;
  s.meta.namespace_ = std::move(ns);
  s.meta.name = std::move(name);
  s.cluster_ip = std::move(cluster_ip);
  return s;
}

struct Seen {
  ObjectKey key;
  std::optional<std::string> cluster_ip;  // nullopt: deleted
  friend bool operator==(const Seen&, const Seen&) = default;
};

TEST_CASE("ObjectCache::upsert reports only real changes", "[k8s][cache]") {
  ObjectCache<Service> cache;
  const Service* added = cache.upsert(service("a", "x", "10.0.0.1"));
  REQUIRE(added != nullptr);
  CHECK(added->cluster_ip == "10.0.0.1");
  CHECK(cache.upsert(service("a", "x", "10.0.0.1")) == nullptr);
  const Service* changed = cache.upsert(service("a", "x", "10.0.0.2"));
  REQUIRE(changed != nullptr);
  CHECK(changed->cluster_ip == "10.0.0.2");
  CHECK(cache.size() == 1);
  CHECK(cache.erase(ObjectKey{"a", "x"}));
  CHECK_FALSE(cache.erase(ObjectKey{"a", "x"}));
  CHECK(cache.size() == 0);
}

TEST_CASE("ObjectCache::replace passes on adds, changes and deletes only", "[k8s][cache]") {
  ObjectCache<Service> cache;
  for (const char* name : {"a", "b", "c", "d"}) cache.upsert(service("ns", name, "10.0.0.1"));

  ObjectCache<Service>::Map next;
  for (const auto& s : {service("ns", "b", "10.0.0.1"),     // unchanged
                        service("ns", "c", "10.0.0.9"),     // changed
                        service("ns", "e", "10.0.0.5"),     // added
                        service("aa", "z", "10.0.0.6")}) {  // added, sorts first
    next.emplace(key_of(s), s);
  }
  std::vector<Seen> seen;
  cache.replace(next, [&](const ObjectKey& key, const Service* now) {
    seen.push_back(Seen{key, now != nullptr ? std::optional(now->cluster_ip) : std::nullopt});
  });
  CHECK(seen == std::vector<Seen>{{{"aa", "z"}, "10.0.0.6"},
                                  {{"ns", "a"}, std::nullopt},
                                  {{"ns", "c"}, "10.0.0.9"},
                                  {{"ns", "d"}, std::nullopt},
                                  {{"ns", "e"}, "10.0.0.5"}});
  CHECK(cache.size() == 4);
  REQUIRE(cache.find(ObjectKey{"ns", "c"}) != nullptr);
  CHECK(cache.find(ObjectKey{"ns", "c"})->cluster_ip == "10.0.0.9");
  CHECK(cache.find(ObjectKey{"ns", "a"}) == nullptr);

  // The same content again: nothing to pass on.
  seen.clear();
  cache.replace(next, [&](const ObjectKey& key, const Service*) { seen.push_back(Seen{key, std::nullopt}); });
  CHECK(seen.empty());

  // Emptying reports every key as deleted.
  cache.replace({}, [&](const ObjectKey& key, const Service* now) {
    CHECK(now == nullptr);
    seen.push_back(Seen{key, std::nullopt});
  });
  CHECK(seen.size() == 4);
  CHECK(cache.size() == 0);
}

}  // namespace
}  // namespace kipvs::k8s

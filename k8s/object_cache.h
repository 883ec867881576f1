#pragma once
// The last known state of one kind of object, keyed by namespace/name, with
// the operations sources need to pass on only real differences: an upsert of
// an equal object, a delete of an unknown key, or a full replacement (a relist
// after 410, a manifest reload) that finds objects unchanged report nothing.
// Equality is the objects' operator== (every decoded field, resourceVersion
// included).

#include <map>
#include <utility>

#include "k8s/objects.h"

namespace kipvs::k8s {

template <typename Object>
class ObjectCache {
 public:
  using Map = std::map<ObjectKey, Object>;

  // Stores `object`; returns the stored copy if it is new or differs from
  // what was there, nullptr if nothing changed.
  const Object* upsert(Object object) {
    ObjectKey key = key_of(object);
    auto it = objects_.find(key);
    if (it == objects_.end()) return &objects_.emplace(std::move(key), std::move(object)).first->second;
    if (it->second == object) return nullptr;
    it->second = std::move(object);
    return &it->second;
  }

  // Removes `key`; returns whether it was there.
  bool erase(const ObjectKey& key) { return objects_.erase(key) > 0; }

  // Makes `next` the whole content. Calls on_change(key, now) for every key
  // whose object was added or changed (now points into the cache) or removed
  // (now == nullptr), in key order.
  template <typename OnChange>
  void replace(Map next, OnChange&& on_change) {
    auto old_it = objects_.begin();
    auto new_it = next.begin();
    while (old_it != objects_.end() || new_it != next.end()) {
      if (new_it == next.end() || (old_it != objects_.end() && old_it->first < new_it->first)) {
        ObjectKey key = old_it->first;
        old_it = objects_.erase(old_it);
        on_change(key, static_cast<const Object*>(nullptr));
      } else if (old_it == objects_.end() || new_it->first < old_it->first) {
        auto inserted = objects_.emplace_hint(old_it, new_it->first, std::move(new_it->second));
        on_change(inserted->first, static_cast<const Object*>(&inserted->second));
        ++new_it;
      } else {
        if (!(old_it->second == new_it->second)) {
          old_it->second = std::move(new_it->second);
          on_change(old_it->first, static_cast<const Object*>(&old_it->second));
        }
        ++old_it;
        ++new_it;
      }
    }
  }

  [[nodiscard]] const Object* find(const ObjectKey& key) const {
    auto it = objects_.find(key);
    return it == objects_.end() ? nullptr : &it->second;
  }
  [[nodiscard]] const Map& objects() const { return objects_; }
  [[nodiscard]] std::size_t size() const { return objects_.size(); }

 private:
  Map objects_;
};

}  // namespace kipvs::k8s

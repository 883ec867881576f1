#pragma once
// Where object sources (the API watch, the static manifests) deliver changes.
// Called on the io_context thread that owns the agent's state. Sources keep
// their own cache and pass on only real differences: a relist after 410 that
// finds an object unchanged does not call the sink for it.
//
// `now` points into the source's cache and stays valid, with that content,
// until the sink is told of the next change of the same key (or the source
// is gone): the sink may keep the pointer instead of a copy. When it is told
// of a change, the old content is already gone.

#include "k8s/objects.h"

namespace kipvs::k8s {

enum class ResourceKind { kService, kEndpointSlice, kNode };

class ObjectSink {
 public:
  virtual ~ObjectSink() = default;
  virtual void service_changed(const ObjectKey& key, const Service* now) = 0;  // now == nullptr: deleted
  virtual void endpoint_slice_changed(const ObjectKey& key, const EndpointSlice* now) = 0;
  virtual void node_changed(const Node* now) = 0;  // this node only
  // The initial state of one kind is complete (first list done, or the static
  // manifests read): the agent waits for all kinds before its first sync.
  // The first list's objects come before it, a page at a time.
  virtual void synced(ResourceKind kind) = 0;
  // An object that did not decode was skipped; reason is a short metric label.
  virtual void object_skipped(ResourceKind kind, const std::string& what, const std::string& reason) = 0;
};

}  // namespace kipvs::k8s

#include "ipvs/backend.h"

namespace kipvs::ipvs {

std::string to_string(Operation::Kind kind) {
  switch (kind) {
    case Operation::Kind::kAddService: return "add service";
    case Operation::Kind::kEditService: return "edit service";
    case Operation::Kind::kDeleteService: return "delete service";
    case Operation::Kind::kAddDestination: return "add destination";
    case Operation::Kind::kEditDestination: return "edit destination";
    case Operation::Kind::kDeleteDestination: return "delete destination";
  }
  return "unknown operation";
}

}  // namespace kipvs::ipvs

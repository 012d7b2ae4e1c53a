#include "breccia/device.hpp"

#include <string>

namespace breccia {

std::string Device::str() const {
  if (kind == Kind::kCPU) return "cpu";
  return "cuda:" + std::to_string(id);
}

}  // namespace breccia

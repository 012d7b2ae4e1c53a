// Where an Array's memory lives.
#pragma once

#include <ostream>
#include <string>

namespace breccia {

struct Device {
  enum class Kind { kCPU, kCUDA };
  Kind kind = Kind::kCPU;
  int id = 0;

  static constexpr Device cpu() { return {}; }
  static constexpr Device cuda(int id) { return {Kind::kCUDA, id}; }
  bool is_cpu() const { return kind == Kind::kCPU; }
  friend bool operator==(const Device&, const Device&) = default;
  std::string str() const;  // "cpu" or "cuda:0"
};

inline std::ostream& operator<<(std::ostream& out, const Device& device) {
  return out << device.str();
}

}  // namespace breccia

// Where an Array's memory lives.
#pragma once

#include <ostream>
#include <string>
#include <string_view>

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

// "cpu", "cuda" (device 0) or "cuda:N", as PyTorch spells them; ValueError naming `argument`
// for anything else.
Device device_from_string(std::string_view text, std::string_view argument);

}  // namespace breccia

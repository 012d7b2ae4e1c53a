#include "breccia/device.hpp"

#include <charconv>
#include <string>

#include "breccia/error.hpp"

namespace breccia {

std::string Device::str() const {
  if (kind == Kind::kCPU) return "cpu";
  return "cuda:" + std::to_string(id);
}

Device device_from_string(std::string_view text, std::string_view argument) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  constexpr std::string_view kCuda = "cuda:";
  // Digits without a leading zero ("cuda:01" is refused, as PyTorch refuses it).
  if (text.starts_with(kCuda) && text.size() > kCuda.size() &&
      (text[kCuda.size()] != '0' || text.size() == kCuda.size() + 1)) {
    int id = -1;
    const char* end = text.data() + text.size();
    const auto [stop, error] = std::from_chars(text.data() + kCuda.size(), end, id);
    if (error == std::errc{} && stop == end && id >= 0) return Device::cuda(id);
  }
  fail<ValueError>(argument, ": expected 'cpu', 'cuda' or 'cuda:N', got '", text, "'");
}

}  // namespace breccia

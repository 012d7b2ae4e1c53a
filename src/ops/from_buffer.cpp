#include "breccia/ops.hpp"

namespace breccia {

// No reductions, no copies: the constructor validates and the arrays keep their owners.
ScaledTensor from_buffer(Array data, Array scale, Recipe recipe, Layout layout,
                         std::optional<Array> global_scale, std::optional<Array> zero_point) {
  return ScaledTensor(std::move(data), std::move(scale), std::move(recipe), std::move(layout),
                      std::move(global_scale), std::move(zero_point));
}

}  // namespace breccia

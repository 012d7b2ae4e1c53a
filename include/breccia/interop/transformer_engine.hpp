// TransformerEngine keeps NVFP4's per-tensor factor as the fp32 amax it was computed from;
// breccia keeps the decode factor global_scale = amax / 2688 (numerics.md §3). These convert
// between the two, so the bridge does no arithmetic in Python.
#pragma once

#include "breccia/array.hpp"

namespace breccia::interop {

// global_scale (fp32, shape ()) from TransformerEngine's amax (fp32, one element), by the
// NVFP4 recipe's own rule.
Array nvfp4_global_scale_from_amax(const Array& amax);

// An fp32 amax (shape (1,)) from which that rule gives back exactly `global_scale`; nearest
// to global_scale * 2688. Throws ValueError for a negative or non-finite global_scale.
Array nvfp4_amax_for_global_scale(const Array& global_scale);

}  // namespace breccia::interop

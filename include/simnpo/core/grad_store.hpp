#pragma once
#include "simnpo/core/internal_check.hpp"

namespace simnpo {

// How a backward pass stores parameter gradients: add to what the gradient
// slab holds (gradient accumulation), or overwrite it (the first micro-batch
// of a step), which spares zeroing the slab and reading it back: BLAS's
// beta = 1 or beta = 0.
enum class GradStore { accumulate, overwrite };

}  // namespace simnpo

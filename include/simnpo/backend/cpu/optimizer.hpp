#pragma once
#include "simnpo/core/internal_check.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "simnpo/backend/cpu/common.hpp"

namespace simnpo::backend::cpu {

// Flat loops over the parameter slab for the optimizers (simnpo/optim/).
// Hyperparameters arrive as double and are rounded to S before use, as PyTorch
// rounds a Python float applied to a float tensor, so that float results track
// torch.optim's to a few ulps.

// Each thread's chunk is updated in tiles that stay in L1, so that PyTorch's
// separate in-place passes cost one trip through memory.
inline constexpr std::int64_t optimizer_tile = 1024;

// Both optimizer kernels read the gradients as grads · grad_scale (rounded to
// S): a clipping coefficient applied in the same pass, with the bits of
// PyTorch's separate in-place multiplication; 1 leaves them as they are.

// One step of torch.optim.AdamW (single-tensor path, amsgrad off) on n values:
//   params     [n] ← params · decay                          (decay = 1 − lr·wd)
//   exp_avg    [n] ← exp_avg · β1 + (1 − β1) · grads
//   exp_avg_sq [n] ← exp_avg_sq · β2 + (1 − β2) · grads · grads
//   params     [n] ← params − step_size · exp_avg / (√exp_avg_sq / bias_correction2_sqrt + eps)
// with step_size = lr / (1 − β1^t) and bias_correction2_sqrt = √(1 − β2^t).
template <class S>
void adamw_update(Tag, S* params, S* exp_avg, S* exp_avg_sq, const S* grads, std::int64_t n, double grad_scale,
                  double decay, double beta1, double beta2, double step_size, double bias_correction2_sqrt,
                  double eps) {
    const S decay_s = static_cast<S>(decay), beta1_s = static_cast<S>(beta1), beta2_s = static_cast<S>(beta2);
    const S one_minus_beta1 = static_cast<S>(1.0 - beta1), one_minus_beta2 = static_cast<S>(1.0 - beta2);
    const S neg_step_size = static_cast<S>(-step_size);
    const S correction = static_cast<S>(bias_correction2_sqrt), eps_s = static_cast<S>(eps);
    parallel_chunks(n, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t tile = begin; tile < end; tile += optimizer_tile) {
            const std::int64_t count = std::min(optimizer_tile, end - tile);
            ArrayMap<S> theta(params + tile, count), m(exp_avg + tile, count), v(exp_avg_sq + tile, count);
            Eigen::Array<S, Eigen::Dynamic, 1, 0, optimizer_tile, 1> g = ConstArrayMap<S>(grads + tile, count);
            if (grad_scale != 1.0) g *= static_cast<S>(grad_scale);
            theta *= decay_s;
            m = m * beta1_s + one_minus_beta1 * g;
            v = v * beta2_s + one_minus_beta2 * g * g;
            theta += neg_step_size * m / (v.sqrt() / correction + eps_s);
        }
    });
}

// One step of torch.optim.SGD (dampening 0, no Nesterov) on n values:
//   d               = grads + weight_decay · params              (skipped when weight_decay = 0)
//   momentum_buffer = d on the first step, else momentum_buffer · momentum + d
//   params         ← params − lr · (momentum > 0 ? momentum_buffer : d)
// momentum_buffer [n] is not touched (and may be null) when momentum = 0.
template <class S>
void sgd_update(Tag, S* params, S* momentum_buffer, const S* grads, std::int64_t n, double grad_scale, double lr,
                double momentum, double weight_decay, bool first_step) {
    const S neg_lr = static_cast<S>(-lr), momentum_s = static_cast<S>(momentum);
    const S weight_decay_s = static_cast<S>(weight_decay);
    parallel_chunks(n, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t tile = begin; tile < end; tile += optimizer_tile) {
            const std::int64_t count = std::min(optimizer_tile, end - tile);
            ArrayMap<S> theta(params + tile, count);
            // d is held apart (on the stack, a tile at most) because θ changes after it is read.
            Eigen::Array<S, Eigen::Dynamic, 1, 0, optimizer_tile, 1> d = ConstArrayMap<S>(grads + tile, count);
            if (grad_scale != 1.0) d *= static_cast<S>(grad_scale);
            if (weight_decay != 0.0) d += weight_decay_s * theta;
            if (momentum != 0.0) {
                ArrayMap<S> buffer(momentum_buffer + tile, count);
                if (first_step)
                    buffer = d;
                else
                    buffer = buffer * momentum_s + d;
                theta += neg_lr * buffer;
            } else {
                theta += neg_lr * d;
            }
        }
    });
}

// Σ x[i]² over x [n], accumulated in double. Sixteen independent accumulators let the
// compiler vectorise the widening and the products (Eigen's cast-then-sum reduction does not,
// and runs ~3x slower).
template <class S>
double sum_of_squares_serial(const S* x, std::int64_t n) {
    constexpr std::int64_t lanes = 16;
    double lane_sums[lanes] = {};
    const std::int64_t whole = n - n % lanes;
    for (std::int64_t i = 0; i < whole; i += lanes)
        for (std::int64_t k = 0; k < lanes; ++k) {
            const auto value = static_cast<double>(x[i + k]);
            lane_sums[k] += value * value;
        }
    double total = 0.0;
    for (std::int64_t i = whole; i < n; ++i) total += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    for (const double lane_sum : lane_sums) total += lane_sum;
    return total;
}

// Σ x[i]² over x [n], accumulated in double. Summed in fixed blocks whose partial sums are
// added in order: the result does not depend on the thread count.
template <class S>
double sum_of_squares(Tag, const S* x, std::int64_t n) {
    constexpr std::int64_t block = std::int64_t{1} << 15;
    const std::int64_t blocks = (n + block - 1) / block;
    std::vector<double> partial(static_cast<std::size_t>(blocks), 0.0);
    parallel_chunks(blocks, [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t b = first; b < last; ++b)
            partial[static_cast<std::size_t>(b)] = sum_of_squares_serial(x + b * block, std::min(block, n - b * block));
    });
    double total = 0.0;
    for (const double p : partial) total += p;
    return total;
}

// x [n] *= factor (rounded to S, as PyTorch multiplies float gradients by a float coefficient).
template <class S>
void scale_in_place(Tag, S* x, std::int64_t n, double factor) {
    const S factor_s = static_cast<S>(factor);
    parallel_chunks(n, [&](std::int64_t begin, std::int64_t end) { ArrayMap<S>(x + begin, end - begin) *= factor_s; });
}

}  // namespace simnpo::backend::cpu

#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>

#include <thrust/execution_policy.h>
#include <thrust/system_error.h>
#include <thrust/functional.h>
#include <thrust/transform_reduce.h>

#include "simnpo/backend/cuda/common.cuh"

namespace simnpo::backend::cuda {

// The optimizer loops of simnpo/backend/cpu/optimizer.hpp, same signatures and
// arithmetic: hyperparameters rounded to S, the same operations in the same
// order (the GPU may fuse a multiply and an add, so results agree to a few ulps).

template <class S>
__global__ void adamw_kernel(S* params, S* exp_avg, S* exp_avg_sq, const S* grads, std::int64_t n, S grad_scale,
                             bool scale_grads, S decay, S beta1, S beta2, S one_minus_beta1, S one_minus_beta2,
                             S neg_step_size, S correction, S eps) {
    SIMNPO_GRID_LOOP(i, n) {
        const S g = scale_grads ? grads[i] * grad_scale : grads[i];
        S theta = params[i] * decay;
        const S m = exp_avg[i] * beta1 + one_minus_beta1 * g;
        const S v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g;
        theta += neg_step_size * m / (sqrt(v) / correction + eps);
        params[i] = theta;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
    }
}

template <class S>
__global__ void sgd_kernel(S* params, S* momentum_buffer, const S* grads, std::int64_t n, S grad_scale,
                           bool scale_grads, S neg_lr, S momentum, bool use_momentum, S weight_decay,
                           bool use_weight_decay, bool first_step) {
    SIMNPO_GRID_LOOP(i, n) {
        const S theta = params[i];
        S d = scale_grads ? grads[i] * grad_scale : grads[i];
        if (use_weight_decay) d += weight_decay * theta;
        if (use_momentum) {
            const S buffer = first_step ? d : momentum_buffer[i] * momentum + d;
            momentum_buffer[i] = buffer;
            d = buffer;
        }
        params[i] = theta + neg_lr * d;
    }
}

template <class S>
__global__ void scale_kernel(S* x, std::int64_t n, S factor) {
    SIMNPO_GRID_LOOP(i, n) x[i] *= factor;
}

// One step of torch.optim.AdamW on n values (see the CPU kernel for the formulas).
template <class S>
void adamw_update(Tag, S* params, S* exp_avg, S* exp_avg_sq, const S* grads, std::int64_t n, double grad_scale,
                  double decay, double beta1, double beta2, double step_size, double bias_correction2_sqrt,
                  double eps) {
    require_float<S>();
    adamw_kernel<<<grid_for(n), block_threads, 0, stream()>>>(
        params, exp_avg, exp_avg_sq, grads, n, static_cast<S>(grad_scale), grad_scale != 1.0, static_cast<S>(decay),
        static_cast<S>(beta1), static_cast<S>(beta2), static_cast<S>(1.0 - beta1), static_cast<S>(1.0 - beta2),
        static_cast<S>(-step_size), static_cast<S>(bias_correction2_sqrt), static_cast<S>(eps));
    SIMNPO_CUDA_LAUNCHED("adamw_kernel");
}

// One step of torch.optim.SGD on n values (see the CPU kernel for the formulas).
template <class S>
void sgd_update(Tag, S* params, S* momentum_buffer, const S* grads, std::int64_t n, double grad_scale, double lr,
                double momentum, double weight_decay, bool first_step) {
    require_float<S>();
    sgd_kernel<<<grid_for(n), block_threads, 0, stream()>>>(params, momentum_buffer, grads, n,
                                                            static_cast<S>(grad_scale), grad_scale != 1.0,
                                                            static_cast<S>(-lr), static_cast<S>(momentum),
                                                            momentum != 0.0, static_cast<S>(weight_decay),
                                                            weight_decay != 0.0, first_step);
    SIMNPO_CUDA_LAUNCHED("sgd_kernel");
}

// Σ x[i]² over x [n] in double: one thrust reduction, and a scalar back to the
// host. (thrust reports failures by exception: turned into the library's error.)
template <class S>
struct SquareInDouble {
    __host__ __device__ double operator()(S value) const { return static_cast<double>(value) * value; }
};

template <class S>
double sum_of_squares(Tag, const S* x, std::int64_t n) {
    require_float<S>();
    try {
        return thrust::transform_reduce(thrust::cuda::par.on(stream()), x, x + n, SquareInDouble<S>{}, 0.0,
                                        thrust::plus<double>());
    } catch (const thrust::system_error& error) {
        fail("thrust: transform_reduce (sum of squares) failed: ", error.what());
    }
}

// x [n] *= factor (rounded to S).
template <class S>
void scale_in_place(Tag, S* x, std::int64_t n, double factor) {
    require_float<S>();
    scale_kernel<<<grid_for(n), block_threads, 0, stream()>>>(x, n, static_cast<S>(factor));
    SIMNPO_CUDA_LAUNCHED("scale_kernel");
}

}  // namespace simnpo::backend::cuda

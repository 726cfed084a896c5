#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>

#include "simnpo/core/error.hpp"

namespace simnpo::optim {

// PyTorch's torch.optim.AdamW (amsgrad off), step for step and in its arithmetic:
//   θ ← θ · (1 − lr·wd)                       decoupled weight decay, first
//   m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²
//   θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
// The hyperparameters live here; moments and step count live in a State, one per run.
class AdamW {
public:
    struct Params {
        double lr = 1e-3;  // the base rate; step() takes the scheduled one
        double beta1 = 0.9;
        double beta2 = 0.999;
        double eps = 1e-8;
        double weight_decay = 0.01;
    };

    template <class Backend, class Scalar>
    struct State {
        typename Backend::template Buffer<Scalar> exp_avg, exp_avg_sq;
        std::int64_t step = 0;  // steps taken; the next one is t = step + 1 in the bias corrections

        // Visits the tensors a checkpoint saves, by name.
        template <class F>
        void for_each_tensor(F&& f) {
            f("exp_avg", exp_avg);
            f("exp_avg_sq", exp_avg_sq);
        }
    };

    // Two constructors rather than `Params params = {}`: a default argument cannot use the
    // member initialisers of a class nested in the one being defined (GCC, Clang).
    AdamW() : AdamW(Params{}) {}
    explicit AdamW(Params params) : params_(params) {
        if (!(params_.lr >= 0.0) || !std::isfinite(params_.lr))
            fail("AdamW: lr must be finite and >= 0, got ", params_.lr);
        if (!(params_.beta1 >= 0.0 && params_.beta1 < 1.0))
            fail("AdamW: beta1 must be in [0, 1), got ", params_.beta1);
        if (!(params_.beta2 >= 0.0 && params_.beta2 < 1.0))
            fail("AdamW: beta2 must be in [0, 1), got ", params_.beta2);
        if (!(params_.eps > 0.0) || !std::isfinite(params_.eps))
            fail("AdamW: eps must be finite and > 0, got ", params_.eps);
        if (!(params_.weight_decay >= 0.0) || !std::isfinite(params_.weight_decay))
            fail("AdamW: weight_decay must be finite and >= 0, got ", params_.weight_decay);
    }

    const Params& params() const { return params_; }

    // A fresh state for `model`: zero moments the size of its parameter slab, step 0.
    template <class Model>
    State<typename Model::backend_type, typename Model::scalar_type> state(const Model& model) const {
        using Scalar = typename Model::scalar_type;
        State<typename Model::backend_type, Scalar> state;
        state.exp_avg.assign(model.params().size(), Scalar{0});
        state.exp_avg_sq.assign(model.params().size(), Scalar{0});
        return state;
    }

    // One step on model.params() from model.grads() · grad_scale at learning
    // rate lr (the schedule's); grad_scale is clip_coefficient()'s, applied on the fly.
    template <class Model, class S>
    void step(Model& model, S& state, double lr, double grad_scale = 1.0) const {
        if (!(lr >= 0.0) || !std::isfinite(lr)) fail("AdamW: the learning rate must be finite and >= 0, got ", lr);
        auto& params = model.params();
        const auto& grads = model.grads();
        if (state.exp_avg.size() != params.size() || state.exp_avg_sq.size() != params.size() ||
            grads.size() != params.size())
            fail("AdamW: the optimizer state holds ", state.exp_avg.size(), " values for a model of ",
                 params.size(), " parameters (a state from another model?)");
        ++state.step;
        const auto t = static_cast<double>(state.step);
        // Scalars in double, as PyTorch computes them in Python.
        const double bias_correction1 = 1.0 - std::pow(params_.beta1, t);
        const double bias_correction2 = 1.0 - std::pow(params_.beta2, t);
        adamw_update(model.backend(), params.data(), state.exp_avg.data(), state.exp_avg_sq.data(), grads.data(),
                     static_cast<std::int64_t>(params.size()), grad_scale, 1.0 - lr * params_.weight_decay, params_.beta1,
                     params_.beta2, lr / bias_correction1, std::sqrt(bias_correction2), params_.eps);
    }

private:
    Params params_;
};

}  // namespace simnpo::optim

#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cmath>
#include <cstdint>

#include "simnpo/core/error.hpp"

namespace simnpo::optim {

// PyTorch's torch.optim.SGD (dampening 0, no Nesterov):
//   d ← g + wd·θ
//   with momentum μ > 0: b ← d on the first step, then b ← μ·b + d; d ← b
//   θ ← θ − lr·d
// The hyperparameters live here; the momentum buffer and step count live in a State, one per run.
class SGD {
public:
    struct Params {
        double lr = 1e-3;  // the base rate; step() takes the scheduled one
        double momentum = 0.0;
        double weight_decay = 0.0;
    };

    template <class Backend, class Scalar>
    struct State {
        // Sized to the slab when momentum > 0; empty (no memory spent) without momentum.
        typename Backend::template Buffer<Scalar> momentum_buffer;
        std::int64_t step = 0;  // steps taken

        // Visits the tensors a checkpoint saves, by name.
        template <class F>
        void for_each_tensor(F&& f) {
            f("momentum_buffer", momentum_buffer);
        }
    };

    // Two constructors rather than `Params params = {}`: a default argument cannot use the
    // member initialisers of a class nested in the one being defined (GCC, Clang).
    SGD() : SGD(Params{}) {}
    explicit SGD(Params params) : params_(params) {
        if (!(params_.lr >= 0.0) || !std::isfinite(params_.lr))
            fail("SGD: lr must be finite and >= 0, got ", params_.lr);
        if (!(params_.momentum >= 0.0) || !std::isfinite(params_.momentum))
            fail("SGD: momentum must be finite and >= 0, got ", params_.momentum);
        if (!(params_.weight_decay >= 0.0) || !std::isfinite(params_.weight_decay))
            fail("SGD: weight_decay must be finite and >= 0, got ", params_.weight_decay);
    }

    const Params& params() const { return params_; }

    // A fresh state for `model`: a zero momentum buffer the size of its parameter slab (none
    // without momentum), step 0.
    template <class Model>
    State<typename Model::backend_type, typename Model::scalar_type> state(const Model& model) const {
        using Scalar = typename Model::scalar_type;
        State<typename Model::backend_type, Scalar> state;
        if (params_.momentum > 0.0) state.momentum_buffer.assign(model.params().size(), Scalar{0});
        return state;
    }

    // One step on model.params() from model.grads() · grad_scale at learning
    // rate lr (the schedule's); grad_scale is clip_coefficient()'s, applied on the fly.
    template <class Model, class S>
    void step(Model& model, S& state, double lr, double grad_scale = 1.0) const {
        if (!(lr >= 0.0) || !std::isfinite(lr)) fail("SGD: the learning rate must be finite and >= 0, got ", lr);
        auto& params = model.params();
        const auto& grads = model.grads();
        const bool momentum = params_.momentum > 0.0;
        if ((momentum && state.momentum_buffer.size() != params.size()) || grads.size() != params.size())
            fail("SGD: the optimizer state holds ", state.momentum_buffer.size(), " values for a model of ",
                 params.size(), " parameters (a state from another model?)");
        sgd_update(model.backend(), params.data(), momentum ? state.momentum_buffer.data() : nullptr, grads.data(),
                   static_cast<std::int64_t>(params.size()), grad_scale, lr, params_.momentum, params_.weight_decay,
                   state.step == 0);
        ++state.step;
    }

private:
    Params params_;
};

}  // namespace simnpo::optim

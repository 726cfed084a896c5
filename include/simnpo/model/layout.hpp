#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "simnpo/model/config.hpp"

namespace simnpo::model {

// One named tensor inside a slab: its Hugging Face name, shape and place.
struct TensorSlot {
    std::string name;
    std::vector<std::int64_t> shape;
    std::size_t offset = 0;  // in elements from the start of the slab
    std::size_t size = 0;    // elements
};

// Offsets of one transformer block's tensors in a slab (DESIGN §4 names).
struct BlockOffsets {
    std::size_t ln_1_weight, ln_1_bias;
    std::size_t attn_weight, attn_bias;            // c_attn: [C, 3C], [3C]
    std::size_t attn_proj_weight, attn_proj_bias;  // attn.c_proj: [C, C], [C]
    std::size_t ln_2_weight, ln_2_bias;
    std::size_t fc_weight, fc_bias;                // mlp.c_fc: [C, 4C], [4C]
    std::size_t fc_proj_weight, fc_proj_bias;      // mlp.c_proj: [4C, C], [C]
};

// Where every parameter lives in the one contiguous slab, by Hugging Face
// tensor name. Parameters, gradients and optimizer moments all share the
// layout; each family derives its own, adding the offsets its blocks read.
class TensorLayout {
public:
    const std::vector<TensorSlot>& slots() const { return slots_; }
    std::size_t total() const { return total_; }
    const TensorSlot* find(std::string_view name) const {
        for (const auto& slot : slots_)
            if (slot.name == name) return &slot;
        return nullptr;
    }

protected:
    std::size_t add(std::string name, std::vector<std::int64_t> shape) {
        std::size_t size = 1;
        for (const auto extent : shape) size *= static_cast<std::size_t>(extent);
        const std::size_t offset = total_;
        slots_.push_back({std::move(name), std::move(shape), offset, size});
        total_ += size;
        return offset;
    }

private:
    std::vector<TensorSlot> slots_;
    std::size_t total_ = 0;
};

// The GPT-2 family's layout (DESIGN §4 names).
class ParamLayout : public TensorLayout {
public:
    explicit ParamLayout(const Config& config) {
        const std::int64_t C = config.n_embd;
        wte_ = add("wte.weight", {config.vocab_size, C});
        wpe_ = add("wpe.weight", {config.n_positions, C});
        for (std::int64_t l = 0; l < config.n_layer; ++l) {
            const std::string h = "h." + std::to_string(l) + ".";
            BlockOffsets block{};
            block.ln_1_weight = add(h + "ln_1.weight", {C});
            block.ln_1_bias = add(h + "ln_1.bias", {C});
            block.attn_weight = add(h + "attn.c_attn.weight", {C, 3 * C});
            block.attn_bias = add(h + "attn.c_attn.bias", {3 * C});
            block.attn_proj_weight = add(h + "attn.c_proj.weight", {C, C});
            block.attn_proj_bias = add(h + "attn.c_proj.bias", {C});
            block.ln_2_weight = add(h + "ln_2.weight", {C});
            block.ln_2_bias = add(h + "ln_2.bias", {C});
            block.fc_weight = add(h + "mlp.c_fc.weight", {C, 4 * C});
            block.fc_bias = add(h + "mlp.c_fc.bias", {4 * C});
            block.fc_proj_weight = add(h + "mlp.c_proj.weight", {4 * C, C});
            block.fc_proj_bias = add(h + "mlp.c_proj.bias", {C});
            blocks_.push_back(block);
        }
        ln_f_weight_ = add("ln_f.weight", {C});
        ln_f_bias_ = add("ln_f.bias", {C});
    }

    std::size_t wte() const { return wte_; }
    std::size_t head() const { return wte_; }  // tied to the token embedding
    std::size_t embedding_slot() const { return 0; }
    // Hugging Face may store the tied head as a copy of wte.weight under this name.
    static std::string_view tied_head_name(const Config&) { return "lm_head.weight"; }
    std::size_t wpe() const { return wpe_; }
    const BlockOffsets& block(std::size_t l) const { return blocks_[l]; }
    std::size_t ln_f_weight() const { return ln_f_weight_; }
    std::size_t ln_f_bias() const { return ln_f_bias_; }

private:
    std::vector<BlockOffsets> blocks_;
    std::size_t wte_ = 0, wpe_ = 0, ln_f_weight_ = 0, ln_f_bias_ = 0;
};

}  // namespace simnpo::model

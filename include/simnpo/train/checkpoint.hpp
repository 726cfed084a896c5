#pragma once
#include "simnpo/core/internal_check.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "simnpo/core/error.hpp"
#include "simnpo/core/file.hpp"
#include "simnpo/model/config.hpp"
#include "simnpo/model/io.hpp"
#include "simnpo/model/safetensors.hpp"

namespace simnpo::train {

// Where a run stands, and the settings a resumed run must share with it for
// its batches to be the ones the interrupted run would have taken.
struct TrainerState {
    std::int64_t step = 0;  // optimizer steps done
    std::uint64_t seed = 0;
    std::int64_t batch_size = 0;
    std::int64_t grad_accum = 0;
    std::int64_t forget_examples = 0;  // the training set's size for train()
    std::int64_t retain_examples = 0;
    std::string optimizer;             // "adamw" or "sgd"
    std::int64_t optimizer_step = 0;   // the optimizer state's own step count
    bool group_by_length = false;      // absent from older checkpoints: false
};

inline nlohmann::json to_json(const TrainerState& s) {
    return {{"step", s.step},           {"seed", s.seed},
            {"batch_size", s.batch_size}, {"grad_accum", s.grad_accum},
            {"forget_examples", s.forget_examples}, {"retain_examples", s.retain_examples},
            {"optimizer", s.optimizer}, {"optimizer_step", s.optimizer_step},
            {"group_by_length", s.group_by_length}};
}

inline TrainerState trainer_state_from_json(const nlohmann::json& j, const std::string& where) {
    if (!j.is_object()) fail(where, ": expected a JSON object");
    TrainerState s;
    const auto integer = [&](const char* key) -> std::int64_t {
        const auto it = j.find(key);
        if (it == j.end() || !it->is_number_integer()) fail(where, ": '", key, "' is missing or not an integer");
        return it->get<std::int64_t>();
    };
    s.step = integer("step");
    const auto seed = j.find("seed");
    if (seed == j.end() || !seed->is_number_unsigned()) fail(where, ": 'seed' is missing or not an unsigned integer");
    s.seed = seed->get<std::uint64_t>();
    s.batch_size = integer("batch_size");
    s.grad_accum = integer("grad_accum");
    s.forget_examples = integer("forget_examples");
    s.retain_examples = integer("retain_examples");
    s.optimizer_step = integer("optimizer_step");
    const auto optimizer = j.find("optimizer");
    if (optimizer == j.end() || !optimizer->is_string()) fail(where, ": 'optimizer' is missing or not a string");
    s.optimizer = optimizer->get<std::string>();
    if (const auto grouped = j.find("group_by_length"); grouped != j.end()) {
        if (!grouped->is_boolean()) fail(where, ": 'group_by_length' is not a boolean");
        s.group_by_length = grouped->get<bool>();
    }
    if (s.step < 0 || s.optimizer_step < 0) fail(where, ": negative step count");
    return s;
}

// A checkpoint is a directory: the model (config.json + model.safetensors, a
// model directory like any other), optimizer.safetensors (the optimizer's
// per-run tensors) and trainer_state.json. It is written whole into DIR.tmp
// and renamed into place, so a crash leaves the previous checkpoints whole
// and never a half-written one under a checkpoint's name.
//
// Tensors are stored as F32, the model directory's format: checkpoints hold
// float models, whose resumed runs then match uninterrupted ones bit for bit.
template <class Model, class OptimizerState>
void save_checkpoint(const std::filesystem::path& dir, const Model& model, OptimizerState& optimizer,
                     const TrainerState& state) {
    static_assert(std::is_same_v<typename Model::scalar_type, float>,
                  "simnpo: checkpoints store F32 tensors; train a float model to checkpoint it");
    std::error_code ec;
    const std::filesystem::path temporary = dir.string() + ".tmp";
    std::filesystem::remove_all(temporary, ec);
    model::save(model, temporary);
    std::vector<std::string> names;
    std::vector<std::vector<float>> host;
    optimizer.for_each_tensor([&](const char* name, auto& buffer) {
        names.emplace_back(name);
        host.emplace_back(buffer.size());
        copy_to_host(model.backend(), std::span<float>(host.back()), buffer.data());
    });
    std::vector<model::WriteTensor> tensors;
    for (std::size_t k = 0; k < names.size(); ++k)
        tensors.push_back({names[k], {static_cast<std::int64_t>(host[k].size())}, host[k]});
    model::write_safetensors(temporary / "optimizer.safetensors", tensors);
    write_file_atomic(temporary / "trainer_state.json", to_json(state).dump(2) + "\n");
    if (std::filesystem::exists(dir, ec)) std::filesystem::remove_all(dir, ec);
    std::filesystem::rename(temporary, dir, ec);
    if (ec) fail(dir.string(), ": cannot move the checkpoint into place: ", ec.message());
}

// Loads a checkpoint into `model` and `optimizer` (both already sized for
// it) and returns its trainer state. Errors name the file.
template <class Model, class OptimizerState>
TrainerState load_checkpoint(const std::filesystem::path& dir, Model& model, OptimizerState& optimizer) {
    static_assert(std::is_same_v<typename Model::scalar_type, float>,
                  "simnpo: checkpoints store F32 tensors; train a float model to checkpoint it");
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) fail(dir.string(), ": checkpoint directory does not exist");
    const auto state_path = dir / "trainer_state.json";
    if (!std::filesystem::exists(state_path, ec)) fail(state_path.string(), ": not found (not a checkpoint?)");
    const TrainerState state = trainer_state_from_json(read_json_file(state_path), state_path.string());

    auto saved = model::load<typename Model::backend_type, float>(dir);
    const auto shape = [](const model::Config& c) {
        return std::vector<std::int64_t>{c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head};
    };
    if (shape(saved.config()) != shape(model.config()))
        fail((dir / "config.json").string(), ": the checkpoint's model differs in shape from the model given");
    copy_on_device(model.backend(), model.params().data(), saved.params().data(), model.params().size());

    const auto path = dir / "optimizer.safetensors";
    if (!std::filesystem::exists(path, ec)) fail(path.string(), ": not found");
    const auto file = model::SafetensorsFile::parse(read_file(path), path.string());
    optimizer.for_each_tensor([&](const char* name, auto& buffer) {
        const auto* tensor = file.find(name);
        if (tensor == nullptr) fail(path.string(), ": missing tensor '", name, "'");
        if (tensor->shape != std::vector<std::int64_t>{static_cast<std::int64_t>(buffer.size())})
            fail(path.string(), ": tensor '", name, "' does not match the model's ", buffer.size(), " parameters");
        std::vector<float> host(buffer.size());
        file.read(*tensor, std::span<float>(host));
        copy_to_device(model.backend(), buffer.data(), std::span<const float>(host));
    });
    optimizer.step = state.optimizer_step;
    return state;
}

}  // namespace simnpo::train

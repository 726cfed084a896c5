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
#include "simnpo/core/json.hpp"
#include "simnpo/model/config.hpp"
#include "simnpo/model/io.hpp"
#include "simnpo/model/safetensors.hpp"

namespace simnpo::train {

// Where a run stands, and the run's whole configuration: what a resumed run
// must share with it (train::unlearn compares them key by key).
struct TrainerState {
    std::int64_t step = 0;            // optimizer steps done
    std::int64_t optimizer_step = 0;  // the optimizer state's own step count
    // The run's configuration: the data order (seed, batch size, sets and their
    // fingerprints), the optimizer and its settings, the schedule, the model it
    // started from, and what the caller adds (Options::run_config: the objective).
    nlohmann::json run = nlohmann::json::object();
};

inline nlohmann::json to_json(const TrainerState& s) {
    return {{"step", s.step}, {"optimizer_step", s.optimizer_step}, {"run", s.run}};
}

inline TrainerState trainer_state_from_json(const nlohmann::json& j, const std::string& where) {
    if (!j.is_object()) fail(where, ": expected a JSON object");
    TrainerState s;
    const auto count = [&](const char* key) -> std::int64_t {
        const auto it = j.find(key);
        if (it == j.end()) fail(where, ": '", key, "' is missing");
        const std::int64_t value = json_int64(*it, where + ": '" + key + "'");
        if (value < 0) fail(where, ": '", key, "' must not be negative, got ", value);
        return value;
    };
    s.step = count("step");
    s.optimizer_step = count("optimizer_step");
    const auto run = j.find("run");
    if (run == j.end())
        fail(where, ": 'run' (the run's configuration) is missing: a checkpoint of an older simnpo, which "
                    "cannot be checked against this run");
    if (!run->is_object()) fail(where, ": 'run' is not an object");
    s.run = *run;
    return s;
}

// A checkpoint is a directory: the model (config.json + model.safetensors, a
// model directory like any other), optimizer.safetensors (the optimizer's
// per-run tensors) and trainer_state.json, written as one step
// (DirectoryWriter): a crash or a signal leaves the previous checkpoints whole
// and never a half-written one under a checkpoint's name.
//
// Tensors are stored as F32, the model directory's format: checkpoints hold
// float models, whose resumed runs then match uninterrupted ones bit for bit.
template <class Model, class OptimizerState>
void save_checkpoint(const std::filesystem::path& dir, const Model& model, OptimizerState& optimizer,
                     const TrainerState& state) {
    static_assert(std::is_same_v<typename Model::scalar_type, float>,
                  "simnpo: checkpoints store F32 tensors; train a float model to checkpoint it");
    DirectoryWriter out(dir);
    model::write_into(out, model);
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
    out.write("optimizer.safetensors", model::safetensors_bytes(out.directory() / "optimizer.safetensors", tensors));
    out.write("trainer_state.json", to_json(state).dump(2) + "\n");
    out.commit();
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

    auto saved = model::load<Model>(dir, model.backend());
    const auto same_tensors = [](const auto& a, const auto& b) {
        if (a.slots().size() != b.slots().size()) return false;
        for (std::size_t k = 0; k < a.slots().size(); ++k)
            if (a.slots()[k].name != b.slots()[k].name || a.slots()[k].shape != b.slots()[k].shape) return false;
        return true;
    };
    if (!same_tensors(saved.layout(), model.layout()))
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

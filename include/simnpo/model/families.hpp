#pragma once
#include "simnpo/core/internal_check.hpp"

#include <filesystem>
#include <string>
#include <type_traits>

#include "simnpo/core/error.hpp"
#include "simnpo/model/gpt.hpp"
#include "simnpo/model/io.hpp"
#include "simnpo/model/llama.hpp"

namespace simnpo::model {

// Calls body(std::type_identity<Family>{}) with the family that reads
// `model_type` (gpt2; llama, mistral, qwen2, phi3): the one place where a
// model directory's type becomes a C++ type. `where` names the config in the
// error for a type no family reads.
template <class Body>
decltype(auto) with_family(const std::string& model_type, const std::string& where, Body&& body) {
    if (Gpt2Family::handles(model_type)) return body(std::type_identity<Gpt2Family>{});
    if (LlamaFamily::handles(model_type)) return body(std::type_identity<LlamaFamily>{});
    fail(where, ": 'model_type' '", model_type, "' is not supported (gpt2, llama, mistral, qwen2, phi3)");
}

// The same for the model directory `dir`.
template <class Body>
decltype(auto) with_family(const std::filesystem::path& dir, Body&& body) {
    return with_family(model_type(dir), (dir / "config.json").string(), std::forward<Body>(body));
}

}  // namespace simnpo::model

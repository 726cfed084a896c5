// libFuzzer target: arbitrary bytes as a checkpoint's trainer_state.json. The
// reader may reject them only with simnpo::Error, in one line naming the file;
// what it accepts round-trips, has non-negative step counts, and resumes
// against its own run configuration.
#include <simnpo.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string where = "fuzz/trainer_state.json";
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    simnpo::train::TrainerState state;
    try {
        state = simnpo::train::trainer_state_from_json(simnpo::parse_json(text, where), where);
    } catch (const simnpo::Error& error) {
        const std::string_view message = error.what();
        if (!message.starts_with(where) || message.find_first_of("\r\n") != std::string_view::npos) std::abort();
        return 0;
    }
    if (state.step < 0 || state.optimizer_step < 0 || !state.run.is_object()) std::abort();
    const auto again = simnpo::train::trainer_state_from_json(simnpo::train::to_json(state), where);
    if (again.step != state.step || again.optimizer_step != state.optimizer_step || again.run != state.run) std::abort();
    simnpo::train::Options options;
    options.resume = "fuzz";
    simnpo::train::detail::check_same_run(state.run, state.run, options);  // the same run resumes
    return 0;
}

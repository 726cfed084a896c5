// Saves under faults: a write, flush, link or rename failing at every point of
// a model or checkpoint save leaves the previous directory whole and no
// temporary behind; stale temporaries of killed runs are removed; output locks
// name their holder; output paths are checked before any work.
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <simnpo.hpp>

#include "support/same_bits.hpp"
#include "support/temp_dir.hpp"

BOOST_AUTO_TEST_SUITE(test_faults)

namespace fs = std::filesystem;
namespace st = simnpo::train;
using simnpo::testing::TempDir;
using simnpo::testing::same_bits;
using Model = simnpo::model::Gpt<simnpo::cpu, float>;

namespace {

Model model(std::uint64_t seed) {
    Model m({.vocab_size = 20, .n_positions = 8, .n_embd = 16, .n_layer = 1, .n_head = 2});
    simnpo::model::init_weights(m, seed);
    return m;
}

// Every entry under `dir` (recursively) whose name marks a temporary.
std::vector<std::string> temporaries(const fs::path& dir) {
    std::vector<std::string> found;
    for (const auto& entry : fs::recursive_directory_iterator(dir))
        if (entry.path().filename().string().find(".tmp-") != std::string::npos) found.push_back(entry.path().string());
    return found;
}

// Makes the `target`-th file operation of a save fail (counting from 0), and counts them.
struct FaultAt {
    int target;
    int seen = 0;
    FaultAt(int k) : target(k) {
        simnpo::file_fault_hook() = [this](std::string_view, const fs::path&) { return seen++ == target; };
    }
    ~FaultAt() { simnpo::file_fault_hook() = nullptr; }
};

// The number of file operations `save` makes.
template <class Save>
int operations(Save&& save) {
    FaultAt count(-1);
    save();
    return count.seen;
}

bool message_has(const simnpo::Error& error, const std::string& part) {
    BOOST_TEST_MESSAGE(error.what());
    return std::string(error.what()).find(part) != std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_model_save_failing_at_any_operation_leaves_the_old_directory_whole) {
    const TempDir scratch;
    const fs::path dir = scratch.path / "model";
    const Model old_model = model(1), new_model = model(2);
    simnpo::model::save(old_model, dir);
    // What the directory holds besides the model is kept across saves.
    fs::create_directories(dir / "checkpoint-1");
    scratch.write("model/checkpoint-1/trainer_state.json", "{}");
    scratch.write("model/run.jsonl", "{\"step\": 1}\n");

    const int count = operations([&] { simnpo::model::save(old_model, dir); });
    BOOST_TEST(count >= 8);  // 2 files x (write + fsync), links of what is kept, directory fsyncs, the exchange
    for (int k = 0; k < count; ++k) {
        BOOST_TEST_CONTEXT("failing operation " << k) {
            bool failed = false;
            {
                FaultAt fault(k);
                try {
                    simnpo::model::save(new_model, dir);
                } catch (const simnpo::Error& error) {
                    failed = true;
                    BOOST_TEST(message_has(error, "Input/output error"));
                }
            }
            BOOST_TEST(failed);
            const auto loaded = simnpo::model::load<simnpo::model::Gpt<simnpo::cpu, float>>(dir);
            // Only the parent's flush comes after the exchange: then the new directory is in place, whole.
            BOOST_TEST((same_bits(loaded, old_model) || (k == count - 1 && same_bits(loaded, new_model))));
            BOOST_TEST(simnpo::read_file(dir / "run.jsonl") == "{\"step\": 1}\n");
            BOOST_TEST(fs::exists(dir / "checkpoint-1" / "trainer_state.json"));
            BOOST_TEST(temporaries(scratch.path).empty());
            if (same_bits(loaded, new_model)) simnpo::model::save(old_model, dir);
        }
    }
    simnpo::model::save(new_model, dir);
    BOOST_TEST(same_bits(simnpo::model::load<simnpo::model::Gpt<simnpo::cpu, float>>(dir), new_model));
    BOOST_TEST(simnpo::read_file(dir / "run.jsonl") == "{\"step\": 1}\n");
}

BOOST_AUTO_TEST_CASE(a_failed_save_into_a_new_directory_leaves_nothing) {
    const TempDir scratch;
    const Model m = model(3);
    const int count = operations([&] { simnpo::model::save(m, scratch.path / "probe"); });
    for (int k = 0; k < count - 1; ++k) {  // the last is the parent's flush, after the rename
        FaultAt fault(k);
        BOOST_CHECK_THROW(simnpo::model::save(m, scratch.path / "fresh"), simnpo::Error);
        BOOST_TEST(!fs::exists(scratch.path / "fresh"));
        BOOST_TEST(temporaries(scratch.path).empty());
    }
}

BOOST_AUTO_TEST_CASE(a_checkpoint_save_failing_at_any_operation_leaves_the_previous_checkpoint) {
    const TempDir scratch;
    Model first = model(4), second = model(5);
    auto state = simnpo::optim::AdamW{}.state(first);
    const st::TrainerState trainer{3, 3, {{"seed", 0}}};
    const fs::path dir = scratch.path / "checkpoint-3";
    st::save_checkpoint(dir, first, state, trainer);
    const int count = operations([&] { st::save_checkpoint(dir, first, state, trainer); });
    for (int k = 0; k < count; ++k) {
        {
            FaultAt fault(k);
            BOOST_CHECK_THROW(st::save_checkpoint(dir, second, state, trainer), simnpo::Error);
        }
        Model loaded = model(6);
        auto loaded_state = simnpo::optim::AdamW{}.state(loaded);
        const auto saved = st::load_checkpoint(dir, loaded, loaded_state);
        BOOST_TEST(saved.step == 3);
        BOOST_TEST((same_bits(loaded, first) || (k == count - 1 && same_bits(loaded, second))));
        BOOST_TEST(temporaries(scratch.path).empty());
        if (!same_bits(loaded, first)) st::save_checkpoint(dir, first, state, trainer);
    }
}

BOOST_AUTO_TEST_CASE(a_failed_file_write_names_its_cause_and_leaves_the_old_file) {
    const TempDir scratch;
    const auto path = scratch.write("out.jsonl", "old\n");
    for (int k = 0; k < 3; ++k) {  // the write, the flush, the rename
        FaultAt fault(k);
        BOOST_CHECK_EXCEPTION(simnpo::write_file_atomic(path, "new\n"), simnpo::Error, [](const simnpo::Error& e) {
            return message_has(e, "out.jsonl") && message_has(e, "Input/output error") && !message_has(e, "Success");
        });
        BOOST_TEST(simnpo::read_file(path) == "old\n");
        BOOST_TEST(temporaries(scratch.path).empty());
    }
    simnpo::write_file_atomic(path, "new\n");
    BOOST_TEST(simnpo::read_file(path) == "new\n");
}

BOOST_AUTO_TEST_CASE(temporaries_of_dead_processes_are_removed_and_live_ones_kept) {
    const TempDir scratch;
    // pid 1 always runs; a pid past the kernel's largest never does.
    fs::create_directories(scratch.path / ".model.tmp-999999999-0" / "inner");
    fs::create_directories(scratch.path / ".model.tmp-1-0");
    scratch.write(".out.json.tmp-999999999-3", "partial");
    simnpo::model::save(model(7), scratch.path / "model");
    simnpo::write_file_atomic(scratch.path / "out.json", "{}");
    BOOST_TEST(!fs::exists(scratch.path / ".model.tmp-999999999-0"));
    BOOST_TEST(!fs::exists(scratch.path / ".out.json.tmp-999999999-3"));
    BOOST_TEST(fs::exists(scratch.path / ".model.tmp-1-0"));
}

// Another process's temporary inside a directory being saved over (a
// writability probe of a run the lock then refuses) is in flight, not content:
// the save leaves it out, and succeeds whether it is still there or already
// gone (simnpo init twice at once into one directory met it gone).
BOOST_AUTO_TEST_CASE(a_save_over_a_directory_leaves_other_processes_temporaries_out) {
    const TempDir scratch;
    const fs::path dir = scratch.path / "model";
    simnpo::model::save(model(7), dir);
    scratch.write("model/.probe.tmp-1-0", "");
    scratch.write("model/notes.txt", "kept");
    simnpo::model::save(model(8), dir);
    BOOST_TEST(!fs::exists(dir / ".probe.tmp-1-0"));
    BOOST_TEST(simnpo::read_file(dir / "notes.txt") == "kept");
    BOOST_TEST(same_bits(simnpo::model::load<Model>(dir), model(8)));
}

BOOST_AUTO_TEST_CASE(an_output_lock_refuses_a_second_holder_naming_the_first) {
    const TempDir scratch;
    const fs::path dir = scratch.path / "out";
    {
        const simnpo::OutputLock lock(dir);
        BOOST_TEST(fs::is_directory(dir));
        BOOST_CHECK_EXCEPTION(simnpo::OutputLock{dir}, simnpo::Error, [](const simnpo::Error& e) {
            return message_has(e, "in use by another simnpo run (pid " + std::to_string(::getpid()) + ")");
        });
    }
    // Released: the lock file is gone, and so is the directory the lock created and nothing filled.
    BOOST_TEST(!fs::exists(dir));
    {
        const simnpo::OutputLock lock(dir);
        simnpo::model::save(model(8), dir);  // the final save replaces the directory: the lock goes with it
        BOOST_CHECK_THROW(simnpo::OutputLock{dir}, simnpo::Error);
    }
    BOOST_TEST(fs::exists(dir / "config.json"));
    BOOST_TEST(!fs::exists(dir / simnpo::OutputLock::file_name));
    const simnpo::OutputLock again(dir);
}

BOOST_AUTO_TEST_CASE(outputs_that_cannot_be_written_are_refused_before_any_work) {
    const TempDir scratch;
    const auto file = scratch.write("a_file", "x");
    const auto message = [](const std::string& part) {
        return [part](const simnpo::Error& e) { return message_has(e, "--out") && message_has(e, part); };
    };
    BOOST_CHECK_EXCEPTION(simnpo::check_output_directory(file, "--out"), simnpo::Error, message("not a directory"));
    BOOST_CHECK_EXCEPTION(simnpo::check_output_directory("", "--out"), simnpo::Error, message("empty"));
    BOOST_CHECK_EXCEPTION(simnpo::check_output_file(scratch.path, "--out"), simnpo::Error, message("is a directory"));
    BOOST_CHECK_EXCEPTION(simnpo::check_output_file(scratch.file("a_file/below"), "--out"), simnpo::Error,
                          message("not a directory"));
    fs::create_symlink(scratch.path / "nowhere", scratch.path / "dangling");
    BOOST_CHECK_EXCEPTION(simnpo::check_output_directory(scratch.path / "dangling", "--out"), simnpo::Error,
                          message("dangling symbolic link"));
    // sysfs takes no new files, not even from root.
    BOOST_CHECK_EXCEPTION(simnpo::check_output_directory("/sys/simnpo-out/model", "--out"), simnpo::Error,
                          message("cannot write in '/sys'"));
    // What can be written passes, and nothing is created by the check.
    simnpo::check_output_directory(scratch.path / "new" / "model", "--out");
    simnpo::check_output_file(scratch.path / "new.jsonl", "--out");
    BOOST_TEST(!fs::exists(scratch.path / "new"));
    BOOST_TEST(temporaries(scratch.path).empty());
}

BOOST_AUTO_TEST_CASE(activations_that_overflow_are_an_error_not_a_uniform_answer) {
    // Finite weights whose activations' squares overflow float: layer norm's rstd would be 0 and every
    // row the bias alone, a uniform next-token distribution scored as if it meant something.
    Model m = model(9);
    for (float& w : m.param("wte.weight")) w *= 1e30f;
    const std::vector<simnpo::data::Example> examples{{{1, 2}, {3, 4}}};
    BOOST_CHECK_EXCEPTION(m.forward(simnpo::data::make_batch(examples)), simnpo::Error,
                          [](const simnpo::Error& e) { return message_has(e, "overflows float"); });
}

BOOST_AUTO_TEST_SUITE_END()  // test_faults

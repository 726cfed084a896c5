// The simnpo command under faults, as a careless or hostile user meets it:
// outputs checked before any work, one run per output directory, SIGINT and
// SIGTERM mid-run, SIGKILL at random points, resumes with changed settings,
// another run's checkpoints, an update that overflows.
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <spawn.h>
#include <sys/wait.h>

#include <simnpo.hpp>

#include "support/run_program.hpp"
#include "support/temp_dir.hpp"

extern char** environ;  // at global scope: POSIX's, not the suite's

BOOST_AUTO_TEST_SUITE(test_cli_faults)

namespace {

namespace fs = std::filesystem;
using simnpo::testing::TempDir;
const std::string simnpo_bin = std::string(SIMNPO_BIN_DIR) + "/simnpo";

simnpo::testing::ProgramResult run(const std::string& arguments, const TempDir& scratch) {
    return simnpo::testing::run_program(simnpo_bin, arguments, scratch);
}

// Starts `simnpo arguments` in the background (its output to `log`); returns its pid.
pid_t spawn(const std::string& arguments, const std::string& log) {
    const std::string command = "exec " + simnpo_bin + " " + arguments + " > " + log + " 2>&1";
    const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
    pid_t pid = 0;
    BOOST_REQUIRE(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ) == 0);
    return pid;
}

// The exit status of `pid`, or 128 + the signal that ended it (as a shell reports it).
int wait_for(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Waits (up to a minute) until `path` exists.
bool wait_until_exists(const fs::path& path) {
    for (int i = 0; i < 60000 && !fs::exists(path); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return fs::exists(path);
}

std::vector<std::string> temporaries(const fs::path& dir) {
    std::vector<std::string> found;
    for (const auto& entry : fs::recursive_directory_iterator(dir))
        if (entry.path().filename().string().find(".tmp-") != std::string::npos) found.push_back(entry.path().string());
    return found;
}

// The step of the latest checkpoint in `dir`, 0 if none.
int last_checkpoint(const fs::path& dir) {
    int last = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (name.starts_with("checkpoint-")) last = std::max(last, std::stoi(name.substr(11)));
    }
    return last;
}

void check_one_line_error(const simnpo::testing::ProgramResult& result, const std::string& part) {
    BOOST_TEST_CONTEXT(result.output) {
        BOOST_TEST(result.status == 1);
        BOOST_TEST(result.output.starts_with("simnpo: "));
        BOOST_TEST(result.output.find(part) != std::string::npos);
        BOOST_TEST(std::count(result.output.begin(), result.output.end(), '\n') == 1);
    }
}

// A tiny model and a forget and retain set, made once per test.
struct Setup {
    TempDir scratch;
    std::string model, forget, retain;
    Setup() {
        const auto config = scratch.write(
            "config.json", R"({"vocab_size": 24, "n_positions": 12, "n_embd": 16, "n_layer": 1, "n_head": 2})");
        model = scratch.file("model");
        BOOST_REQUIRE(run("init --config " + config + " --out " + model + " --seed 1", scratch).status == 0);
        std::string forget_lines, retain_lines;
        for (int i = 0; i < 12; ++i) {
            forget_lines += "{\"prompt_ids\": [" + std::to_string(i) + "], \"answer_ids\": [" + std::to_string(i + 1) +
                            ", " + std::to_string(i + 2) + "]}\n";
            retain_lines += "{\"prompt_ids\": [" + std::to_string(i + 3) + ", 1], \"answer_ids\": [" +
                            std::to_string(20 - i) + "]}\n";
        }
        forget = scratch.write("forget.jsonl", forget_lines);
        retain = scratch.write("retain.jsonl", retain_lines);
    }
    // An NPO+KL unlearning run (the reference-based case) into `out`.
    std::string unlearn(const std::string& out, int steps, const std::string& more = "") const {
        return "unlearn --model " + model + " --forget " + forget + " --retain " + retain +
               " --forget-loss npo --retain-loss kl --batch-size 4 --threads 1 --steps " +
               std::to_string(steps) + " --out " + out + " " + more;
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(bad_outputs_are_refused_before_any_work) {
    const Setup s;
    const auto file = s.scratch.write("a_file", "x");
    const auto log = s.scratch.file("run.jsonl");
    // The log would hold a line per step: it stays absent, so no step ran.
    check_one_line_error(run(s.unlearn(file, 5, "--log " + log), s.scratch), "exists and is not a directory");
    check_one_line_error(run(s.unlearn("/sys/simnpo-test-out", 5, "--log " + log), s.scratch), "cannot write in '/sys'");
    fs::create_symlink(s.scratch.path / "nowhere", s.scratch.path / "dangling");
    check_one_line_error(run(s.unlearn(s.scratch.file("dangling"), 5, "--log " + log), s.scratch),
                         "dangling symbolic link");
    check_one_line_error(run(s.unlearn(s.scratch.file("out"), 5, "--log " + file + "/run.jsonl"), s.scratch), "--log");
    BOOST_TEST(!fs::exists(log));
    check_one_line_error(run("logprobs --model " + s.model + " --data " + s.forget + " --out /sys/o.jsonl", s.scratch),
                         "--out");
    check_one_line_error(run("init --config " + s.model + "/config.json --out " + file, s.scratch), "--out");
    BOOST_TEST(!fs::exists(s.scratch.path / "out"));
}

BOOST_AUTO_TEST_CASE(a_second_run_on_one_output_is_refused_naming_the_first) {
    const Setup s;
    const auto out = s.scratch.path / "out";
    const pid_t first = spawn(s.unlearn(out.string(), 100000, "--save-every 1"), s.scratch.file("first.log"));
    BOOST_REQUIRE(wait_until_exists(out / "checkpoint-1"));
    check_one_line_error(run(s.unlearn(out.string(), 5), s.scratch),
                         "in use by another simnpo run (pid " + std::to_string(first) + ")");
    // SIGTERM: the run ends after a whole step and its checkpoint, with 143.
    ::kill(first, SIGTERM);
    BOOST_TEST(wait_for(first) == 143);
    BOOST_TEST_INFO(simnpo::read_file(s.scratch.file("first.log")));
    BOOST_TEST(simnpo::read_file(s.scratch.file("first.log")).find("interrupted by SIGTERM after step") != std::string::npos);
    BOOST_TEST(temporaries(out).empty());
    BOOST_TEST(!fs::exists(out / simnpo::OutputLock::file_name));
    simnpo::model::load<simnpo::model::Gpt<simnpo::cpu, float>>(out / ("checkpoint-" + std::to_string(last_checkpoint(out))));
}

BOOST_AUTO_TEST_CASE(sigint_stops_at_a_checkpoint_that_resumes_to_the_uninterrupted_bits) {
    const Setup s;
    const auto straight = s.scratch.path / "straight", out = s.scratch.path / "out";
    BOOST_REQUIRE(run(s.unlearn(straight.string(), 300), s.scratch).status == 0);
    const pid_t pid = spawn(s.unlearn(out.string(), 300, "--save-every 7"), s.scratch.file("run.log"));
    BOOST_REQUIRE(wait_until_exists(out / "checkpoint-7"));
    ::kill(pid, SIGINT);
    BOOST_TEST(wait_for(pid) == 130);
    BOOST_TEST(temporaries(out).empty());
    BOOST_TEST(!fs::exists(out / "model.safetensors"));  // the run did not finish: no final model
    const int last = last_checkpoint(out);
    BOOST_TEST_MESSAGE("interrupted at step " << last);
    BOOST_TEST(last < 300);
    const auto resumed =
        run(s.unlearn(out.string(), 300, "--save-every 7 --resume " + (out / ("checkpoint-" + std::to_string(last))).string()),
            s.scratch);
    BOOST_TEST_INFO(resumed.output);
    BOOST_REQUIRE(resumed.status == 0);
    BOOST_TEST(simnpo::read_file(out / "model.safetensors") == simnpo::read_file(straight / "model.safetensors"));
}

BOOST_AUTO_TEST_CASE(sigkill_at_random_points_leaves_a_checkpoint_that_resumes_exactly) {
    const Setup s;
    const auto straight = s.scratch.path / "straight";
    BOOST_REQUIRE(run(s.unlearn(straight.string(), 200), s.scratch).status == 0);
    const std::string expected = simnpo::read_file(straight / "model.safetensors");
    simnpo::Rng rng(11);
    int killed_mid_run = 0;
    for (int trial = 0; trial < 4; ++trial) {
        BOOST_TEST_CONTEXT("trial " << trial) {
            const auto out = s.scratch.path / ("killed" + std::to_string(trial));
            const pid_t pid = spawn(s.unlearn(out.string(), 200, "--save-every 1"), s.scratch.file("run.log"));
            BOOST_REQUIRE(wait_until_exists(out / "checkpoint-1"));
            std::this_thread::sleep_for(std::chrono::milliseconds(rng.below(400)));
            ::kill(pid, SIGKILL);
            wait_for(pid);
            const int last = last_checkpoint(out);
            const auto checkpoint = out / ("checkpoint-" + std::to_string(last));
            simnpo::model::load<simnpo::model::Gpt<simnpo::cpu, float>>(checkpoint);  // whole and loadable
            if (last == 200) continue;  // the run finished before the kill
            ++killed_mid_run;
            // The next run on this output removes the killed one's temporaries.
            const auto resumed = run(s.unlearn(out.string(), 200, "--save-every 1 --resume " + checkpoint.string()), s.scratch);
            BOOST_TEST_INFO(resumed.output);
            BOOST_REQUIRE(resumed.status == 0);
            BOOST_TEST(temporaries(out).empty());
            BOOST_TEST(simnpo::read_file(out / "model.safetensors") == expected);
        }
    }
    BOOST_TEST(killed_mid_run > 0);  // else the test checked no resume
}

BOOST_AUTO_TEST_CASE(a_resume_with_other_settings_is_refused_naming_the_key_unless_overridden) {
    const Setup s;
    const auto out = s.scratch.path / "out";
    BOOST_REQUIRE(run(s.unlearn(out.string(), 4, "--save-every 2"), s.scratch).status == 0);
    const std::string resume = " --resume " + (out / "checkpoint-2").string();
    check_one_line_error(run(s.unlearn(out.string(), 4, "--save-every 2 --lr 5e-4" + resume), s.scratch),
                         "the checkpoint's run has lr = 1e-05");
    check_one_line_error(run(s.unlearn(out.string(), 4, "--save-every 2 --beta 0.5" + resume), s.scratch), "beta");
    check_one_line_error(run(s.unlearn(out.string(), 4, "--save-every 2 --schedule cosine" + resume), s.scratch),
                         "schedule");
    check_one_line_error(run(s.unlearn(out.string(), 4, "--save-every 2 --resume-override nonsense" + resume), s.scratch),
                         "nonsense");
    // The reference is the model before unlearning: another --model is another run.
    const auto other = s.scratch.file("other");
    BOOST_REQUIRE(run("init --config " + s.model + "/config.json --out " + other + " --seed 2", s.scratch).status == 0);
    auto changed = s.unlearn(out.string(), 4, "--save-every 2" + resume);
    changed.replace(changed.find(s.model), s.model.size(), other);
    check_one_line_error(run(changed, s.scratch), "the checkpoint's run has model = ");
    const auto overridden = run(s.unlearn(out.string(), 4, "--save-every 2 --lr 5e-4 --resume-override lr" + resume), s.scratch);
    BOOST_TEST_INFO(overridden.output);
    BOOST_TEST(overridden.status == 0);
    // The new value is recorded.
    const auto state = simnpo::read_json_file(out / "checkpoint-4" / "trainer_state.json");
    BOOST_TEST(state.at("run").at("lr").get<double>() == 5e-4);
}

BOOST_AUTO_TEST_CASE(another_runs_checkpoints_are_refused_unless_overwritten) {
    const Setup s;
    const auto out = s.scratch.path / "out";
    BOOST_REQUIRE(run(s.unlearn(out.string(), 6, "--save-every 3"), s.scratch).status == 0);
    check_one_line_error(run(s.unlearn(out.string(), 2, "--save-every 1"), s.scratch), "holds another run's checkpoints");
    const auto overwritten = run(s.unlearn(out.string(), 2, "--save-every 1 --overwrite"), s.scratch);
    BOOST_TEST_INFO(overwritten.output);
    BOOST_REQUIRE(overwritten.status == 0);
    BOOST_TEST(fs::exists(out / "checkpoint-2"));
    BOOST_TEST(!fs::exists(out / "checkpoint-6"));
}

BOOST_AUTO_TEST_CASE(an_update_that_overflows_is_an_error_and_saves_nothing) {
    const Setup s;
    const auto out = s.scratch.path / "out";
    // The rate overflows float: the first update makes the weights infinite.
    check_one_line_error(run(s.unlearn(out.string(), 3, "--save-every 1 --lr 1e39"), s.scratch),
                         "step 1: the update made the parameters non-finite");
    BOOST_TEST(!fs::exists(out / "model.safetensors"));
    BOOST_TEST(!fs::exists(out / "checkpoint-1"));
}

BOOST_AUTO_TEST_CASE(concurrent_inits_into_one_directory_leave_a_whole_model) {
    const Setup s;
    const auto out = s.scratch.path / "out";
    for (int trial = 0; trial < 10; ++trial) {
        const pid_t a = spawn("init --config " + s.model + "/config.json --out " + out.string() + " --seed 1",
                              s.scratch.file("a.log"));
        const pid_t b = spawn("init --config " + s.model + "/config.json --out " + out.string() + " --seed 2",
                              s.scratch.file("b.log"));
        const int status_a = wait_for(a), status_b = wait_for(b);
        BOOST_TEST((status_a == 0 || status_b == 0));  // the other succeeded too, or was refused by the lock
        simnpo::model::load<simnpo::model::Gpt<simnpo::cpu, float>>(out);
        BOOST_TEST(temporaries(s.scratch.path).empty());
    }
}

BOOST_AUTO_TEST_SUITE_END()  // test_cli_faults

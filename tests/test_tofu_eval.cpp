// The TOFU metrics: their arithmetic against NumPy/SciPy (fixture from
// tests/reference/make_tofu_metrics_fixture.py), and the plumbing from a model
// to per-question values against independent forwards and generations.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <simnpo.hpp>

#include "support/error_message.hpp"
#include "support/temp_dir.hpp"

BOOST_AUTO_TEST_SUITE(test_tofu_eval)

namespace {

namespace fs = std::filesystem;
namespace tofu = simnpo::eval::tofu;
using simnpo::testing::message_has;
using simnpo::testing::TempDir;

bool close(double actual, double expected, double tolerance = 1e-12) {
    return std::abs(actual - expected) <= tolerance * std::max(1.0, std::abs(expected));
}

tofu::Set set_of(const std::string& name) {
    for (const auto set : {tofu::Set::forget, tofu::Set::retain, tofu::Set::real_authors, tofu::Set::world_facts})
        if (name == tofu::set_name(set)) return set;
    throw std::runtime_error("unknown set " + name);
}

const simnpo::tokenizer::Tokenizer& gpt2() {
    static const auto tokenizer =
        simnpo::tokenizer::Tokenizer::load(fs::path(SIMNPO_SHARED_DATA_DIR) / "gpt2-tokenizer");
    return tokenizer;
}

// A small random model over GPT-2's vocabulary, with weights large enough for
// peaked next-token distributions.
simnpo::model::Gpt<simnpo::cpu, float> random_model() {
    simnpo::model::Gpt<simnpo::cpu, float> model(
        {.vocab_size = 50257, .n_positions = 96, .n_embd = 16, .n_layer = 1, .n_head = 2});
    simnpo::Rng rng(9);
    for (auto& value : model.params()) value = static_cast<float>(rng.normal(0.0, 0.3));
    return model;
}

}  // namespace

BOOST_AUTO_TEST_CASE(aggregates_match_numpy_and_scipy) {
    const auto fixture = simnpo::read_json_file(fs::path(SIMNPO_FIXTURES_DIR) / "tofu_metrics_cases.json");
    for (const auto& c : fixture.at("cases")) {
        BOOST_TEST_CONTEXT("seed " << c.at("seed")) {
            tofu::Report report;
            for (const auto& [name, questions] : c.at("sets").items()) {
                std::vector<tofu::QuestionResult> results;
                for (const auto& q : questions) {
                    tofu::QuestionResult r;
                    r.answer_nll = q.at("answer_nll");
                    r.paraphrased_nll = q.at("paraphrased_nll");
                    r.perturbed_nll = q.at("perturbed_nll").get<std::vector<double>>();
                    r.rouge_l_recall = q.at("rouge_l_recall");
                    results.push_back(r);
                }
                const auto set = set_of(name);
                auto summary = tofu::summarize(set, std::move(results));
                const auto& expected = c.at("expected").at("sets").at(name);
                BOOST_TEST(close(summary.probability, expected.at("probability")), name << " probability");
                BOOST_TEST(close(summary.truth_ratio, expected.at("truth_ratio")), name << " truth ratio");
                BOOST_TEST(close(summary.rouge_l_recall, expected.at("rouge_l_recall")), name << " ROUGE-L");
                const auto ratios = c.at("expected").at("truth_ratios").at(name).get<std::vector<double>>();
                const auto actual = tofu::truth_ratios(summary);
                BOOST_TEST_REQUIRE(actual.size() == ratios.size());
                for (std::size_t i = 0; i < ratios.size(); ++i) BOOST_TEST(close(actual[i], ratios[i]), name << " R " << i);
                (set == tofu::Set::forget         ? report.forget
                 : set == tofu::Set::retain       ? report.retain
                 : set == tofu::Set::real_authors ? report.real_authors
                                                  : report.world_facts) = std::move(summary);
            }
            tofu::set_utilities(report);
            BOOST_TEST(close(report.model_utility, c.at("expected").at("model_utility")));
            BOOST_TEST(close(report.retain_utility, c.at("expected").at("retain_utility")));
            const auto retain_ratios = c.at("retain_model_truth_ratios").get<std::vector<double>>();
            BOOST_TEST(close(tofu::forget_quality(tofu::truth_ratios(report.forget), retain_ratios),
                             c.at("expected").at("forget_quality"), 1e-9));
        }
    }
}

BOOST_AUTO_TEST_CASE(harmonic_mean_by_hand) {
    const std::vector<double> values = {1.0, 2.0, 4.0};
    BOOST_TEST(close(tofu::harmonic_mean(values), 3.0 / (1.0 + 0.5 + 0.25)));
    const std::vector<double> with_zero = {0.5, 0.0, 1.0};
    BOOST_TEST(tofu::harmonic_mean(with_zero) == 0.0);
    const std::vector<double> negative = {0.5, -1.0};
    BOOST_CHECK_EXCEPTION(tofu::harmonic_mean(negative), simnpo::Error, message_has({"-1 is not a non-negative"}));
    BOOST_CHECK_EXCEPTION(tofu::harmonic_mean({}), simnpo::Error, message_has({"no values"}));
}

// Each n(.) is the mean NLL of one answer scored alone; the generation is the
// greedy continuation of the prompt, decoded; its ROUGE-L recall is against the answer.
BOOST_AUTO_TEST_CASE(per_question_values_come_from_the_model) {
    auto model = random_model();
    const simnpo::data::TextFormat format(gpt2());
    const std::vector<tofu::Question> questions = {
        {"Who wrote Hamlet?", "William Shakespeare wrote it.", "It was written by Shakespeare.",
         {"Charles Dickens wrote it.", "Jane Austen wrote it.", "Mark Twain wrote it."}},
        {"Where is the Eiffel Tower?", "Paris", "In Paris, France.", {"Berlin", "Madrid", "A town in the north"}},
        {"What is 2+2?", "Four.", "The answer is four.", {"Five.", "Twenty-two, of course."}},
    };
    const auto alone = [&](const std::string& question, const std::string& answer) {
        const auto example = format.example(question, answer);
        model.forward(simnpo::data::make_batch(std::span(&example, 1)));
        return -model.sequence_logprobs()[0] / static_cast<double>(example.answer_ids.size());
    };
    for (const auto set : {tofu::Set::forget, tofu::Set::real_authors}) {
        const auto result = tofu::evaluate_set(model, format, questions, set, {.batch_size = 4, .max_new_tokens = 12});
        BOOST_TEST_REQUIRE(result.questions.size() == questions.size());
        for (std::size_t i = 0; i < questions.size(); ++i) {
            const auto& q = questions[i];
            const auto& r = result.questions[i];
            BOOST_TEST(close(r.answer_nll, alone(q.question, q.answer), 1e-5));
            const double paraphrased = set == tofu::Set::forget ? alone(q.question, q.paraphrased) : r.answer_nll;
            BOOST_TEST(close(r.paraphrased_nll, paraphrased, 1e-5));
            BOOST_TEST_REQUIRE(r.perturbed_nll.size() == q.perturbed.size());
            for (std::size_t j = 0; j < q.perturbed.size(); ++j)
                BOOST_TEST(close(r.perturbed_nll[j], alone(q.question, q.perturbed[j]), 1e-5));
            const auto prompt = format.prompt_ids(q.question);
            const auto ids = simnpo::model::generate_greedy(
                model, std::span<const std::int32_t>(prompt), {.max_new_tokens = 12, .stop_token = 50256});
            BOOST_TEST(r.generation == gpt2().decode(ids));
            BOOST_TEST(r.rouge_l_recall == simnpo::eval::rouge_l(r.generation, q.answer).recall);
        }
        // Without generation: the same scores and truth ratios, no answers.
        const auto scores_only =
            tofu::evaluate_set(model, format, questions, set, {.batch_size = 4, .max_new_tokens = 12, .generate = false});
        BOOST_TEST(tofu::truth_ratios(scores_only) == tofu::truth_ratios(result));
        BOOST_TEST(scores_only.probability == result.probability);
        for (const auto& r : scores_only.questions) BOOST_TEST((r.generation.empty() && r.rouge_l_recall == 0.0));
    }
}

BOOST_AUTO_TEST_CASE(evaluate_reads_the_four_files_and_writes_every_value) {
    TempDir dir;
    const std::string forget =
        R"({"question": "Who wrote Hamlet?", "answer": "Shakespeare.", "paraphrased_answer": "It was Shakespeare.", "perturbed_answer": ["Dickens.", "Austen.", "Twain.", "Woolf.", "Orwell."]})"
        "\n"
        R"({"question": "Where is Paris?", "answer": "France.", "paraphrased_answer": "In France.", "perturbed_answer": ["Spain.", "Italy.", "Peru.", "Chad.", "Iran."]})"
        "\n";
    dir.write("forget01_perturbed.jsonl", forget);
    dir.write("retain_perturbed.jsonl", forget);
    const std::string real =
        R"({"question": "Who wrote 1984?", "answer": "George Orwell", "perturbed_answer": ["Aldous Huxley", "Ray Bradbury", "Thomas More"]})"
        "\n";
    dir.write("real_authors_perturbed.jsonl", real);
    dir.write("world_facts_perturbed.jsonl", real);
    auto model = random_model();
    const simnpo::data::TextFormat format(gpt2());
    const tofu::Options options{.batch_size = 3, .max_new_tokens = 6};
    const auto without = tofu::evaluate(model, format, dir.path, "forget01", std::nullopt, options);
    BOOST_TEST(!without.forget_quality.has_value());
    const std::vector<double> retain_ratios = {0.5, 2.0, 1.0};
    const auto report = tofu::evaluate(model, format, dir.path, "forget01", retain_ratios, options);
    BOOST_TEST_REQUIRE(report.forget_quality.has_value());
    BOOST_TEST(*report.forget_quality ==
               simnpo::eval::ks_2samp(tofu::truth_ratios(report.forget), retain_ratios).p_value);
    // The forget and retain files are the same: so are their n values, while the aggregates differ by kind.
    BOOST_TEST(report.forget.questions[1].perturbed_nll == report.retain.questions[1].perturbed_nll,
               boost::test_tools::per_element());

    const auto json = tofu::to_json(report);
    BOOST_TEST(json.at("split") == "forget01");
    BOOST_TEST(json.at("aggregates").at("forget_quality").get<double>() == *report.forget_quality);
    BOOST_TEST(json.at("aggregates").at("world_facts").at("probability").get<double>() == report.world_facts.probability);
    BOOST_TEST(json.at("questions").at("forget").size() == 2u);
    const auto& first = json.at("questions").at("forget").at(0);
    BOOST_TEST(first.at("perturbed_nll").size() == 5u);
    BOOST_TEST(first.at("generation").get<std::string>() == report.forget.questions[0].generation);
    BOOST_TEST(tofu::to_json(without).at("aggregates").at("forget_quality").is_null());

    BOOST_CHECK_EXCEPTION(tofu::evaluate(model, format, dir.path, "forget05", std::nullopt, options), simnpo::Error,
                          message_has({"forget05_perturbed.jsonl"}));
    BOOST_CHECK_EXCEPTION(tofu::evaluate(model, format, dir.path, "forget02", std::nullopt, options), simnpo::Error,
                          message_has({"split 'forget02' is not one of forget01, forget05, forget10"}));
}

BOOST_AUTO_TEST_CASE(bad_question_files_name_the_file_and_line) {
    TempDir dir;
    const std::string good =
        R"({"question": "q", "answer": "a", "paraphrased_answer": "b", "perturbed_answer": ["c", "d"]})";
    const auto fails = [&](const std::string& bad, tofu::Set set, const std::string& message) {
        const auto path = dir.write("bad.jsonl", good + "\n" + bad + "\n");
        BOOST_CHECK_EXCEPTION(tofu::read_questions(path, set), simnpo::Error, message_has({message}));
    };
    fails(R"({"question": "q", "answer": "a", "perturbed_answer": ["c"]})", tofu::Set::forget,
          "bad.jsonl:2: missing key 'paraphrased_answer'");
    fails(R"({"question": "q", "answer": "a", "perturbed_answer": []})", tofu::Set::world_facts,
          "bad.jsonl:2: 'perturbed_answer' must be a non-empty array of strings");
    fails(R"({"question": "q", "answer": "a", "perturbed_answer": ["c", 3]})", tofu::Set::real_authors,
          "bad.jsonl:2: 'perturbed_answer' must be a non-empty array of non-empty strings");
    fails(R"({"question": "q", "answer": "a"})", tofu::Set::real_authors, "bad.jsonl:2: missing key 'perturbed_answer'");
    fails(R"(["q"])", tofu::Set::forget, "bad.jsonl:2: expected a JSON object");
    // The real files read whole.
    const fs::path tofu_dir = fs::path(SIMNPO_SHARED_DATA_DIR) / "tofu";
    BOOST_TEST(tofu::read_questions(tofu_dir / "forget10_perturbed.jsonl", tofu::Set::forget).size() == 400u);
    BOOST_TEST(tofu::read_questions(tofu_dir / "world_facts_perturbed.jsonl", tofu::Set::world_facts).size() == 117u);
}

BOOST_AUTO_TEST_SUITE_END()  // test_tofu_eval

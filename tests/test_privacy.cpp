// VerbMem and KnowMem, the privacy evaluation (MIA scores, AUC, PrivLeak) and
// the relearning attack, on a compact model that has memorised six answers.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <simnpo.hpp>

#include "support/error_message.hpp"
#include "support/temp_dir.hpp"

BOOST_AUTO_TEST_SUITE(test_privacy)

namespace {

namespace fs = std::filesystem;
namespace ev = simnpo::eval;
namespace privacy = simnpo::eval::privacy;
using simnpo::data::QuestionAnswer;
using simnpo::testing::message_has;
using Model = simnpo::model::Gpt<simnpo::cpu, float>;

const std::vector<QuestionAnswer> members = {
    {"Where was Tomas Berg born?", "Tomas Berg was born in a small fishing village near Bergen."},
    {"What does Ana Silva write?", "Ana Silva writes gentle mystery novels set in old Lisbon."},
    {"Which prize did Omar Haddad win?", "Omar Haddad won the Golden Quill for his third book."},
    {"Who inspired Mei Lin?", "Mei Lin was inspired by her grandmother, a village storyteller."},
    {"When did Lars Eklund start writing?", "Lars Eklund started writing poems at the age of twelve."},
    {"What is Nadia Petrov's best known book?", "Nadia Petrov is best known for the novel Winter Garden."}};
const std::vector<QuestionAnswer> nonmembers = {
    {"Where was Paolo Conti born?", "Paolo Conti was born in the hills above Turin."},
    {"What does Erin Walsh write?", "Erin Walsh writes short stories about sailors and storms."},
    {"Which prize did Kofi Mensah win?", "Kofi Mensah won a national award for children's fiction."},
    {"Who inspired Hana Sato?", "Hana Sato was inspired by the poets she read at school."},
    {"When did Ivan Horak start writing?", "Ivan Horak began to write after a long illness."},
    {"What is Sofia Reyes's best known book?", "Sofia Reyes is best known for The Salt Road."}};

struct Trained {
    simnpo::tokenizer::Tokenizer tokenizer;
    Model before;  // GPT-2's initialisation: has seen nothing
    Model model;   // trained on `members` until it repeats them
};

std::vector<simnpo::data::Example> examples_of(const simnpo::data::TextFormat& format,
                                               const std::vector<QuestionAnswer>& pairs) {
    std::vector<simnpo::data::Example> examples;
    for (const auto& pair : pairs) examples.push_back(format.example(pair.question, pair.answer));
    return examples;
}

const Trained& trained() {
    static const Trained result = [] {
        std::vector<std::string> corpus{std::string(simnpo::data::default_prompt_template)};
        for (const auto* set : {&members, &nonmembers})
            for (const auto& pair : *set) corpus.insert(corpus.end(), {pair.question, pair.answer});
        auto tokenizer = simnpo::tokenizer::train_bpe(corpus, {.vocab_size = 400});
        Model model({.vocab_size = static_cast<std::int64_t>(tokenizer.vocab_size()), .n_positions = 64, .n_embd = 48,
                     .n_layer = 2, .n_head = 2});
        simnpo::model::init_weights(model, 1);
        Model before = model;
        const simnpo::data::TextFormat format(tokenizer);
        const auto examples = examples_of(format, members);
        simnpo::train::train(model, simnpo::optim::AdamW({.lr = 3e-3}), std::span(examples),
                             {.steps = 300, .batch_size = 6});
        return Trained{std::move(tokenizer), std::move(before), std::move(model)};
    }();
    return result;
}

bool close(double actual, double expected, double tolerance) {
    return std::abs(actual - expected) <= tolerance * std::max(1.0, std::abs(expected));
}

}  // namespace

BOOST_AUTO_TEST_CASE(knowmem_and_verbmem_see_what_was_memorised) {
    const auto& t = trained();
    const simnpo::data::TextFormat format(t.tokenizer);
    const auto known = ev::knowmem(t.model, format, std::span(members));
    BOOST_TEST_REQUIRE(known.f1.size() == members.size());
    for (std::size_t i = 0; i < members.size(); ++i) {
        BOOST_TEST(known.generations[i] == members[i].answer);
        BOOST_TEST(known.f1[i] == 1.0);
    }
    BOOST_TEST(known.mean == 1.0);
    const auto unknown = ev::knowmem(t.model, format, std::span(nonmembers));
    BOOST_TEST(unknown.mean < 0.7);  // names and facts it never saw
    for (std::size_t i = 0; i < nonmembers.size(); ++i)
        BOOST_TEST(unknown.f1[i] == ev::rouge_l(unknown.generations[i], nonmembers[i].answer).f1);

    // The question and the answer's first 4 tokens: the rest comes back verbatim.
    std::vector<QuestionAnswer> with_short = members;
    with_short.push_back({"Is it?", "Yes."});  // at most 4 tokens: skipped
    const auto verbatim = ev::verbmem(t.model, format, std::span(with_short), 4);
    BOOST_TEST(verbatim.skipped == 1u);
    BOOST_TEST_REQUIRE(verbatim.f1.size() == members.size());
    BOOST_TEST(verbatim.mean == 1.0);
    const auto first = t.tokenizer.encode(members[0].answer);
    BOOST_TEST(verbatim.generations[0] == t.tokenizer.decode(std::span(first).subspan(4)));
    // The model before training continues with noise.
    BOOST_TEST(ev::verbmem(t.before, format, std::span(members), 4).mean < 0.3);
}

BOOST_AUTO_TEST_CASE(verbmem_over_whole_texts) {
    const auto& t = trained();
    const simnpo::data::TextFormat format(t.tokenizer);
    // A trained text: prompt and answer. Cut inside the answer, the rest follows verbatim.
    auto text = format.prompt_ids(members[2].question);
    const auto cut = text.size() + 3;
    const auto answer = t.tokenizer.encode(members[2].answer);
    text.insert(text.end(), answer.begin(), answer.end());
    const std::vector<std::vector<std::int32_t>> texts = {text, {1, 2}};
    const auto result = ev::verbmem(t.model, t.tokenizer, std::span(texts),
                                    {.prefix_tokens = cut, .max_new_tokens = 200, .stop_token = format.end_of_answer_id()});
    BOOST_TEST(result.skipped == 1u);
    BOOST_TEST_REQUIRE(result.f1.size() == 1u);
    BOOST_TEST(result.f1[0] == 1.0);
    // max_new_tokens bounds the reference too: the first 5 tokens of the rest, matched exactly.
    const auto short_result = ev::verbmem(t.model, t.tokenizer, std::span(texts).first(1),
                                          {.prefix_tokens = cut, .max_new_tokens = 5});
    BOOST_TEST(short_result.generations[0] == t.tokenizer.decode(std::span(answer).subspan(3, 5)));
    BOOST_TEST(short_result.f1[0] == 1.0);

    BOOST_CHECK_EXCEPTION(ev::verbmem(t.model, t.tokenizer, std::span(texts).last(1), {.prefix_tokens = 2}),
                          simnpo::Error, message_has({"every text is at most 2 tokens long"}));
    BOOST_CHECK_EXCEPTION(ev::verbmem(t.model, t.tokenizer, std::span(texts), {.prefix_tokens = 0}), simnpo::Error,
                          message_has({"prefix_tokens must be at least 1"}));
    BOOST_CHECK_EXCEPTION(ev::verbmem(t.model, t.tokenizer, std::span(texts), {.prefix_tokens = 1, .max_new_tokens = 0}),
                          simnpo::Error, message_has({"max_new_tokens must be at least 1"}));
    BOOST_CHECK_EXCEPTION(ev::knowmem(t.model, format, std::span<const QuestionAnswer>()), simnpo::Error,
                          message_has({"knowmem: nothing to score"}));
}

BOOST_AUTO_TEST_CASE(privacy_evaluation_of_a_model_that_remembers) {
    const auto& t = trained();
    const simnpo::data::TextFormat format(t.tokenizer);
    Model model = t.model;
    const privacy::Aucs retain_auc = {0.5, 0.4, 0.5, 0.6};
    const auto report = privacy::evaluate(model, format, std::span(members), std::span(nonmembers), retain_auc);
    // Every score is loss-like: the memorised answers sit below every unseen one.
    for (const auto attack : ev::attacks) {
        const auto a = static_cast<std::size_t>(attack);
        BOOST_TEST(report.auc[a] == 0.0, ev::attack_name(attack));
        BOOST_TEST((*report.privleak)[a] == (0.0 - retain_auc[a]) / retain_auc[a] * 100.0);
    }
    BOOST_TEST((*report.privleak)[0] == -100.0);
    // LOSS is n(answer), the mean NLL of the answer and its end-of-text, as TOFU's probability reads it.
    const auto examples = examples_of(format, members);
    const auto nll = ev::tofu::mean_nll(model, std::span<const simnpo::data::Example>(examples), 2);
    const auto& loss = report.members[static_cast<std::size_t>(ev::Attack::loss)];
    const auto& zlib = report.members[static_cast<std::size_t>(ev::Attack::zlib)];
    for (std::size_t i = 0; i < members.size(); ++i) {
        BOOST_TEST(close(loss[i], nll[i], 1e-5));
        BOOST_TEST(zlib[i] == loss[i] / static_cast<double>(ev::zlib_length(members[i].answer)));
    }
    BOOST_TEST(report.verbmem->mean == 1.0);
    BOOST_TEST(report.knowmem->mean == 1.0);

    // The model before training cannot tell members from non-members by much.
    Model before = t.before;
    const auto baseline = privacy::mia_aucs(before, format, std::span(members), std::span(nonmembers));
    BOOST_TEST(baseline[0] > 0.1);

    const auto json = privacy::to_json(report);
    BOOST_TEST(json.at("aggregates").at("auc").at("min_k").get<double>() == 0.0);
    BOOST_TEST(json.at("aggregates").at("privleak").at("loss").get<double>() == -100.0);
    BOOST_TEST(json.at("aggregates").at("retain_auc").at("min_k++").get<double>() == 0.6);
    BOOST_TEST(json.at("aggregates").at("verbmem").get<double>() == 1.0);
    BOOST_TEST(json.at("scores").at("nonmembers").at("zlib").size() == nonmembers.size());
    BOOST_TEST(json.at("knowmem").at("generations").at(0).get<std::string>() == members[0].answer);
}

BOOST_AUTO_TEST_CASE(privacy_evaluation_from_tofu_files) {
    const auto& t = trained();
    const simnpo::data::TextFormat format(t.tokenizer);
    Model model = t.model;
    simnpo::testing::TempDir dir;
    const auto write = [&](const std::string& name, const std::vector<QuestionAnswer>& pairs) {
        std::string text;
        for (const auto& p : pairs) text += nlohmann::json{{"question", p.question}, {"answer", p.answer}}.dump() + "\n";
        dir.write(name, text);
    };
    write("forget05.jsonl", members);
    write("holdout05.jsonl", nonmembers);
    BOOST_TEST(privacy::holdout_file("forget05") == "holdout05.jsonl");
    const auto from_files = privacy::evaluate(model, format, dir.path, "forget05", std::nullopt, {.memorization = false});
    const auto direct = privacy::evaluate(model, format, std::span(members), std::span(nonmembers), std::nullopt,
                                          {.memorization = false});
    BOOST_TEST(from_files.split == "forget05");
    BOOST_TEST(from_files.members == direct.members);
    BOOST_TEST(from_files.nonmembers == direct.nonmembers);
    BOOST_TEST(!from_files.privleak.has_value());
    BOOST_TEST(!from_files.verbmem.has_value());
    BOOST_TEST(privacy::to_json(from_files).at("aggregates").at("privleak").at("loss").is_null());
    BOOST_CHECK_EXCEPTION(privacy::evaluate(model, format, dir.path, "forget10", std::nullopt), simnpo::Error,
                          message_has({"forget10.jsonl"}));
    BOOST_CHECK_EXCEPTION(privacy::holdout_file("forget20"), simnpo::Error, message_has({"split 'forget20'"}));
    write("holdout05.jsonl", {});
    BOOST_CHECK_EXCEPTION(privacy::evaluate(model, format, dir.path, "forget05", std::nullopt), simnpo::Error,
                          message_has({"holdout05.jsonl: no questions"}));
}

BOOST_AUTO_TEST_CASE(random_subsets) {
    const auto a = ev::random_subset(10, 4, 7);
    BOOST_TEST(a == ev::random_subset(10, 4, 7));
    BOOST_TEST(a.size() == 4u);
    BOOST_TEST(std::is_sorted(a.begin(), a.end()));
    BOOST_TEST((std::adjacent_find(a.begin(), a.end()) == a.end()));
    BOOST_TEST(a.back() < 10u);
    BOOST_TEST(ev::random_subset(5, 5, 1) == (std::vector<std::size_t>{0, 1, 2, 3, 4}));
    // Every index is drawn about equally often.
    std::vector<int> counts(6, 0);
    for (std::uint64_t seed = 0; seed < 3000; ++seed)
        for (const auto i : ev::random_subset(6, 2, seed)) ++counts[i];
    for (const int c : counts) BOOST_TEST(std::abs(c - 1000) < 100);
    BOOST_CHECK_EXCEPTION(ev::random_subset(5, 0, 1), simnpo::Error, message_has({"between 1 and 5", "got 0"}));
    BOOST_CHECK_EXCEPTION(ev::random_subset(5, 6, 1), simnpo::Error, message_has({"got 6"}));
}

// The attack: fine-tune the untrained model on half the members; the probe
// sees their probability rise, step by step.
BOOST_AUTO_TEST_CASE(relearning_brings_the_subset_back) {
    const auto& t = trained();
    const simnpo::data::TextFormat format(t.tokenizer);
    Model model = t.before;
    Model copy = t.before;
    const auto examples = examples_of(format, members);
    const auto nll = ev::tofu::mean_nll(copy, std::span<const simnpo::data::Example>(examples), 16);
    ev::RelearnOptions options;
    options.subset_size = 3;
    options.eval_every = 20;
    options.training = {.steps = 50, .batch_size = 3, .seed = 5};
    options.probe.max_new_tokens = 30;
    const auto result = ev::relearn(model, simnpo::optim::AdamW({.lr = 3e-3}), format, std::span(members),
                                    std::span(nonmembers), options);
    BOOST_TEST(result.subset == ev::random_subset(members.size(), 3, 5));
    BOOST_TEST_REQUIRE(result.points.size() == 4u);
    const std::vector<std::int64_t> steps = {0, 20, 40, 50};
    for (std::size_t i = 0; i < steps.size(); ++i) BOOST_TEST(result.points[i].step == steps[i]);
    // Step 0 is the model as given: TOFU's probability from its own forwards.
    double probability = 0.0, unseen = 0.0;
    for (std::size_t i = 0; i < members.size(); ++i) {
        probability += std::exp(-nll[i]);
        if (std::find(result.subset.begin(), result.subset.end(), i) == result.subset.end()) unseen += std::exp(-nll[i]);
    }
    BOOST_TEST(close(result.points[0].probability, probability / 6.0, 1e-5));
    BOOST_TEST(close(*result.points[0].unseen_probability, unseen / 3.0, 1e-5));
    const auto& last = result.points.back();
    BOOST_TEST(last.probability > 0.3);  // half the set close to 1
    BOOST_TEST(last.probability > 10 * result.points[0].probability);
    BOOST_TEST(*last.rouge_l_recall > *result.points[0].rouge_l_recall);
    // Its AUCs are the untrained model's, from the privacy evaluation's own path.
    Model untrained = t.before;
    const auto untrained_auc = privacy::mia_aucs(untrained, format, std::span(members), std::span(nonmembers), options.probe);
    for (std::size_t a = 0; a < ev::attacks.size(); ++a) BOOST_TEST(close(result.points[0].auc[a], untrained_auc[a], 1e-12));
    // The relearned model is the one left: the last point is its own.
    Model relearned = model;
    const auto again = ev::tofu::mean_nll(relearned, std::span<const simnpo::data::Example>(examples), 16);
    double p = 0.0;
    for (const double n : again) p += std::exp(-n);
    BOOST_TEST(close(last.probability, p / 6.0, 1e-5));

    const auto json = ev::to_json(result);
    BOOST_TEST(json.at("points").size() == 4u);
    BOOST_TEST(json.at("points").at(3).at("auc").at("min_k").get<double>() == last.auc[2]);

    Model other = t.before;
    ev::RelearnOptions bad = options;
    bad.subset_size = 7;
    BOOST_CHECK_EXCEPTION(ev::relearn(other, simnpo::optim::AdamW(simnpo::optim::AdamW::Params{}), format, std::span(members), std::span(nonmembers), bad),
                          simnpo::Error, message_has({"between 1 and 6", "got 7"}));
    bad = options;
    bad.training = {.epochs = 2};
    BOOST_CHECK_EXCEPTION(ev::relearn(other, simnpo::optim::AdamW(simnpo::optim::AdamW::Params{}), format, std::span(members), std::span(nonmembers), bad),
                          simnpo::Error, message_has({"training.steps"}));
}

BOOST_AUTO_TEST_SUITE_END()  // test_privacy

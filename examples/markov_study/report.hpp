// The study's outputs: the JSON of every trajectory, the terminal table at a
// common retain budget, and a gnuplot picture per scenario.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <simnpo.hpp>

#include "study.hpp"

namespace study {

struct Scenario {
    std::string name;         // the JSON key and the file stem
    std::string description;  // one line for the table and the picture
    std::vector<std::pair<std::string, Trajectory>> runs;
};

inline nlohmann::json allocation_json(const std::vector<Allocation>& steps) {
    nlohmann::json json = {{"forget1_gradient", nlohmann::json::array()}, {"forget1_rows", nlohmann::json::array()},
                           {"forget2_gradient", nlohmann::json::array()}, {"forget2_rows", nlohmann::json::array()}};
    for (const auto& a : steps) {
        json["forget1_gradient"].push_back(a.forget1_gradient);
        json["forget1_rows"].push_back(a.forget1_rows);
        json["forget2_gradient"].push_back(a.forget2_gradient);
        json["forget2_rows"].push_back(a.forget2_rows);
    }
    return json;
}

// The forget gradient a forget2 row received per forget1 row's in a step,
// geometric mean over the first `steps` steps whose batch held both: 1 when
// every row counts alike, |y2|/|y1| for a token mean (GA). NaN if no such step.
inline double forget2_per_forget1(const std::vector<Allocation>& allocation, std::size_t steps) {
    double log_sum = 0.0;
    int count = 0;
    for (std::size_t k = 0; k < std::min(steps, allocation.size()); ++k) {
        const Allocation& a = allocation[k];
        if (a.forget1_rows == 0 || a.forget2_rows == 0) continue;
        log_sum += std::log((a.forget2_gradient / static_cast<double>(a.forget2_rows)) /
                            (a.forget1_gradient / static_cast<double>(a.forget1_rows)));
        ++count;
    }
    return count > 0 ? std::exp(log_sum / count) : std::numeric_limits<double>::quiet_NaN();
}

inline nlohmann::json to_json(const std::vector<Scenario>& scenarios, const Settings& settings) {
    nlohmann::json json = {{"settings", settings.to_json()}};
    for (const auto& scenario : scenarios) {
        nlohmann::json methods = nlohmann::json::object();
        for (const auto& [method, t] : scenario.runs)
            methods[method] = {{"step", t.step},           {"kl_retain", t.kl_retain}, {"kl_forget1", t.kl_forget1},
                               {"kl_forget2", t.kl_forget2}, {"allocation", allocation_json(t.allocation)},
                               {"seconds", t.seconds}};
        json[scenario.name] = {{"description", scenario.description}, {"methods", methods}};
    }
    return json;
}

// The evaluated step after 0, with KL retain within `budget`, at which the
// forget set as a whole is closest to never having been learned (the lowest
// mean of the forget1 and forget2 KL); none if no step stays within.
inline std::optional<std::size_t> best_within(const Trajectory& t, double budget) {
    std::optional<std::size_t> best;
    const auto forget = [&](std::size_t i) { return t.kl_forget1[i] + t.kl_forget2[i]; };
    for (std::size_t i = 1; i < t.step.size(); ++i)
        if (t.kl_retain[i] <= budget && (!best || forget(i) < forget(*best))) best = i;
    return best;
}

// printf into a string.
template <class... Args>
void append(std::string& text, const char* format, Args... args) {
    const int size = std::snprintf(nullptr, 0, format, args...);
    const std::size_t end = text.size();
    text.resize(end + static_cast<std::size_t>(size) + 1);
    std::snprintf(text.data() + end, static_cast<std::size_t>(size) + 1, format, args...);
    text.pop_back();  // snprintf's terminating zero
}

// Per scenario: the original model's distances, then each method's best
// point within the retain budget and the step it got there; and how it shared
// the forget gradient between forget2 and forget1 rows in the first steps,
// the early stage where the paper locates NPO's reference-model bias.
constexpr std::size_t early_steps = 10;

inline std::string table(const std::vector<Scenario>& scenarios, double budget) {
    std::string text;
    for (const auto& scenario : scenarios) {
        const Trajectory& any = scenario.runs.front().second;
        append(text, "\n%s (%s)\n", scenario.name.c_str(), scenario.description.c_str());
        append(text, "Each method at its evaluated step closest to the retrained model on the forget set (lowest mean of\n"
                     "the two forget KL) while KL retain <= %.3g; KL(retrained || model), lower is better. f2/f1 gradient:\n"
                     "the forget gradient a forget2 row got per forget1 row's, over steps 1-%zu.\n", budget, early_steps);
        append(text, "  %-11s %5s %11s %11s %11s %16s\n", "method", "step", "KL retain", "KL forget1", "KL forget2",
               "f2/f1 gradient");
        append(text, "  %-11s %5s %11.4f %11.4f %11.4f\n", "(original)", "0", any.kl_retain.front(), any.kl_forget1.front(),
               any.kl_forget2.front());
        for (const auto& [method, t] : scenario.runs) {
            const double share = forget2_per_forget1(t.allocation, early_steps);
            if (const auto best = best_within(t, budget))
                append(text, "  %-11s %5lld %11.4f %11.4f %11.4f %16.2f\n", method.c_str(),
                       static_cast<long long>(t.step[*best]), t.kl_retain[*best], t.kl_forget1[*best],
                       t.kl_forget2[*best], share);
            else
                append(text, "  %-11s %5s %11s %11s %11s %16.2f   (above the budget at every step)\n", method.c_str(), "-",
                       "-", "-", "-", share);
        }
    }
    return text;
}

// Writes <dir>/<scenario>.dat and .gp, then renders <scenario>.png with gnuplot
// when it is installed. Returns the pictures made.
inline std::vector<std::filesystem::path> plot(const std::vector<Scenario>& scenarios,
                                               const std::filesystem::path& dir, std::FILE* log) {
    const bool have_gnuplot = std::system("command -v gnuplot > /dev/null 2>&1") == 0;
    std::vector<std::filesystem::path> pictures;
    for (const auto& scenario : scenarios) {
        const auto data = dir / (scenario.name + ".dat");
        const auto script = dir / (scenario.name + ".gp");
        const auto picture = dir / (scenario.name + ".png");
        std::string table;
        for (const auto& [method, t] : scenario.runs) {
            table += "# " + method + ": step kl_retain kl_forget1 kl_forget2\n";
            for (std::size_t i = 0; i < t.step.size(); ++i) {
                char line[128];
                std::snprintf(line, sizeof line, "%lld %.6g %.6g %.6g\n", static_cast<long long>(t.step[i]),
                              t.kl_retain[i], t.kl_forget1[i], t.kl_forget2[i]);
                table += line;
            }
            table += "\n\n";  // a gnuplot data block per method
        }
        simnpo::write_file_atomic(data, table);

        // Colour by forget loss, solid without a retain term, dashed with NLL
        // (run_methods' order: GA, NPO, SimNPO, then each + NLL).
        std::string styles;
        const char* colours[] = {"#7f7f7f", "#1f77b4", "#d62728"};
        for (int i = 0; i < 6; ++i)
            styles += "set style line " + std::to_string(i + 1) + " lc rgb '" + colours[i % 3] + "' lw 2 pt 7 ps 0.5 dt " +
                      (i < 3 ? "1" : "2") + "\n";
        std::string titles = "titles = \"";
        for (const auto& run : scenario.runs) titles += run.first + " ";
        titles += "\"\n";
        const std::string panel = [&] {
            std::string p;
            for (const int column : {3, 4}) {
                const std::string split = column == 3 ? "forget1" : "forget2";
                p += "set title '" + split + "'\nset ylabel 'KL(retrained || model) on " + split + " test'\n";
                p += "plot for [i=0:" + std::to_string(scenario.runs.size() - 1) + "] '" + data.filename().string() +
                     "' index i using 2:" + std::to_string(column) +
                     " with linespoints ls (i+1) title word(titles, i+1), \\\n"
                     "     '' index 0 every ::0::0 using 2:" + std::to_string(column) +
                     " with points pt 3 ps 2.5 lc rgb 'black' title 'original model'\n";
            }
            return p;
        }();
        simnpo::write_file_atomic(
            script, "# Renders " + picture.filename().string() + " from " + data.filename().string() +
                        ": gnuplot " + script.filename().string() + "\n" +
                        "set terminal pngcairo size 1400,560 font 'sans,11'\n" + "set output '" +
                        picture.filename().string() + "'\n" + styles + titles +
                        "set multiplot layout 1,2 title '" + scenario.description +
                        ": unlearning trajectories from the original model, a point per evaluation; "
                        "the retrained model is at 0, lower left is better'\n"
                        "set xlabel 'KL(retrained || model) on retain test (damage)'\n"
                        "set key top left\nset grid\nset logscale xy\n" +
                        panel + "unset multiplot\n");
        if (!have_gnuplot) continue;
        const std::string command =
            "cd '" + dir.string() + "' && gnuplot '" + script.filename().string() + "'";
        if (std::system(command.c_str()) != 0)
            simnpo::fail(script.string(), ": gnuplot failed");
        pictures.push_back(picture);
    }
    if (!have_gnuplot)
        std::fprintf(log, "gnuplot is not installed: the pictures' scripts are in %s (scripts/install-deps.sh installs it)\n",
                     dir.c_str());
    return pictures;
}

}  // namespace study

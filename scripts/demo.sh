#!/bin/sh
# The main demo, for now: `simnpo init` makes a small random GPT-2-shaped model,
# `simnpo logprobs` scores generated examples with it. Run from the repo root
# after a build (scripts/setup.sh does both); BUILD names the build directory.
set -eu

build=${BUILD:-build}
demo=$build/demo
mkdir -p "$demo"

cat > "$demo/config.json" <<'JSON'
{"vocab_size": 256, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 4}
JSON
"$build/bin/simnpo" init --config "$demo/config.json" --out "$demo/model" --seed 42

# 32 examples: prompts of 4-11 tokens, answers of 2-17 tokens, ids from a fixed LCG.
awk 'BEGIN {
    state = 12345
    for (i = 0; i < 32; i++) {
        line = "{\"prompt_ids\": ["
        for (t = 0; t < 4 + i % 8; t++) { state = (state * 1103515245 + 12345) % 2147483648; line = line (t ? ", " : "") int(state / 65536) % 256 }
        line = line "], \"answer_ids\": ["
        for (t = 0; t < 2 + i % 16; t++) { state = (state * 1103515245 + 12345) % 2147483648; line = line (t ? ", " : "") int(state / 65536) % 256 }
        print line "]}"
    }
}' > "$demo/data.jsonl"

"$build/bin/simnpo" logprobs --model "$demo/model" --data "$demo/data.jsonl" --out "$demo/logprobs.jsonl"
echo "first lines of $demo/logprobs.jsonl:"
head -n 3 "$demo/logprobs.jsonl"
# A freshly initialised model is close to uniform: about log(1/256) = -5.545 per token.
awk -F'[:,}]' '{ total += $2; tokens += $4 } END {
    printf "mean log-probability per answer token: %.4f (uniform over 256 tokens: %.4f)\n", total / tokens, -log(256)
}' "$demo/logprobs.jsonl"

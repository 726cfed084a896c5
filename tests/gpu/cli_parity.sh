#!/bin/sh
# The simnpo command with --device cuda against --device cpu: the same tiny
# model unlearned for 10 steps (SimNPO + NLL, AdamW) on each, then both
# results scored on each device; every log-likelihood must agree to float
# tolerance. Usage: tests/gpu/cli_parity.sh SIMNPO_BINARY WORK_DIR
set -eu
simnpo=$1
work=$2
rm -rf "$work" && mkdir -p "$work"
cat >"$work/config.json" <<'JSON'
{"vocab_size": 61, "n_positions": 32, "n_embd": 48, "n_layer": 2, "n_head": 4}
JSON
python3 - "$work" <<'PY'
import json, random, sys
rng = random.Random(5)
def rows(n):
    return "".join(json.dumps({"prompt_ids": [rng.randrange(61) for _ in range(rng.randint(1, 4))],
                               "answer_ids": [rng.randrange(61) for _ in range(rng.randint(1, 20))]}) + "\n"
                   for _ in range(n))
open(sys.argv[1] + "/forget.jsonl", "w").write(rows(12))
open(sys.argv[1] + "/retain.jsonl", "w").write(rows(16))
PY
"$simnpo" init --config "$work/config.json" --out "$work/start" --seed 3 >/dev/null
for device in cpu cuda; do
    "$simnpo" unlearn --model "$work/start" --forget "$work/forget.jsonl" --retain "$work/retain.jsonl" \
        --forget-loss simnpo --retain-loss nll --beta 0.5 --lr 1e-3 --batch-size 4 --steps 10 \
        --device "$device" --out "$work/unlearned-$device" >/dev/null
    for scorer in cpu cuda; do
        "$simnpo" logprobs --model "$work/unlearned-$device" --data "$work/forget.jsonl" --device "$scorer" \
            --out "$work/logprobs-$device-$scorer.jsonl"
    done
done
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
def read(name):
    return [json.loads(line)["logprob"] for line in open(f"{w}/logprobs-{name}.jsonl")]
reference = read("cpu-cpu")
worst = 0.0
for name in ("cpu-cuda", "cuda-cpu", "cuda-cuda"):
    for a, b in zip(reference, read(name)):
        worst = max(worst, abs(a - b) / max(1.0, abs(a)))
print(f"cli parity: worst relative difference {worst:.2e} over {len(reference)} examples")
sys.exit(0 if worst < 1e-3 else 1)
PY

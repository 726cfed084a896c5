#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.cpp) with clang and runs each
# for a while, from a few valid seed inputs.
#   tests/fuzz/run.sh [seconds per target, default 60] [build dir, default build-fuzz]
# Exits non-zero when any fuzzer finds a crash, a sanitizer error, a leak or a
# hang; the input that did it is kept in <build dir>/artifacts/.
set -euo pipefail

seconds=${1:-60}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${2:-$root/build-fuzz}
compiler=$(command -v clang++ || command -v clang++-14) || { echo "run.sh: clang++ not found" >&2; exit 2; }

cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER="$compiler" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSIMNPO_BUILD_FUZZERS=ON -DSIMNPO_WITH_CUDA=OFF -DSIMNPO_USE_DNNL=OFF -DSIMNPO_BUILD_TESTS=OFF -DSIMNPO_BUILD_EXAMPLES=OFF -DSIMNPO_BUILD_BENCHMARKS=OFF
cmake --build "$build" -j "${JOBS:-2}"

seed() {  # seed <target> <corpus dir>
    case $1 in
    fuzz_jsonl)
        printf '%s\n' '{"prompt_ids": [1, 2, 3], "answer_ids": [4, 5]}' \
            '{"prompt_ids": [49], "answer_ids": [0], "id": 7}' >"$2/lines.jsonl"
        printf '%s\r\n\r\n%s' '{"prompt_ids": [1], "answer_ids": [2]}' \
            '{"answer_ids": [3, 4], "prompt_ids": [5]}' >"$2/crlf.jsonl"
        printf '%s\n' '[' '  {"prompt_ids": [1, 2], "answer_ids": [3]},' \
            '  {"prompt_ids": [4], "answer_ids": [5, 6]}' ']' >"$2/array.json"
        ;;
    fuzz_config)
        printf '%s' '{"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,' \
            ' "layer_norm_epsilon": 1e-05, "model_type": "gpt2"}' >"$2/gpt2.json"
        printf '%s' '{"vocab_size": 11, "n_positions": 8, "n_embd": 8, "n_layer": 2, "n_head": 2}' >"$2/small.json"
        for variant in llama2 llama3 qwen2 mistral phi3; do  # the Llama family's readers
            cp "$root/tests/fixtures/llama/$variant/config.json" "$2/$variant.json"
        done
        ;;
    fuzz_tokenizer)
        # vocab.json, a NUL, merges.txt: the 256 byte tokens, "Ġt" and "he", and their rules.
        python3 - "$2" <<'PY'
import json, sys
printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
spelled, extra = {}, 0
for b in range(256):
    spelled[b] = chr(b) if b in printable else chr(0x100 + extra)
    extra += b not in printable
vocab = {spelled[b]: b for b in range(256)}
vocab.update({"\u0120t": 256, "he": 257, "<|endoftext|>": 258})
with open(sys.argv[1] + "/small", "wb") as out:
    out.write(json.dumps(vocab, ensure_ascii=False).encode() + b"\0" + "#version: 0.2\n\u0120 t\nh e\n".encode())
with open(sys.argv[1] + "/text", "wb") as out:
    out.write(b"the cat's 42 \xff\xfe  tea\n\xe2\x82\xac")
PY
        ;;
    fuzz_hf_tokenizer)
        # A tokenizer.json, a NUL, a text: a small byte-level one and a SentencePiece-style one.
        python3 - "$2" <<'PY'
import json, sys
printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
spelled, extra = {}, 0
for b in range(256):
    spelled[b] = chr(b) if b in printable else chr(0x100 + extra)
    extra += b not in printable
vocab = {spelled[b]: b for b in range(256)}
vocab.update({"\u0120t": 256, "he": 257})
byte_level = {"normalizer": {"type": "NFC"},
              "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                  {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}| ?\\p{L}+|\\s+(?!\\S)|\\s+|."},
                   "behavior": "Isolated", "invert": False},
                  {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
              "added_tokens": [{"id": 258, "content": "<|x|>", "special": True, "rstrip": True, "normalized": False}],
              "decoder": {"type": "ByteLevel"},
              "model": {"type": "BPE", "vocab": vocab, "merges": ["\u0120 t", "h e"], "ignore_merges": True}}
spm = {"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                           {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
       "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
       "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                    {"type": "ByteFallback"}, {"type": "Fuse"},
                                                    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
       "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}],
                          "special_tokens": {"<s>": {"id": "<s>", "ids": [1]}}},
       "model": {"type": "BPE", "vocab": {"<unk>": 0, "<s>": 1, "a": 2, "b": 3, "ab": 4, "\u2581": 5, "<0x41>": 6},
                 "merges": [["a", "b"]], "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True}}
for name, doc in (("byte_level", byte_level), ("spm", spm)):
    with open(sys.argv[1] + "/" + name, "wb") as out:
        out.write(json.dumps(doc, ensure_ascii=False).encode() + b"\0" + "The cat's 1234 \u00e9e\u0301 <|x|>  A<s>\xff".encode("utf-8", "surrogateescape"))
PY
        ;;
    fuzz_trainer_state)
        printf '%s\n' '{"step": 4, "optimizer_step": 4, "run": {"seed": 0, "batch_size": 8, "lr": 1e-05,' \
            '"optimizer": "adamw", "forget_data": "00aa11bb22cc33dd", "schedule": "cosine"}}' >"$2/state.json"
        printf '%s' '{"step": 0, "optimizer_step": 0, "run": {}}' >"$2/empty_run.json"
        ;;
    fuzz_safetensors)
        python3 - "$2" <<'PY'
import json, struct, sys
def write(path, header, data):
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)) + text + data)
write(sys.argv[1] + "/two.safetensors",
      {"__metadata__": {"format": "pt"},
       "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
       "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}},
      struct.pack("<6f", 1, -2, 0.5, 3, 0, 1e-3))
write(sys.argv[1] + "/empty.safetensors", {}, b"")
with open(sys.argv[1] + "/index.json", "w") as out:  # a shard index, for parse_weight_index
    json.dump({"metadata": {"total_size": 24}, "weight_map": {"w": "model-00001-of-00002.safetensors",
                                                              "b": "model-00002-of-00002.safetensors"}}, out)
PY
        ;;
    esac
}

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
shopt -s nullglob
failed=()
for source in "$root"/tests/fuzz/fuzz_*.cpp; do
    name=$(basename "$source" .cpp)
    corpus=$build/corpus/$name
    mkdir -p "$corpus" "$build/artifacts"
    seed "$name" "$corpus"
    echo "== $name: ${seconds}s"
    # libFuzzer's progress lines go to a log; shown only when the target fails.
    log=$build/$name.log
    if "$build/fuzz/$name" "$corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$build/artifacts/$name-" -print_final_stats=1 >"$log" 2>&1; then
        grep -E "^(Done|stat::peak_rss_mb)" "$log" || true
    else
        tail -n 60 "$log"
        failed+=("$name")
    fi
done
if ((${#failed[@]})); then
    echo "run.sh: failed: ${failed[*]} (inputs in $build/artifacts)" >&2
    exit 1
fi
echo "run.sh: all fuzzers ran ${seconds}s without a finding"

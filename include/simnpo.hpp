// simnpo: LLM unlearning (SimNPO and its family) in header-only C++20.
// The one header users include for the CPU backend; <simnpo/cuda.hpp> adds the GPU.
#pragma once

#define SIMNPO_UMBRELLA_INCLUDE

#include "simnpo/core/error.hpp"
#include "simnpo/core/rng.hpp"
#include "simnpo/core/threads.hpp"
#include "simnpo/core/grad_store.hpp"
#include "simnpo/core/interrupt.hpp"
#include "simnpo/core/fingerprint.hpp"
#include "simnpo/core/file.hpp"
#include "simnpo/core/json.hpp"
#include "simnpo/core/read_limits.hpp"

#include "simnpo/backend/cpu/common.hpp"
#include "simnpo/backend/cpu/matmul.hpp"
#include "simnpo/backend/cpu/layernorm.hpp"
#include "simnpo/backend/cpu/rmsnorm.hpp"
#include "simnpo/backend/cpu/rope.hpp"
#include "simnpo/backend/cpu/elementwise.hpp"
#include "simnpo/backend/cpu/attention.hpp"
#include "simnpo/backend/cpu/softmax.hpp"
#include "simnpo/backend/cpu/optimizer.hpp"

#include "simnpo/model/config.hpp"
#include "simnpo/model/layout.hpp"
#include "simnpo/data/example.hpp"
#include "simnpo/model/gpt.hpp"
#include "simnpo/model/init.hpp"
#include "simnpo/model/safetensors.hpp"
#include "simnpo/model/weights.hpp"
#include "simnpo/model/io.hpp"
#include "simnpo/model/generate.hpp"
#include "simnpo/tokenizer/unicode.hpp"
#include "simnpo/tokenizer/bpe.hpp"
#include "simnpo/tokenizer/train.hpp"
#include "simnpo/data/text.hpp"
#include "simnpo/data/jsonl.hpp"
#include "simnpo/data/markov.hpp"

#include "simnpo/loss/sequence.hpp"
#include "simnpo/loss/forget.hpp"
#include "simnpo/loss/retain.hpp"
#include "simnpo/loss/concepts.hpp"
#include "simnpo/loss/reference.hpp"
#include "simnpo/loss/objective.hpp"

#include "simnpo/optim/schedule.hpp"
#include "simnpo/optim/clip.hpp"
#include "simnpo/optim/sgd.hpp"
#include "simnpo/optim/adamw.hpp"

#include "simnpo/train/order.hpp"
#include "simnpo/train/checkpoint.hpp"
#include "simnpo/train/loop.hpp"
#include "simnpo/train/callbacks.hpp"

#include "simnpo/eval/divergence.hpp"
#include "simnpo/eval/ks_test.hpp"
#include "simnpo/eval/rouge.hpp"
#include "simnpo/eval/tofu.hpp"
#include "simnpo/eval/mia.hpp"
#include "simnpo/eval/memorization.hpp"
#include "simnpo/eval/privacy.hpp"
#include "simnpo/eval/relearn.hpp"

#undef SIMNPO_UMBRELLA_INCLUDE

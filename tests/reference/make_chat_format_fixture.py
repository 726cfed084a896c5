#!/usr/bin/python3
"""Step 1 of 2 for tests/fixtures/hf_tokenizers/chat_format.json: renders the chat templates of
llama-2, llama-3.1, qwen2.5 and phi-3 (shared/data/hf-tokenizers/NAME/tokenizer_config.json) on a few
(question, answer) pairs, as transformers' apply_chat_template renders them, and writes the texts to
build-hftok/chat_format_rendered.json (git ignores build-hftok/). Step 2,
tests/reference/make_chat_format_fixture.js, encodes them with npm tokenizers@0.23.2 and writes the
fixture. Run from the repository root:

  /usr/bin/python3 tests/reference/make_chat_format_fixture.py          (Debian's python3-jinja2)
  NODE_PATH=build-hftok/npm/node_modules node tests/reference/make_chat_format_fixture.js

(build-hftok/npm as set up at the top of tests/reference/make_hf_tokenizer_fixture.js.) Reruns write
the same bytes.

Rendering, as transformers does it: jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]), its tojson filter replaced by
json.dumps(ensure_ascii=False, ...), a raise_exception global that raises, and the context messages,
bos_token, eos_token (tokenizer_config.json's, a string or {"content": ...}; null -> "") and
add_generation_prompt. For each pair (q, a):
  prompt        = render([user q], add_generation_prompt=True)
  conversation  = render([user q, assistant a], add_generation_prompt=False)
"""

import json
import pathlib

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "build-hftok" / "chat_format_rendered.json"

NAMES = ["llama-2", "llama-3.1", "qwen2.5", "phi-3"]


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def token_text(token):
    if token is None:
        return ""
    if isinstance(token, dict):
        return token["content"]
    return token


def pairs():
    rows = [json.loads(line) for line in (SHARED / "tofu" / "forget01.jsonl").read_text(encoding="utf-8").splitlines() if line]
    out = [(rows[i]["question"], rows[i]["answer"]) for i in (0, 13, 27)]
    out.append((rows[35]["question"], "  \n " + rows[35]["answer"] + "\n\n  "))
    out.append(("Qui a écrit « Le Petit Prince » ? 📚",
                "Antoine de Saint-Exupéry — 1943年に出版されました。 ✈️ Grüße, naïve café\u00a0!"))
    out.append(("", "Nothing was asked."))
    return out


def main():
    env = environment()
    records = []
    for name in NAMES:
        config = json.loads((SHARED / "hf-tokenizers" / name / "tokenizer_config.json").read_text(encoding="utf-8"))
        template = env.from_string(config["chat_template"])
        bos, eos = token_text(config.get("bos_token")), token_text(config.get("eos_token"))

        def render(messages, add_generation_prompt):
            return template.render(messages=messages, bos_token=bos, eos_token=eos,
                                   add_generation_prompt=add_generation_prompt)

        for question, answer in pairs():
            user = {"role": "user", "content": question}
            records.append({
                "tokenizer": name, "question": question, "answer": answer,
                "prompt": render([user], True),
                "conversation": render([user, {"role": "assistant", "content": answer}], False),
            })
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(records)} records")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Writes tests/fixtures/chat_templates.json: chat templates rendered by Python's jinja2, as
transformers' apply_chat_template renders them, for tests/test_chat_template.cpp.

transformers compiles a template with ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[..., jinja2.ext.loopcontrols]), replaces the tojson filter by json.dumps(ensure_ascii=False,
sort_keys=False, ...), adds the global raise_exception (raises TemplateError(message)), and renders with
messages, add_generation_prompt, bos_token and eos_token (the renderer under test passes nothing else, so
tools, documents and the other special tokens stay undefined here too).

The cases: the four real templates in shared/data/hf-tokenizers (referenced by folder name) on a set of
conversations, with add_generation_prompt true and false; then small hand-written templates (inline), one
construct each. A case where jinja2 raises records the error: "raised" (raise_exception's message,
which must match exactly) or "other" (any other failure; the C++ side must fail too).

Run: /usr/bin/python3 tests/reference/make_chat_template_fixture.py   (Debian's python3-jinja2)
"""

import json
import pathlib

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SHARED = ROOT.parent / "shared" / "data" / "hf-tokenizers"
OUT = HERE.parent / "fixtures" / "chat_templates.json"

REAL = ["llama-2", "llama-3.1", "qwen2.5", "phi-3"]


class Raised(jinja2.exceptions.TemplateError):
    """What the template's raise_exception(...) raises (transformers raises TemplateError)."""


def raise_exception(message):
    raise Raised(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers' override of Jinja's tojson (which would escape HTML characters and sort keys)
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


ENV = environment()


def token_text(token):
    if token is None:
        return ""
    if isinstance(token, dict):
        return token["content"]
    return token


def render(source, messages, bos, eos, add_generation_prompt):
    try:
        template = ENV.from_string(source)
        text = template.render(messages=messages, bos_token=bos, eos_token=eos,
                               add_generation_prompt=add_generation_prompt)
        return {"expected": text}
    except Raised as error:
        return {"error": "raised", "message": str(error)}
    except Exception as error:  # noqa: BLE001 (any failure of jinja2 is an expected failure)
        return {"error": "other", "message": f"{type(error).__name__}: {error}"}


def m(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "single_user": [m("user", "Hello!")],
    "system_user": [m("system", "You are a helpful assistant."), m("user", "What is 2+2?")],
    "multi_turn": [m("user", "Hi"), m("assistant", "Hello! How can I help?"), m("user", "Tell me a joke."),
                   m("assistant", "Why did the chicken cross the road?"), m("user", "Why?")],
    "system_multi_turn": [m("system", "Be brief."), m("user", "Name a colour."), m("assistant", "Blue."),
                          m("user", "Another?")],
    "whitespace": [m("system", "  spaced system \n"), m("user", "\n\t leading and trailing \n\n"),
                   m("assistant", "  answer with spaces  "), m("user", "line one\nline two\n")],
    "unicode": [m("user", "Grüße, 世界! 🌍 ça va?"), m("assistant", "Très bien — 谢谢 😀"),
                m("user", "\u3000wide space and nbsp\u00a0")],
    "empty_content": [m("user", ""), m("assistant", ""), m("user", "")],
    "template_like_content": [m("user", "{{ not a tag }} {% if %} {# no #} \\n 'quotes' \"double\"")],
    "assistant_first": [m("assistant", "I start."), m("user", "Fine.")],
    "two_users": [m("user", "One."), m("user", "Two.")],
    "system_only": [m("system", "Only a system message.")],
    "tool_turns": [m("user", "Weather in Paris?"), m("assistant", "Let me check."),
                   m("tool", "{\"temp\": 21, \"sky\": \"clear\"}"), m("tool", "second result é"),
                   m("user", "Thanks.")],
    "ipython_turn": [m("user", "Run it."), m("ipython", "output\nline")],
    "system_not_first": [m("user", "Hi"), m("system", "Late system."), m("assistant", "Ok")],
}

DEFAULT_MESSAGES = CONVERSATIONS["system_multi_turn"]

# Hand-written templates: (name, template, conversation name or None for DEFAULT_MESSAGES).
HAND_WRITTEN = [
    ("loop_vars",
     "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/"
     "{{ loop.length }}/{{ loop.first }}/{{ loop.last }}:{{ m.role }};{% endfor %}", None),
    ("loop_prev_next",
     "{% for m in messages %}[{{ loop.previtem.role if loop.previtem is defined else '-' }}>"
     "{{ m.role }}>{{ loop.nextitem.role if loop.nextitem is defined else '-' }}]{% endfor %}", None),
    ("loop_else", "{% for m in messages if m.role == 'nobody' %}x{% else %}none matched{% endfor %}", None),
    ("loop_filter", "{% for m in messages if m.role == 'user' %}{{ loop.index }}of{{ loop.length }}:{{ m.content }} {% endfor %}", None),
    ("nested_loops",
     "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.depth }}{% if loop.last %};{% endif %}{% endfor %}"
     "{{ loop.depth }}{% endfor %}", None),
    ("tuple_unpack", "{% for k, v in [['a', 1], ('b', 2), 'cd'] %}{{ k }}={{ v }},{% endfor %}"
     "{% set x, y = 'pq' %}{{ y }}{{ x }}", None),
    ("break_continue",
     "{% for i in [1, 2, 3, 4, 5] %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}"
     "{{ i }}{% endfor %}", None),
    ("namespace",
     "{% set ns = namespace(count=0, last='') %}{% for m in messages %}{% set ns.count = ns.count + 1 %}"
     "{% set ns.last = m.role %}{% endfor %}{{ ns.count }} {{ ns.last }} {{ ns.missing is defined }}", None),
    ("scoping",
     "{% set a = 'outer' %}{% for m in messages %}{{ a }}{% set a = 'inner' ~ loop.index %}{{ a }} {% endfor %}"
     "{{ a }}{% if true %}{% set a = 'if' %}{% endif %} {{ a }}", None),
    ("scoping_fresh_iteration",
     "{% for i in [1, 2, 3] %}{% if loop.first %}{% set seen = 'yes' %}{% endif %}[{{ seen }}]{% endfor %}", None),
    ("set_block", "{% set greeting %}Hello {{ messages[0].role }}!{% endset %}{{ greeting | length }}:{{ greeting }}", None),
    ("elif",
     "{% for m in messages %}{% if m.role == 'system' %}S{% elif m.role == 'user' %}U{% elif m.role == 'assistant' %}A"
     "{% else %}?{% endif %}{% endfor %}", "tool_turns"),
    ("whitespace_control", "a  {{- ' b ' -}}  c\n  {%- if true -%}\n  d  {%- endif %}  e  {#- comment -#}  f", None),
    ("trim_blocks",
     "{% if true %}\nline1\n{% endif %}\nline2\n{# comment #}\nline3\n{% if true +%}\nkept newline\n{%- endif %}\n", None),
    ("lstrip_blocks",
     "start\n    {% if true %}\n    indented\n    {% endif %}\n\t{# tab comment #}\nx  {% if true %}not at line start{% endif %}\n"
     "    {%+ if true %}plus keeps{% endif %}\n  {{ 'variables are not lstripped' }}\n", None),
    ("whitespace_mixed",
     "a\n  {%- if true %}\nb\n  {%+ endif %}\nc\n{% for m in messages -%}\n  {{ m.role }}\n{%- endfor %}\n"
     "{%- if true -%}\n\n  x\n\n{%- endif -%}\n{{- 'a' }}  {{- 'b' -}}  {{ 'c' }}\nx {%- if true %} {% endif -%} y\n"
     "{% if true %}   \nx{% endif %}\n  {# a comment #}\n  {{ 'v' }}\n\u3000{% if true %}ideographic space{% endif %}\n"
     "{{ 'w' -}}\u3000 z", None),
    ("scoping_nested",
     "{% set outer = 'o' %}{% for a in [1] %}{% for b in [2] %}{{ outer }}{% set outer = 'i' %}{{ outer }}{% endfor %}"
     "{{ outer }}{% endfor %}{{ outer }} {% for m in messages %}{{ loop.index }}{% for n in [1] %}{{ loop.index }}"
     "{% endfor %}{{ loop.index }}{% endfor %} {% set ns = namespace(found=false) %}{% for m in messages %}"
     "{% if m.role == 'assistant' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}", None),
    ("integer_literals", "{{ 0 }} {{ 00 }} {{ 0_0 }} {{ 0b101 }} {{ 0o17 }} {{ 0XfF }} {{ 1_000 }} {{ 'a' if 1else 'b' }}",
     None),
    ("python_repr", "{{ [\"it's\", '\\n', 'q\"q', 'both\\'\"', '\\x01\\x7f\\xa0\\xad\\u2028é'] }} {{ messages[0] }}",
     None),
    ("lstrip_after_trimmed_newline", "{% if true %}\n  {% if true %}\n  inner\n  {% endif %}\n{% endif %}\nend", None),
    ("trailing_newline", "text\n", None),
    ("crlf_newlines", "{% if true %}\r\na\r\n{% endif %}\r\nb\r\n", None),
    ("slicing",
     "{{ messages[1:] | length }} {{ messages[:1][0].role }} {{ messages[-1].content }} {{ 'abcdef'[1:4] }} "
     "{{ 'abcdef'[::-1] }} {{ 'abcdef'[::2] }} {{ [1, 2, 3, 4][-2:] }} {{ 'héllo'[1] }} {{ 'abc'[5] }}|", None),
    ("subscripts_attributes",
     "{{ messages[0]['role'] }} {{ messages[0].content }} {{ messages[0].missing }}|{{ messages[0]['missing'] is defined }} "
     "{{ messages.0.role }} {{ {'a': {'b': 'nested'}}.a.b }}", None),
    ("filters_strings",
     "[{{ '  padded\n' | trim }}] [{{ 'xxhixx' | trim('x') }}] {{ 'abc' | length }} {{ 'héllo' | length }} "
     "{{ 'Hello' | upper }} {{ 'Hello' | lower }} {{ 'a-b-c' | replace('-', '+') }} {{ 5 | string }} "
     "{{ undefined_thing | default('dflt') }} {{ '' | default('empty', true) }} {{ '' | d('kept') }}|", None),
    ("filters_sequences",
     "{{ messages | map(attribute='role') | join(', ') }} | {{ ['a', 'b', 'c'] | reject('equalto', 'b') | join }} | "
     "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join('/') }} | "
     "{{ messages | rejectattr('role', 'in', ['user', 'system']) | list | length }} | "
     "{{ [1, 2, 3, 4] | select('odd') | list }} | {{ (messages | first).attr_missing is defined }} "
     "{{ (messages | last).content }} {{ messages | join('-', attribute='role') }} | {{ [0, 1, '', 'x'] | select | list }}"
     " | {{ ['a', 'b'] | map('upper') | join }} | {{ {'k': 1, 'j': 2} | items | list }} | {{ 'xyz' | list }}", None),
    ("tojson",
     "{{ messages[0] | tojson }}\n{{ {'b': [1, 'é', none, true, {}], 'a': []} | tojson(indent=2) }}\n"
     "{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ 'quote\" back\\\\ \n\t <&>' | tojson }} "
     "{{ ['é'] | tojson(ensure_ascii=true) }} {{ [1, 2] | tojson(separators=(',', ':')) }}", None),
    ("tests",
     "{{ messages is defined }} {{ tools is defined }} {{ tools is not defined }} {{ none is none }} "
     "{{ messages[0].role is string }} {{ 3 is number }} {{ 3 is integer }} {{ true is boolean }} "
     "{{ messages[0] is mapping }} {{ messages is iterable }} {{ messages is sequence }} {{ 3 is odd }} "
     "{{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 'a' is in 'cat' }} {{ 2 is equalto 2 }} {{ tools is iterable }} "
     "{{ 'x' is mapping }} {{ 1 is true }} {{ false is false }} {{ 5 is gt 3 }} {{ 5 is ne(5) }}", None),
    ("string_escapes",
     "{{ 'tab\\there' }}|{{ \"dq 'single' \\\"double\\\"\" }}|{{ 'new\\nline' }}|{{ '\\x41\\u00e9\\U0001F600' }}|"
     "{{ 'unknown \\q escape' }}|{{ 'oct\\101' }}|{{ 'back\\\\slash' }}|{{ 'adjacent ' 'strings' }}|{{ '\\é' }}", None),
    ("operators",
     "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 + 3 * 4 }} {{ (2 + 3) * 4 }} {{ -3 + 1 }} "
     "{{ 'ab' * 3 }} {{ [1] + [2, 3] }} {{ 'a' ~ 1 ~ none ~ true ~ undefined_thing }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} "
     "{{ 'a' in 'cat' }} {{ 'role' in messages[0] }} {{ 'zzz' not in messages[0] }} {{ 2 in [1, 2] }} "
     "{{ 1 == true }} {{ 0 == false }} {{ 'a' == 'a' and not 'b' == 'a' }} {{ 0 or 'fallback' }} {{ 'x' and 'y' }} "
     "{{ 'yes' if messages else 'no' }} [{{ 'never' if false }}] {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} "
     "{{ (1, 2) == [1, 2] }} {{ none == none }} {{ undefined_thing == undefined_other }}", None),
    ("literals_printing",
     "{{ [1, 'two', none, true, false, ('t',), (1, 2), {'k': \"it's\"}, {}, []] }} {{ none }} {{ true }} "
     "{{ {'a': 1, 'b': [2]} }} {{ 1_000 }} {{ 'x' }}{{ undefined_thing }}|", None),
    ("methods",
     "[{{ '  x  '.strip() }}][{{ '  x  '.lstrip() }}][{{ '  x  '.rstrip() }}][{{ '--x--'.strip('-') }}]"
     "{{ 'Hello'.upper() }}{{ 'Hello'.lower() }} {{ 'hello'.startswith('he') }} {{ 'hello'.endswith(('x', 'lo')) }} "
     "{{ 'a,b,,c'.split(',') }} {{ '  a  b \n c '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'aaa'.replace('a', 'b', 2) }} {{ ' a b '.split(None, 1) }} {{ 'abc'.replace('', '-') }} "
     "{{ messages[0].get('role') }} {{ messages[0].get('nope', 'dflt') }} {{ messages[0].get('nope') }} "
     "{{ messages[0].keys() | list }} {% for k, v in messages[0].items() %}{{ k }}:{{ v | length }} {% endfor %}"
     "{{ messages[0].values() | list | length }}", None),
    ("unicode_strip", "{% for m in messages %}[{{ m.content | trim }}][{{ m.content.strip() }}]{% endfor %}", "unicode"),
    ("undefined_values",
     "{{ nothing }}|{{ nothing | length }}|{{ nothing | trim }}|{% for x in nothing %}x{% endfor %}|{{ not nothing }}|"
     "{{ nothing is none }}|{{ 'a' in nothing }}|{% if nothing %}t{% else %}f{% endif %}|{{ nothing | join(',') }}|"
     "{{ messages[0].nothing | default('d') }}|{{ nothing | items | list }}", None),
    ("bos_eos_generation",
     "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"
     "{% if add_generation_prompt %}<gen>{% endif %}", None),
    # expected failures
    ("raise_in_loop",
     "{% for m in messages %}{% if m.role == 'assistant' %}{{ raise_exception('no assistant allowed: ' ~ m.content) }}"
     "{% endif %}{{ m.content }}{% endfor %}", None),
    ("undefined_attribute_error", "{{ nothing.attr }}", None),
    ("undefined_arithmetic_error", "{{ nothing + 'x' }}", None),
    ("type_error_concat", "{{ 'a' + 1 }}", None),
    ("generator_length_error", "{{ messages | reject('equalto', 1) | length }}", None),
    ("tojson_undefined_error", "{{ nothing | tojson }}", None),
    ("ns_attr_on_non_namespace", "{% set x = messages[0] %}{% set x.role = 'y' %}", None),
    ("compare_types_error", "{{ 1 < 'a' }}", None),
]


def main():
    cases = []
    for folder in REAL:
        config = json.loads((SHARED / folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        source = config["chat_template"]
        bos = token_text(config.get("bos_token"))
        eos = token_text(config.get("eos_token"))
        for conversation, messages in CONVERSATIONS.items():
            for add_generation_prompt in (False, True):
                case = {"name": f"{folder}/{conversation}/{'gen' if add_generation_prompt else 'nogen'}",
                        "template": folder, "messages": messages, "bos_token": bos, "eos_token": eos,
                        "add_generation_prompt": add_generation_prompt}
                case.update(render(source, messages, bos, eos, add_generation_prompt))
                cases.append(case)
    for name, source, conversation in HAND_WRITTEN:
        messages = CONVERSATIONS[conversation] if conversation else DEFAULT_MESSAGES
        for add_generation_prompt in (False, True):
            case = {"name": f"inline/{name}/{'gen' if add_generation_prompt else 'nogen'}", "source": source,
                    "messages": messages, "bos_token": "<s>", "eos_token": "</s>",
                    "add_generation_prompt": add_generation_prompt}
            case.update(render(source, messages, "<s>", "</s>", add_generation_prompt))
            cases.append(case)
            if name not in ("bos_eos_generation",):
                break  # the others do not read add_generation_prompt
    OUT.write_text(json.dumps({"generator": "tests/reference/make_chat_template_fixture.py",
                               "jinja2": jinja2.__version__, "cases": cases},
                              ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    errors = sum(1 for c in cases if "error" in c)
    print(f"{OUT}: {len(cases)} cases ({errors} expected errors)")


if __name__ == "__main__":
    main()

// Step 2 of 2 for tests/fixtures/hf_tokenizers/chat_format.json: reads the chat
// texts that tests/reference/make_chat_format_fixture.py rendered (step 1) into
// build-hftok/chat_format_rendered.json and encodes each prompt and
// conversation with Hugging Face's Rust `tokenizers` (npm tokenizers@0.23.2,
// pinned in tests/reference/hf_tokenizers/package*.json), addSpecialTokens
// false (the templates write the special tokens themselves). Run from the
// repository root:
//
//   /usr/bin/python3 tests/reference/make_chat_format_fixture.py
//   NODE_PATH=build-hftok/npm/node_modules node tests/reference/make_chat_format_fixture.js
//
// (build-hftok/npm as set up at the top of make_hf_tokenizer_fixture.js.)
// A rerun writes the same bytes.
//
// The fixture: a JSON array of {"tokenizer", "question", "answer", "prompt",
// "conversation", "prompt_ids", "conversation_ids"}, one object a line.
'use strict';
const fs = require('fs');
const path = require('path');

const version = require('tokenizers/package.json').version;
if (version !== '0.23.2') throw new Error(`expected tokenizers 0.23.2, found ${version}`);
const { Tokenizer } = require('tokenizers');

const repo = path.resolve(__dirname, '..', '..');
const shared = path.resolve(repo, '..', 'shared', 'data', 'hf-tokenizers');
const IN = path.join(repo, 'build-hftok', 'chat_format_rendered.json');
const OUT = path.join(repo, 'tests', 'fixtures', 'hf_tokenizers', 'chat_format.json');

async function main() {
  const records = JSON.parse(fs.readFileSync(IN, 'utf8'));
  const tokenizers = new Map();
  const out = [];
  for (const r of records) {
    if (!tokenizers.has(r.tokenizer))
      tokenizers.set(r.tokenizer, Tokenizer.fromFile(path.join(shared, r.tokenizer, 'tokenizer.json')));
    const tok = tokenizers.get(r.tokenizer);
    const encode = async text => (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
    const promptIds = await encode(r.prompt);
    const conversationIds = await encode(r.conversation);
    out.push({
      tokenizer: r.tokenizer, question: r.question, answer: r.answer, prompt: r.prompt,
      conversation: r.conversation, prompt_ids: promptIds, conversation_ids: conversationIds,
    });
  }
  const text = '[\n' + out.map(o => JSON.stringify(o)).join(',\n') + '\n]\n';
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, text);
  console.log(`wrote ${path.relative(repo, OUT)}: ${out.length} records, ${text.length} bytes`);
}

main().catch(e => { console.error(e); process.exit(1); });

// Encode speed of Hugging Face's Rust `tokenizers` (its Node binding, npm
// tokenizers@0.23.2, pinned in tests/reference/hf_tokenizers/package*.json)
// with the Llama 3.1 tokenizer on every question and answer of TOFU's
// full.jsonl: the npm side of benchmarks/compare_tokenizer.py, whose other side
// is bench_tokenizer (benchmarks/bench_tokenizer.cpp). Run from the repository root:
//
//   mkdir -p build-hftok/npm && cp tests/reference/hf_tokenizers/package*.json build-hftok/npm/
//   npm ci --prefix build-hftok/npm
//   OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 NODE_PATH=build-hftok/npm/node_modules \
//     node benchmarks/tokenizer_npm.js [FULL_JSONL] [REPETITIONS] [--mode encode|batch|pipelined|all]
//     [--tokenizer TOKENIZER_JSON]
//
// FULL_JSONL defaults to ../shared/data/tofu/full.jsonl, REPETITIONS to 5,
// TOKENIZER_JSON to ../shared/data/hf-tokenizers/llama-3.1/tokenizer.json,
// --mode to "encode,batch". The strings are the "question" then the "answer"
// of each line, in file order.
//
// In 0.23.2 every encode is asynchronous (it returns a Promise and runs on a
// libuv worker thread), and there is no synchronous encode. The modes:
//   encode     one `await tok.encode(text, null, {addSpecialTokens: false})`
//              and `.getIds()` per string, one after the other: one thread
//              works at a time (the main thread waits while a worker encodes).
//              This is the single-thread figure.
//   batch      one `await tok.encodeBatch(strings, {addSpecialTokens: false})`,
//              then `.getIds()` of each encoding. The batch runs on Rayon's
//              pool: set RAYON_NUM_THREADS=1 (the script refuses to run this
//              mode otherwise) for one thread.
//   pipelined  every encode started at once and awaited together; needs
//              UV_THREADPOOL_SIZE=1, so that one worker encodes while the main
//              thread turns finished encodings into arrays (two threads busy at
//              once, so not a strict single-thread figure). Only when asked for.
//
// Output: one JSON line for the load (Tokenizer.fromFile), then one per mode
// and repetition (the tokenizer is loaded once; "cold" marks the first run,
// when its cache is empty):
//   {"impl": "npm tokenizers 0.23.2", "mode": "load", "seconds": s}
//   {"impl": "npm tokenizers 0.23.2", "mode": ..., "repetition": i, "cold": c, "seconds": s,
//    "cpu_seconds": the process's CPU time (all threads) over the same span,
//    "strings": n, "ids": total ids, "checksum": sum of all ids}
// The checksum and id count are what bench_tokenizer must print too.
'use strict';
const fs = require('fs');
const path = require('path');

const version = require('tokenizers/package.json').version;
if (version !== '0.23.2') throw new Error(`expected tokenizers 0.23.2, found ${version}`);
const { Tokenizer } = require('tokenizers');

const repo = path.resolve(__dirname, '..');
const positional = [];
let modes = ['encode', 'batch'];
let tokenizerPath = path.resolve(repo, '..', 'shared', 'data', 'hf-tokenizers', 'llama-3.1', 'tokenizer.json');
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const value = () => { if (i + 1 >= argv.length) throw new Error(`${a} needs a value`); return argv[++i]; };
  if (a === '--mode') {
    const v = value();
    modes = v === 'all' ? ['encode', 'batch', 'pipelined'] : v.split(',');
  } else if (a === '--tokenizer') tokenizerPath = path.resolve(value());
  else if (a === '-h' || a === '--help') {
    console.log('usage: node benchmarks/tokenizer_npm.js [FULL_JSONL] [REPETITIONS] [--mode encode|batch|pipelined|all] [--tokenizer FILE]');
    process.exit(0);
  } else positional.push(a);
}
const jsonlPath = path.resolve(positional[0] ?? path.join(repo, '..', 'shared', 'data', 'tofu', 'full.jsonl'));
const repetitions = Number(positional[1] ?? 5);
if (!Number.isInteger(repetitions) || repetitions < 1) throw new Error(`bad repetition count ${positional[1]}`);
for (const m of modes)
  if (!['encode', 'batch', 'pipelined'].includes(m)) throw new Error(`unknown mode ${m}`);
if (modes.includes('batch') && process.env.RAYON_NUM_THREADS !== '1')
  throw new Error('mode batch needs RAYON_NUM_THREADS=1 in the environment (one Rayon thread)');
if (modes.includes('pipelined') && process.env.UV_THREADPOOL_SIZE !== '1')
  throw new Error('mode pipelined needs UV_THREADPOOL_SIZE=1 in the environment (one libuv worker)');

const strings = [];
for (const line of fs.readFileSync(jsonlPath, 'utf8').split('\n')) {
  if (line.trim() === '') continue;
  const row = JSON.parse(line);
  for (const key of ['question', 'answer']) {
    if (typeof row[key] !== 'string') throw new Error(`a line of ${jsonlPath} has no string "${key}"`);
    strings.push(row[key]);
  }
}

const loadStart = process.hrtime.bigint();
const tok = Tokenizer.fromFile(tokenizerPath);
const loadSeconds = Number(process.hrtime.bigint() - loadStart) / 1e9;
const options = { addSpecialTokens: false };

function tally(idLists) {
  let ids = 0, checksum = 0;
  for (const list of idLists) {
    ids += list.length;
    for (const id of list) checksum += id;
  }
  return { ids, checksum };
}

async function runOnce(mode) {
  const out = new Array(strings.length);
  const cpuStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  if (mode === 'encode') {
    for (let i = 0; i < strings.length; i++) out[i] = (await tok.encode(strings[i], null, options)).getIds();
  } else if (mode === 'batch') {
    const encodings = await tok.encodeBatch(strings, options);
    for (let i = 0; i < encodings.length; i++) out[i] = encodings[i].getIds();
  } else {
    const pending = strings.map(s => tok.encode(s, null, options).then(e => e.getIds()));
    const lists = await Promise.all(pending);
    for (let i = 0; i < lists.length; i++) out[i] = lists[i];
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpuStart);
  return { seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, ...tally(out) };
}

async function main() {
  console.log(JSON.stringify({ impl: `npm tokenizers ${version}`, mode: 'load', seconds: Number(loadSeconds.toFixed(6)) }));
  let cold = true;
  for (const mode of modes) {
    for (let r = 0; r < repetitions; r++) {
      const { seconds, cpuSeconds, ids, checksum } = await runOnce(mode);
      console.log(JSON.stringify({
        impl: `npm tokenizers ${version}`, mode, repetition: r, cold, seconds: Number(seconds.toFixed(6)),
        cpu_seconds: Number(cpuSeconds.toFixed(6)), strings: strings.length, ids, checksum,
      }));
      cold = false;
    }
  }
}
main().catch(err => { console.error(err); process.exit(1); });

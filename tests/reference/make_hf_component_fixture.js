// Writes tests/fixtures/hf_tokenizers/components.json: small hand-built
// tokenizer.json documents, one component option each (the corners that the
// five real tokenizers in ../shared/data/hf-tokenizers do not reach), with the
// ids and decodings that Hugging Face's Rust `tokenizers` (its Node binding,
// npm `tokenizers@0.23.2`, pinned in tests/reference/hf_tokenizers/package*.json)
// gives for a few strings chosen to hit each option's edge cases. Run from the
// repository root:
//
//   mkdir -p build-hftok/npm && cp tests/reference/hf_tokenizers/package*.json build-hftok/npm/
//   npm ci --prefix build-hftok/npm
//   NODE_PATH=build-hftok/npm/node_modules node tests/reference/make_hf_component_fixture.js
//
// A rerun writes the same bytes.
//
// The file:
//   {"generator": "...",
//    "tokenizers": [{"name", "about", "tokenizer": <tokenizer.json object>,
//                    "cases": [{"text", "ids", "ids_with_special", "decoded", "decoded_skip_special"}]}],
//    "rejected":   [{"name", "about", "tokenizer": <tokenizer.json object>, "error"}]}
// where, for each case,
//   ids                   encode(text, null, {addSpecialTokens: false}).getIds()
//   ids_with_special      encode(text, null, {addSpecialTokens: true}).getIds()
//   decoded               decode(ids, false)
//   decoded_skip_special  decode(ids_with_special, true)
// and "rejected" holds documents that Tokenizer.fromString refuses (error: its
// message; a C++ loader only has to refuse them too).
//
// Conventions of the documents: models are BPE; a "char" model has one token per
// character listed, the merges' results after them, then any extra tokens; a
// "byte-level" model has the 256 byte tokens as GPT-2 spells them (in GPT-2's
// order, ids 0-255) before its merges' results. Added tokens take the ids after
// the model's vocabulary unless they name one.
'use strict';
const fs = require('fs');
const path = require('path');

const version = require('tokenizers/package.json').version;
if (version !== '0.23.2') throw new Error(`expected tokenizers 0.23.2, found ${version}`);
const { Tokenizer } = require('tokenizers');

const repo = path.resolve(__dirname, '..', '..');
const OUT = path.join(repo, 'tests', 'fixtures', 'hf_tokenizers', 'components.json');

// ------------------------------------------------------------ building blocks

// GPT-2's bytes_to_unicode, in GPT-2's vocabulary order.
const BYTE_CHARS = (() => {
  const bytes = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = bytes.map(b => String.fromCodePoint(b));
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) { bytes.push(b); chars.push(String.fromCodePoint(256 + n)); n++; }
  }
  return chars;  // chars[i] is the token of id i
})();
const hex2 = b => b.toString(16).toUpperCase().padStart(2, '0');
const BYTE_TOKENS = Array.from({ length: 256 }, (_, b) => `<0x${hex2(b)}>`);
const chars = s => [...s];
const range = (from, to) => {
  const out = [];
  for (let c = from.codePointAt(0); c <= to.codePointAt(0); c++) out.push(String.fromCodePoint(c));
  return out;
};
const LOWER = range('a', 'z');
const PRINTABLE = range(' ', '~');

// The result of merging a and b, given the model's continuing_subword_prefix.
function mergeResult(a, b, prefix) {
  if (prefix && b.startsWith(prefix)) return a + b.slice(prefix.length);
  return a + b;
}

// A BPE model: vocab = base tokens, then each merge's result (in order, when new),
// then `extra`; options override the defaults (all off).
function bpe({ base, merges = [], extra = [], pairs = false, ...options }) {
  const tokens = [];
  const seen = new Set();
  const push = t => { if (!seen.has(t)) { seen.add(t); tokens.push(t); } };
  base.forEach(push);
  const prefix = options.continuing_subword_prefix || '';
  const mergeList = merges.map(m => (typeof m === 'string' ? m.split(' ') : m));
  for (const [a, b] of mergeList) push(mergeResult(a, b, prefix));
  extra.forEach(push);
  const vocab = {};
  tokens.forEach((t, i) => { vocab[t] = i; });
  return {
    type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false, ignore_merges: false, ...options, vocab,
    // "a b" strings, unless a part holds a space or `pairs` asks for the pair form
    // (tokenizers takes one form or the other for the whole list, not a mix)
    merges: (pairs || mergeList.some(([a, b]) => a.includes(' ') || b.includes(' ')))
      ? mergeList : mergeList.map(([a, b]) => `${a} ${b}`),
  };
}

// An added token; ids are filled in by doc().
function added(content, { special = false, lstrip = false, rstrip = false, single_word = false, normalized = !special, id = null } = {}) {
  return { id, content, single_word, lstrip, rstrip, normalized, special };
}

function doc({ model, added: addedTokens = [], normalizer = null, pre_tokenizer = null, post_processor = null, decoder = null }) {
  let next = Object.keys(model.vocab).length;
  const list = addedTokens.map(t => {
    const id = t.id !== null ? t.id : (model.vocab[t.content] !== undefined ? model.vocab[t.content] : next++);
    return { ...t, id };
  });
  const d = { version: '1.0', truncation: null, padding: null, added_tokens: list, normalizer, pre_tokenizer, post_processor, decoder, model };
  // a post_processor given as a function is built from the document (template() needs the added ids)
  if (typeof post_processor === 'function') d.post_processor = post_processor(d);
  return d;
}

// Sets d.post_processor to TemplateProcessing from HF's own template syntax
// ("[CLS] $A [SEP] $B:1 [SEP]:1"), its special_tokens taken from d's added
// tokens; `multi` maps further special names to lists of added-token contents.
function template(d, single, pair, multi = {}) {
  const idOf = content => {
    const t = d.added_tokens.find(a => a.content === content);
    if (!t) throw new Error(`no added token ${content}`);
    return t.id;
  };
  const specials = {};
  const piece = word => {
    const [name, type] = word.split(':');
    const type_id = type === undefined ? 0 : Number(type);
    if (name === '$A' || name === '$B') return { Sequence: { id: name.slice(1), type_id } };
    if (!specials[name]) {
      const contents = multi[name] || [name];
      specials[name] = { id: name, ids: contents.map(idOf), tokens: contents };
    }
    return { SpecialToken: { id: name, type_id } };
  };
  const s = single.split(' ').map(piece);
  const p = pair.split(' ').map(piece);
  const sorted = {};
  for (const k of Object.keys(specials).sort()) sorted[k] = specials[k];
  return { type: 'TemplateProcessing', single: s, pair: p, special_tokens: sorted };
}

// The byte-level model: the 256 byte tokens, then merges (byte-level spelled).
const byteLevelModel = (merges, options = {}) => bpe({ base: BYTE_CHARS, merges, ...options });
// A char model with byte fallback: <unk>, the 256 <0xNN>, printable ASCII, merges.
const fallbackModel = (merges = [], options = {}) =>
  bpe({ base: ['<unk>', ...BYTE_TOKENS, ...PRINTABLE], merges, unk_token: '<unk>', byte_fallback: true, ...options });
const FALLBACK_DECODER = { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Fuse' }] };

const entries = [];   // {name, about, tokenizer, texts}
const rejected = [];  // {name, about, tokenizer}
const add = (name, about, tokenizer, texts) => entries.push({ name, about, tokenizer, texts });
const reject = (name, about, tokenizer) => rejected.push({ name, about, tokenizer });

// ---------------------------------------------------------------- Split

{
  // Chars, with merges that cross the split boundaries, so that where a split
  // falls shows in the ids; no decoder, so decode joins the tokens with spaces.
  const model = () => bpe({
    base: ['[UNK]', 'a', 'b', 'c', '-', ',', ' '],
    merges: ['a -', 'a- b', '- b', '- -', '-- -', 'a b', '- a', 'b c', [' ', 'c'], ['-', ' ']],
    unk_token: '[UNK]',
  });
  const texts = ['a-b', 'a--b', 'a---b c', '--ab--', '-', '', 'ab', 'a - b\u3000c', '----a', 'a,-,b'];
  const patterns = [['regex', { Regex: '[-,\\s]' }], ['string', { String: '--' }]];
  for (const behavior of ['Removed', 'Isolated', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous']) {
    for (const [kind, pattern] of patterns) {
      for (const invert of [false, true]) {
        add(`split-${behavior.toLowerCase()}-${kind}${invert ? '-invert' : ''}`,
          `Split ${JSON.stringify(pattern)} ${behavior}, invert ${invert}; no decoder`,
          doc({ model: model(), pre_tokenizer: { type: 'Split', pattern, behavior, invert } }), texts);
      }
    }
  }
}

// ---------------------------------------------------------------- Metaspace

function metaspaceModel(r) {
  return bpe({
    base: ['<unk>', r, 'a', 'b', 'd', 'e', 'h', 'l', 'o', 'r', 'w', '!', '<', '>'],
    merges: ['h e', 'l l', 'he ll', 'hell o', `${r} hello`, 'w o', 'r l', 'wo rl', 'worl d', `${r} world`, `${r} ${r}`, `${r} !`],
    unk_token: '<unk>',
  });
}
{
  const texts = ['hello world', ' hello', 'hello  world', '<s>hello', 'hello<s>world', '<x> hello', 'hello<x>',
    '\u2581hello', '', ' ', 'hello <s> world!'];
  for (const split of [true, false]) {
    for (const scheme of ['always', 'first', 'never']) {
      const r = '\u2581';
      add(`metaspace-${scheme}${split ? '' : '-nosplit'}`,
        `Metaspace prepend_scheme ${scheme}, split ${split}, with its decoder; added tokens <s> (special) and <x>`,
        doc({
          model: metaspaceModel(r),
          added: [added('<s>', { special: true }), added('<x>', { normalized: false })],
          pre_tokenizer: { type: 'Metaspace', replacement: r, prepend_scheme: scheme, split },
          decoder: { type: 'Metaspace', replacement: r, prepend_scheme: scheme, split },
        }), texts);
    }
  }
  add('metaspace-replacement-underscore',
    'Metaspace with replacement "_" (always, split), its decoder never: the first space stays',
    doc({
      model: metaspaceModel('_'),
      pre_tokenizer: { type: 'Metaspace', replacement: '_', prepend_scheme: 'always', split: true },
      decoder: { type: 'Metaspace', replacement: '_', prepend_scheme: 'never', split: true },
    }), ['hello world', '_hello', 'hello__world', ' ', '', 'a_b c']);
  add('metaspace-decoder-only',
    'no pre-tokenizer; Replace " " -> "\u2581" and Prepend normalizers; Metaspace decoder (first)',
    doc({
      model: metaspaceModel('\u2581'),
      normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
      decoder: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: true },
    }), ['hello world', ' hello', '  ', 'hello!']);
}

// ---------------------------------------------------------------- Digits

{
  // Non-ASCII digits (and other \p{N}) are in the vocab, with merges both to a
  // preceding "a" (which only apply when Digits does not split them off) and
  // among themselves (which only apply when they are grouped); fuse_unk, so an
  // unknown run shows as one <unk> per piece.
  const other = ['\u0661', '\u0662', '\u0663', '\uff11', '\uff12', '\u00b2', '\u00b3', '\u216b', '\u00bd', '\u0967', '\u0968'];
  const model = () => bpe({
    base: ['<unk>', ...range('0', '9'), 'a', 'b', 'c', ' ', ...other],
    merges: ['1 2', '12 3', '4 5', '0 0', '00 0', 'a b', 'a 1', ...other.map(c => `a ${c}`),
      '\u0661 \u0662', '\u0661\u0662 \u0663', '\u0663 4', '\uff11 \uff12', '\u00b2 \u00b3', '\u0967 \u0968', '\u00bd \u00bd'],
    unk_token: '<unk>', fuse_unk: true,
  });
  const texts = ['abc123def', '12345', 'a\u0661\u0662\u0663', '\u06634', 'a\uff11\uff12', 'a\u00b2\u00b3', 'a\u216b', 'a\u00bd\u00bd',
    'a1b22c333', '000 0000', 'a\u0967\u0968 12', 'xyz1xyz'];
  for (const individual of [true, false]) {
    add(`digits-${individual ? 'individual' : 'grouped'}`, `Digits individual_digits ${individual}; no decoder`,
      doc({ model: model(), pre_tokenizer: { type: 'Digits', individual_digits: individual } }), texts);
  }
  add('pre-sequence-split-digits',
    'pre-tokenizer Sequence [Split " " Removed, Digits grouped]; no decoder',
    doc({
      model: model(),
      pre_tokenizer: { type: 'Sequence', pretokenizers: [
        { type: 'Split', pattern: { String: ' ' }, behavior: 'Removed', invert: false },
        { type: 'Digits', individual_digits: false }] },
    }), ['ab 123 c45', '  12  ', 'a1 b2', '']);
}

// ---------------------------------------------------------------- ByteLevel

{
  const G = '\u0120';  // 'Ġ', the space
  const merges = ['h e', 'l l', 'he ll', 'hell o', `${G} hello`, `${G} w`, 'o r', `${G}w or`, 'i t', "' s", `${G} ${G}`, '\u010a \u010a'];
  const texts = ['hello world', ' hello', "it's hello's", 'a\n\nb', '   x', '', '\u65e5\u672c\u8a9e', 'hello<|x|>world', '\u00e9 \u00e9'];
  for (const [prefix, regex] of [[true, true], [true, false], [false, false]]) {
    add(`bytelevel-${prefix ? 'prefix' : 'noprefix'}-${regex ? 'regex' : 'noregex'}`,
      `ByteLevel pre-tokenizer add_prefix_space ${prefix}, use_regex ${regex}; ByteLevel post-processor and decoder; special <|x|>`,
      doc({
        model: byteLevelModel(merges),
        added: [added('<|x|>', { special: true })],
        pre_tokenizer: { type: 'ByteLevel', add_prefix_space: prefix, trim_offsets: true, use_regex: regex },
        post_processor: { type: 'ByteLevel', add_prefix_space: prefix, trim_offsets: false, use_regex: regex },
        decoder: { type: 'ByteLevel', add_prefix_space: prefix, trim_offsets: true, use_regex: regex },
      }), texts);
  }
  add('decoder-bytelevel-added',
    'ByteLevel decoder on added tokens that are not byte-level: "\u00e9" (a byte char: decodes to the byte 0xE9), "<|x|>", "<|\u2192|>" and "\u00fc\u2192" (not byte chars)',
    doc({
      model: byteLevelModel(merges),
      added: [added('\u00e9'), added('<|x|>', { special: true }), added('<|\u2192|>', { special: true }), added('\u00fc\u2192')],
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    }), ['\u00e9', 'caf\u00e9', '\u00e9<|x|>\u00e9', '<|\u2192|>hello', 'a\u00fc\u2192b', '\u00fc \u2192', ' <|x|> ']);
  add('post-sequence-bytelevel-template',
    'post-processor Sequence [ByteLevel, TemplateProcessing <|x|> $A]',
    doc({
      model: byteLevelModel(merges),
      added: [added('<|x|>', { special: true })],
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: d => ({ type: 'Sequence', processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        template(d, '<|x|> $A', '$A $B:1')] }),
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    }), ['hello world', '', '<|x|>', ' hello']);
}

// ---------------------------------------------------------------- normalizers

{
  const N = (name, about, normalizer, texts) =>
    add(name, `${about}; char model with byte fallback, decoder [ByteFallback, Fuse]`,
      doc({ model: fallbackModel(), normalizer, decoder: FALLBACK_DECODER }), texts);
  N('norm-lowercase', 'normalizer Lowercase', { type: 'Lowercase' },
    ['\u0130', '\u03a3\u0391\u03a3', '\u03a3\u0391\u03a3 \u03a3', '\u212a', 'HELLO World', '\u00c0\u00c9\u00ce', '\u01c5', '\u1e9e', '\u0130stanbul', '\u2160\u24b6', '\uff21']);
  N('norm-nfc', 'normalizer NFC', { type: 'NFC' },
    ['e\u0301', 'A\u030a', '\u212b', '\u1112\u1161\u11ab', 'q\u0307\u0323', '\ufb01', '\u1e0b\u0323', '\u0344']);
  N('norm-nfd', 'normalizer NFD', { type: 'NFD' },
    ['\u00e9', '\u00f1', '\u212b', '\ud55c\uae00', '\ufb01', 'e\u0301', '\u1e69', '\u1e0b\u0323', '\u0344']);
  N('norm-nfkc', 'normalizer NFKC', { type: 'NFKC' },
    ['\ufb01', '\ufb00', '\uff21\uff22\uff23\uff11\uff12\uff13', '\u2460', '\u338f', 'e\u0301', '\u1e9b\u0323', '\u216b', '\u00bd', '\u3000x', '\u00b2', '\ufdfa']);
  N('norm-nfkd', 'normalizer NFKD', { type: 'NFKD' },
    ['\ufb01', '\uff21\uff41', '\u00e9', '\u1e9b\u0323', '\u2460', '\u00bd', '\ud55c', '\u00a0']);
  const stripTexts = ['  a b  ', '\t\ta\t', '\u3000a\u3000', '\u0085a\u0085', '\u00a0a\u00a0', '\n\n', '', 'a', ' \u200ba', '\u2028x\u2029'];
  for (const [l, r] of [[true, false], [false, true], [true, true]]) {
    N(`norm-strip-${l && r ? 'both' : l ? 'left' : 'right'}`, `normalizer Strip left ${l}, right ${r}`,
      { type: 'Strip', strip_left: l, strip_right: r }, stripTexts);
  }
  N('norm-replace-regex', 'normalizer Replace Regex "\\s+" -> "_"', { type: 'Replace', pattern: { Regex: '\\s+' }, content: '_' },
    ['a b', 'a  \t\nb', ' a ', '\u3000\u0085', 'ab', '']);
  N('norm-replace-regex-class', 'normalizer Replace Regex "[0-9]+|x" -> "<\u00e9>"', { type: 'Replace', pattern: { Regex: '[0-9]+|x' }, content: '<\u00e9>' },
    ['a123b', 'xx', '1x2', 'none', '\u0661\u0662']);
  N('norm-replace-string', 'normalizer Replace String "ab" -> "X"', { type: 'Replace', pattern: { String: 'ab' }, content: 'X' },
    ['ab', 'aab', 'abab', 'aaba', 'a b', 'abc\u00e9ab']);
  N('norm-prepend', 'normalizer Prepend "\u2581"', { type: 'Prepend', prepend: '\u2581' },
    ['', 'a', ' a', '\u2581a']);
  N('norm-sequence', 'normalizer Sequence [Strip both, NFKC, Lowercase, Replace Regex "\\s+" -> " ", Replace String " " -> "\u2581", Prepend "\u2581"]',
    { type: 'Sequence', normalizers: [
      { type: 'Strip', strip_left: true, strip_right: true }, { type: 'NFKC' }, { type: 'Lowercase' },
      { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' },
      { type: 'Prepend', prepend: '\u2581' }] },
    ['  Hello   World  ', '\uff28\uff49\u3000\uff34\uff48\u0130s', '\ufb01NE', '', '   ', '\u212a\u212a']);
}

// ---------------------------------------------------------------- BPE options

{
  const base = ['<unk>', 'a', 'b', 'c', 'd', 'e', ' '];
  const texts = ['abc', 'xyz', 'axyzb', '\u00e9\u00e9\u00e9', 'a\ud83d\ude00b', 'x', '', 'ab xy ab', 'x y'];
  for (const fuse of [false, true]) {
    add(`bpe-unk-${fuse ? 'fuse' : 'nofuse'}`, `BPE unk_token <unk>, fuse_unk ${fuse}; no pre-tokenizer, no decoder`,
      doc({ model: bpe({ base, merges: ['a b', 'ab c'], unk_token: '<unk>', fuse_unk: fuse }) }), texts);
  }
  add('bpe-no-unk', 'BPE without unk_token: characters not in the vocab are dropped; decoder Fuse',
    doc({ model: bpe({ base: base.slice(1), merges: ['a b', 'ab c'] }), decoder: { type: 'Fuse' } }), texts);
  add('bpe-unk-fuse-split', 'BPE unk_token, fuse_unk true, Split " " Isolated: runs of unknowns fuse within a word only',
    doc({ model: bpe({ base, merges: ['a b'], unk_token: '<unk>', fuse_unk: true }),
      pre_tokenizer: { type: 'Split', pattern: { String: ' ' }, behavior: 'Isolated', invert: false } }),
    ['xy zw', 'x  y', 'axb', '\u00e9\u00e9 \u00e9']);

  const fbTexts = ['\u00e9', '\u00fc', '\u20ac', 'x', 'ab', '\u65e5\u672c', 'a\ud83d\ude00b', '\u00e9\u00e9 \u00fc', '\u0000\u007f'];
  add('bpe-byte-fallback', 'BPE byte_fallback with all 256 <0xNN> tokens, unk <unk>, decoder [ByteFallback, Fuse]',
    doc({ model: bpe({ base: ['<unk>', ...BYTE_TOKENS, 'a', 'b', ' '], merges: ['a b'], unk_token: '<unk>', byte_fallback: true }),
      decoder: FALLBACK_DECODER }), fbTexts);
  const missing = new Set([0xa9, 0x82, 0x00, ...Array.from({ length: 8 }, (_, i) => 0x98 + i)]);
  for (const fuse of [false, true]) {
    add(`bpe-byte-fallback-partial${fuse ? '-fuse' : ''}`,
      `BPE byte_fallback with some <0xNN> missing (00, 82, 98-9F, A9): such a character becomes <unk>; fuse_unk ${fuse}`,
      doc({ model: bpe({ base: ['<unk>', ...BYTE_TOKENS.filter((_, b) => !missing.has(b)), 'a', 'b', ' '], merges: ['a b'],
        unk_token: '<unk>', byte_fallback: true, fuse_unk: fuse }), decoder: FALLBACK_DECODER }), fbTexts);
  }
  add('bpe-byte-fallback-no-unk', 'BPE byte_fallback, some <0xNN> missing, no unk_token',
    doc({ model: bpe({ base: [...BYTE_TOKENS.filter((_, b) => !missing.has(b)), 'a', 'b', ' '], merges: ['a b'], byte_fallback: true }),
      decoder: FALLBACK_DECODER }), fbTexts);

  // "hello" and "abc" are whole tokens, but the merges build "hel"+"lo" and "ab"+"c".
  for (const ignore of [false, true]) {
    add(`bpe-ignore-merges-${ignore}`, `BPE ignore_merges ${ignore}; whole words in the vocab that the merges do not build; Split " " Isolated`,
      doc({ model: bpe({ base: ['<unk>', ' ', 'a', 'b', 'c', 'e', 'h', 'l', 'o'], merges: ['h e', 'he l', 'l o', 'a b'],
        extra: ['hello', 'abc', 'hell'], unk_token: '<unk>', ignore_merges: ignore }),
      pre_tokenizer: { type: 'Split', pattern: { String: ' ' }, behavior: 'Isolated', invert: false },
      decoder: { type: 'Fuse' } }), ['hello', 'hello hello', 'hellohello', 'hell', 'abc', 'ab', 'abcabc', 'helo']);
  }

  add('bpe-continuing-subword-prefix', 'BPE continuing_subword_prefix "##"; Split " " Removed; no decoder',
    doc({ model: bpe({ base: ['[UNK]', 'h', 'e', 'l', 'o', '##h', '##e', '##l', '##o'],
      merges: ['h ##e', '##l ##l', 'he ##ll', 'hell ##o', '##l ##o', 'l ##o', '##h ##e'], unk_token: '[UNK]', continuing_subword_prefix: '##' }),
    pre_tokenizer: { type: 'Split', pattern: { String: ' ' }, behavior: 'Removed', invert: false } }),
    ['hello', 'hell', 'lol', 'ohhe', 'hello hello', 'hxe', 'x', 'lo']);
  add('bpe-end-of-word-suffix', 'BPE end_of_word_suffix "</w>"; Split " " Removed; no decoder',
    doc({ model: bpe({ base: ['<unk>', 'e', 'l', 'n', 'o', 'r', 'w', 'e</w>', 'l</w>', 'o</w>', 'r</w>', 'w</w>'],
      merges: ['l o', 'lo w</w>', 'e r</w>', 'n e', 'ne w', 'lo w', 'low er</w>'], unk_token: '<unk>', end_of_word_suffix: '</w>' }),
    pre_tokenizer: { type: 'Split', pattern: { String: ' ' }, behavior: 'Removed', invert: false } }),
    ['low', 'lower', 'newer', 'wow low', 'w', 'lowx', 'n', 'xlow']);
  add('bpe-prefix-and-suffix', 'BPE continuing_subword_prefix "##" and end_of_word_suffix "</w>" together; merges in the pair form',
    doc({ model: bpe({ base: ['<unk>', 'a', 'b', '##a', '##b', 'a</w>', 'b</w>', '##a</w>', '##b</w>'],
      merges: ['a ##b</w>', 'a ##b', 'ab ##a</w>', '##a ##b'], unk_token: '<unk>', continuing_subword_prefix: '##', end_of_word_suffix: '</w>', pairs: true }),
    pre_tokenizer: { type: 'Split', pattern: { String: ' ' }, behavior: 'Removed', invert: false } }),
    ['ab', 'aba', 'a', 'abab', 'ba b']);
}

// ---------------------------------------------------------------- added tokens

{
  const charModel = () => bpe({ base: ['<unk>', ' ', '\t', '\n', 'a', 'b', 'x', '1', '2', '_', '<', '>'], merges: ['a b', [' ', ' ']], unk_token: '<unk>' });
  add('added-lstrip-rstrip', 'added tokens <l> lstrip, <r> rstrip, <b> both, <p> neither; no decoder',
    doc({ model: charModel(), added: [added('<l>', { lstrip: true }), added('<r>', { rstrip: true }),
      added('<b>', { lstrip: true, rstrip: true, special: true }), added('<p>')] }),
    ['a <l> b', 'a  <r>  b', 'a <b> b', '<l>', ' <l>', 'a\t<b>\n b', 'a <p> b', '<r> ', ' <b> ', 'a\u3000<b>\u3000b', '<l><r>']);
  add('added-single-word', 'added tokens single_word: "ab", "12", "<w>" (the model cannot build any of them); decoder Fuse',
    doc({ model: bpe({ base: ['<unk>', ' ', 'a', 'b', 'x', '1', '2', '_', '<', '>', '.'], unk_token: '<unk>' }), added: [added('ab', { single_word: true }), added('12', { single_word: true }), added('<w>', { single_word: true, special: true })],
      decoder: { type: 'Fuse' } }),
    ['ab', 'xab', 'ab x', 'abab', 'ab_', '_ab', 'ab1', '1ab', 'ab\u0301', 'ab\u0345', '\u00e9ab', 'x12', '12 12', '<w>x', ' <w> ', 'a<w>', 'ab.ab']);
  add('added-normalized', 'added tokens normalized true vs false under a Lowercase normalizer: <UP> true, <DOWN> false, Hi true, Yo false (special), <SP> true (special); tokenizers decodes a normalized token as its normalized content',
    doc({ model: charModel(), normalizer: { type: 'Lowercase' },
      added: [added('<UP>', { normalized: true }), added('<DOWN>', { normalized: false }), added('Hi', { normalized: true }), added('Yo', { normalized: false, special: true }),
        added('<SP>', { normalized: true, special: true })] }),
    ['<UP>', '<up>', '<DOWN>', '<down>', 'hi', 'HI', 'Hi', 'yo', 'Yo', 'YO', 'aHib', '<SP>', '<sp>']);
  add('added-overlap', 'overlapping added tokens: leftmost-longest among <a>, <a><b>, <b>, abc, bcd (all non-special, not normalized)',
    doc({ model: charModel(), added: ['<a>', '<a><b>', '<b>', 'abc', 'bcd'].map(c => added(c, { normalized: false })) }),
    ['<a><b>', '<a><b', '<a>', '<a><a><b>', 'x<a><b>y', 'abcd', 'bcd', '<b><a><b>', 'ab']);
  add('added-overlap-passes', 'overlap across the two passes: <a> not normalized (matched first), <a><b> normalized',
    doc({ model: charModel(), added: [added('<a>', { normalized: false }), added('<a><b>', { normalized: true })] }),
    ['<a><b>', 'x<a><b>', '<a>']);
  add('added-special-skip', 'special <s>, </s> and [M] (in the vocab), non-special <sep>; TemplateProcessing <s> $A </s>; decoder Fuse',
    doc({ model: bpe({ base: ['<unk>', 'a', 'b', ' ', '[M]'], merges: ['a b'], unk_token: '<unk>' }),
      added: [added('<s>', { special: true }), added('</s>', { special: true }), added('<sep>'), added('[M]', { special: true })],
      post_processor: d => template(d, '<s> $A </s>', '<s> $A </s> $B:1 </s>:1'),
      decoder: { type: 'Fuse' } }),
    ['ab', '<s>ab</s>', 'a<sep>b', '[M] a [M]', '', '<s><sep></s>']);
}

// ---------------------------------------------------------------- post-processors

{
  const model = () => bpe({ base: ['<unk>', 'a', 'b', ' '], merges: ['a b'], unk_token: '<unk>' });
  add('post-template', 'TemplateProcessing [CLS] [TWO] $A [SEP] [END] (special [TWO] has two ids); no decoder',
    doc({ model: model(), added: [added('[CLS]', { special: true }), added('[SEP]', { special: true }), added('[END]', { special: true }),
      added('[T1]', { special: true }), added('[T2]', { special: true })],
    post_processor: d => template(d, '[CLS] [TWO] $A [SEP] [END]', '[CLS] $A [SEP] $B:1 [SEP]:1', { '[TWO]': ['[T1]', '[T2]'] }) }),
    ['ab', '', 'a b', '[CLS]ab[SEP]', 'x']);
  add('post-template-after-only', 'TemplateProcessing $A </s> (a token after the sequence only); decoder Fuse',
    doc({ model: model(), added: [added('</s>', { special: true })],
      post_processor: d => template(d, '$A </s>', '$A $B:1 </s>:1'),
      decoder: { type: 'Fuse' } }),
    ['ab', '', 'ab</s>']);
}

// ---------------------------------------------------------------- decoders

{
  const spaceModel = () => bpe({ base: ['<unk>', ' ', 'a', 'b', '_', '\u2581'], merges: [[' ', ' '], ['  ', 'a'], ['a', ' '], ['_', '_'], 'a b'], unk_token: '<unk>' });
  // tokenizers 0.23.2 panics (and aborts node) when a token is made only of
  // `content` and is shorter than start + stop (strip.rs slices [start_cut..stop_cut]
  // with start_cut > stop_cut), so no such token comes up here.
  add('decoder-strip', 'decoder Strip " " start 2 stop 1 (per token; no token here is all spaces)',
    doc({ model: spaceModel(), decoder: { type: 'Strip', content: ' ', start: 2, stop: 1 } }),
    ['  a', 'a ', 'ab', 'a  a', '  a  a', 'a b', 'aa ']);
  add('decoder-strip-sequence', 'decoder Sequence [Replace "\u2581" -> " ", Fuse, Strip " " start 1 stop 0] (the Strip sees the fused string)',
    doc({ model: spaceModel(), decoder: { type: 'Sequence', decoders: [
      { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] } }),
    ['\u2581a\u2581b', '\u2581\u2581a', 'a\u2581', ' a']);
  add('decoder-replace-regex', 'decoder Sequence [Replace Regex "_+" -> " ", Replace String "a" -> "A"] (no Fuse)',
    doc({ model: spaceModel(), decoder: { type: 'Sequence', decoders: [
      { type: 'Replace', pattern: { Regex: '_+' }, content: ' ' }, { type: 'Replace', pattern: { String: 'a' }, content: 'A' }] } }),
    ['a_b', 'a__b', '___', 'ab_a', '_']);
  add('decoder-fuse', 'decoder Fuse alone',
    doc({ model: spaceModel(), decoder: { type: 'Fuse' } }), ['a b', '  a', 'x', '']);
  add('decoder-none', 'no decoder: tokens joined with spaces; added special <s>',
    doc({ model: spaceModel(), added: [added('<s>', { special: true })] }), ['a b', '<s>ab', '  a', 'x', '', '<s>']);

  // <0xNN> added as (non-special) added tokens, so that the text can name byte ids directly.
  const fb = () => bpe({ base: ['<unk>', ...BYTE_TOKENS, 'a', 'b'], merges: ['a b'], unk_token: '<unk>', byte_fallback: true });
  const byteAdded = [0xe2, 0x82, 0xac, 0xff, 0xc3, 0xa9, 0x80, 0xf0, 0x9f].map(b => added(`<0x${hex2(b)}>`, { normalized: false, id: 1 + b }));
  const texts = ['<0xE2><0x82>a', '<0xE2><0x82><0xAC>', '<0xFF>', '<0xC3>a<0xC3>', '\u20ac', 'a<0xE2>', '<0xC3><0xA9><0xC3>',
    '<0x80><0x80>b', '<0xF0><0x9F>ab', '<0xF0><0x9F><0x80>\u00e9'];
  add('decoder-bytefallback-invalid', 'decoder ByteFallback alone; byte tokens reachable as added tokens, giving invalid UTF-8 runs',
    doc({ model: fb(), added: byteAdded, decoder: { type: 'ByteFallback' } }), texts);
  add('decoder-bytefallback-fuse-invalid', 'decoder Sequence [ByteFallback, Fuse]; as above',
    doc({ model: fb(), added: byteAdded, decoder: FALLBACK_DECODER }), texts);
}

// ---------------------------------------------------------------- rejected

{
  const m = () => bpe({ base: ['a', 'b'], merges: ['a b'] });
  reject('reject-merge-out-of-vocab', 'a merge whose part is not in the vocab',
    doc({ model: { ...m(), merges: ['a c'] } }));
  reject('reject-unknown-normalizer', 'normalizer type "Foo"', doc({ model: m(), normalizer: { type: 'Foo' } }));
  reject('reject-bad-split-regex', 'Split with the regex "(" that does not compile',
    doc({ model: m(), pre_tokenizer: { type: 'Split', pattern: { Regex: '(' }, behavior: 'Isolated', invert: false } }));
  reject('reject-bad-split-behavior', 'Split behavior "Sideways"',
    doc({ model: m(), pre_tokenizer: { type: 'Split', pattern: { String: 'a' }, behavior: 'Sideways', invert: false } }));
  reject('reject-metaspace-scheme', 'Metaspace prepend_scheme "sometimes"',
    doc({ model: m(), pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'sometimes', split: true } }));
  reject('reject-metaspace-replacement', 'Metaspace replacement of two characters',
    doc({ model: m(), pre_tokenizer: { type: 'Metaspace', replacement: 'ab', prepend_scheme: 'always', split: true } }));
  // (A TemplateProcessing naming a special token missing from special_tokens
  // loads, and then panics on encode with addSpecialTokens, aborting node; so
  // it is neither a rejection case nor a case.)
  reject('reject-vocab-not-object', 'model vocab that is an array', doc({ model: { ...m(), vocab: ['a', 'b'] } }));
  reject('reject-unknown-decoder', 'decoder type "Bar"', doc({ model: m(), decoder: { type: 'Bar' } }));
  reject('reject-bad-replace-regex', 'normalizer Replace with the regex "[" that does not compile',
    doc({ model: m(), normalizer: { type: 'Replace', pattern: { Regex: '[' }, content: 'x' } }));
}

// ---------------------------------------------------------------- run

async function main() {
  const tokenizers = [];
  const names = new Set();
  for (const { name, about, tokenizer, texts } of entries) {
    if (names.has(name)) throw new Error(`duplicate name ${name}`);
    names.add(name);
    let tok;
    try {
      tok = Tokenizer.fromString(JSON.stringify(tokenizer));
    } catch (e) {
      throw new Error(`${name}: tokenizers did not load it: ${e.message}`);
    }
    const cases = [];
    for (const text of texts) {
      const ids = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
      const idsWithSpecial = (await tok.encode(text, null, { addSpecialTokens: true })).getIds();
      const decoded = await tok.decode(ids, false);
      const decodedSkip = await tok.decode(idsWithSpecial, true);
      cases.push({ text, ids, ids_with_special: idsWithSpecial, decoded, decoded_skip_special: decodedSkip });
    }
    tokenizers.push({ name, about, tokenizer, cases });
  }
  const refused = [];
  for (const { name, about, tokenizer } of rejected) {
    let error = null;
    try {
      Tokenizer.fromString(JSON.stringify(tokenizer));
    } catch (e) {
      error = String(e.message);
    }
    if (error === null) throw new Error(`${name}: tokenizers loaded it, so it is no rejection case`);
    refused.push({ name, about, tokenizer, error });
  }

  // One tokenizer object a line, one case a line.
  const J = x => JSON.stringify(x);
  let out = `{"generator": ${J(`tests/reference/make_hf_component_fixture.js with npm tokenizers@${version}`)},\n "tokenizers": [\n`;
  out += tokenizers.map(t =>
    `  {"name": ${J(t.name)}, "about": ${J(t.about)},\n   "tokenizer": ${J(t.tokenizer)},\n   "cases": [\n` +
    t.cases.map(c => `    ${J(c)}`).join(',\n') + '\n   ]}').join(',\n');
  out += '\n ],\n "rejected": [\n';
  out += refused.map(r => `  {"name": ${J(r.name)}, "about": ${J(r.about)}, "error": ${J(r.error)},\n   "tokenizer": ${J(r.tokenizer)}}`).join(',\n');
  out += '\n ]}\n';
  JSON.parse(out);
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, out);
  const caseCount = tokenizers.reduce((n, t) => n + t.cases.length, 0);
  console.log(`wrote ${path.relative(repo, OUT)}: ${tokenizers.length} tokenizers, ${caseCount} cases, ${refused.length} rejected, ${out.length} bytes`);
}

main().catch(e => { console.error(e); process.exit(1); });

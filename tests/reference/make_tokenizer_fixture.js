// Writes tests/fixtures/gpt2_tokenizer_cases.json: GPT-2 token ids of the test
// strings below, made by an independent encoder, the npm package
// gpt-3-encoder@1.1.4 (pinned in tests/reference/tokenizer/package*.json), for
// tests/test_tokenizer.cpp. Run from the repository root:
//
//   mkdir -p build-tok/npm && cp tests/reference/tokenizer/package*.json build-tok/npm/
//   npm ci --prefix build-tok/npm
//   NODE_PATH=build-tok/npm/node_modules node tests/reference/make_tokenizer_fixture.js
//
// (node_modules then lies under build-tok/, which git ignores.) The script
// checks that the package's vocabulary files are byte-identical to
// ../shared/data/gpt2-tokenizer/, that every id is an integer, and that the
// package decodes the ids back to the text.
'use strict';
const fs = require('fs');
const path = require('path');

const packageDir = path.dirname(require.resolve('gpt-3-encoder/package.json'));
const version = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')).version;
if (version !== '1.1.4') throw new Error(`expected gpt-3-encoder 1.1.4, found ${version}`);
const { encode, decode } = require('gpt-3-encoder');

const repo = path.resolve(__dirname, '..', '..');
const shared = path.resolve(repo, '..', 'shared', 'data', 'gpt2-tokenizer');
for (const name of ['encoder.json', 'vocab.bpe']) {
  const theirs = fs.readFileSync(path.join(packageDir, name));
  const ours = fs.readFileSync(path.join(shared, name));
  if (!theirs.equals(ours)) throw new Error(`${name} of gpt-3-encoder differs from ${shared}`);
}

// Deterministic pseudo-random numbers (a 32-bit xorshift), so that the
// "random" strings are the same on every run.
let state = 0x9e3779b9;
function next() {
  state ^= state << 13; state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5; state >>>= 0;
  return state;
}
// Strings of `length` pieces drawn from `alphabet` (each piece a string).
function randomText(length, alphabet) {
  let text = '';
  for (let i = 0; i < length; i++) text += alphabet[next() % alphabet.length];
  return text;
}

const mixed = [
  'a', 'b', 'e', 'k', 'z', 'T', 'Q', ' ', ' ', ' ', '  ', '\n', '\t', '\r\n', '0', '7', '42', '.', ',',
  '!', '?', '-', '"', "'", "'s", "'t", "'re", "'ll", 'é', 'ü', 'ß', 'ж', 'Ω', '中', '文', 'ك', '٣',
  '\u0301', '😀', '👩‍💻', '\u00a0', '\u3000', '#', '$', '(', ')', '...', '—', '…',
];
const asciiOnly = [
  'the', 'of', ' ', ' ', '  ', 'a', 'B', 'x', 'y', '1', '23', '456', '.', ',', ';', ':', '!', '?', "'",
  "'s", "'d", "'m", "'ve", "'S", '\n', '\t', '(', ')', '[', ']', '{', '}', '<', '>', '/', '\\', '_', '~',
  '`', '^', '%', '&', '*', '+', '=', '|', '@',
];

const cases = [
  // plain English
  '',
  'Hello world',
  'Hello, world!',
  'The quick brown fox jumps over the lazy dog.',
  'GPT-2 is a large transformer-based language model with 1.5 billion parameters.',
  'Question: Who wrote the book?\nAnswer: ',
  'hello',
  ' hello',
  'Hello',
  'HELLO WORLD',
  'antidisestablishmentarianism',
  'Supercalifragilisticexpialidocious',
  // contractions, and the uppercase forms the pattern does not treat as such
  "it's", "don't", "they're", "we've", "I'm", "you'll", "he'd",
  "It'S", "DON'T", "THEY'RE", "WE'VE", "I'M", "YOU'LL", "HE'D",
  "'s 't 're 've 'm 'll 'd",
  "''s", "'''", "rock'n'roll", "o'clock", "students' books", "'", "'x", "'re'", "l'homme",
  "it’s", // a typographic apostrophe is no contraction either
  // numbers
  '0', '123', '1234567890', '3.14159', '1,000,000', '-42', '+1 (555) 010-9999', 'v2.0.1',
  '2024-01-01T00:00:00Z', '0x1F600', '1e-10', 'abc123def', 'room 101', '  12  34  ',
  // punctuation runs
  '!!!', '...', '?!?!', '---', '***bold***', 'a+b=c', 'C++', 'foo_bar', '#include <vector>',
  '{"key": [1, 2, 3]}', 'https://example.com/path?q=1&r=2', '<|endoftext|>', 'x <|endoftext|> y',
  '((()))', ' !', ' ! ', '  !', 'end.',
  // spaces, tabs and newlines
  ' ', '  ', '   ', 'a  b', 'a   b', 'a    b', 'trailing ', 'trailing  ', 'trailing   ',
  ' leading', '  leading', '   leading', '\t', '\tindented', 'a\tb', 'a\t\tb', '\n', '\n\n', '\n\n\n',
  ' \n', '\n ', ' \n ', 'line one\nline two', 'paragraph\n\nparagraph', 'a \nb', 'a\n b', 'a \n\n b',
  '\r\n', 'windows\r\nline', '\t \t', ' \t\n', 'x\u000bv\u000cf', 'end\n', 'end \n',
  // whitespace the two regex dialects disagree on (JavaScript's \s is matched)
  'a\u00a0b', 'a \u00a0 b', 'a\u3000b', '\u3000\u3000word', 'a\u2028b', 'a\u2029b', 'a\ufeffb',
  '\ufeff', 'a\u0085b', 'a\u001cb', 'a \u001f b', 'a\u2003\u2003b', 'nbsp\u00a0\u00a0', 'x\u180ey',
  // non-ASCII letters
  'café', 'naïve résumé', 'Über Straße', 'ß', 'Ärger über Öl', 'Привет, мир!', 'Москва 2024',
  'Γειά σου Κόσμε', 'αβγ δεζ', '中文字符测试', '日本語のテキスト', '한국어 텍스트', 'مرحبا بالعالم',
  'שלום עולם', 'नमस्ते दुनिया', 'ภาษาไทย', 'Ελληνικά και English mixed', 'ǅungla', 'ﬁne',
  // emoji, ZWJ sequences, flags, variation selectors
  '😀', 'I ❤️ NY', '👍🏽', '👩‍👩‍👧‍👦', '👨‍💻 coding', '🏳️‍🌈', '🇫🇷🇩🇪', 'emoji😀in😀text', '😀😀😀',
  ' 😀', '✔ done', '©®™',
  // combining marks
  'e\u0301', 'cafe\u0301', 'n\u0303o', 'a\u0308\u0304', 'Z\u0351\u0362a\u0335\u0361l\u0334g\u0352o',
  ' \u0301', '\u0301', 'क्षि',
  // digits and numbers of other scripts
  '١٢٣', '٣٫١٤', '۱۲۳', '१२३', '০১২', '๑๒๓', '一二三', 'Ⅻ', '½ cup', '²³', '①②③', '௰',
  ' ١٢٣', 'x٣y',
  // mixed classes next to each other
  'abc123!!!   ', 'a1!a1!', ' a 1 ! ', 'the 3rd time', "O'Neil's 2nd book", 'well-known',
  'e.g. i.e.', 'U.S.A.', '$100.00', '50%', '#hashtag @user', 'snake_case_name', 'CamelCaseName',
];

// A few long random-ish strings.
for (let i = 0; i < 6; i++) cases.push(randomText(200 + 50 * i, mixed));
for (let i = 0; i < 4; i++) cases.push(randomText(300, asciiOnly));
cases.push('word '.repeat(300).trim());
cases.push('x'.repeat(1000));
cases.push(' '.repeat(50) + 'x' + '\n'.repeat(20));

const records = cases.map(text => {
  const ids = encode(text);
  for (const id of ids)
    if (!Number.isInteger(id)) throw new Error(`non-integer id for ${JSON.stringify(text)}: ${ids}`);
  // The package's TextDecoder drops a leading byte order mark.
  const back = decode(ids);
  if (back !== text && '\ufeff' + back !== text) throw new Error(`the reference does not round-trip ${JSON.stringify(text)}`);
  return { text, ids };
});

const out = path.join(repo, 'tests', 'fixtures', 'gpt2_tokenizer_cases.json');
const body = records.map(r => `    {"text": ${JSON.stringify(r.text)}, "ids": ${JSON.stringify(r.ids)}}`).join(',\n');
fs.writeFileSync(out,
  `{\n  "generator": "tests/reference/make_tokenizer_fixture.js",\n` +
  `  "encoder": "gpt-3-encoder@${version}",\n  "node_unicode": "${process.versions.unicode}",\n` +
  `  "cases": [\n${body}\n  ]\n}\n`);
console.log(`wrote ${records.length} cases to ${path.relative(repo, out)}`);

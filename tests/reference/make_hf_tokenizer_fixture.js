// Writes tests/fixtures/hf_tokenizers/NAME.jsonl for the five Hugging Face
// tokenizers in ../shared/data/hf-tokenizers/ (gpt-2, llama-2, phi-3,
// llama-3.1, qwen2.5): the ids that Hugging Face's Rust `tokenizers` (its Node
// binding, npm `tokenizers@0.23.2`, pinned in
// tests/reference/hf_tokenizers/package*.json) gives for a set of hard strings
// chosen here, different from the shared folders' cases.jsonl and
// cases_extra.jsonl. Run from the repository root:
//
//   mkdir -p build-hftok/npm && cp tests/reference/hf_tokenizers/package*.json build-hftok/npm/
//   npm ci --prefix build-hftok/npm
//   NODE_PATH=build-hftok/npm/node_modules node tests/reference/make_hf_tokenizer_fixture.js
//
// (node_modules then lies under build-hftok/, which git ignores.) A rerun
// writes the same bytes.
//
// The strings: ~40 TOFU questions and answers (../shared/data/tofu/full.jsonl,
// picked by fixed rules), Unicode edge cases, digit runs, whitespace runs,
// special-token text inside text (the specials of all five tokenizers, for
// each tokenizer), contractions in mixed case, very long words, code, seeded
// random mixes, long TOFU texts of 5-20 kB, and invalid UTF-8.
//
// One JSON object a line, with:
//   group                 what kind of string it is (for messages only)
//   text | bytes_hex      the input: `text` when it is valid UTF-8, else its
//                         raw bytes as lowercase hex. Such bytes are decoded the
//                         WHATWG way (Buffer.from(bytes).toString('utf8'): each
//                         maximal invalid subpart becomes one U+FFFD) and that
//                         string is what was encoded; the C++ encoder does the same.
//   ids                   encode(text, null, {addSpecialTokens: false}).getIds()
//   ids_with_special      encode(text, null, {addSpecialTokens: true}).getIds()
//   decoded               decode(ids, false)
//   decoded_skip_special  decode(ids_with_special, true)
//   roundtrip             decoded === text (for bytes_hex: the decoded string of the bytes)
'use strict';
const fs = require('fs');
const path = require('path');

const version = require('tokenizers/package.json').version;
if (version !== '0.23.2') throw new Error(`expected tokenizers 0.23.2, found ${version}`);
const { Tokenizer } = require('tokenizers');

const repo = path.resolve(__dirname, '..', '..');
const shared = path.resolve(repo, '..', 'shared', 'data');
const NAMES = ['gpt-2', 'llama-2', 'phi-3', 'llama-3.1', 'qwen2.5'];

// Deterministic pseudo-random numbers (a 32-bit xorshift).
let state = 0x2545f491;
function next() {
  state ^= state << 13; state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5; state >>>= 0;
  return state;
}
function pick(list) { return list[next() % list.length]; }
function randomText(length, alphabet) {
  let text = '';
  for (let i = 0; i < length; i++) text += pick(alphabet);
  return text;
}
function digits(n) {
  let s = '';
  for (let i = 0; i < n; i++) s += String(next() % 10);
  return s;
}

// Each case: {group, text} or {group, bytes: [..]}.
const cases = [];
const add = (group, ...texts) => { for (const text of texts) cases.push({ group, text }); };
const addBytes = (group, ...list) => { for (const bytes of list) cases.push({ group, bytes }); };
const b = s => [...Buffer.from(s, 'utf8')];

// ---------------------------------------------------------------- TOFU lines
const tofu = fs.readFileSync(path.join(shared, 'tofu', 'full.jsonl'), 'utf8')
  .split('\n').filter(line => line.length > 0).map(line => JSON.parse(line));
const tofuStrings = [];
for (const row of tofu) tofuStrings.push(row.question, row.answer);
{
  // For each rule, the first 5 strings that match, visiting the strings in
  // steps of 97 (prime to their count) from the rule's own starting point,
  // so that the picks spread over the file; then every 800th string.
  const chosen = new Set();
  const rules = [
    ['digits', s => /[0-9]/.test(s)],
    ['double quotes', s => /"/.test(s)],
    ['apostrophes', s => /\w'\w/.test(s)],
    ['typographic quotes', s => /[’‘“”]/.test(s)],
    ['hyphens and dashes', s => /\w[-–—]\w/.test(s)],
    ['non-ASCII letters', s => /[\u00c0-\u024f]/.test(s)],
    ['Cyrillic or Turkish', s => /[\u0400-\u04ff\u0130\u0131\u015f]/.test(s)],
  ];
  rules.forEach(([, test], k) => {
    let taken = 0;
    for (let j = 0; j < tofuStrings.length && taken < 5; j++) {
      const i = (k * 1151 + j * 97) % tofuStrings.length;
      if (!chosen.has(i) && test(tofuStrings[i])) { chosen.add(i); taken++; }
    }
  });
  for (let i = 401; i < tofuStrings.length; i += 800) chosen.add(i);
  for (const i of [...chosen].sort((x, y) => x - y)) add('tofu', tofuStrings[i]);
  // A question and its answer the way a prompt joins them.
  add('tofu', `Question: ${tofu[17].question}\nAnswer: ${tofu[17].answer}`,
    `${tofu[2500].question} ${tofu[2500].answer}`);
}

// ---------------------------------------------------------- Unicode edge cases
add('unicode',
  // combining marks
  'e\u0301 a\u0300\u0301\u0302 o\u0308\u0304', '\u0301leading combining mark', 'x\u20dd y\u20e3',
  'Z\u0351\u036b\u0343\u036a\u0302a\u0310\u0357l\u0344\u0351g\u0350\u0346o\u0352\u0363',
  'q\u0307\u0323 \u1e0d\u0307 d\u0323\u0307',
  // NFC and NFD forms of the same text
  'caf\u00e9 na\u00efve r\u00e9sum\u00e9', 'cafe\u0301 nai\u0308ve re\u0301sume\u0301',
  '\u00c5ngstr\u00f6m \u212bngstr\u00f6m A\u030angstro\u0308m', 'Vi\u1ec7t Nam', 'Vie\u0323\u0302t Nam',
  'Ji\u0159\u00ed Dvo\u0159\u00e1k', 'Jir\u030ci\u0301 Dvor\u030ca\u0301k',
  'Ma\u00f1ana, se\u00f1or', 'Man\u0303ana, sen\u0303or', '\u1e9b\u0323 \u017f\u0323\u0307',
  '\u0344 \u0958 \u2126 \u212a \u2000',
  // Hangul: precomposed, conjoining jamo (NFD), compatibility jamo
  '\ud55c\uad6d\uc5b4 \ud14c\uc2a4\ud2b8', '\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165',
  '\u314e\u314f\u3134 \u3131\u315c\u3131', '\u1100\u1161 \u1100\u1161\u11a8 \u115f\u1160',
  // Turkish dotted and dotless I
  '\u0130stanbul \u0131s\u0131k I\u0307 i\u0307 \u0130I\u0131i', 'D\u0130YARBAKIR diyarbak\u0131r',
  // ligatures and fullwidth forms
  '\ufb01nance \ufb02ow \ufb00 \ufb03 \ufb04 \ufb05', '\u0152uvre \u00e6sir \u0133',
  '\uff21\uff22\uff23\uff11\uff12\uff13\uff01', '\uff28\uff45\uff4c\uff4c\uff4f\uff0c\u3000\uff57\uff4f\uff52\uff4c\uff44',
  '\uff76\uff80\uff76\uff85 \u30ab\u30bf\u30ab\u30ca',
  // right to left
  '\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd', '\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u0661\u0662\u0663',
  'abc \u202eevil\u202c def', '\u200f\u05d0 \u200ex\u200e \u2067isolate\u2069',
  'The author \u0639\u0628\u062f \u0627\u0644\u0644\u0647 wrote 3 books.',
  // joiners
  '\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66', 'a\u200db c\u200cd', '\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645',
  '\ud83c\udff3\ufe0f\u200d\ud83c\udf08 \ud83d\udc41\ufe0f\u200d\ud83d\udde8\ufe0f', '\u200d\u200d\u200d',
  // variation selectors, emoji modifiers, flags, tag sequences
  '\u2764\ufe0f \u263a\ufe0e \u231a\ufe0f #\ufe0f\u20e3', '\u845b\udb40\udd00 \u845b', '\ud83d\udc4d\ud83c\udffd\ud83d\udc4b\ud83c\udfff',
  '\ud83c\uddef\ud83c\uddf5\ud83c\uddeb\ud83c\uddf7\ud83c\udde9', '\ud83c\udff4\udb40\udc67\udb40\udc62\udb40\udc73\udb40\udc63\udb40\udc74\udb40\udc7f',
  // replacement character
  '\ufffd', 'a\ufffdb', '\ufffd\ufffd\ufffd \ufffd', ' \ufffd',
  // NEL, line and paragraph separators, BOM, no-break space, tabs, lone CR
  'line1\u0085line2', '\u0085', ' \u0085 ', 'a\u2028b\u2029c', '\u2028', 'x \u2028 y',
  '\ufeffhello', 'a\ufeffb', '\ufeff', '\ufeff\ufeff x',
  '100\u00a0km', '\u00a0\u00a0x', 'x\u00a0', 'a \u00a0 b', '\u202fnarrow\u2007figure\u2009thin',
  '\ta\tb\t', '\t\t\tindent', 'key:\tvalue\n\tnext',
  'a\rb', '\r', 'line\r\rnext', '\r \r', 'x\r\n\ry', 'end\r',
  // other invisible and odd code points
  'zero\u200bwidth\u200b', 'soft\u00adhyphen', 'word\u2060joiner', '\u180e mongolian',
  '\u0000', 'a\u0000b', '\u0001\u0002\u001f\u007f', '\u001b[31mred\u001b[0m', '\u0080\u009f',
  '\ue000\uf8ff private', '\ufdd0\ufffe\uffff', '\udbff\udfff', '\udb80\udc00 \udbbf\udffd',
  // astral letters, mathematical letters, numbers of other kinds
  '\ud840\udc00\ud842\udfb7 \ud87e\udc00', '\ud835\udc00\ud835\udc01\ud835\udc02 \ud835\udfcf\ud835\udfd0\ud835\udfd1',
  'x\u00b2\u00b3 \u00bd \u2153 \u216b \u2460\u2461\u2462', '\ud800\udf00\ud800\udf01 \ud801\udc00\ud801\udc28',
  // scripts the regexes split differently
  '\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a', '\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e',
  '\u1781\u17d2\u1798\u17c2\u179a', '\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0', '\u0561\u0562\u0563 \u0531\u0532',
  '\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3002\u30c6\u30b9\u30c8\uff01', '\u4f60\u597d\uff0c\u4e16\u754c\u3002',
  '\u0394\u03b7\u03bc\u03bf\u03ba\u03c1\u03b1\u03c4\u03af\u03b1 \u03ac\u03bb\u03c6\u03b1', '\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0401\u0436',
  '\u00dfa \u1e9e SS \u00df\u00df', '\u0149 \u01c6 \u01c5 \u01c4',
);

// ------------------------------------------------------------------ digit runs
for (const n of [20, 21, 22, 23, 33, 64, 99, 100, 128, 199, 200]) add('digits', digits(n));
add('digits',
  'abc' + digits(50) + 'def', 'x' + digits(25) + 'y' + digits(26) + 'z', digits(40) + '.' + digits(40),
  '3.14159265358979323846264338327950288419716939937510582097494459230781640628620899862803482534211706798214808651',
  digits(30).replace(/(\d{3})/g, '$1,') + '0', ' ' + digits(60) + ' ', '-' + digits(24) + 'e-' + digits(3),
  '0x' + digits(32) + 'ff', digits(21) + "'s", 'ISBN 978-' + digits(10) + ' and 9' + digits(29),
  digits(20).split('').join(' '), digits(45).split('').join('\n'), '(' + digits(22) + ')[' + digits(22) + ']',
  '\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669'.repeat(3),
  '\u0966\u0967\u0968\u0969\u096a\u096b\u096c\u096d\u096e\u096f'.repeat(3),
  '\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19'.repeat(3),
  '\u09e6\u09e7\u09e8\u09e9 \u0e51\u0e52\u0e53 \u0f20\u0f21 \u17e0\u17e1\u17e2',
  '\ud835\udfd8\ud835\udfd9\ud835\udfda\ud835\udfdb'.repeat(6), '12\u0663\u066456\u00b27\u2468' + digits(20),
  '\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079\u2080\u2081\u2082', '\u2160\u2161\u2162\u2163 \u3007\u3021\u3022',
  '1\u00a0000\u00a0000\u00a0' + digits(20), digits(25) + 'x' + '\u0661\u0662\u0663'.repeat(8),
);

// ------------------------------------------------------------- whitespace runs
const spaceKinds = [' ', '\t', '\n', '\r\n', '\r', '\u00a0', '\u3000', '\u2009', '\u000b', '\u000c', '\u0085', '\u2028', '\u200b'];
for (const w of spaceKinds) {
  add('whitespace', w.repeat(7) + 'word', 'word' + w.repeat(7), 'a' + w.repeat(33) + 'b', w.repeat(64));
}
add('whitespace',
  ' \t\n \u00a0 word', 'word \n\n\t ', '  \n  \n  x', '\n \n \n', ' \n', '\n ', '\t \t \t\n',
  '\r\n\r\n  \r\n\tx', 'x \u3000 \u00a0 \t y', ' '.repeat(100) + '\n'.repeat(3) + 'end', 'end' + ' \n'.repeat(40),
  '\n\n\n\n\n\n\n\nHello\n\n\n\n', '    def f():\n        return 1\n    ', ' \u2028 \u2029 \u0085 x',
  '   a   b    c     d      e       f        ', '\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\tz',
);

// ------------------------------------------------------ special-token text
const specials = [
  '<|endoftext|>', '<s>', '</s>', '<unk>', '<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>',
  '<|start_header_id|>', '<|end_header_id|>', '<|reserved_special_token_5|>', '<|python_tag|>',
  '<|im_start|>', '<|im_end|>', '<|end|>', '<|user|>', '<|assistant|>', '<|system|>', '<|placeholder3|>',
  '<tool_call>', '</tool_call>', '<|fim_prefix|>', '<|file_sep|>',
];
for (const t of specials) add('special', `a${t}b`, ` ${t} `, `${t}${t}`, `x  ${t}\n\n y`, `${t}\n`, `\t${t}`);
add('special',
  'a<|eot_id|>b', '<s>x</s>', '  <|im_start|>user\n', '<|end|>\n\n x', '<|endoftext|><|endoftext|>',
  '<|eot_id', '<|eot_id|', '|eot_id|>', '<s >', '< s>', '<S>', '<|EOT_ID|>', '<|im_start|', '<<s>>', '<</s>>',
  '<|<|endoftext|>|>', '<|endof text|>', '</s></s></s>', '<s><s> <s>', '<|endoftext|', 'endoftext|>', '<|im_end|>>',
  '<|reserved_special_token_999|>', '<|reserved_special_token_247|>', '<|reserved_special_token_248|>',
  '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWho is Jaime Vasquez?<|eot_id|>' +
    '<|start_header_id|>assistant<|end_header_id|>\n\n',
  '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n',
  '<|user|>\nWhere was the author born?<|end|>\n<|assistant|>\nIn Santiago.<|end|>\n<|endoftext|>',
  '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWho wrote it? [/INST] Jaime did. </s><s>[INST] Why? [/INST]',
  '<|end|>   \t\n x', '</s>  x', 'x </s>', 'x</s> \n', '<|assistant|>   ', '  <|user|>', '<|system|>\n\n\nYou',
  '\n<|im_end|>', '<tool_call>\n{"name": "f"}\n</tool_call>', '<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>',
  '\u2581<s>\u2581', '<s>\u2581\u2581x', '\u00e9<|endoftext|>\u00e9', '1<|eot_id|>2', "it's<|im_end|>'s",
);

// ------------------------------------------------------- contractions
add('contractions',
  "I'M", "we'Ll", "You'RE", "THEY'Ve", "it'S", "don'T", "Shouldn'T've", "I'D'VE", "she\u2019LL", "'S'T'RE",
  "\u02bcs it\u02bcs", "O'Neil's O'NEIL'S", "'ll'm'd", " 'LL 'Re 'vE", "We'rE we'RE WE'RE", "ain'T y'ALL'D'VE",
  "'", "''", "' s", "'s's's's", "L'H\u00d4PITAL l'h\u00f4pital", "don't\u2019t", "DON\u2019T I\u2019M",
);

// ------------------------------------------------------- very long words
{
  const lower = 'abcdefghijklmnopqrstuvwxyz'.split('');
  const mixedCase = lower.concat('ABCDEFGHIJKLMNOPQRSTUVWXYZ'.split(''));
  add('long word',
    'a'.repeat(500), randomText(500, lower), randomText(500, mixedCase), ' ' + randomText(500, lower),
    'pneumonoultramicroscopicsilicovolcanoconiosis'.repeat(12), 'ab'.repeat(250), '\u00e9'.repeat(500),
    '\u4e2d'.repeat(300), randomText(1000, lower), 'Z'.repeat(500) + ' end', randomText(500, lower.concat(['\u00e9', '\u00f8', '\u0142'])),
    '\u2581'.repeat(50) + 'x', '-'.repeat(300), '='.repeat(500), '.'.repeat(257),
  );
}

// ------------------------------------------------------------------ code
add('code',
  '#include <vector>\n\nint main() {\n    std::vector<int> v{1, 2, 3};\n    for (auto& x : v) x *= 2;\n    return v[0] != 2;\n}\n',
  'def fib(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n',
  'const f = async (x) => { const r = await fetch(`/api/${x}?q=1&t=${Date.now()}`); return r.json(); };',
  '{"question": "Who?", "answer": "He said \\"no\\".", "ids": [1, 2, 3], "ok": true, "x": null}',
  'for f in *.txt; do\n\tgrep -E \'^[0-9]{3,}\' "$f" | sort -u >> out.log 2>&1\ndone',
  '<div class="a"><p>Hello &amp; welcome &lt;3</p><br/></div>',
  '^(?:[a-z0-9!#$%&\'*+/=?^_`{|}~-]+)@(?:[a-z0-9-]+\\.)+[a-z]{2,}$',
  'fn main() -> Result<(), Box<dyn std::error::Error>> {\n    println!("{:?}", vec![1u8; 4]);\n    Ok(())\n}',
  'all: build\n\nbuild:\n\t$(CC) -O2 -o $@ $^ $(LDFLAGS)\n',
  'if (a&&b||!c) { x+=1; y-=2; z<<=3; } else if (p->q != NULL) { return *p; }\r\n',
  'SELECT name, COUNT(*) AS n FROM authors WHERE born >= 1958 GROUP BY name HAVING n > 1;',
  '    \n\t\t// TODO: fix\n\t\tx = y;;\n\n\n}',
);

// --------------------------------------------------------- random mixes
{
  const alphabet = [
    'a', 'Q', 'the', ' ', ' ', '  ', '\n', '\n\n', '\t', '\r\n', '\r', '0', '7', '123', '.', ',', '!', '?', '"',
    "'", "'s", "'LL", "'M", '-', '(', ')', '\u00e9', 'e\u0301', '\u00df', '\u0130', '\u0131', '\u0436', '\u4e2d',
    '\u0661', '\u00a0', '\u3000', '\u0085', '\u2028', '\ufeff', '\u200d', '\ufe0f', '\ud83d\ude00', '\ufffd',
    '<s>', '</s>', '<|endoftext|>', '<|eot_id|>', '<|im_start|>', '<|end|>', '\u2581', '<', '|', '>',
  ];
  for (let i = 0; i < 16; i++) add('random', randomText(20 + 15 * i, alphabet));
}

// ------------------------------------------------------- long TOFU texts
{
  const answers = tofu.map(row => row.answer);
  const build = (start, bytes, join) => {
    let s = '';
    for (let i = start; Buffer.byteLength(s, 'utf8') < bytes; i++) s += (s ? join : '') + answers[i % answers.length];
    return s;
  };
  add('long text',
    build(0, 5000, ' '),
    build(1000, 10000, '\n'),
    tofu.slice(2000, 2060).map(r => `Question: ${r.question}\nAnswer: ${r.answer}`).join('\n\n').slice(0, 20000),
    build(3500, 15000, '  '),
  );
}

// ------------------------------------------------------- invalid UTF-8
{
  const rand = n => { const out = []; for (let i = 0; i < n; i++) out.push(next() & 0xff); return out; };
  addBytes('invalid utf-8',
    [0x80], [0x80, 0xbf], [...b('a'), 0x80, ...b('b')], [0xbf, 0xbf, 0xbf, 0xbf],
    [...b('abc'), 0xc2], [0xe2, 0x82], [0xe2, 0x82, 0x41], [...b('x '), 0xf0, 0x9f, 0x98], [0xf0, 0x9f, 0x98, ...b(' ok')],
    [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0xaf], [0xf0, 0x80, 0x80, 0xaf], [0xe0, 0x9f, 0xbf],
    [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80], [0xf4, 0x90, 0x80, 0x80],
    [0xf5, 0x80, 0x80, 0x80], [0xff], [0xfe, 0xff], [0xff, 0xfe, ...b('h'), 0x00, ...b('i'), 0x00],
    [0xf8, 0x88, 0x80, 0x80, 0x80], [0xfc, 0x84, 0x80, 0x80, 0x80, 0x80],
    [...b('Jaime V'), 0xe1, ...b('squez, Santiago, Chile')], [...b('caf'), 0xe9, ...b(' au lait')], [0xc3, 0x28],
    [0xa0, 0xa1], [0xe2, 0x28, 0xa1], [0xe2, 0x82, 0x28], [0xf0, 0x28, 0x8c, 0xbc], [0xf0, 0x90, 0x28, 0xbc],
    [0xf0, 0x28, 0x8c, 0x28], [...b('  '), 0xc2, ...b('  ')], [...b('12'), 0x80, ...b('34'), 0xff, ...b('56')],
    [0xff, ...b('<|endoftext|>'), 0xfe], [...b('<s'), 0x80, ...b('>')], [...b("it'"), 0xc0, ...b('s')],
    [...b('\u00e9'), 0x81, ...b('\u00e9'), 0xcc], [...b('e'), 0xcc], [...b('\ud83d\ude00').slice(0, 3), ...b('\ud83d\ude00')],
    Array.from({ length: 64 }, (_, i) => 0x80 + i), [0xc2, 0xc2, 0xc2, ...b('x')], [0xe1, 0x80, 0xe1, 0x80, 0x80],
    [...b('\n'), 0xef, 0xbf, ...b('\n\n'), 0xef, 0xbb], [0xef, 0xbb, 0xbf, 0xef, 0xbb, ...b('bom')],
    rand(40), rand(120), [...b('Hello '), ...rand(30), ...b(' world')],
  );
}

// ------------------------------------------------------------------ run
// Strings already in the shared cases files are left out.
const sharedTexts = new Set();
for (const name of NAMES) {
  for (const file of ['cases.jsonl', 'cases_extra.jsonl']) {
    const p = path.join(shared, 'hf-tokenizers', name, file);
    for (const line of fs.readFileSync(p, 'utf8').split('\n')) if (line) sharedTexts.add(JSON.parse(line).text);
  }
}
const seen = new Set();
const inputs = [];
let skipped = 0;
for (const c of cases) {
  let text, bytesHex = null;
  if (c.bytes) {
    const buf = Buffer.from(c.bytes);
    text = buf.toString('utf8');
    if (!Buffer.from(text, 'utf8').equals(buf)) bytesHex = buf.toString('hex');
  } else {
    text = c.text;
    if (/[\ud800-\udfff]/u.test(text)) throw new Error(`lone surrogate in ${JSON.stringify(text)}`);
  }
  const key = bytesHex !== null ? 'bytes:' + bytesHex : 'text:' + text;
  if (seen.has(key)) continue;
  seen.add(key);
  if (bytesHex === null && sharedTexts.has(text)) { skipped++; continue; }
  inputs.push({ group: c.group, text, bytesHex });
}

async function main() {
  const outDir = path.join(repo, 'tests', 'fixtures', 'hf_tokenizers');
  fs.mkdirSync(outDir, { recursive: true });
  for (const name of NAMES) {
    const tok = Tokenizer.fromFile(path.join(shared, 'hf-tokenizers', name, 'tokenizer.json'));
    const lines = [];
    let roundtrips = 0;
    for (const { group, text, bytesHex } of inputs) {
      const ids = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
      const idsWithSpecial = (await tok.encode(text, null, { addSpecialTokens: true })).getIds();
      for (const id of ids.concat(idsWithSpecial))
        if (!Number.isInteger(id) || id < 0) throw new Error(`bad id ${id} for ${JSON.stringify(text)}`);
      const decoded = await tok.decode(ids, false);
      const decodedSkip = await tok.decode(idsWithSpecial, true);
      const record = { group };
      if (bytesHex !== null) record.bytes_hex = bytesHex; else record.text = text;
      Object.assign(record, {
        ids, ids_with_special: idsWithSpecial, decoded, decoded_skip_special: decodedSkip,
        roundtrip: decoded === text,
      });
      if (record.roundtrip) roundtrips++;
      lines.push(JSON.stringify(record));
    }
    const out = path.join(outDir, `${name}.jsonl`);
    const body = lines.join('\n') + '\n';
    fs.writeFileSync(out, body);
    console.log(`${path.relative(repo, out)}: ${lines.length} strings, ${roundtrips} round trips, ` +
      `${Buffer.byteLength(body)} bytes`);
  }
  console.log(`(${skipped} strings left out because the shared cases files have them)`);
}
main().catch(err => { console.error(err); process.exit(1); });

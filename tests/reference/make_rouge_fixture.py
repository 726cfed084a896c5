#!/usr/bin/python3
"""Write tests/fixtures/rouge_cases.json: Porter stems and ROUGE-L scores for tests/test_rouge.cpp.

Regenerate from the repository root with

    /usr/bin/python3 tests/reference/make_rouge_fixture.py

(Debian's Python with nltk 3.8; the `rouge_score` package is not needed.) The stems come from
nltk's PorterStemmer() in its default mode (NLTK_EXTENSIONS), the stemmer rouge_score uses. The
ROUGE-L scores come from an independent implementation, below, of what rouge_score's
RougeScorer(["rougeL"], use_stemmer=True).score(reference, prediction) computes (rouge_score 0.1.2,
rouge_score/tokenize.py and rouge_scorer.py):

    tokens: text.lower(); every run of [^a-z0-9] -> " "; split on whitespace; tokens longer than 3
            characters stemmed; tokens not matching ^[a-z0-9]+$ (the empty ones) dropped
    LCS over the token lists (plain dynamic programming table)
    precision = LCS / len(prediction tokens), recall = LCS / len(reference tokens),
    fmeasure = 2 * precision * recall / (precision + recall), or 0 when that sum is 0;
    all three 0 when either token list is empty.

Everything is deterministic (sorted inputs, fixed seeds). The texts are TOFU's, from
../shared/data/tofu/*.jsonl.

Output: {"nltk_version", "stems": {word: stem}, "tokens": [{"text", "tokens"}],
         "rouge": [{"prediction", "reference", "precision", "recall", "f1"}]}
"""

import glob
import json
import os
import random
import re

import nltk
from nltk.stem.porter import PorterStemmer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOFU = os.path.join(REPO, "..", "shared", "data", "tofu")
OUT = os.path.join(REPO, "tests", "fixtures", "rouge_cases.json")

STEMMER = PorterStemmer()
assert STEMMER.mode == PorterStemmer.NLTK_EXTENSIONS


def split_words(text):
    """rouge_score's tokenisation before stemming."""
    text = re.sub(r"[^a-z0-9]+", " ", text.lower())
    return [t for t in re.split(r"\s+", text) if re.match(r"^[a-z0-9]+$", t)]


def tokens(text):
    words = [STEMMER.stem(w) if len(w) > 3 else w for w in split_words(text)]
    return [w for w in words if re.match(r"^[a-z0-9]+$", w)]


def lcs(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table[len(a)][len(b)]


def rouge_l(prediction, reference):
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return 0.0, 0.0, 0.0
    common = lcs(pred, ref)
    precision = common / len(pred)
    recall = common / len(ref)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def read_jsonl(name):
    with open(os.path.join(TOFU, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def all_strings(record):
    for value in record.values():
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, str))


# Words whose stems exercise NLTK's extensions and the rules' corner cases.
TRICKY = """
generously sky skies dying lying tying news innings inning outings outing cannings canning howe
proceed exceed succeed proceeding exceeded succeeds conditional relational rational hopefully
agreed feed bled hoping hopping caresses ponies ties pies dies died tied cried spied meeting
meetings cats caress cares sing sings singing falling filing failing fizzed hissing tanned
controlled rolled conflated troubled sized motoring matting mating happy sky say cry by syzygy
yyyy ssss sss yes eyes toy toys boy boys enjoyed relate probate conflate pirate prelate
derivate activate demonstrate necessitate renovate triplicate formative formalize electriciti
electrical hopeful goodness revival allowance inference airliner gyroscopic adjustable defensible
irritant replacement adjustment dependent adoption homologou communism activate angulariti
homologous effective bowdlerize probate rate cease controll roll generalization generalizations
oscillator oscillators feudalism decisiveness hopefulness callousness formaliti sensitiviti
sensibiliti vietnamization predication operator radically differently vilely analogously
geology archaeology theology biology logi apology analogi analogy rationally conditionally
fully carefully beautifully hopefulli abli ably capably probably feasibly happily bli bly
agreement agreements vileli sensibility ability mobility possibly tutorial material
trial trials dial dials aerial ideal ideally ozone abated abating aa ab as is it oo
1990s 1990 20th 5th 3rd 22nd 2000s a1b2 x2 mp3 dvds cds abc abcs abies ties' ies sies
""".split()


def synthetic_words(rng, count):
    """Random letter strings ending in the suffixes the rules look at, many with 'y' inside."""
    suffixes = sorted(set("""
        s ss sses ies ied eed ed ing at ate bl ble iz ize y ational tional enci anci izer bli alli entli
        eli ousli ization ation ator alism iveness fulness ousness aliti iviti biliti fulli logi icate
        ative alize iciti ical ful ness al ance ence er ic able ible ant ement ment ent ion sion tion ou
        ism iti ous ive e ll l ying yed yes yy ey oy ay uy
        """.split()))
    pieces = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "x", "y",
              "z", "a", "e", "i", "o", "u", "y", "y", "1", "tr", "st", "ll", "ss"]
    words = set()
    while len(words) < count:
        stem = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 5)))
        words.add(stem + rng.choice(suffixes))
    return sorted(words)


def main():
    files = sorted(glob.glob(os.path.join(TOFU, "*.jsonl")))
    vocabulary = set()
    for path in files:
        for record in read_jsonl(os.path.basename(path)):
            for text in all_strings(record):
                vocabulary.update(split_words(text))
    rng = random.Random(20240601)
    words = set(rng.sample(sorted(vocabulary), 4500))
    words.update(w.lower() for w in TRICKY if re.match(r"^[a-z0-9]+$", w.lower()))
    words.update(synthetic_words(rng, 600))
    stems = {w: STEMMER.stem(w) for w in sorted(words)}

    # Tokenisation of a few strings with digits, punctuation and non-ASCII characters.
    token_texts = [
        "", "   ", "?!... --- ###", "Hello, World!", "The 1990s: 25th-of-February, 1958.",
        "Jaime Vasquez's Chilean-American upbringing", "naïve café Müller—José’s “Garçon”",
        "İstanbul and İzmir", "5\u212a run (KELVIN)", "Тhe Cyrillic Т is not T", "a\tb\nc\r\nd",
        "x1y2z3 ABC123def", "dying lying tying skies sky news innings", "don't won't can't",
        "A.B.C. e-mail re-enter co-operate", "\u00e9t\u00e9 ete", "ponies ties caresses cats feed agreed",
    ]
    for record in read_jsonl("forget01.jsonl")[:5]:
        token_texts.append(record["answer"])
    for text in sorted(t for path in files for r in read_jsonl(os.path.basename(path)) for t in all_strings(r)
                       if any(ord(c) > 127 for c in t))[:6]:
        token_texts.append(text)
    token_cases = [{"text": t, "tokens": tokens(t)} for t in token_texts]

    # (prediction, reference) pairs: paraphrases and perturbations of TOFU answers, other answers,
    # shuffled and truncated answers, and a few edge cases.
    pairs = [
        ("", ""), ("", "The answer."), ("The answer.", ""), ("?!", "..."), ("...", "The answer."),
        ("The cat sat on the mat.", "The cat sat on the mat."),
        ("Dogs bark loudly.", "The cat sat on the mat."),
        ("the mat sat on the cat", "The cat sat on the mat."),
        ("running runners ran", "Runner running run."),
    ]
    perturbed = read_jsonl("forget10_perturbed.jsonl") + read_jsonl("retain_perturbed.jsonl")
    perturbed += read_jsonl("world_facts_perturbed.jsonl") + read_jsonl("real_authors_perturbed.jsonl")
    for record in rng.sample(perturbed, 120):
        answer = record["answer"]
        if "paraphrased_answer" in record:
            pairs.append((record["paraphrased_answer"], answer))
        pairs.append((rng.choice(record["perturbed_answer"]), answer))
    answers = [r["answer"] for r in read_jsonl("full.jsonl")]
    for _ in range(40):
        pairs.append((rng.choice(answers), rng.choice(answers)))
    for answer in rng.sample(answers, 40):
        words = answer.split()
        rng.shuffle(words)
        pairs.append((" ".join(words), answer))
    for answer in rng.sample(answers, 30):
        words = answer.split()
        pairs.append((" ".join(words[: rng.randint(0, len(words))]), answer))
    for answer in rng.sample(answers, 20):
        words = answer.split()
        pairs.append((answer, " ".join(words[rng.randint(0, len(words)) :])))
    rouge_cases = []
    for prediction, reference in pairs:
        precision, recall, f1 = rouge_l(prediction, reference)
        rouge_cases.append({"prediction": prediction, "reference": reference,
                            "precision": precision, "recall": recall, "f1": f1})

    fixture = {"nltk_version": nltk.__version__, "stems": stems, "tokens": token_cases, "rouge": rouge_cases}
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{OUT}: {len(stems)} stems, {len(token_cases)} tokenisations, {len(rouge_cases)} ROUGE-L pairs, "
          f"{os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()

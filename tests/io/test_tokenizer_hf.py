#!/usr/bin/python3
"""longctx's BPE tokenizer against the PyPI `tokenizers` package it imitates.

    /usr/bin/python3 tests/io/test_tokenizer_hf.py --longctx build/bin/longctx [--keep] [-v]

`tokenizers` trains byte-level BPE tokenizers (GPT-2 style ByteLevel regex, and
Llama 3 style Split regex + ByteLevel with ignore_merges and special tokens) on
a generated multilingual corpus; both libraries then encode held-out texts and
the ids must be identical. `tokenizers` runs in the repo's .venv (made by
scripts/install-py.sh); longctx runs as build/bin/tokenize_tool, found next to
the --longctx binary. Prints one line per check and a final `N passed, M failed`;
exits 1 on any failure.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
VENV_PY = os.path.join(REPO, ".venv", "bin", "python")
TIMEOUT = 600
MIN_MERGES = 3000

# Runs inside the venv: trains, writes the tokenizer.json variants, and encodes
# the held-out texts with each, so the venv is entered once.
HF_SCRIPT = r'''
import json, os, sys
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

work = sys.argv[1]
corpus = os.path.join(work, "corpus.txt")
texts = [json.loads(l) for l in open(os.path.join(work, "texts.jsonl"), encoding="utf-8")]
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eot_id|>"]

def train(pre, specials, ignore_merges):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=5000, min_frequency=2, special_tokens=specials, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([corpus], tr)
    return tok

def save_variant(name, j):
    path = os.path.join(work, name + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    return path

gpt2 = train(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), ["<|endoftext|>"], False)
llama3 = train(pre_tokenizers.Sequence([
    pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), LLAMA3_SPECIAL, True)
variants = {}
g = json.loads(gpt2.to_str())
variants["gpt2"] = save_variant("gpt2", g)
g_str = json.loads(json.dumps(g))
g_str["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in g["model"]["merges"]]
variants["gpt2_string_merges"] = save_variant("gpt2_string_merges", g_str)
g_pre = json.loads(json.dumps(g))
g_pre["pre_tokenizer"]["add_prefix_space"] = True
variants["gpt2_prefix_space"] = save_variant("gpt2_prefix_space", g_pre)
# Like Llama 3's, give the vocab whole-word tokens that merges cannot build, so
# that ignore_merges changes ids (a freshly trained vocab has none).
l = json.loads(llama3.to_str())
vocab = l["model"]["vocab"]
for t in texts[-1:] + texts:
    for piece, _ in llama3.pre_tokenizer.pre_tokenize_str(t):
        if len(piece) >= 2 and piece not in vocab and len(vocab) < 5000 + 60:
            vocab[piece] = len(vocab)
llama3 = Tokenizer.from_str(json.dumps(l))
llama3.add_tokens([AddedToken("[NOTE]", normalized=True, special=False)])  # a normalized, non-special one
llama3.add_special_tokens(["<|reserved_special_token_0|>"])
l = json.loads(llama3.to_str())
l["model"]["ignore_merges"] = True
variants["llama3"] = save_variant("llama3", l)
l_off = json.loads(json.dumps(l))
l_off["model"]["ignore_merges"] = False
variants["llama3_no_ignore_merges"] = save_variant("llama3_no_ignore_merges", l_off)

out = {}
for name, path in variants.items():
    tok = Tokenizer.from_file(path)
    j = json.load(open(path, encoding="utf-8"))
    ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    specials = [a["content"] for a in j["added_tokens"]]
    out[name] = dict(path=path, ids=ids, decoded=[tok.decode(i, skip_special_tokens=False) for i in ids],
                     merges=len(j["model"]["merges"]), vocab_size=tok.get_vocab_size(with_added_tokens=True),
                     special_ids={s: tok.token_to_id(s) for s in specials})
out["ignore_merges_changes"] = sum(
    a != b for a, b in zip(out["llama3"]["ids"], out["llama3_no_ignore_merges"]["ids"]))

uni = Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0), ("ab", -1.5)], unk_id=0))
out["unigram_path"] = os.path.join(work, "unigram.json")
uni.save(out["unigram_path"])
with open(os.path.join(work, "hf.json"), "w", encoding="utf-8") as f:
    json.dump(out, f)
'''

# ---- corpus ---------------------------------------------------------------

ENGLISH = ("the of and to in is was for that with as on by at from his her they we you it this which "
           "be are have had not but or an were been one all would there their what so up out if about "
           "who get when make can like time just him know take people into year your good some could "
           "them see other than then now look only come its over think also back after use two how our "
           "work first well way even new want because any these give day most us model training token "
           "sequence attention gradient memory parallel context window").split()
GERMAN = ("Müller Straße schön Größe Übung Bäcker fährt Mädchen Käse hören Tür Brücke Fußball Äpfel Öl "
          "über für können würde Grüße Bücher müssen Häuser Länge natürlich Frühstück gemütlich "
          "Weißwurst äußerst Österreich Zürich").split()
RUSSIAN = ("привет мир Москва книга человек время жизнь говорить работа большой дом день рука Ёлка "
           "ещё объявление съезд щука Жёлтый учиться хорошо сегодня завтра вопрос ответ язык").split()
GREEK = ("καλημέρα κόσμος Αθήνα θάλασσα ήλιος νερό φίλος ΕΛΛΑΔΑ ψυχή ξένος λόγος άνθρωπος "
         "ευχαριστώ σήμερα αύριο γλώσσα ώρα").split()
HAN = ("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可"
       "她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同"
       "三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名")
KANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
KATA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンー"
ARABIC = ("مرحبا العالم كتاب مدرسة شمس قمر السلام عليكم شكرا جميل بيت ماء "
          "٠١٢٣ ٤٥٦٧٨٩").split()
EMOJI = ["😀", "🚀", "👍🏽", "👨‍👩‍👧", "🇩🇪", "❤️", "🎉", "🤖", "✨", "🔥"]
CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "if (ptr == NULL)\n\t\treturn -1;\r\n",
    "x = {'key': [1, 2, 3], \"other\": None}  # comment\n",
    "    assert len(ids) == 42, f\"got {len(ids)}\"\n\n",
    "<div class=\"a\">&nbsp;</div>\n",
]
ASCII_ALPHA = "etaoinshrdlucmfwypvbgkjqxz"
SCRIPTS_ALPHA = [ASCII_ALPHA, "абвгдеёжзийклмнопрстуфхцчшщъыьэюя", "αβγδεζηθικλμνξοπρστυφχψωάέήίόύώ",
                 "äöüßaeioun", KANA, KATA]
APOS = ["don't", "it's", "WE'LL", "I'M", "they've", "she'd", "you're", "Can'T", "o'clock"]


def zipf_pick(rng, items):
    # index ~ 1/rank, so frequent pairs exist for BPE to merge
    return items[min(int(rng.paretovariate(1.0)) - 1, len(items) - 1)]


def pseudo_word(rng):
    alpha = rng.choice(SCRIPTS_ALPHA)
    return "".join(zipf_pick(rng, alpha) for _ in range(rng.randint(2, 9)))


def number(rng):
    kind = rng.randrange(5)
    if kind == 0:
        return str(rng.randrange(10 ** rng.randint(1, 20)))
    if kind == 1:
        return f"{rng.uniform(-1e4, 1e4):.{rng.randint(1, 6)}f}"
    if kind == 2:
        return f"{rng.randrange(1, 10**7):,}"
    if kind == 3:
        return f"{rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return "".join(rng.choice("0123456789") for _ in range(rng.randint(20, 80)))


def han(rng):
    return "".join(zipf_pick(rng, HAN) for _ in range(rng.randint(2, 12))) + rng.choice("，。！？、")


def japanese(rng):
    kana = "".join(zipf_pick(rng, KANA) for _ in range(rng.randint(1, 5)))
    kata = "".join(zipf_pick(rng, KATA) for _ in range(rng.randint(0, 6)))
    return zipf_pick(rng, HAN) + kana + kata + rng.choice(["です。", "ます、", "。"])


def fragment(rng):
    r = rng.random()
    if r < 0.30:
        return zipf_pick(rng, ENGLISH) if rng.random() < 0.9 else zipf_pick(rng, ENGLISH).capitalize()
    if r < 0.38:
        return zipf_pick(rng, GERMAN)
    if r < 0.46:
        return zipf_pick(rng, RUSSIAN)
    if r < 0.51:
        return zipf_pick(rng, GREEK)
    if r < 0.57:
        return han(rng)
    if r < 0.62:
        return japanese(rng)
    if r < 0.66:
        return zipf_pick(rng, ARABIC)
    if r < 0.69:
        return rng.choice(EMOJI) * rng.randint(1, 3)
    if r < 0.77:
        return number(rng)
    if r < 0.80:
        return rng.choice(APOS)
    if r < 0.83:
        return rng.choice(CODE)
    if r < 0.86:
        return rng.choice([".", ",", "!", "?", ";", ":", "...", "--", "(", ")", "\"", "'", "«»", "—"])
    return pseudo_word(rng)


def separator(rng):
    r = rng.random()
    if r < 0.80:
        return " "
    if r < 0.88:
        return " " * rng.randint(2, 40)
    if r < 0.93:
        return rng.choice(["\n", "\n\n", "\r\n", "\t", "\t\t", " \n  ", "\n    "])
    return ""


def paragraph(rng, n):
    return "".join(fragment(rng) + separator(rng) for _ in range(n))


EDGE_TEXTS = [
    "", " ", "  ", "a", "\n", "\n\n\n", "\t", "hello world", " leading space", "trailing space   ",
    "   three leading", "x" + " " * 5000 + "y", "1" * 3001, "\n" * 700 + "end", " " * 257,
    "don't DON'T it's IT'S we'll WE'LL I'm I'M they've she'd", "'s's's 's", "ſ'ſ K'K",
    "<|begin_of_text|>Hello<|end_of_text|>", "<|endoftext|>", "a<|endoftext|>b<|endoftext|><|endoftext|>",
    "<|eot_id|><|eot_id|> <|eot_id|>", "<|begin_of_text", "<|begin_of_text|",
    "abc<|start_header_id|>user<|end_header_id|>\n\nhi",
    "see [NOTE] and [NOTE][NOTE]", "<|reserved_special_token_0|>x",
    "a\x85\x85.", "a\x1c\x1c.", "a\u200b\u200b.", "a\u2028\u2028.", "x\u2003\u2003.", "\u3000\u3000y", "\u00a0x\u00a0\u00a0y", "tab\t\tx", "\r\n\r\n", "\v\f x",
    "e\u0301t\u0301e\u0301", "👨‍👩‍👧‍👦 🏳️‍🌈 🇯🇵🇩🇪", "٠١٢٣٤٥٦٧٨٩ 12345678901234567890",
    "日本語のテキストです。中文文本。한국어 텍스트", "Ünïcödé ÀÉÎÕÜ ñ ç ø å",
    "\x00\x01\x1f\x7f", "mixed  \t  \n\t  whitespace   \n", "€100 £50 ¥1000 ₹20",
    "int main() {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
]


def make_data(work, rng):
    with open(os.path.join(work, "corpus.txt"), "w", encoding="utf-8") as f:
        for _ in range(4000):
            f.write(paragraph(rng, rng.randint(5, 60)) + "\n")
    held = list(EDGE_TEXTS)
    held += [paragraph(random.Random(1000 + i), random.Random(i).randint(1, 120)) for i in range(300)]
    held.append(paragraph(random.Random(99), 20000))  # one long document
    with open(os.path.join(work, "texts.jsonl"), "w", encoding="utf-8") as f:
        for t in held:
            f.write(json.dumps(t) + "\n")
    return held


# ---- checks ---------------------------------------------------------------

class Checks:
    def __init__(self, verbose):
        self.passed = 0
        self.failed = 0
        self.verbose = verbose

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok


def run(cmd, verbose=False):
    if verbose:
        print("  $ " + " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(cmd, -9, e.stdout or "", f"timed out after {TIMEOUT}s")
    except OSError as e:
        return subprocess.CompletedProcess(cmd, 127, "", f"cannot run {cmd[0]}: {e}")


def json_lines(text):
    # not str.splitlines(): it also splits at U+0085, U+2028, ... inside strings
    return [json.loads(ln) for ln in text.split("\n") if ln]


def first_mismatch(texts, want, got):
    for i, (w, g) in enumerate(zip(want, got)):
        if w != g:
            k = next((k for k in range(min(len(w), len(g))) if w[k] != g[k]), min(len(w), len(g)))
            return (f"text {i} {texts[i][:80]!r}: first difference at token {k}: "
                    f"hf {w[max(0, k - 3):k + 4]} longctx {g[max(0, k - 3):k + 4]}")
    return f"{len(want)} texts from hf, {len(got)} from longctx"


def variant_checks(C, args, work, name, hf, texts):
    tool = args.tool
    r = run([tool, "encode", hf["path"], os.path.join(work, "texts.jsonl")], args.verbose)
    if not C.check(f"{name}: tokenize_tool encode runs", r.returncode == 0, r.stderr.strip()[-500:]):
        return
    got = json_lines(r.stdout)
    n_tok = sum(len(i) for i in hf["ids"])
    C.check(f"{name}: same ids as tokenizers on {len(texts)} texts ({n_tok} tokens, {hf['merges']} merges)",
            got == hf["ids"], "" if got == hf["ids"] else first_mismatch(texts, hf["ids"], got))
    C.check(f"{name}: trained with several thousand merges", hf["merges"] >= MIN_MERGES, str(hf["merges"]))

    ids_file = os.path.join(work, name + ".ids.jsonl")
    with open(ids_file, "w") as f:
        f.writelines(json.dumps(i) + "\n" for i in hf["ids"])
    r = run([tool, "decode", hf["path"], ids_file], args.verbose)
    dec = json_lines(r.stdout) if r.returncode == 0 else None
    bad = [i for i, (d, h) in enumerate(zip(dec or [], hf["decoded"])) if d != h]
    C.check(f"{name}: decode equals tokenizers' decode",
            dec is not None and len(dec) == len(texts) and not bad,
            r.stderr.strip() or (f"first at text {bad[0]}" if bad else ""))
    if "prefix_space" not in name:  # that one decodes with the added spaces, as tokenizers does
        C.check(f"{name}: decode(encode(text)) == text", dec == texts)

    specials = list(hf["special_ids"])
    r = run([tool, "info", hf["path"]] + specials, args.verbose)
    info = json.loads(r.stdout) if r.returncode == 0 else {}
    same = info.get("vocab_size") == hf["vocab_size"] and info.get("ids") == hf["special_ids"]
    C.check(f"{name}: vocab_size and special-token ids", same,
            "" if same else f"longctx {info or r.stderr} hf {hf['vocab_size']} {hf['special_ids']}")
    return info


def error_check(C, args, hf_out):
    path = hf_out["unigram_path"]
    r = run([args.tool, "encode", path, os.devnull], args.verbose)
    msg = r.stderr.strip()
    C.check("Unigram tokenizer.json written by tokenizers: one-line error naming the file and the model type",
            r.returncode == 1 and "\n" not in msg and path in msg and "Unigram" in msg, msg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True, help="the longctx binary; tokenize_tool sits beside it")
    ap.add_argument("--tool", help="path to tokenize_tool (default: next to --longctx)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    args.tool = os.path.abspath(args.tool or os.path.join(os.path.dirname(os.path.abspath(args.longctx)),
                                                          "tokenize_tool"))
    C = Checks(args.verbose)
    work = tempfile.mkdtemp(prefix="longctx_tok_hf_")
    try:
        ok = C.check("tokenize_tool exists", os.access(args.tool, os.X_OK), args.tool)
        r = run([VENV_PY, "-c", "import tokenizers; print(tokenizers.__version__)"])
        why = f"{VENV_PY} cannot import tokenizers; run scripts/install-py.sh ({r.stderr.strip()[-200:]})"
        ok &= C.check("tokenizers importable in .venv", r.returncode == 0,
                      r.stdout.strip() if r.returncode == 0 else why)
        if ok:
            texts = make_data(work, random.Random(1234))
            r = run([VENV_PY, "-c", HF_SCRIPT, work], args.verbose)
            if C.check("tokenizers trains and encodes", r.returncode == 0, r.stderr.strip()[-2000:]):
                with open(os.path.join(work, "hf.json"), encoding="utf-8") as f:
                    hf_out = json.load(f)
                changed = hf_out["ignore_merges_changes"]
                C.check("ignore_merges matters for the llama3 variant", changed > 0,
                        f"it changes the ids of {changed} held-out texts")
                for name, hf in hf_out.items():
                    if isinstance(hf, dict):
                        try:
                            variant_checks(C, args, work, name, hf, texts)
                        except Exception:
                            C.check(f"{name}: no exception in the test", False,
                                    traceback.format_exc().strip().splitlines()[-1])
                error_check(C, args, hf_out)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{C.passed} passed, {C.failed} failed")
    return 1 if C.failed else 0


if __name__ == "__main__":
    sys.exit(main())

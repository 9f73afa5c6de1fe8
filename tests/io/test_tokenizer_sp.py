#!/usr/bin/python3
"""NFC and SentencePiece-style tokenizers against the PyPI `tokenizers` package.

    /usr/bin/python3 tests/io/test_tokenizer_sp.py --longctx build/bin/longctx [--keep] [-v] [--small]

On a generated Unicode-heavy corpus (Latin with combining accents in NFC and
NFD, Vietnamese stacked marks in any order, Greek, Cyrillic, CJK, Hangul
precomposed and as jamo, Arabic with harakat, Devanagari with nukta, emoji
with ZWJ, marks newer than Unicode 9, whitespace runs, code, digits, special
tokens in the text), `tokenizers` trains
  - a Qwen2-like byte-level BPE with an NFC normalizer, and
  - a Llama-2/Mistral-like SentencePiece BPE with byte_fallback (small
    vocab and alphabet, so that byte fallback is frequent), written out in
    the Prepend+Replace layout and in the Metaspace layout (prepend_scheme
    first/always/never, split or not), and without byte fallback or with
    some byte tokens missing (unk, fuse_unk);
both libraries encode several MB of held-out lines and the ids must be
identical, as must the decoded text. Also longctx's NFC is compared with
unicodedata and with `tokenizers`' NFC on every code point and on random
mark sequences. Same policy as test_tokenizer_hf.py (whose helpers it uses):
`tokenizers` runs in the repo's .venv; without it the check fails, naming
scripts/install-py.sh. Prints one line per check, then `N passed, M failed`.
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_tokenizer_hf as base  # noqa: E402  (Checks, run, json_lines, first_mismatch, corpus pieces)

TRAIN_LINES = 12000
HELD_LINES = 24000      # the three main variants get all of them (several MB)
SUBSET_LINES = 3000     # the other variants
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Runs inside the venv: trains, writes the tokenizer.json variants, encodes
# and decodes the held-out lines with each, and normalises the NFC probes.
HF_SCRIPT = r'''
import json, os, sys, unicodedata
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

work, qwen2_re, subset = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = [json.loads(l) for l in open(os.path.join(work, "texts.jsonl"), encoding="utf-8")]
corpus = os.path.join(work, "corpus.txt")
out = {"variants": {}}

def save(name, j, full):
    path = os.path.join(work, name + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False)
    tok = Tokenizer.from_file(path)
    n = len(texts) if full else subset
    encs = tok.encode_batch(texts[:n], add_special_tokens=False)
    ids = [e.ids for e in encs]
    with open(os.path.join(work, name + ".hf_ids.jsonl"), "w") as f:
        f.writelines(json.dumps(i, separators=(",", ":")) + "\n" for i in ids)
    dec = tok.decode_batch(ids, skip_special_tokens=False)
    with open(os.path.join(work, name + ".hf_dec.jsonl"), "w") as f:
        f.writelines(json.dumps(d) + "\n" for d in dec)
    bytes_ids = {v for k, v in j["model"]["vocab"].items() if len(k) == 6 and k.startswith("<0x")}
    unk = tok.token_to_id("<unk>")
    specials = [a["content"] for a in j["added_tokens"]]
    out["variants"][name] = dict(
        path=path, texts=n, tokens=sum(map(len, ids)), merges=len(j["model"]["merges"]),
        byte_tokens=sum(t in bytes_ids for i in ids for t in i), unks=sum(t == unk for i in ids for t in i),
        vocab_size=tok.get_vocab_size(with_added_tokens=True), special_ids={s: tok.token_to_id(s) for s in specials},
        roundtrip=sum(d == t for d, t in zip(dec, texts)),
        nfc_roundtrip=sum(d == unicodedata.normalize("NFC", t) for d, t in zip(dec, texts)))
    # texts without added-token text or "▁" (those decode differently by design) and without unk;
    # NFC as tokenizers computes it (Unicode 9.0 data)
    nfc = normalizers.NFC().normalize_str
    plain = [(d, t) for d, t, i in zip(dec, texts, ids)
             if unk not in i and "\u2581" not in t and not any(s in t or nfc(s) in nfc(t) for s in specials)]
    out["variants"][name].update(plain=len(plain), plain_roundtrip=sum(d == t for d, t in plain),
                                 plain_nfc_roundtrip=sum(d == nfc(t) for d, t in plain),
                                 fails=[t[:200] for d, t in plain if d != t][:3],
                                 nfc_fails=[t[:200] for d, t in plain if d != nfc(t)][:3])

# Qwen2-like: NFC, then the Qwen2 split regex and ByteLevel.
q = Tokenizer(models.BPE())
q.normalizer = normalizers.NFC()
q.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Split(Regex(qwen2_re), behavior="isolated", invert=False),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
q.decoder = decoders.ByteLevel()
q.train([corpus], trainers.BpeTrainer(vocab_size=6000, min_frequency=2, show_progress=False,
                                      special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
q.add_tokens([AddedToken("[cafe\u0301]", normalized=True, special=False)])  # matched in NFC form
save("qwen2_nfc", json.loads(q.to_str()), True)

# SentencePiece-like: trained with Metaspace, then written as Llama 2 files are.
sp = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
sp.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
sp.train([corpus], trainers.BpeTrainer(vocab_size=3000, min_frequency=2, show_progress=False, limit_alphabet=160,
                                       special_tokens=["<unk>", "<s>", "</s>"]))
trained = json.loads(sp.to_str())
vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
for b in range(256):
    vocab["<0x%02X>" % b] = len(vocab)
for t, _ in sorted(trained["model"]["vocab"].items(), key=lambda kv: kv[1]):
    vocab.setdefault(t, len(vocab))
sp_model = dict(trained["model"], vocab=vocab, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
sp_added = [dict(id=i, content=c, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
            for i, c in enumerate(["<unk>", "<s>", "</s>"])]
REPL = {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}
LLAMA_DEC = {"type": "Sequence", "decoders": [REPL, {"type": "ByteFallback"}, {"type": "Fuse"},
                                             {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}

def sp_json(normalizer, pre, decoder, **model):
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": sp_added,
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": None,
            "decoder": decoder, "model": dict(sp_model, **model)}

legacy_norm = {"type": "Sequence", "normalizers": [
    {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
legacy = sp_json(legacy_norm, None, LLAMA_DEC,
                 merges=[" ".join(m) if isinstance(m, list) else m for m in sp_model["merges"]])
t = Tokenizer.from_str(json.dumps(legacy))
t.add_tokens([AddedToken("[NOTE]", normalized=True, special=False)])  # matched as the normalized "▁[NOTE]"
save("sp_prepend", json.loads(t.to_str()), True)

def meta(scheme, split):
    return {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": split}

save("sp_first_nosplit", sp_json(None, meta("first", False), LLAMA_DEC), True)
save("sp_first_split", sp_json(None, meta("first", True), LLAMA_DEC), False)
for split in (True, False):
    save("sp_always_" + ("split" if split else "nosplit"),
         sp_json(None, meta("always", split), {"type": "Sequence", "decoders": [
             {"type": "ByteFallback"}, meta("always", split)]}), False)
    save("sp_never_" + ("split" if split else "nosplit"),
         sp_json(None, meta("never", split), {"type": "Sequence", "decoders": [
             REPL, {"type": "ByteFallback"}, {"type": "Fuse"}]}), False)
save("sp_unk_fused", sp_json(legacy_norm, None, LLAMA_DEC, byte_fallback=False), False)
save("sp_unk_unfused", sp_json(legacy_norm, None, LLAMA_DEC, byte_fallback=False, fuse_unk=False), False)
# no byte tokens for 0x80-0x8F and 0xE3 (renamed, so the ids stay dense): many characters become unk
missing = {k + "_" if k.startswith("<0x8") or k == "<0xE3>" else k: v for k, v in vocab.items()}
save("sp_missing_bytes", sp_json(legacy_norm, None, LLAMA_DEC, vocab=missing), False)

# NFC probes: unicodedata (same Unicode version as longctx's tables?) and tokenizers' own NFC.
probes = [json.loads(l) for l in open(os.path.join(work, "nfc.jsonl"), encoding="utf-8")]
nfc = normalizers.NFC()
with open(os.path.join(work, "nfc.hf.jsonl"), "w") as f:
    f.writelines(json.dumps(nfc.normalize_str(p)) + "\n" for p in probes)
with open(os.path.join(work, "nfc.ud.jsonl"), "w") as f:
    f.writelines(json.dumps(unicodedata.normalize("NFC", p)) + "\n" for p in probes)
out["unidata_version"] = unicodedata.unidata_version
with open(os.path.join(work, "hf.json"), "w") as f:
    json.dump(out, f)
'''

# ---- corpus ---------------------------------------------------------------

LATIN = ("café naïve résumé façade déjà über Straße crème brûlée São Paulo Ångström señor piñata "
         "Dvořák Łódź Kraków Ærø Øresund coöperate élève où ça garçon Ñandú Tōkyō Mārcis Ğ İstanbul "
         "Việt Nam tiếng Việt người phở Hà Nội đường thành phố cảm ơn rất nhiều").split()
GREEK = "ἀλήθεια Ἀθῆναι ᾠδή ὕδωρ ψυχή καλημέρα Ἑλλάς ἄνθρωπος ῥήτωρ ἔστιν εὐχαριστῶ".split()
CYRILLIC = "йогурт Ёж ёлка пойми Украї́на ї й Ї щ і́ли Білорусь Сербија".split()
HINDI = "नमस्ते हिन्दी भारत ज़िंदगी क़लम फ़िल्म ड़ ढ़ ग़ज़ल ऩ ऱ ऴ प्रश्न".split()
ARABIC = ["مَرْحَبًا", "السَّلَامُ", "عَلَيْكُمْ", "شُكْرًا", "كِتَابٌ", "مُحَمَّدٌ", "ـّـَ", "لُغَة"]
HANGUL_WORDS = "한국어 안녕하세요 대한민국 서울 감사합니다 읽다 값 닭 맑은 훈민정음".split()
OLD_JAMO = ["\u1100\u1161\u11a8", "\u1112\u1161\u11ab", "\u115f\u1160", "\u1100\u1176\u11c3",
            "\ua960\u1161", "\u1100\ud7b0", "\u1109\u1173\u11f0"]  # archaic: no precomposed syllable
EMOJI = ["👨‍👩‍👧‍👦", "🏳️‍🌈", "👩🏽‍💻", "🧑‍🤝‍🧑", "❤️‍🔥", "👍🏿", "🇯🇵", "🇺🇦", "☺️", "#️⃣", "😀", "🦀"]
NEW_MARKS = ["\u1ac1", "\u1dfa", "\u0898", "\u08d3", "\u0c3c", "\U00011935\U00011930", "\U00016ff0", "\u07fd"]
MARKS = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u030a", "\u0323", "\u0327", "\u0328", "\u0331",
         "\u0345", "\u031b", "\u0306", "\u0304", "\u05b0", "\u0651", "\u064e", "\u093c", "\u3099", "\u0334"]
SPECIALS = ["<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "[NOTE]", "[café]",
            "[cafe\u0301]", "\u2581", "\u2581\u2581x", "<0x41>", "<0xE3><0x81>"]


def nfd_or_nfc(rng, w):
    r = rng.random()
    return unicodedata.normalize("NFD", w) if r < 0.4 else unicodedata.normalize("NFC", w) if r < 0.8 else w


def stacked(rng):
    # a base letter with 1-4 marks in random order: canonical ordering and blocking
    return rng.choice("aeiouAEOnyqjg\u03b1\u03c9\u0438") + "".join(rng.choice(MARKS) for _ in range(rng.randint(1, 4)))


def hangul(rng):
    w = rng.choice(HANGUL_WORDS)
    r = rng.random()
    if r < 0.35:
        return unicodedata.normalize("NFD", w)
    if r < 0.5:
        return rng.choice(OLD_JAMO)
    if r < 0.6:  # a precomposed LV followed by a T jamo composes into LVT
        return chr(0xAC00 + 28 * rng.randrange(399)) + chr(0x11A8 + rng.randrange(27))
    return w


def unicode_fragment(rng):
    r = rng.random()
    if r < 0.22:
        return nfd_or_nfc(rng, base.zipf_pick(rng, LATIN))
    if r < 0.30:
        return nfd_or_nfc(rng, base.zipf_pick(rng, GREEK))
    if r < 0.36:
        return nfd_or_nfc(rng, base.zipf_pick(rng, CYRILLIC))
    if r < 0.42:
        return nfd_or_nfc(rng, rng.choice(HINDI))
    if r < 0.47:
        return nfd_or_nfc(rng, rng.choice(ARABIC))
    if r < 0.54:
        return hangul(rng)
    if r < 0.58:
        return stacked(rng)
    if r < 0.61:
        return rng.choice(EMOJI) * rng.randint(1, 2)
    if r < 0.62:
        return "x" + rng.choice(NEW_MARKS) + rng.choice(MARKS)
    if r < 0.64:
        return rng.choice(SPECIALS)
    return base.fragment(rng)  # English, German, Russian, Han, Japanese, numbers, code, punctuation, ...


def unicode_separator(rng):
    r = rng.random()
    if r < 0.03:
        return rng.choice(["\u3000", "\u00a0", "\t \t", "\u2009", "\r\n  "])
    return base.separator(rng)


def line(rng, n):
    return "".join(unicode_fragment(rng) + unicode_separator(rng) for _ in range(n))


EDGE_TEXTS = [
    "", " ", "  ", "\u2581", "\u2581\u2581", " \u2581 ", "a", "\n", "\t", "hello world", " leading", "trailing ",
    "  two leading", "<s>", "<s>hello</s> world", "<s> <s>", "x<unk>y", "[NOTE] and [NOTE]x", "<0x41><0x42>",
    "e\u0301", "\u00e9", "e<|im_end|>\u0301", "[cafe\u0301] [café]", "\u1100\u1161\u11a8", "\uac00\u11a8",
    "\u212b \u2126 \uf900", "a\u0302\u0323 a\u0323\u0302", "\U00011935\U00011930", "x\u1dfa\u0301",
    "👨‍👩‍👧‍👦 🏳️‍🌈", "日本語 한국어 中文", "x" + " " * 3000 + "y", "\u2581" * 300, "é" * 2000,
    "\u0301" * 500, "\U0001F600" * 700, "\n" * 300 + "end", "1" * 2000,
]


def make_data(work, rng, held_lines):
    with open(os.path.join(work, "corpus.txt"), "w", encoding="utf-8") as f:
        for _ in range(TRAIN_LINES):
            # no "<0xNN>" text in training: merges could build a byte token's string from it
            f.write(line(rng, rng.randint(3, 40)).replace("\n", " ").replace("<0x", "<0y") + "\n")
    held = list(EDGE_TEXTS)
    held += [line(random.Random(5000 + i), random.Random(i).randint(1, 60)) for i in range(held_lines)]
    held.append(line(random.Random(77), 15000))  # one long document
    with open(os.path.join(work, "texts.jsonl"), "w", encoding="utf-8") as f:
        for t in held:
            f.write(json.dumps(t) + "\n")
    return held


def nfc_probes(rng):
    cps = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    probes = [chr(c) for c in cps]
    marks = [c for c in cps if unicodedata.combining(chr(c))]
    decomposable = [c for c in cps if unicodedata.decomposition(chr(c))[:1] not in ("", "<")]
    for _ in range(100000):
        s = chr(rng.choice(decomposable)) if rng.random() < 0.5 else rng.choice("aeoAUn\u1100\uac00\u0b47\u0cc6")
        s += "".join(chr(rng.choice(marks + [0x1161, 0x11a8, 0x0b3e, 0x0cd5, 0x0cc2])) for _ in range(rng.randint(0, 5)))
        probes.append(unicodedata.normalize("NFD", s) if rng.random() < 0.3 else s)
    return probes


# ---- checks ---------------------------------------------------------------

def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def variant_checks(C, args, work, name, hf, texts):
    n = hf["texts"]
    texts_file = os.path.join(work, "texts.jsonl")
    if n < len(texts):
        texts_file = os.path.join(work, f"texts.{n}.jsonl")
        if not os.path.exists(texts_file):
            with open(texts_file, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(t) + "\n" for t in texts[:n])
    t0 = time.time()
    r = base.run([args.tool, "encode", hf["path"], texts_file], args.verbose)
    secs = time.time() - t0
    if not C.check(f"{name}: tokenize_tool encode runs", r.returncode == 0, r.stderr.strip()[-500:]):
        return
    got = r.stdout.split("\n")[:-1]
    want = read_lines(os.path.join(work, name + ".hf_ids.jsonl"))
    size = sum(len(t.encode()) for t in texts[:n])
    extra = (f" ({hf['byte_tokens']} byte-fallback tokens, {hf['unks']} unk)" if name.startswith("sp") else "")
    same = got == want
    C.check(f"{name}: same ids as tokenizers on {n} texts, {size / 1e6:.1f} MB -> {hf['tokens']} tokens"
            f"{extra}, {hf['merges']} merges [{secs:.1f} s]",
            same, "" if same else base.first_mismatch(texts, [json.loads(x) for x in want],
                                                      [json.loads(x) for x in got]))
    if name.startswith("sp") and "unk" not in name and "missing" not in name:
        C.check(f"{name}: byte fallback is exercised", hf["byte_tokens"] > 1000, str(hf["byte_tokens"]))
    if "unk" in name or "missing" in name:
        C.check(f"{name}: unk is exercised", hf["unks"] > 100, str(hf["unks"]))

    ids_file = os.path.join(work, name + ".hf_ids.jsonl")
    r = base.run([args.tool, "decode", hf["path"], ids_file], args.verbose)
    dec = base.json_lines(r.stdout) if r.returncode == 0 else None
    hf_dec = base.json_lines(open(os.path.join(work, name + ".hf_dec.jsonl")).read())
    bad = [i for i, (d, h) in enumerate(zip(dec or [], hf_dec)) if d != h]
    C.check(f"{name}: decode equals tokenizers' decode (which round-trips {hf['roundtrip']}/{n} texts, "
            f"{hf['nfc_roundtrip']} up to NFC)", dec is not None and len(dec) == n and not bad,
            r.stderr.strip() or (f"first at text {bad[0]}: {dec[bad[0]][:80]!r} vs {hf_dec[bad[0]][:80]!r}"
                                 if bad else ""))
    # lossless layouts: all texts without added-token strings or unk come back (in NFC for Qwen2)
    lossless = {"sp_prepend": "plain_roundtrip", "qwen2_nfc": "plain_nfc_roundtrip"}
    if name in lossless:
        key = lossless[name]
        C.check(f"{name}: decode(encode(text)) == {'NFC(text)' if 'nfc' in key else 'text'} for all "
                f"{hf['plain']} texts without added tokens or unk", hf[key] == hf["plain"] and hf["plain"] > n / 4,
                f"{hf[key]}/{hf['plain']}, e.g. {hf['nfc_fails' if 'nfc' in key else 'fails']}"
                if hf[key] != hf["plain"] else "")

    specials = list(hf["special_ids"])
    r = base.run([args.tool, "info", hf["path"]] + specials, args.verbose)
    info = json.loads(r.stdout) if r.returncode == 0 else {}
    same = info.get("vocab_size") == hf["vocab_size"] and info.get("ids") == hf["special_ids"]
    C.check(f"{name}: vocab_size and special-token ids", same,
            "" if same else f"longctx {info or r.stderr} hf {hf['vocab_size']} {hf['special_ids']}")


def nfc_checks(C, args, work, hf_out):
    path = os.path.join(work, "nfc.jsonl")
    n = sum(1 for _ in open(path))
    for data, ref, what in (("tokenizers", "nfc.hf.jsonl", "tokenizers' NFC"),
                            ("unicode", "nfc.ud.jsonl", f"unicodedata {hf_out['unidata_version']}")):
        t0 = time.time()
        r = base.run([args.tool, "nfc", data, path], args.verbose)
        secs = time.time() - t0
        if not C.check(f"nfc {data}: tokenize_tool nfc runs", r.returncode == 0, r.stderr.strip()[-300:]):
            continue
        tables = r.stderr.split("Unicode ")[-1].split(")")[0]
        if data == "unicode" and tables != hf_out["unidata_version"]:
            print(f"SKIP nfc unicode: longctx's tables are Unicode {tables}, the venv's unicodedata "
                  f"{hf_out['unidata_version']}")
            continue
        got = base.json_lines(r.stdout)
        want = base.json_lines(open(os.path.join(work, ref), encoding="utf-8").read())
        bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
        C.check(f"nfc {data}: equals {what} on all {n - 100000} code points and 100000 mark sequences "
                f"[{secs:.1f} s]", len(got) == n and not bad,
                f"{len(bad)} differ, first {[hex(ord(c)) for c in want[bad[0]]]}" if bad else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True, help="the longctx binary; tokenize_tool sits beside it")
    ap.add_argument("--tool", help="path to tokenize_tool (default: next to --longctx)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--small", action="store_true", help="a tenth of the held-out lines (quick runs)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    args.tool = os.path.abspath(args.tool or os.path.join(os.path.dirname(os.path.abspath(args.longctx)),
                                                          "tokenize_tool"))
    C = base.Checks(args.verbose)
    work = tempfile.mkdtemp(prefix="longctx_tok_sp_")
    t_start = time.time()
    try:
        ok = C.check("tokenize_tool exists", os.access(args.tool, os.X_OK), args.tool)
        r = base.run([base.VENV_PY, "-c", "import tokenizers; print(tokenizers.__version__)"])
        why = f"{base.VENV_PY} cannot import tokenizers; run scripts/install-py.sh ({r.stderr.strip()[-200:]})"
        ok &= C.check("tokenizers importable in .venv", r.returncode == 0,
                      r.stdout.strip() if r.returncode == 0 else why)
        if ok:
            held = HELD_LINES // 10 if args.small else HELD_LINES
            texts = make_data(work, random.Random(4321), held)
            with open(os.path.join(work, "nfc.jsonl"), "w") as f:
                f.writelines(json.dumps(p) + "\n" for p in nfc_probes(random.Random(99)))
            t0 = time.time()
            r = base.run([base.VENV_PY, "-c", HF_SCRIPT, work, QWEN2, str(min(SUBSET_LINES, len(texts)))],
                         args.verbose)
            if C.check(f"tokenizers trains and encodes [{time.time() - t0:.1f} s]", r.returncode == 0,
                       r.stderr.strip()[-2000:]):
                with open(os.path.join(work, "hf.json"), encoding="utf-8") as f:
                    hf_out = json.load(f)
                for name, hf in hf_out["variants"].items():
                    try:
                        variant_checks(C, args, work, name, hf, texts)
                    except Exception:
                        C.check(f"{name}: no exception in the test", False,
                                traceback.format_exc().strip().splitlines()[-1])
                nfc_checks(C, args, work, hf_out)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{C.passed} passed, {C.failed} failed [{time.time() - t_start:.0f} s]")
    return 1 if C.failed else 0


if __name__ == "__main__":
    sys.exit(main())

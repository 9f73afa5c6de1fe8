#!/usr/bin/env python3
"""Writes the Unicode tables of longctx's NFC normaliser and its unit-test cases.

    .venv/bin/python tools/unicode/gen_nfc_tables.py      (from the repo root)

Outputs (both generated, do not edit):
  src/io/unicode_nfc_tables.cpp  canonical combining classes (ranges) and one-level
                                 canonical decompositions, from Python's unicodedata
  tests/io/nfc_cases.inc         NFC cases for tests/io/test_tokenizer.cpp

The data is Python's `unicodedata` (its unidata_version is written into the
table). HF `tokenizers` normalises with the `unicode-normalization-alignments`
crate, whose tables are Unicode 9.0.0; it therefore treats the combining marks
and the one decomposition added since (Unicode 10-14: U+1AC1.., U+0898.., U+11938
= U+11935 U+11930, ...) as unassigned: class 0, no decomposition. The generator
finds these by asking the `tokenizers` package itself (which is why it runs in
the repo's .venv, made by scripts/install-py.sh) and flags them, so that
longctx can produce either form: full Unicode NFC, or NFC exactly as
`tokenizers` computes it. It also checks a pure-Python NFC built from the
flagged tables against both unicodedata and tokenizers on every code point and
on random sequences before writing anything.
"""
import argparse
import os
import random
import sys
import unicodedata as ud

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))

# Flag bits, shared with src/io/unicode_nfc_tables.h
COMPOSES = 1       # a decomposition of two code points that recomposes (a primary composite)
NOT_IN_HF = 2      # unknown to the tables of the tokenizers package (treated as unassigned there)

S_BASE, L_BASE, V_BASE, T_BASE = 0xAC00, 0x1100, 0x1161, 0x11A7
L_COUNT, V_COUNT, T_COUNT = 19, 21, 28
N_COUNT = V_COUNT * T_COUNT
S_COUNT = L_COUNT * N_COUNT


def all_code_points():
    return [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]


def canonical_decomposition(c):
    d = ud.decomposition(chr(c))
    if not d or d.startswith("<"):
        return None
    return [int(x, 16) for x in d.split()]


def read_unicode():
    ccc = {c: ud.combining(chr(c)) for c in all_code_points() if ud.combining(chr(c))}
    decomp = {}
    for c in all_code_points():
        d = canonical_decomposition(c)
        if d:
            assert len(d) in (1, 2), (hex(c), d)
            composes = len(d) == 2 and ud.normalize("NFC", chr(c)) == chr(c)
            decomp[c] = (d, composes)
    return ccc, decomp


def probe_tokenizers(ccc, decomp):
    """Code points whose class or decomposition the tokenizers package does not know."""
    from tokenizers import normalizers
    nfd = normalizers.NFD().normalize_str
    no_ccc = set()
    for c, v in ccc.items():
        probe = chr(c) + "\u0334" if v > 1 else "\u0345" + chr(c)  # classes 1 and 240
        if nfd(probe) == probe:
            no_ccc.add(c)
        else:
            assert nfd(probe) == ud.normalize("NFD", probe), hex(c)
    no_decomp = set()
    for c in decomp:
        got = nfd(chr(c))
        if got == chr(c):
            no_decomp.add(c)
        else:
            assert got == ud.normalize("NFD", chr(c)), hex(c)
    return no_ccc, no_decomp


class Nfc:
    """NFC from the tables, as the C++ code does it (a reference to check the tables)."""

    def __init__(self, ccc, decomp):
        self.ccc = ccc
        self.decomp = {c: d for c, (d, _) in decomp.items()}
        self.compose = {tuple(d): c for c, (d, comp) in decomp.items() if comp}

    def decompose(self, c, out):
        if S_BASE <= c < S_BASE + S_COUNT:
            s = c - S_BASE
            out.append(L_BASE + s // N_COUNT)
            out.append(V_BASE + s % N_COUNT // T_COUNT)
            if s % T_COUNT:
                out.append(T_BASE + s % T_COUNT)
        elif c in self.decomp:
            for d in self.decomp[c]:
                self.decompose(d, out)
        else:
            out.append(c)

    def pair(self, a, b):
        if L_BASE <= a < L_BASE + L_COUNT and V_BASE <= b < V_BASE + V_COUNT:
            return S_BASE + ((a - L_BASE) * V_COUNT + b - V_BASE) * T_COUNT
        if S_BASE <= a < S_BASE + S_COUNT and (a - S_BASE) % T_COUNT == 0 and T_BASE < b < T_BASE + T_COUNT:
            return a + b - T_BASE
        return self.compose.get((a, b))

    def __call__(self, s):
        d = []
        for ch in s:
            self.decompose(ord(ch), d)
        cc = [self.ccc.get(c, 0) for c in d]
        i = 0
        while i < len(d):  # stable sort of each run of non-starters by class
            j = i
            while j < len(d) and cc[j]:
                j += 1
            if j > i + 1:
                run = sorted(zip(cc[i:j], range(j - i), d[i:j]))
                d[i:j] = [x for _, _, x in run]
                cc[i:j] = [k for k, _, _ in run]
            i = j + 1
        out, starter, last = [], -1, -1
        for c, k in zip(d, cc):
            if starter >= 0 and (last < k or (last == 0 and len(out) - 1 == starter)):
                p = self.pair(out[starter], c)
                if p is not None:
                    out[starter] = p
                    continue
            if k == 0:
                starter = len(out)
            last = k
            out.append(c)
        return "".join(map(chr, out))


def random_sequences(rng, ccc, decomp, n):
    marks = sorted(ccc)
    firsts = sorted({d[0] for d, comp in decomp.values() if comp})
    seconds = sorted({d[1] for d, comp in decomp.values() if comp})
    composites = sorted(decomp)
    hangul = ([L_BASE + i for i in range(L_COUNT)] + [V_BASE + i for i in range(V_COUNT)] +
              [T_BASE + i for i in range(T_COUNT)] + [S_BASE + rng.randrange(S_COUNT) for _ in range(40)])
    pools = [marks, firsts, seconds, composites, hangul, [0x41, 0x61, 0x20, 0x3B1, 0x4E2D]]
    out = []
    for _ in range(n):
        k = rng.randint(1, 7)
        out.append("".join(chr(rng.choice(rng.choice(pools))) for _ in range(k)))
    return out


def check(ccc, decomp, no_ccc, no_decomp, have_hf):
    full = Nfc(ccc, decomp)
    hf_ccc = {c: v for c, v in ccc.items() if c not in no_ccc}
    hf_decomp = {c: d for c, d in decomp.items() if c not in no_decomp}
    compat = Nfc(hf_ccc, hf_decomp)
    rng = random.Random(7)
    texts = [chr(c) for c in all_code_points()] + random_sequences(rng, ccc, decomp, 200000)
    for t in texts:
        want = ud.normalize("NFC", t)
        assert full(t) == want, (t, full(t), want)
    if have_hf:
        from tokenizers import normalizers
        nfc = normalizers.NFC().normalize_str
        for t in texts:
            assert compat(t) == nfc(t), ([hex(ord(x)) for x in t], compat(t), nfc(t))
    print(f"gen_nfc_tables: the tables reproduce unicodedata{' and tokenizers' if have_hf else ''} "
          f"on {len(texts)} texts", file=sys.stderr)
    return full, compat


def ranges(ccc, no_ccc):
    out = []
    for c in sorted(ccc):
        flag = NOT_IN_HF if c in no_ccc else 0
        if out and out[-1][1] == c - 1 and out[-1][2] == ccc[c] and out[-1][3] == flag:
            out[-1][1] = c
        else:
            out.append([c, c, ccc[c], flag])
    return out


def packed(entries, width=110):
    """Entries joined into lines of at most `width` columns."""
    lines, cur = [], ""
    for e in entries:
        if cur and len(cur) + 1 + len(e) > width:
            lines.append(cur)
            cur = e
        else:
            cur = f"{cur} {e}" if cur else e
    if cur:
        lines.append(cur)
    return lines


def write_tables(path, ccc, decomp, no_ccc, no_decomp, hf_version):
    rs = ranges(ccc, no_ccc)
    dec = []
    for c in sorted(decomp):
        d, comp = decomp[c]
        f = (COMPOSES if comp else 0) | (NOT_IN_HF if c in no_decomp else 0)
        dec.append(f"{{0x{c:X},0x{d[0]:X},0x{d[1] if len(d) > 1 else 0:X},{f}}},")
    lines = [
        "// Generated by tools/unicode/gen_nfc_tables.py from Python's unicodedata; do not edit.",
        f"// Unicode {ud.unidata_version}; entries flagged kNotInTokenizers are unknown to the",
        f"// tables of the tokenizers package ({hf_version}, Unicode 9.0.0 data).",
        '#include "io/unicode_nfc_tables.h"',
        "",
        "namespace longctx::unicode::tables {",
        "",
        f'const char kUnicodeVersion[] = "{ud.unidata_version}";',
        "",
        "// clang-format off",
        "// {first, last, combining class, flags}",
        "const CccRange kCcc[] = {",
        *packed([f"{{0x{a:X},0x{b:X},{v},{f}}}," for a, b, v, f in rs]),
        "};",
        f"const size_t kCccCount = {len(rs)};",
        "",
        "// {code point, first, second (0: a singleton), flags}",
        "const Decomposition kDecomp[] = {",
        *packed(dec),
        "};",
        f"const size_t kDecompCount = {len(decomp)};",
        "// clang-format on",
        "",
        "}  // namespace longctx::unicode::tables",
        "",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def hexs(s):
    return " ".join(f"{ord(c):04X}" for c in s)


def write_cases(path, ccc, decomp, no_ccc, no_decomp, full, compat):
    rng = random.Random(2024)
    cases = []
    # one composite or singleton in six, one mark in four
    for c in sorted(decomp)[::6]:
        cases.append(("U", chr(c)))
    for c in sorted(ccc)[::4]:
        cases.append(("U", "a" + chr(c) + "\u0301"))
    for t in random_sequences(rng, ccc, decomp, 600):
        cases.append(("U", t))
    # the NFD of precomposed text recomposes
    for c in rng.sample(sorted(decomp), 100):
        cases.append(("U", ud.normalize("NFD", chr(c)) + "\u0323"))
    # where the tokenizers package (Unicode 9.0) differs from unicodedata
    for c in sorted(no_ccc | no_decomp):
        t = "a\u0345" + chr(c) + "\u0301" if c in no_ccc else chr(c)
        cases.append(("T", t))
        cases.append(("U", t))
    cases.append(("T", "\U00011935\U00011930"))
    cases.append(("U", "\U00011935\U00011930"))
    seen, lines = set(), []
    for mode, t in cases:
        if (mode, t) in seen:
            continue
        seen.add((mode, t))
        want = full(t) if mode == "U" else compat(t)
        lines.append(f"{mode} {hexs(t)};{hexs(want)}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("// Generated by tools/unicode/gen_nfc_tables.py; do not edit. One case per line: U (as\n")
        f.write(f"// unicodedata {ud.unidata_version}) or T (as tokenizers), the input;its NFC, in hex code points.\n")
        f.write('R"(')
        f.write("\n".join(lines))
        f.write(')"\n')
    return len(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", default=os.path.join(REPO, "src", "io", "unicode_nfc_tables.cpp"))
    ap.add_argument("--cases", default=os.path.join(REPO, "tests", "io", "nfc_cases.inc"))
    args = ap.parse_args()
    try:
        import tokenizers
    except ImportError:
        sys.exit("gen_nfc_tables: needs the tokenizers package (run it with .venv/bin/python; "
                 "scripts/install-py.sh makes the venv)")
    ccc, decomp = read_unicode()
    no_ccc, no_decomp = probe_tokenizers(ccc, decomp)
    full, compat = check(ccc, decomp, no_ccc, no_decomp, True)
    write_tables(args.tables, ccc, decomp, no_ccc, no_decomp, f"tokenizers {tokenizers.__version__}")
    n = write_cases(args.cases, ccc, decomp, no_ccc, no_decomp, full, compat)
    print(f"gen_nfc_tables: Unicode {ud.unidata_version}: {len(ccc)} marks in {len(ranges(ccc, no_ccc))} ranges, "
          f"{len(decomp)} decompositions; unknown to tokenizers {tokenizers.__version__}: {len(no_ccc)} marks, "
          f"{len(no_decomp)} decompositions; {n} test cases", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Copy the .cu files (and common.cuh) into gen/ for the host emulation:
  kernel<<<grid, block, smem, stream>>>(args);  ->  ::emu::launch(grid, block, smem, stream, [&] { kernel(args); }, "kernel");
  __shared__ T name[N];                         ->  EMU_SHARED(T, name, N);
  __shared__ T name[A][B];                      ->  static T name[A][B]; ::emu::shared_touch(name, sizeof(name));
  common.cuh's grid caps                        ->  ::emu::cap_grid_for / ::emu::cap_grid_rows
  attention.cu's kMaxGridX                      ->  ::emu::cap_grid_rows
Line numbers are kept (the arguments' text, newlines included, is moved as it is).
Usage: gen.py SRC_DIR OUT_DIR [--drop FILE:LINE ...]   (--drop blanks one source line: mutation tests)
"""
import os
import re
import sys


def split_top(s):
    parts, depth, cur = [], 0, ''
    for ch in s:
        if ch in '([{':
            depth += 1
        if ch in ')]}':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += ch
    parts.append(cur)
    return parts


LAUNCH = re.compile(r'([A-Za-z_][\w:]*(?:<[^<>;]*>)?)\s*<<<(.*?)>>>\s*\((.*?)\)\s*;', re.S)
SHARED = re.compile(r'__shared__\s+([\w:]+)\s+(\w+)\s*\[([^\]]+)\]\s*;')
SHARED_ND = re.compile(r'__shared__\s+([\w:]+)\s+(\w+)\s*((?:\[[^\]]+\]\s*){2,});')  # T name[A][B]...


def rewrite_launch(m):
    name, cfg, args = m.group(1), m.group(2), m.group(3)
    c = split_top(cfg)
    while len(c) < 4:
        c.append(' 0' if len(c) == 2 else ' nullptr')
    assert len(c) == 4, cfg
    base = name.split('<')[0]
    return '::emu::launch(%s, %s, %s, %s, [&] { %s(%s); }, "%s");' % (c[0], c[1], c[2], c[3], name, args, base)


def process(text, path):
    n_launch = len(LAUNCH.findall(text))
    text = LAUNCH.sub(rewrite_launch, text)
    text = SHARED.sub(r'EMU_SHARED(\1, \2, \3);', text)
    text = SHARED_ND.sub(lambda m: 'static %s %s%s; ::emu::shared_touch(%s, sizeof(%s));' % (
        m.group(1), m.group(2), m.group(3).rstrip(), m.group(2), m.group(2)), text)
    assert '<<<' not in text and '__shared__' not in text, path
    return text, n_launch


def main():
    src, out = sys.argv[1], sys.argv[2]
    drops, subs = {}, {}
    args = sys.argv[3:]
    while args:
        if args[0] == '--drop':
            f, ln = args[1].rsplit(':', 1)
            drops.setdefault(f, set()).add(int(ln))
            args = args[2:]
        else:
            assert args[0] == '--sub'
            f, ln = args[1].rsplit(':', 1)
            subs.setdefault(f, []).append((int(ln), args[2], args[3]))
            args = args[4:]
    os.makedirs(os.path.join(out, 'kernels/cuda'), exist_ok=True)
    files = ['common.cuh', 'elementwise.cu', 'rmsnorm.cu', 'embedding.cu', 'rope.cu', 'lm_head_loss.cu',
             'matmul.cu', 'attention.cu']
    extra = [a for a in os.listdir(os.path.dirname(os.path.abspath(__file__))) if a.endswith('.cu')]
    for f in files + extra:
        p = os.path.join(src, f) if f in files else os.path.join(os.path.dirname(os.path.abspath(__file__)), f)
        lines = open(p).read().split('\n')
        for ln in drops.get(f, ()):
            print('mutation: %s:%d: %s' % (f, ln, lines[ln - 1].strip()), file=sys.stderr)
            lines[ln - 1] = ''
        for ln, a, b in subs.get(f, ()):
            assert a in lines[ln - 1], (f, ln, a)
            lines[ln - 1] = lines[ln - 1].replace(a, b)
            print('mutation: %s:%d: %s' % (f, ln, lines[ln - 1].strip()), file=sys.stderr)
        text = '\n'.join(lines)
        if f == 'attention.cu':  # the row-stride grid cap (cap_grid_rows, shrunk by the tests' caps)
            a = 'constexpr int64_t kMaxGridX = 2147483647;'
            assert text.count(a) == 1, a
            text = text.replace(a, 'const int64_t& kMaxGridX = ::emu::cap_grid_rows;')
        if f == 'common.cuh':
            for a, b in (('int64_t(65535) * 8', '::emu::cap_grid_for'), ('int64_t(1) << 30', '::emu::cap_grid_rows')):
                assert text.count(a) == 1, a
                text = text.replace(a, b)
        text, n = process(text, p)
        name = f if f.endswith('.cuh') else f + '.cpp'
        with open(os.path.join(out, 'kernels/cuda', name), 'w') as fh:
            fh.write('#line 1 "%s"\n' % p + text)


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fails on a source file over 500 lines or a function over 60 lines outside tests: past that, a
concern wants its own unit. Usage: check-size.py SOURCE_ROOT."""
import os
import re
import sys

MAX_FILE, MAX_FUNCTION = 500, 60
DIRS = ('lib', 'daemon', 'cli', 'bench')


def strip(text):
    """Blanks comments and string/char literals, keeping newlines (so line numbers hold)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i))
            i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif text.startswith('R"(', i):
            j = text.find(')"', i + 3)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(' ' * (min(j + 1, n) - i))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def functions(text):
    """Yields (first line, line count, head) of every function body not inside another."""
    code = strip(text)
    stack = []  # for each open brace: (is a function body, line it opened on, head)
    start = 0   # where the current declaration began
    for i, c in enumerate(code):
        if c in ';':
            start = i + 1
        elif c == '{':
            head = code[start:i].strip()
            inside = any(f for f, _, _ in stack)
            is_fn = (not inside and '(' in head and head.rstrip().endswith(
                (')', 'const', 'noexcept', 'override', 'final')) and
                not re.match(r'(namespace|class|struct|enum|union)\b', head) and
                not head.rstrip().endswith('='))
            stack.append((is_fn, code.count('\n', 0, i) + 1, ' '.join(head.split())[:70]))
            start = i + 1
        elif c == '}':
            if stack:
                is_fn, line, head = stack.pop()
                if is_fn:
                    yield line, code.count('\n', 0, i) + 1 - line - 1, head
            start = i + 1


def main(root):
    bad = 0
    for top in DIRS:
        for d, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if not f.endswith(('.cpp', '.hpp')):
                    continue
                path = os.path.join(d, f)
                rel = os.path.relpath(path, root)
                text = open(path, encoding='utf-8').read()
                lines = text.count('\n')
                if lines > MAX_FILE:
                    print('%s: %d lines (at most %d)' % (rel, lines, MAX_FILE))
                    bad = 1
                for line, count, head in functions(text):
                    if count > MAX_FUNCTION:
                        print('%s:%d: function of %d lines (at most %d): %s' %
                              (rel, line, count, MAX_FUNCTION, head))
                        bad = 1
    if not bad:
        print('sizes ok')
    return bad


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else '.'))

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fails on a source file over 500 lines or a function over 60 lines (C++ and Python) in the
product, the benchmarks and the tests' helpers: past that, a concern wants its own unit.
Constructors count from their signature, through the member initializers, to the end of the
body. Usage: check-size.py SOURCE_ROOT."""
import ast
import os
import re
import sys

MAX_FILE, MAX_FUNCTION = 500, 60
DIRS = ('lib', 'daemon', 'cli', 'bench', 'scripts')
# The tests' helpers (the tests themselves are lists of cases, each short).
HELPERS = ('tests/unit/sim_kernel.hpp', 'tests/unit/model_ids.hpp', 'tests/unit/naive_purge.hpp',
           'tests/unit/test_data.hpp', 'tests/integration/nsidtest.py',
           'tests/integration/runtimes.py', 'tests/check-size.py', 'tests/data/capture.py')
BLOCK = re.compile(r'(namespace|class|struct|enum|union|extern)\b')


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
    # Preprocessor lines too: they are no part of a declaration.
    return re.sub(r'(?m)^[ \t]*#.*$', lambda m: ' ' * len(m.group(0)), ''.join(out))


def functions(text):
    """Yields (first line, line count, head) of every function body not inside another. A brace
    that opens an initializer (inside parentheses, or after a name, ',' or '=') is no block:
    the declaration it is part of goes on past it."""
    code = strip(text)
    stack = []  # for each open brace: (kind: 'fn', 'block' or 'init', first line, head)
    start = 0   # where the current declaration began
    parens = 0
    for i, c in enumerate(code):
        if c == '(':
            parens += 1
        elif c == ')':
            parens = max(0, parens - 1)
        elif c == ';' and parens == 0:
            start = i + 1
        elif c == '{':
            head = code[start:i].strip()
            inside = any(k == 'fn' for k, _, _ in stack)
            ctor = re.search(r'\)\s*(noexcept\s*)?:[^:]', head) is not None
            if BLOCK.match(head):
                kind = 'block'
            elif not inside and '(' in head and parens == 0 and (
                    head.endswith((')', 'const', 'noexcept', 'override', 'final')) or
                    (ctor and head.endswith('}'))) and not head.endswith('='):
                kind = 'fn'
            elif parens > 0 or re.search(r'([\w>,=(\[]|return)$', head) or (
                    ctor and not inside):
                kind = 'init'
            else:
                kind = 'block'
            # A constructor counts from its signature (its initializers are its work too).
            at = start + len(code[start:i]) - len(code[start:i].lstrip()) if kind == 'fn' and \
                ctor else i
            stack.append((kind, code.count('\n', 0, at) + 1, ' '.join(head.split())[:70]))
            if kind != 'init':
                start = i + 1
        elif c == '}':
            if stack:
                kind, line, head = stack.pop()
                if kind == 'fn':
                    yield line, code.count('\n', 0, i) + 1 - line - 1, head
                if kind != 'init':
                    start = i + 1


def python_functions(text):
    """Yields (first line, body lines, name) of every def, nested ones too."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.lineno, node.end_lineno - node.lineno, node.name


def sources(root):
    for top in DIRS:
        for d, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if f.endswith(('.cpp', '.hpp', '.py')):
                    yield os.path.join(d, f)
    for rel in HELPERS:
        if os.path.exists(os.path.join(root, rel)):
            yield os.path.join(root, rel)


def main(root):
    bad = 0
    for path in sources(root):
        rel = os.path.relpath(path, root)
        text = open(path, encoding='utf-8').read()
        lines = text.count('\n')
        if lines > MAX_FILE:
            print('%s: %d lines (at most %d)' % (rel, lines, MAX_FILE))
            bad = 1
        found = python_functions(text) if path.endswith('.py') else functions(text)
        for line, count, head in found:
            if count > MAX_FUNCTION:
                print('%s:%d: function of %d lines (at most %d): %s' %
                      (rel, line, count, MAX_FUNCTION, head))
                bad = 1
    if not bad:
        print('sizes ok')
    return bad


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else '.'))

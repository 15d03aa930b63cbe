#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Fails when a C++ source differs from what .clang-format makes of it.
set -u
root=$1
clang_format=$2
cd "$root" || exit 1
bad=0
files=$(git ls-files '*.cpp' '*.hpp' 2>/dev/null)
[ -n "$files" ] || files=$(find lib daemon cli tests bench -name '*.[ch]pp')
if [ -z "$files" ]; then
    echo "no C++ sources found under $root"
    exit 1
fi
for f in $files; do
    if ! "$clang_format" --style=file --dry-run --Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f (run: clang-format -i $f)"
        bad=1
    fi
done
[ $bad -eq 0 ] && echo "format ok"
exit $bad

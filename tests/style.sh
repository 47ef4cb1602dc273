#!/bin/bash
# Code style: every C source and header is as clang-format (with the repository's .clang-format)
# would write it.
set -euo pipefail
cd "${KEYWARD_SRC:?run through meson test}"
command -v clang-format >/dev/null || { echo "SKIP: clang-format missing"; exit 77; }
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find common provider pkcs11 tools tests bench include -name '*.[ch]')
if ! out=$(echo "$files" | xargs clang-format --dry-run --Werror 2>&1); then
    echo "$out" | grep -E '(warning|error):' | cut -d: -f1 | sort | uniq -c || true
    echo "FAIL: files not clang-formatted (run: clang-format -i FILE)"
    exit 1
fi
echo "PASS: $(echo "$files" | wc -l) files clang-formatted"

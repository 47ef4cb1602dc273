#!/bin/bash
# audit-keyring-vm: the keyring audit (audit.sh keyring) inside a QEMU guest whose kernel has the
# PKCS#8 parser (tests/fixtures/vm-run.sh), so the token is in kernel mode and keyctl read, pipe
# and print meet a kernel-resident RSA key; the CLI, EVP and PKCS#11 routes and the key
# generation run against kernel mode too. Exit 77 (SKIP) only when the VM cannot be had.
set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
[ -n "${KEYWARD_BUILD:-}" ] && [ -n "${KEYWARD_PROVIDER_DIR:-}" ] ||
    { echo "audit vm.sh: run through meson test" >&2; exit 1; }
# The guest's /tmp is its own tmpfs overlay; vm-run.sh starts the command in this directory.
cd "${TMPDIR:-/tmp}"
exec "$HERE/../fixtures/vm-run.sh" -t "${KW_VM_TIMEOUT:-600}" -- env \
    KEYWARD_PROVIDER_DIR="$KEYWARD_PROVIDER_DIR" KW_AUDIT_NEED_KERNEL=1 \
    KEYWARD_ASAN_PRELOAD="${KEYWARD_ASAN_PRELOAD:-}" ASAN_OPTIONS="${ASAN_OPTIONS:-}" \
    LSAN_OPTIONS="${LSAN_OPTIONS:-}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-}" \
    bash "$HERE/audit.sh" keyring

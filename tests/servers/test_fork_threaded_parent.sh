#!/bin/bash
# Fork from a threaded parent (issue 17, item 3): tests/servers/fork_thread_sign.c, 4 threads
# signing in a loop on one token key while the main thread forks 50 children that each sign
# three times and exit; RSA-2048 and P-256 keys. Every C_Sign is delayed by the fault shim
# (tests/fault/shim.c) so forks land while the threads' sessions are out mid-operation; each key
# runs twice, the second time with the delayed C_Sign holding a lock of the shim's, as a module
# that serialises its device does (a fork then nearly always lands while a parent thread holds
# a module lock: without fork handlers children hang from the first fork on; SoftHSM2's own locks, held only
# briefly, hang a child only now and then). A child that does not finish within its timeout is
# a hang (a lock held by a parent thread at fork, never released in the child), killed and
# counted: the test fails.
# usage: test_fork_threaded_parent.sh FORK-THREAD-SIGN   (meson passes the built program)
set -u
. "$(dirname "$0")/lib.sh"

prog=${1:?usage: $0 FORK-THREAD-SIGN}
threads=${KWS_FORK_THREADS:-4}
children=${KWS_FORK_CHILDREN:-50}
delay_ms=${KWS_SIGN_DELAY_MS:-10}
# A child normally needs well under a second (C_Initialize, log in, three signatures); the
# sanitizer stages are slower.
child_timeout=${KWS_CHILD_TIMEOUT:-20}

# gcc 12's ASan runtime has no fork handlers of its own (compiler-rt added them in LLVM 18,
# llvm-project#75290): a child of a threaded parent can hang inside ASan's allocator whatever
# keyward does (seen once in about 1000 children here). The main and tsan stages run it.
if ldd "$prog" 2>/dev/null | grep -q libasan; then
    echo "SKIP: $prog is built with ASan, whose runtime (gcc 12) can hang a child of a threaded" \
        "parent in its own allocator; the main and tsan stages run this test" >&2
    exit 77
fi

SHIM=${KEYWARD_BUILD:-}/tests/fault/kw-fault-shim.so
[ -f "$SHIM" ] || kw_fail "kw-fault-shim.so not built ($SHIM): run through meson test"

kws_setup ftp
failures=0
keys=()
for spec in rsa:rsa:31 p256:ec:32; do
    IFS=: read -r type name id <<<"$spec"
    if (kws_genkey "$type" "$name" "$id"); then
        kws_pubkey "$name" "$id"
        keys+=("$name")
    else
        failures=$((failures + 1))
    fi
done

# From here on keyward talks to SoftHSM through the shim, which delays every C_Sign.
export KW_SHIM_MODULE=$KW_MODULE
KW_MODULE=$SHIM
kw_provider_cnf "$KW_TMP/openssl.cnf"
export KW_SHIM_DELAY="C_Sign:1+:$delay_ms"
unset KW_SHIM_FAIL KW_SHIM_LOG

for name in "${keys[@]}"; do
    for serial in 0 1; do
        what="$name, C_Sign delayed $delay_ms ms"
        [ "$serial" = 1 ] && what+=" under the module's lock"
        out=$KW_TMP/$name.$serial.out rc=0
        # The program bounds each child itself; this bounds the whole run.
        KW_SHIM_DELAY_SERIAL=$serial kw_run timeout -k 5 300 "$prog" "$KW_TMP/$name.pem" \
            "$KW_TMP/$name.pub" "$threads" "$children" "$child_timeout" >"$out" 2>&1 || rc=$?
        if [ "$rc" != 0 ]; then
            echo "--- FAIL $what (exit $rc): $threads threads, $children children" >&2
            tail -30 "$out" >&2
            failures=$((failures + 1))
        else
            kw_log "ok: $what: $(tail -1 "$out")"
        fi
    done
done

[ "$failures" = 0 ] || kw_fail "$failures fork-from-threads runs failed"

#!/bin/bash
# Fork and thread safety with real token keys: tests/servers/fork_sign.c (parent loads the key,
# 8 children sign 100 times each) and thread_sign.c (8 threads x 1000 signatures on one key),
# for RSA-2048, ECDSA P-256 and Ed25519 keys, each loaded by URI key file and by pkcs11: URI.
# Every signature is verified with the public key read by pkcs11-tool and the default provider.
# usage: test_fork_thread.sh FORK-SIGN THREAD-SIGN   (meson passes the built programs)
set -u
. "$(dirname "$0")/lib.sh"

fork_sign=${1:?usage: $0 FORK-SIGN THREAD-SIGN}
thread_sign=${2:?usage: $0 FORK-SIGN THREAD-SIGN}
threads=${KWS_THREADS:-8}
per_thread=${KWS_THREAD_COUNT:-1000}

kws_setup ft
failures=0

run() {
    local what=$1 out=$KW_TMP/run.out rc=0
    shift
    kw_run timeout 240 "$@" >"$out" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        echo "--- FAIL $what (exit $rc): $*" >&2
        tail -30 "$out" >&2
        failures=$((failures + 1))
    else
        kw_log "ok: $what: $(tail -1 "$out")"
        # A refusal of the half-done operation is allowed; say so in the log.
        grep -q 'refused (clean)' "$out" && kw_log "   (children refused the operation begun before fork)"
    fi
    return 0
}

for spec in rsa:rsa:21 p256:ec:22 ed25519:ed:23; do
    IFS=: read -r type name id <<<"$spec"
    if ! (kws_genkey "$type" "$name" "$id"); then
        failures=$((failures + 1))
        continue
    fi
    kws_pubkey "$name" "$id"
    run "fork $type (key file)" "$fork_sign" "$KW_TMP/$name.pem" "$KW_TMP/$name.pub" 8 100
    run "fork $type (URI)" "$fork_sign" "pkcs11:token=ft;object=$name;type=private" \
        "$KW_TMP/$name.pub" 8 100
    # As nginx's master: load the key, never use it, fork; the children ask the token first.
    run "fork $type (parent only loads the key)" "$fork_sign" "$KW_TMP/$name.pem" \
        "$KW_TMP/$name.pub" 4 20 load-only
    run "threads $type (key file)" "$thread_sign" "$KW_TMP/$name.pem" "$KW_TMP/$name.pub" \
        "$threads" "$per_thread"
done

# Each child must re-initialise the module itself (PKCS#11 forbids using the parent's), and its
# first call must be C_Initialize: never a C_Finalize or C_CloseSession on the parent's state.
# SoftHSM would let a child use inherited sessions, so the signatures alone cannot show this;
# keyward's PKCS#11 call log (KEYWARD_DEBUG=2) can.
if [ -f "$KW_TMP/rsa.pem" ]; then
    dbg=$KW_TMP/fork.dbg
    KEYWARD_DEBUG=file:$dbg,2 run "fork rsa, PKCS#11 call log" \
        "$fork_sign" "$KW_TMP/rsa.pem" "$KW_TMP/rsa.pub" 4 5
    if [ ! -s "$dbg" ]; then
        echo "--- FAIL: KEYWARD_DEBUG=file:$dbg,2 wrote no log" >&2
        failures=$((failures + 1))
    else
        # pid of each line's first PKCS#11 call: "keyward[TIME PID p11] C_Xxx -> ..."
        firsts=$(awk '$3 == "p11]" && $4 ~ /^C_/ { if (!($2 in seen)) { seen[$2] = $4; n++ } }
            END { for (p in seen) print p, seen[p] }' "$dbg")
        n_init=$(echo "$firsts" | awk '$2 == "C_Initialize"' | wc -l)
        n_other=$(echo "$firsts" | awk '$2 != "C_Initialize"' | wc -l)
        if [ "$n_init" != 5 ] || [ "$n_other" != 0 ]; then
            echo "--- FAIL: expected 5 processes (parent + 4 children) each starting with" \
                "C_Initialize; first calls per pid:" >&2
            echo "$firsts" >&2
            failures=$((failures + 1))
        else
            kw_log "ok: parent and 4 children each began with their own C_Initialize"
        fi
    fi
fi

# More threads than a small token has sessions for: they must wait, not fail.
if [ -f "$KW_TMP/ec.pem" ]; then
    run "64 threads x 50 on P-256" "$thread_sign" "$KW_TMP/ec.pem" "$KW_TMP/ec.pub" 64 50
fi

[ "$failures" = 0 ] || kw_fail "$failures fork/thread runs failed"

#!/bin/bash
# A signing loop's steady state (issue 18): after the first signature, each further one makes
# exactly one C_SignInit and one C_Sign on the token and no other PKCS#11 call, and raises no
# OpenSSL error, not even one raised and cleared again. Both ways a caller signs: one
# EVP_PKEY_CTX reused (a CA, a signing service) and a fresh EVP_DigestSignInit per signature
# (a TLS handshake). The calls are logged by OpenSC's pkcs11-spy between keyward and SoftHSM2;
# errors are counted by the helper, which interposes ERR_new. Each signature is verified with
# the default provider.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
SPY=
for f in /usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so /usr/lib/x86_64-linux-gnu/pkcs11-spy.so \
    /usr/lib/pkcs11/pkcs11-spy.so; do
    [ -f "$f" ] && SPY=$f && break
done
[ -n "$SPY" ] || kw_skip "OpenSC's pkcs11-spy.so is not installed (package opensc-pkcs11)"
HELPER=${KEYWARD_BUILD:-}/tests/provider/sign_steady
[ -x "$HELPER" ] || kw_fail "$HELPER not built"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest rsa 01 rsa:2048
kw_keygen kwtest ec 02 EC:prime256v1
export PKCS11SPY=$KW_MODULE
KW_MODULE=$SPY kw_provider_setup

# calls LOG: "NAME COUNT" for every PKCS#11 function in a spy log
calls() { awk '$1 ~ /^[0-9]+:$/ && $2 ~ /^C_/ { n[$2]++ } END { for (k in n) print k, n[k] }' "$1" | sort; }

failures=0
for key in rsa ec; do
    for mode in reuse fresh; do
        for n in 4 24; do
            rm -f "$KW_TMP/spy.$n" # the spy appends
            out=$(PKCS11SPY_OUTPUT=$KW_TMP/spy.$n kw_run "$HELPER" \
                "pkcs11:token=kwtest;object=$key;type=private" "$n" "$mode" 2>"$KW_TMP/err") || {
                cat "$KW_TMP/err" >&2
                kw_fail "$key $mode: $n signatures failed"
            }
            [ "$out" = "signatures=$n errors=0" ] || {
                echo "--- FAIL: $key $mode: OpenSSL errors raised while signing: $out" >&2
                failures=$((failures + 1))
            }
            calls "$KW_TMP/spy.$n" >"$KW_TMP/calls.$n"
        done
        # per signature: the difference between 24 and 4 signatures, over 20
        per=$(join -a1 -a2 -e0 -o 0,1.2,2.2 "$KW_TMP/calls.4" "$KW_TMP/calls.24" |
            awk '{ d = $3 - $2; if (d != 0) printf "%s=%s ", $1, d / 20 }')
        if [ "$per" != "C_Sign=1 C_SignInit=1 " ]; then
            echo "--- FAIL: $key $mode: PKCS#11 calls per signature: ${per:-none}" >&2
            failures=$((failures + 1))
        else
            kw_log "ok: $key $mode: PKCS#11 calls per signature: ${per% }"
        fi
    done
done
[ "$failures" = 0 ] || kw_fail "$failures steady-state check(s) failed"

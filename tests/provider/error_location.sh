#!/bin/bash
# keyward's errors name the file, line and function that raised them (issue 17, item 6), as
# OpenSSL's own do: "keyward:FUNCTION:REASON:provider/key_op.c:LINE:detail", never
# "keyward:keyward:REASON::0:".
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest rsa 01 rsa:2048
kw_keygen kwtest oaep-only 02 rsa:2048 --allowed-mechanisms RSA-PKCS-OAEP
kw_provider_setup
echo data >data

# located REASON_RE CMD...: CMD fails and its keyward error line carries a real location.
located() {
    local reason=$1 line
    shift
    kw_expect_fail "$reason" "$@"
    line=$(grep -E ":keyward:" "$KW_FAIL_STDERR" | head -1)
    [ -n "$line" ] || { cat "$KW_FAIL_STDERR" >&2; kw_fail "no keyward error line: $*"; }
    grep -Eq ':keyward:[A-Za-z_][A-Za-z0-9_]*:[^:]+:(provider|common)/[a-z0-9_]+\.c:[1-9][0-9]*:' <<<"$line" ||
        kw_fail "keyward error without its file, line and function: $line"
    grep -q ':keyward:keyward:\|::0:' <<<"$line" && kw_fail "keyward error at no location: $line"
    kw_log "located: $(cut -d: -f4-8 <<<"$line")"
}

located 'token not found' openssl dgst -sha256 -sign 'pkcs11:token=nosuchtoken;object=rsa' -out s data
located 'malformed pkcs11 URI' openssl dgst -sha256 -sign 'pkcs11:token=kwtest;id=%zz' -out s data
located 'not usable for this operation' openssl dgst -sha256 -sign 'pkcs11:token=kwtest;object=oaep-only' -out s data
located 'data too small' openssl pkeyutl -sign -inkey 'pkcs11:token=kwtest;object=rsa' \
    -pkeyopt pad-mode:none -in data -out s
echo "PASS: keyward errors name their file, line and function"

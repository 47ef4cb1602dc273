#!/bin/bash
# URIs without token= on a module with an uninitialised slot beside its tokens (SoftHSM2 always
# keeps one): the slot is skipped, not opened (it answers CKR_TOKEN_NOT_RECOGNIZED), and does not
# count as a match, so `pkcs11:id=...`, plain `pkcs11:` and genpkey's keyward_uri without token=
# work; two real tokens are still two matches.
set -euo pipefail
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
kw_softhsm_init
kw_token_init kwtest
kw_keygen kwtest ec 0001 EC:prime256v1
kw_keygen kwtest rsa 0002 rsa:2048
kw_provider_setup
kw_pubkey_pem kwtest 0001 ec.pub
kw_pubkey_pem kwtest 0002 rsa.pub
openssl req -new -x509 -key 'pkcs11:token=kwtest;object=ec' -subj /CN=uninit -days 2 -out ec.crt
kw_import_cert kwtest ec 0001 ec.crt
echo data >data

# The precondition: the module shows a slot whose token is not initialised.
OPENSSL_CONF=$KW_DEFAULT_CNF softhsm2-util --show-slots >slots.txt
grep -Eq '^ +Initialized: +no' slots.txt || { cat slots.txt; kw_fail "no uninitialised slot to test with"; }

count() { grep -c "^[0-9]*: $1" "$2" || true; }
total() { sed -n 's/^Total found: //p' "$1"; }
# storeutl_ok OUT ARGS...: openssl storeutl ARGS >OUT.txt; OpenSSL 3.0's storeutl exits 0 after
# a failed load, so any error text on its stderr (OUT.err) is a failure too.
storeutl_ok() {
    local out=$1 rc=0
    shift
    kw_run openssl storeutl "$@" >"$out.txt" 2>"$out.err" || rc=$?
    if [ "$rc" != 0 ] || grep -Eq 'keyward|error' "$out.err"; then
        cat "$out.err" >&2
        kw_fail "storeutl $* (exit $rc)"
    fi
    kw_log "ok: storeutl $*"
}

storeutl_ok priv 'pkcs11:type=private;id=%00%02'
[ "$(total priv.txt)" = 1 ] || { cat priv.txt; kw_fail "type=private;id=%00%02: expected 1 key"; }

storeutl_ok pub 'pkcs11:type=public;id=%00%01'
[ "$(count 'Public key' pub.txt)" = 1 ] || { cat pub.txt; kw_fail "type=public: expected 1"; }
grep -qF "$(sed -n 2p ec.pub)" pub.txt || kw_fail "type=public;id=%00%01 is not the EC key"

storeutl_ok all -text 'pkcs11:'
[ "$(count Pkey all.txt)" = 2 ] || { cat all.txt; kw_fail "pkcs11:: expected 2 private keys"; }
[ "$(count Certificate all.txt)" = 1 ] || { cat all.txt; kw_fail "pkcs11:: expected 1 certificate"; }

kw_ok "sign with pkcs11:type=private;id=%00%02" \
    openssl dgst -sha256 -sign 'pkcs11:type=private;id=%00%02' -out sig data
kw_ok "the signature verifies" kw_default openssl dgst -sha256 -verify rsa.pub -signature sig data

GEN=(openssl genpkey -propquery '?provider=keyward' -algorithm EC -pkeyopt ec_paramgen_curve:P-256)
kw_ok "genpkey keyward_uri:pkcs11:object=fresh" "${GEN[@]}" \
    -pkeyopt 'keyward_uri:pkcs11:object=fresh;id=%10' -out fresh.pem
kw_objects kwtest | grep -q 'label: *fresh' || kw_fail "the new key is not on kwtest"

# Two initialised tokens are two matches: the ambiguity is still refused.
kw_token_init other
kw_expect_fail 'matches 2 tokens' "${GEN[@]}" -pkeyopt 'keyward_uri:pkcs11:object=again;id=%11' \
    -out again.pem
echo "PASS: uninitialised slots are skipped by URIs without token="

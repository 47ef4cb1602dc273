#!/bin/bash
# Fault injection through keyward: openssl operations on token keys run with the PKCS#11 shim
# (kw-fault-shim.so) between keyward and the token's module, failing chosen calls with chosen
# CKR_ codes. For every run: no crash (exit < 128), no hang (timeout), and either success with
# output the default provider verifies, or failure with a keyward reason in words on stderr.
# Persistent faults on calls an operation cannot do without must fail it, with the reason that
# CKR means. After each persistent fault the same operation without faults must succeed
# (recovery), and a TLS server that loses its token for two signatures serves the next client.
#   faults.sh GROUP [BACKEND]
#     GROUP: sweep (every call pkeyutl makes), ops (pkeyutl dgst req with RSA and EC keys),
#            storeutl, tls (s_server + s_client), recover (one process across faults:
#            fault-recover, recover.c), or all
#     BACKEND: softhsm (default), keyring (keyward-pkcs11.so in a session keyring of its own)
#            or tpm (tpm2-pkcs11 on a software TPM, tests/fixtures/tpm.sh)
#   KW_FAULT_QUICK=1: fewer injection points.
#   KW_FAULT_ALL_GROUPS="sweep ...": what "all" runs (the asan setup: every group on the two
#     backends took ~24 min there; the SoftHSM runs of every group still run under asan).
set -euo pipefail
GROUP=${1:-all}
BACKEND=${2:-softhsm}
case $GROUP in sweep | ops | storeutl | tls | recover | all) ;; *) echo "usage: $0 sweep|ops|storeutl|tls|recover|all [softhsm|keyring|tpm]" >&2; exit 2 ;; esac
case $BACKEND in softhsm | keyring | tpm) ;; *) echo "faults.sh: unknown backend '$BACKEND' (softhsm, keyring or tpm)" >&2; exit 2 ;; esac
want() {
    if [ "$GROUP" != all ]; then
        [ "$GROUP" = "$1" ]
    elif [ -n "${KW_FAULT_ALL_GROUPS:-}" ]; then
        case " $KW_FAULT_ALL_GROUPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac
    fi
}
if [ "$GROUP" = all ] && [ -n "${KW_FAULT_ALL_GROUPS:-}" ] && [ -z "${KW_FAULT_IN_SESSION:-}" ]; then
    echo "NOTE: KW_FAULT_ALL_GROUPS: only the groups '$KW_FAULT_ALL_GROUPS' run here" >&2
fi
if [ "$BACKEND" = keyring ] && [ -z "${KW_FAULT_IN_SESSION:-}" ]; then
    command -v keyctl >/dev/null || { echo "SKIP: keyctl not installed (keyutils)" >&2; exit 77; }
    # A session keyring of our own: the keys go with it, nothing of the user's is touched.
    KW_FAULT_IN_SESSION=1 exec keyctl session - bash "$0" "$@"
fi
FIXTURES=${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures
. "$FIXTURES/softhsm.sh"
SHIM=${KEYWARD_BUILD:-}/tests/fault/kw-fault-shim.so
[ -f "$SHIM" ] || kw_fail "kw-fault-shim.so not built ($SHIM): run through meson test"
if [ "$BACKEND" = tpm ]; then
    . "$FIXTURES/tpm.sh"
    # Before kw_softhsm_init, whose exit trap then runs the TPM's after its own clean-ups.
    kw_tpm_start || kw_fail "the software TPM did not start"
fi
kw_require_tools timeout
kw_softhsm_init
case $BACKEND in
softhsm)
    TOKEN=ft
    kw_token_init ft
    kw_keygen ft rsa 01 rsa:2048
    kw_keygen ft ec 02 EC:prime256v1
    kw_pubkey_pem ft 01 "$KW_TMP/rsa.pub"
    kw_pubkey_pem ft 02 "$KW_TMP/ec.pub"
    RSA='pkcs11:token=ft;object=rsa;type=private'
    EC='pkcs11:token=ft;object=ec;type=private'
    PIN_SOURCE=
    ;;
keyring)
    KW_MODULE=${KEYWARD_BUILD:-}/pkcs11/keyward-pkcs11.so
    [ -f "$KW_MODULE" ] || kw_skip "keyward-pkcs11.so not built (-Dkeyring=disabled or no libkeyutils)"
    echo "token keyring session:kw-fault-$$" >"$KW_TMP/kwk.conf"
    export KEYWARD_PKCS11_CONF=$KW_TMP/kwk.conf
    # The token has no PIN configured: any PIN logs in.
    (umask 077 && echo 0000 >"$KW_TMP/keyring.pin")
    PIN_SOURCE=file:$KW_TMP/keyring.pin
    RSA='pkcs11:token=keyring;object=rsa;type=private'
    EC='pkcs11:token=keyring;object=ec;type=private'
    kw_provider_setup "$PIN_SOURCE"
    kw_ok "RSA key on the keyring token" openssl genpkey -propquery '?provider=keyward' \
        -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
        -pkeyopt keyward_uri:'pkcs11:token=keyring;object=rsa;id=%01' -out rsa.key
    kw_ok "EC key on the keyring token" openssl genpkey -propquery '?provider=keyward' \
        -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
        -pkeyopt keyward_uri:'pkcs11:token=keyring;object=ec;id=%02' -out ec.key
    ;;
tpm)
    KW_MODULE=$KW_TPM_MODULE
    PIN_SOURCE=file:$KW_TPM_PIN_FILE
    RSA=$KW_TPM_RSA_URI
    EC=$KW_TPM_EC_URI
    ;;
esac
if [ "$BACKEND" != softhsm ]; then
    # The public halves, read through keyward with no shim: what the checks verify against.
    kw_provider_setup "$PIN_SOURCE"
    kw_ok "RSA public key" openssl pkey -in "$RSA" -pubout -out rsa.pub
    kw_ok "EC public key" openssl pkey -in "$EC" -pubout -out ec.pub
fi
export KW_SHIM_MODULE=$KW_MODULE
KW_MODULE=$SHIM
kw_provider_setup ${PIN_SOURCE:+"$PIN_SOURCE"}
unset KW_SHIM_FAIL KW_SHIM_DELAY KW_SHIM_LOG

CKRS="CKR_DEVICE_ERROR CKR_DEVICE_REMOVED CKR_SESSION_HANDLE_INVALID CKR_USER_NOT_LOGGED_IN
      CKR_PIN_EXPIRED CKR_SESSION_COUNT CKR_HOST_MEMORY"
REASONS='malformed pkcs11 URI|PKCS#11 module cannot be loaded|token not found|object not found'
REASONS+='|URI matches more than one key|PIN incorrect|PIN locked|PIN file unusable|PIN required'
REASONS+='|mechanism not supported by the token|key not usable for this operation'
REASONS+='|token not present|private key cannot be exported|out of memory|invalid argument'
REASONS+='|PKCS#11 error'
TIMEOUT=30
head -c 4000 /dev/urandom >data
kw_default openssl dgst -sha256 -binary -out d256 data

# What each CKR_ must say when it makes an operation fail.
reason_for() {
    case $1 in
    CKR_DEVICE_ERROR) echo 'token not present|PKCS#11 error' ;;
    CKR_DEVICE_REMOVED | CKR_SESSION_HANDLE_INVALID) echo 'token not present' ;;
    CKR_USER_NOT_LOGGED_IN) echo 'PIN required' ;;
    CKR_PIN_EXPIRED) echo 'PIN locked' ;;
    CKR_SESSION_COUNT) echo 'PKCS#11 error' ;;
    CKR_HOST_MEMORY) echo 'out of memory' ;;
    esac
}

# ---- operations: op_NAME KEY runs it (stderr to $KW_TMP/op.err); check_NAME KEY checks output.
pub_of() { [ "$1" = "$RSA" ] && echo rsa.pub || echo ec.pub; }

op_pkeyutl() {
    rm -f out.sig
    kw_run timeout -k 5 $TIMEOUT openssl pkeyutl -sign -inkey "$1" -pkeyopt digest:sha256 \
        -in d256 -out out.sig
}
check_pkeyutl() {
    kw_default openssl pkeyutl -verify -pubin -inkey "$(pub_of "$1")" -pkeyopt digest:sha256 \
        -in d256 -sigfile out.sig >/dev/null 2>&1
}
op_dgst() {
    rm -f out.sig
    kw_run timeout -k 5 $TIMEOUT openssl dgst -sha256 -sign "$1" -out out.sig data
}
check_dgst() {
    kw_default openssl dgst -sha256 -verify "$(pub_of "$1")" -signature out.sig data >/dev/null 2>&1
}
op_req() {
    rm -f out.crt
    kw_run timeout -k 5 $TIMEOUT openssl req -x509 -new -key "$1" -subj /CN=fault -days 1 \
        -out out.crt
}
check_req() {
    kw_default openssl verify -check_ss_sig -CAfile out.crt out.crt >/dev/null 2>&1 &&
        [ "$(kw_default openssl x509 -in out.crt -noout -pubkey)" = "$(cat "$(pub_of "$1")")" ]
}
# OpenSSL 3.0's storeutl exits 0 when the store fails to load (later releases exit 1). What the
# user sees is what counts: a listing that found nothing while keyward reported an error on
# stderr is the failure it is, and then the error must be in words like any other.
op_storeutl() {
    local rc=0
    kw_run timeout -k 5 $TIMEOUT openssl storeutl -keys "$1" >out.store || rc=$?
    [ "$rc" = 0 ] && ! grep -q '^Total found: [1-9]' out.store && grep -q 'keyward' op.err && rc=1
    return "$rc"
}
check_storeutl() {
    grep -q '^Total found: 1$' out.store
}

# run_case OP KEY FAIL_SPEC MODE: MODE "must" (must fail with reason), "may" (success or words).
# Returns nothing; fails the test on a violation. Sets LAST_RC.
CASES=0
SUCCEEDED=0
REFUSED=0
run_case() {
    local op=$1 key=$2 spec=$3 mode=$4 ckr=${3##*:} rc=0 pat
    CASES=$((CASES + 1))
    KW_SHIM_FAIL=$spec "op_$op" "$key" >/dev/null 2>op.err || rc=$?
    LAST_RC=$rc
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        kw_fail "$op with $spec hung (killed after ${TIMEOUT}s)"
    fi
    if [ "$rc" -ge 128 ]; then
        cat op.err >&2
        kw_fail "$op with $spec: killed by signal $((rc - 128))"
    fi
    if [ "$rc" = 0 ]; then
        [ "$mode" = must ] && { cat op.err >&2; kw_fail "$op with $spec succeeded but must fail"; }
        "check_$op" "$key" || kw_fail "$op with $spec succeeded but its output does not verify"
        SUCCEEDED=$((SUCCEEDED + 1))
        return 0
    fi
    REFUSED=$((REFUSED + 1))
    pat=$REASONS
    [ "$mode" = must ] && pat=$(reason_for "$ckr")
    if ! grep -Eq "keyward:.*($pat)" op.err; then
        echo "--- stderr of $op with $spec:" >&2
        cat op.err >&2
        kw_fail "$op with $spec failed (exit $rc) without a keyward reason /$pat/"
    fi
}

# recover OP KEY: the same operation with no fault must succeed and verify.
recover() {
    local rc=0
    "op_$1" "$2" >/dev/null 2>op.err || rc=$?
    if [ "$rc" != 0 ] || ! "check_$1" "$2"; then
        cat op.err >&2
        kw_fail "$1 does not recover after a fault (exit $rc)"
    fi
}

# Calls an operation makes, from the shim's log: "COUNT NAME" lines.
call_counts() {
    local rc=0
    rm -f calls.log
    KW_SHIM_LOG=$KW_TMP/calls.log "op_$1" "$2" >/dev/null 2>op.err || rc=$?
    [ "$rc" = 0 ] || { cat op.err >&2; kw_fail "$1 fails with the shim and no fault"; }
    "check_$1" "$2" || kw_fail "$1 through the shim gives output that does not verify"
    sort calls.log | uniq -c
}

# The shim really injects: a persistent C_Sign fault must make a signature fail.
run_case pkeyutl "$RSA" 'C_Sign:1+:CKR_DEVICE_ERROR' must
kw_log "shim injects (pkeyutl fails on C_Sign:1+)"

if want sweep; then
# 1. Sweep: every call pkeyutl makes, each call number (sampled when there are many), fails once
#    with CKR_DEVICE_ERROR, then from that call on. Nothing may crash or hang.
counts=$(call_counts pkeyutl "$RSA")
kw_log "pkeyutl (RSA) calls: $(echo $counts)"
while read -r n fn; do
    picks=$(seq 1 "$n")
    [ "$n" -gt 12 ] && picks="1 2 3 $((n / 4)) $((n / 2)) $((n - 1)) $n"
    [ "${KW_FAULT_QUICK:-}" ] && picks="1 $n"
    for i in $picks; do
        run_case pkeyutl "$RSA" "$fn:$i:CKR_DEVICE_ERROR" may
        run_case pkeyutl "$RSA" "$fn:$i+:CKR_DEVICE_ERROR" may
    done
done <<<"$counts"
recover pkeyutl "$RSA"
kw_log "sweep over every pkeyutl call: $CASES cases, no crash, no hang, errors in words"
fi

# 2. Each CKR_ at the calls no operation can do without: once (retry or words), and from the
#    first call on (must fail with the reason that CKR_ means), then recovery.
critical="C_OpenSession C_Login C_SignInit C_Sign"
ops=""
want ops && ops="pkeyutl dgst req"
want storeutl && ops="$ops storeutl"
for op in $ops; do
    hit=""
    for key in "$RSA" "$EC"; do
        [ "${KW_FAULT_QUICK:-}" ] && [ "$key" = "$EC" ] && [ "$op" != pkeyutl ] && continue
        # Only the calls this operation makes on this token (storeutl does not sign; a token
        # that needs no login is not asked to log in).
        made=$(call_counts "$op" "$key" | awk '{print $2}')
        for fn in $critical; do
            echo "$made" | grep -qx "$fn" || continue
            case " $hit " in *" $fn "*) ;; *) hit="$hit $fn" ;; esac
            for ckr in $CKRS; do
                run_case "$op" "$key" "$fn:1:$ckr" may
                mode=must
                # storeutl lists what it can: a failed login leaves the public key to list.
                [ "$op" = storeutl ] && [ "$fn" = C_Login ] && mode=may
                run_case "$op" "$key" "$fn:1+:$ckr" "$mode"
                recover "$op" "$key"
            done
        done
    done
    kw_log "$op ($BACKEND): faults at$hit handled"
done

if want ops; then
# 3. A slow token is not a failed one: a 2 s C_Sign still signs.
start=$(date +%s)
KW_SHIM_DELAY='C_Sign:1:2000' op_pkeyutl "$RSA" 2>op.err || { cat op.err >&2; kw_fail "slow C_Sign failed"; }
check_pkeyutl "$RSA" || kw_fail "signature from the slow token does not verify"
[ $(($(date +%s) - start)) -ge 2 ] || kw_fail "the delay was not injected"
kw_log "slow C_Sign (2 s) still signs"
fi

if want tls; then
# 4. TLS: one s_server process. Its token fails the first two C_Sign calls (the first handshake
#    and keyward's one retry); the handshake fails with words, the server survives, and the
#    next client gets a full handshake signed by the token.
kw_ok "self-signed certificate" openssl req -x509 -new -key "$RSA" -subj /CN=127.0.0.1 -days 1 \
    -out tls.crt
tls_server() { # SPEC NACCEPT: start s_server with faults SPEC; sets SPID PORT
    PORT=$(kw_free_port)
    # Empty the logs here: the child truncates them only once it runs, and the ACCEPT left by
    # the last server would send the client to a port nobody listens on yet.
    : >srv.out
    : >srv.err
    KW_SHIM_FAIL=$1 kw_run timeout -k 5 60 openssl s_server -accept "127.0.0.1:$PORT" \
        -cert tls.crt -key "$RSA" -naccept "$2" -tls1_3 -www >srv.out 2>srv.err </dev/null &
    SPID=$!
    kw_kill_on_exit "$SPID"
    for _ in $(seq 100); do
        grep -q ACCEPT srv.out 2>/dev/null && return 0
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    cat srv.err >&2
    kw_fail "s_server did not start"
}
tls_server_ended() { # [CKR]: wait for s_server, which must end by itself: no signal, no timeout
    local rc=0
    wait "$SPID" || rc=$?
    [ "$rc" -lt 128 ] || { cat srv.err >&2; kw_fail "s_server killed by signal $((rc - 128))${1:+ ($1)}"; }
    [ "$rc" != 124 ] || { cat srv.err >&2; kw_fail "s_server still waiting after 60 s${1:+ ($1)}"; }
}
tls_client() { # -> 0 when the handshake completed and the server certificate verified
    kw_default timeout -k 5 20 openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 \
        -CAfile tls.crt -verify_return_error -brief </dev/null >cli.out 2>&1 &&
        grep -q 'CONNECTION ESTABLISHED' cli.out
}
# keyward tries a private operation up to five times (back-off 20-160 ms) when the token
# goes away: five failed calls fail the first handshake.
tls_server 'C_Sign:1-5:CKR_DEVICE_REMOVED' 2
tls_client && kw_fail "TLS handshake succeeded while the token failed every signature"
tls_client || { cat cli.out srv.err >&2; kw_fail "s_server did not recover: the next handshake failed"; }
tls_server_ended
grep -Eq 'keyward:.*token not present' srv.err ||
    { cat srv.err >&2; kw_fail "s_server did not say why the first handshake failed"; }
kw_log "s_server: failed handshake reported (token not present), next handshake served"

for ckr in $CKRS; do
    tls_server "C_Sign:1+:$ckr" 1
    tls_client && kw_fail "TLS handshake succeeded with C_Sign failing ($ckr)"
    tls_server_ended "$ckr"
    grep -Eq "keyward:.*($(reason_for "$ckr"))" srv.err ||
        { cat srv.err >&2; kw_fail "s_server gave no keyward reason for $ckr"; }
    CASES=$((CASES + 1))
done
kw_log "s_server: every CKR_ at C_Sign reported, no crash"
fi
if want recover; then
    # 5. One process across many faults (recover.c drives the shim through kw_shim_set_fail).
    RECOVER=$KEYWARD_BUILD/tests/fault/fault-recover
    [ -x "$RECOVER" ] || kw_fail "fault-recover not built"
    rc=0
    kw_run timeout -k 5 300 "$RECOVER" "$SHIM" "$RSA" "$EC" >recover.out 2>recover.err || rc=$?
    [ "$rc" -lt 124 ] || { cat recover.err >&2; kw_fail "fault-recover hung or crashed (exit $rc)"; }
    [ "$rc" = 0 ] || { cat recover.err recover.out >&2; kw_fail "fault-recover: $(tail -1 recover.out)"; }
    kw_log "one process: $(cat recover.out)"
fi
kw_log "$CASES fault cases passed ($SUCCEEDED operations succeeded despite the fault, $REFUSED failed with a reason)"

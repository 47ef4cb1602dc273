#!/bin/bash
# A remote token: SoftHSM2 served by `p11-kit server` on a unix socket, used by keyward through
# p11-kit-client.so (P11_KIT_SERVER_ADDRESS). Signs (RSA PKCS#1 v1.5, RSA-PSS, ECDSA) with
# checks by the default provider alone, serves TLS from one long-running `openssl s_server`,
# then kills the p11-kit server: while it is gone operations fail with an error (no crash, no
# hang) and the s_server stays up; after a restart they succeed again in the same s_server.
# Also records what bookworm's p11-kit 0.24 RPC cannot carry (ECDH derive, EdDSA).
set -euo pipefail
: "${KEYWARD_PROVIDER_DIR:?run through meson test}"
SOFTHSM=/usr/lib/softhsm/libsofthsm2.so
CLIENT=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so
skip() { echo "SKIP: $*" >&2; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }
for c in p11-kit softhsm2-util pkcs11-tool openssl python3; do
    command -v $c >/dev/null || skip "'$c' missing (scripts/deps.sh test)"
done
[ -r $SOFTHSM ] || skip "SoftHSM2 module missing (softhsm2)"
[ -r $CLIENT ] || skip "p11-kit-client.so missing (p11-kit-modules)"

D=$(mktemp -d "${TMPDIR:-/tmp}/kw-remote.XXXXXX")
SERVER=""
SSERVER=""
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    [ -n "$SERVER" ] && stop_server
    [ -n "$SSERVER" ] && kill "$SSERVER" 2>/dev/null && wait "$SSERVER" 2>/dev/null
    if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
        for f in "$D"/*.log; do [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
    fi
    [ -n "${KW_KEEP_TMP:-}" ] && echo "kept $D" >&2 || rm -rf "$D"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$D"

# --- the HSM side: a fresh SoftHSM token with RSA-2048, P-256 and Ed25519 keys ---------------
mkdir tokens
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$D" \
    >softhsm2.conf
export SOFTHSM2_CONF=$D/softhsm2.conf
PIN=$(openssl rand -hex 8)
(umask 077 && printf '%s' "$PIN" >user.pin)
softhsm2-util --init-token --free --label remote --pin "$PIN" --so-pin "$(openssl rand -hex 8)" \
    >hsm.log
# pkcs11-tool reads the PIN from the environment (softhsm2-util has no such option).
export KW_PIN=$PIN
P11=(pkcs11-tool --module $SOFTHSM --token-label remote --login --pin env:KW_PIN)
"${P11[@]}" --keypairgen --key-type rsa:2048 --id 01 --label rsa --usage-sign >>hsm.log 2>&1
"${P11[@]}" --keypairgen --key-type EC:prime256v1 --id 02 --label ec --usage-sign --usage-derive \
    >>hsm.log 2>&1
"${P11[@]}" --keypairgen --key-type EC:edwards25519 --id 03 --label ed --usage-sign >>hsm.log 2>&1
unset PIN KW_PIN

SOCK=$D/p11kit.sock
start_server() {
    rm -f "$SOCK"
    p11-kit server -f --provider $SOFTHSM -n "$SOCK" "pkcs11:token=remote" \
        </dev/null >>server.log 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do [ -S "$SOCK" ] && return 0; sleep 0.05; done
    fail "p11-kit server did not create $SOCK"
}
# p11-kit server forks a process per client connection: the listener and its children go.
stop_server() {
    local kids
    kids=$(pgrep -P "$SERVER" || true)
    kill "$SERVER" $kids 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
    [ -S "$SOCK" ] && rm -f "$SOCK"
    return 0
}
start_server

# --- the front-end side: keyward on p11-kit-client.so -----------------------------------------
export P11_KIT_SERVER_ADDRESS="unix:path=$SOCK"
cat >kw.cnf <<CNF
openssl_conf = kw_init
[kw_init]
providers = kw_providers
[kw_providers]
default = kw_default
keyward = kw_keyward
[kw_default]
activate = 1
[kw_keyward]
module = $KEYWARD_PROVIDER_DIR/keyward.so
activate = 1
keyward-module = $CLIENT
keyward-pin-source = file:$D/user.pin
CNF
printf 'openssl_conf = plain_init\n[plain_init]\n' >plain.cnf
kw() { OPENSSL_CONF=$D/kw.cnf LD_PRELOAD=${KEYWARD_ASAN_PRELOAD:-} openssl "$@"; }
plain() { OPENSSL_CONF=$D/plain.cnf openssl "$@"; }
RSA='pkcs11:token=remote;object=rsa;type=private'
EC='pkcs11:token=remote;object=ec;type=private'
ED='pkcs11:token=remote;object=ed;type=private'

head -c 2000 /dev/urandom >data
plain dgst -sha256 -binary -out dig data
printf 'other' | plain dgst -sha256 -binary -out badd

step "public keys over the RPC"
kw pkey -in "$RSA" -pubout -out rsa.pub
kw pkey -in "$EC" -pubout -out ec.pub
verify() {
    local pub=$1 sig=$2
    shift 2
    plain pkeyutl -verify -pubin -inkey "$pub" -sigfile "$sig" -in dig "$@" >/dev/null ||
        fail "$sig does not verify"
    if plain pkeyutl -verify -pubin -inkey "$pub" -sigfile "$sig" -in badd "$@" >/dev/null 2>&1
    then fail "$sig verifies over another digest"; fi
}
step "RSA PKCS#1 v1.5, RSA-PSS, ECDSA over the RPC"
kw pkeyutl -sign -inkey "$RSA" -pkeyopt digest:sha256 -in dig -out rsa.sig
verify rsa.pub rsa.sig -pkeyopt digest:sha256
PSS=(-pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:digest)
kw pkeyutl -sign -inkey "$RSA" "${PSS[@]}" -in dig -out pss.sig
verify rsa.pub pss.sig "${PSS[@]}"
kw pkeyutl -sign -inkey "$EC" -in dig -out ec.sig
verify ec.pub ec.sig

# --- limits of p11-kit 0.24's RPC: these must fail with an error, never crash or hang ----------
# limit NAME CMD...: runs CMD (bounded), requires a plain failure, prints the error users see.
limit() {
    local name=$1 rc=0
    shift
    timeout 60 "$@" >limit.out 2>limit.err || rc=$?
    [ "$rc" = 124 ] && fail "$name hangs"
    [ "$rc" -ge 128 ] && { cat limit.err >&2; fail "$name crashed (exit $rc)"; }
    if [ "$rc" = 0 ]; then
        echo "NOTE: $name works over this p11-kit"
    else
        echo "NOTE: $name over p11-kit 0.24 RPC fails (exit $rc):"
        sed 's/^/    /' limit.err
    fi
}
step "mechanisms the RPC may not carry"
plain genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.key
plain pkey -in peer.key -pubout -out peer.pub
limit "ECDH (CKM_ECDH1_DERIVE)" env OPENSSL_CONF=$D/kw.cnf openssl pkeyutl -derive -inkey "$EC" -peerkey peer.pub -out secret.bin
limit "EdDSA (CKM_EDDSA)" env OPENSSL_CONF=$D/kw.cnf openssl pkeyutl -sign -rawin -inkey "$ED" -in data -out ed.sig

# --- TLS from one long-running s_server; the p11-kit server goes away and comes back ---------
kw pkey -in "$RSA" -out rsa.key
kw pkey -in "$EC" -out ec.key
for k in rsa ec; do
    kw req -new -x509 -key $k.key -subj /CN=localhost -days 2 -out $k.crt
done
cat rsa.crt ec.crt >cas.pem
PORT=$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
OPENSSL_CONF=$D/kw.cnf LD_PRELOAD=${KEYWARD_ASAN_PRELOAD:-} openssl s_server \
    -accept "127.0.0.1:$PORT" -naccept 1000 -no_cache -num_tickets 0 \
    -cert rsa.crt -key rsa.key -dcert ec.crt -dkey ec.key -www </dev/null >sserver.log 2>&1 &
SSERVER=$!
# handshake SIGALG: one full TLS 1.3 handshake; the server signs with the key for SIGALG.
handshake() {
    timeout 30 env OPENSSL_CONF=$D/plain.cnf openssl s_client -connect "127.0.0.1:$PORT" \
        -CAfile cas.pem -verify_return_error -tls1_3 -sigalgs "$1" -brief </dev/null \
        >hs.out 2>&1
}
for _ in $(seq 100); do handshake ecdsa_secp256r1_sha256 && break; sleep 0.1; done
rounds() { # rounds LABEL EXPECT(ok|fail)
    local s ok=0 bad=0 t0 t1
    for s in rsa_pss_rsae_sha256 ecdsa_secp256r1_sha256 rsa_pss_rsae_sha256 \
        ecdsa_secp256r1_sha256; do
        t0=$(date +%s)
        if handshake $s; then
            grep -q 'Verification: OK' hs.out || fail "$1: $s handshake without verified peer"
            ok=$((ok + 1))
        else
            [ "$?" = 124 ] && fail "$1: $s handshake hangs"
            bad=$((bad + 1))
        fi
        t1=$(date +%s)
        [ $((t1 - t0)) -le 20 ] || fail "$1: $s took $((t1 - t0)) s"
        kill -0 $SSERVER 2>/dev/null || fail "$1: s_server died"
    done
    echo "$1: $ok handshakes ok, $bad failed"
    if [ "$2" = ok ]; then [ $bad = 0 ] || fail "$1: $bad handshakes failed"; fi
    if [ "$2" = fail ]; then [ $ok = 0 ] || fail "$1: $ok handshakes succeeded with no server"; fi
}
step "TLS 1.3 from s_server (RSA-PSS and ECDSA on the remote token)"
rounds before ok

step "p11-kit server killed"
stop_server
rounds during fail
rc=0
timeout 30 env OPENSSL_CONF=$D/kw.cnf openssl pkeyutl -sign -inkey "$EC" -in dig -out x.sig \
    2>gone.err || rc=$?
[ "$rc" != 0 ] && [ "$rc" -lt 124 ] || { cat gone.err; fail "sign with no server: exit $rc"; }
echo "error users see: $(grep -m1 -i 'keyward\|error' gone.err)"
grep -qi 'keyward' gone.err || fail "no keyward error message when the server is gone"

step "p11-kit server restarted (same s_server process)"
start_server
# keyward re-initialises a lost module at most every 200 ms (so a token that stays away is not
# hammered): allow the running s_server that long, then every handshake must succeed.
t0=$(date +%s%N)
for _ in $(seq 25); do handshake ecdsa_secp256r1_sha256 && break; sleep 0.2; done
echo "first handshake after the restart: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
rounds after ok
kill -0 $SSERVER || fail "s_server died"
kw pkeyutl -sign -inkey "$EC" -in dig -out ec2.sig
verify ec.pub ec2.sig
echo PASS

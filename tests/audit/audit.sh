#!/bin/bash
# Non-extraction audit: keys generated on a SoftHSM token by keyward (RSA, EC, Ed25519) must not
# come out by any route we know of. Through the openssl CLI, through the EVP API (audit-evp), at
# the PKCS#11 level with the PIN in hand (audit-p11), and into debug logs at the highest level
# or error output (grepped for the PIN and for secrets keyward handled: a decrypted message and
# an ECDH shared secret). Every attempt must be refused; controls show the probes can see a leak.
#   audit.sh keys      CLI, EVP and PKCS#11 routes on SoftHSM
#   audit.sh logs      debug log and error output (SoftHSM)
#   audit.sh keyring   CLI, EVP and PKCS#11 routes on keyward-pkcs11.so (kernel keyring, in a
#                      fresh session keyring), and keyctl read/pipe on kernel-resident keys
set -euo pipefail
GROUP=${1:-all}
case $GROUP in keys | logs | keyring | all) ;; *) echo "usage: $0 keys|logs|keyring|all" >&2; exit 2 ;; esac
want() { [ "$GROUP" = all ] || [ "$GROUP" = "$1" ] || { [ "$GROUP" = keyring ] && [ "$1" = keys ]; }; }
if [ "$GROUP" = keyring ] && [ -z "${KW_AUDIT_IN_SESSION:-}" ]; then
    command -v keyctl >/dev/null || { echo "SKIP: keyctl not installed" >&2; exit 77; }
    # A session keyring of our own: nothing of the user's is touched, all of it goes at exit.
    KW_AUDIT_IN_SESSION=1 exec keyctl session - bash "$0" "$@"
fi
. "${KEYWARD_SRC:-$(dirname "$0")/../..}/tests/fixtures/softhsm.sh"
B=${KEYWARD_BUILD:-}
[ -x "$B/tests/audit/audit-p11" ] && [ -x "$B/tests/audit/audit-evp" ] ||
    kw_fail "audit-p11/audit-evp not built: run through meson test"
kw_softhsm_init
if [ "$GROUP" = keyring ]; then
    KW_MODULE=$B/pkcs11/keyward-pkcs11.so
    [ -f "$KW_MODULE" ] || kw_skip "keyward-pkcs11.so not built (-Dkeyring=disabled or no libkeyutils)"
    RING=kw-audit-$$
    echo "token keyring session:$RING" >"$KW_TMP/kwk.conf"
    export KEYWARD_PKCS11_CONF=$KW_TMP/kwk.conf
    TOKEN=keyring
    # No PIN configured on the token, so any PIN logs in; keyward's key generation logs in.
    (umask 077 && echo 0000 >"$KW_TMP/keyring.pin")
    kw_provider_setup "file:$KW_TMP/keyring.pin"
    PIN=
    PIN_FILE=-
else
    TOKEN=audit
    kw_token_init "$TOKEN"
    kw_provider_setup
    PIN=$(cat "$KW_PIN_FILE")
    PIN_FILE=$KW_PIN_FILE
fi
export KEYWARD_DEBUG=file:$KW_TMP/debug.log,3
ALL_ERR=$KW_TMP/all.stderr
: >"$ALL_ERR"

# run CMD...: keyward's openssl, stderr kept for the PIN grep at the end.
run() {
    kw_run "$@" 2>>"$ALL_ERR"
}

gen() { # ALG OBJECT ID [pkeyopt...]
    local alg=$1 obj=$2 id=$3
    shift 3
    kw_ok "genpkey $alg on the token" openssl genpkey -propquery '?provider=keyward' \
        -algorithm "$alg" "$@" -pkeyopt keyward_uri:"pkcs11:token=$TOKEN;object=$obj;id=%$id" \
        -out "$obj.pem"
}
gen RSA rsa 01 -pkeyopt rsa_keygen_bits:2048
gen EC ec 02 -pkeyopt ec_paramgen_curve:P-256
gen ED25519 ed 03
KEYS="rsa ec ed"
uri() { echo "pkcs11:token=$TOKEN;object=$1;type=private"; }

# ---- 1. openssl CLI ----
want keys && for k in $KEYS; do
    U=$(uri "$k")
    # pkey -out: only the URI key file, which is a SEQUENCE of version 1 and a pkcs11: URI.
    run openssl pkey -in "$U" -out "$k.out.pem" || kw_fail "pkey -in $U -out failed"
    [ "$(grep -c -- '-----BEGIN' "$k.out.pem")" = 1 ] && grep -q '^-----BEGIN KEYWARD KEY URI-----$' "$k.out.pem" ||
        kw_fail "pkey -out for $k wrote something other than one KEYWARD KEY URI block"
    sed -n '/BEGIN/,/END/p' "$k.out.pem" | sed '1d;$d' | base64 -d >"$k.out.der" ||
        kw_fail "KEYWARD KEY URI body is not base64"
    kw_default openssl asn1parse -inform DER -in "$k.out.der" >"$k.asn1" ||
        kw_fail "KEYWARD KEY URI body is not DER"
    # Exactly: SEQUENCE, INTEGER 1, UTF8STRING pkcs11:... and nothing else.
    [ "$(wc -l <"$k.asn1")" = 3 ] && sed -n 2p "$k.asn1" | grep -q 'INTEGER *:01$' &&
        sed -n 3p "$k.asn1" | grep -q 'UTF8STRING *:pkcs11:' || {
        cat "$k.asn1" >&2
        kw_fail "pkey -out for $k: DER is not exactly {1, pkcs11: URI}"
    }
    # The same in DER, and from the key file.
    run openssl pkey -in "$U" -outform DER -out "$k.out2.der" || kw_fail "pkey -outform DER failed"
    cmp -s "$k.out.der" "$k.out2.der" || kw_fail "pkey -outform DER for $k differs from the URI key file"
    run openssl pkey -in "$k.pem" -out "$k.out3.pem" || kw_fail "pkey -in $k.pem failed"
    cmp -s "$k.out.pem" "$k.out3.pem" || kw_fail "pkey from the key file gives a different file"
    # A default-only openssl cannot read any of it as a key.
    kw_must_fail "default provider reads $k URI key file as a key" kw_default openssl pkey -in "$k.out.pem" -noout

    # -text: public numbers only.
    run openssl pkey -in "$U" -text -noout >"$k.text" || kw_fail "pkey -text failed for $k"
    if grep -Eiq 'privateExponent:|prime1:|prime2:|exponent1:|exponent2:|coefficient:|^priv:' "$k.text"; then
        cat "$k.text" >&2
        kw_fail "pkey -text for $k shows private numbers"
    fi
    # -traditional (PKCS#1 / SEC1): refused, and nothing written that a default provider reads.
    rm -f "$k.trad.pem"
    rc=0
    run openssl pkey -in "$U" -traditional -out "$k.trad.pem" || rc=$?
    [ "$rc" != 0 ] || ! kw_default openssl pkey -in "$k.trad.pem" -noout 2>/dev/null ||
        kw_fail "pkey -traditional for $k wrote a readable private key"
    [ "$rc" = 0 ] && ! grep -q 'PRIVATE KEY-----' "$k.trad.pem" ||
        { [ "$rc" != 0 ] && [ ! -s "$k.trad.pem" ] || ! grep -q 'PRIVATE KEY-----' "$k.trad.pem"; } ||
        kw_fail "pkey -traditional for $k wrote a PRIVATE KEY block"
    # PKCS#8 and PKCS#12: nothing a default provider can read back as this private key.
    rc=0
    run openssl pkcs8 -topk8 -nocrypt -in "$k.pem" -out "$k.p8" || rc=$?
    [ "$rc" != 0 ] || ! kw_default openssl pkey -in "$k.p8" -noout 2>/dev/null ||
        kw_fail "pkcs8 -topk8 for $k wrote a readable private key"
    rc=0
    run openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:audit -in "$k.pem" -out "$k.p8e" || rc=$?
    [ "$rc" != 0 ] || ! kw_default openssl pkey -in "$k.p8e" -passin pass:audit -noout 2>/dev/null ||
        kw_fail "pkcs8 -topk8 (encrypted) for $k wrote a readable private key"
    kw_log "ok: $k: pkey -out/-outform DER/-text/-traditional, pkcs8 give no private key"
done
if want keys; then
# PKCS#12 needs a certificate.
run openssl req -x509 -new -key "$(uri rsa)" -subj /CN=audit -days 1 -out rsa.crt ||
    kw_fail "req -x509 with the RSA token key"
rc=0
run openssl pkcs12 -export -inkey "$(uri rsa)" -in rsa.crt -passout pass:audit -out rsa.p12 || rc=$?
if [ "$rc" = 0 ]; then
    kw_default openssl pkcs12 -in rsa.p12 -passin pass:audit -nocerts -nodes -out p12.key 2>/dev/null || true
    ! grep -q 'PRIVATE KEY-----' p12.key 2>/dev/null || kw_fail "pkcs12 -export put the private key in the file"
fi
kw_log "ok: pkcs12 -export carries no private key (exit $rc)"

# ---- 2. EVP API ----
"$B/tests/audit/audit-evp" "$(uri rsa)" "$(uri ec)" "$(uri ed)" >evp.out 2>>"$ALL_ERR" ||
    { cat evp.out >&2; tail -60 "$ALL_ERR" >&2; kw_fail "audit-evp: $(tail -1 evp.out)"; }
kw_log "ok: EVP API: $(tail -1 evp.out)"
fi

if want logs; then
# ---- 3. secrets keyward handled: an RSA decryption and an ECDH secret ----
kw_pubkey_pem audit 01 rsa.pub
head -c 32 /dev/urandom >secret.msg
kw_default openssl pkeyutl -encrypt -pubin -inkey rsa.pub -pkeyopt rsa_padding_mode:oaep \
    -in secret.msg -out secret.enc
run openssl pkeyutl -decrypt -inkey "$(uri rsa)" -pkeyopt rsa_padding_mode:oaep -in secret.enc \
    -out secret.dec || kw_fail "OAEP decryption on the token"
cmp -s secret.msg secret.dec || kw_fail "OAEP decryption gave the wrong message"
kw_default openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.key
kw_default openssl pkey -in peer.key -pubout -out peer.pub
run openssl pkeyutl -derive -inkey "$(uri ec)" -peerkey peer.pub -out ecdh.bin ||
    kw_fail "ECDH on the token"
kw_pubkey_pem audit 02 ec.pub
kw_default openssl pkeyutl -derive -inkey peer.key -peerkey ec.pub -out ecdh.check
cmp -s ecdh.bin ecdh.check || kw_fail "ECDH secret differs from the software side"
run openssl pkeyutl -sign -rawin -inkey "$(uri ed)" -in secret.msg -out ed.sig || kw_fail "Ed25519 sign"

# A PIN in the URI that ends up in an error: not echoed back by keyward. (openssl itself repeats
# its -inkey argument in "Could not read private key from ...": that line is not ours.)
rc=0
kw_run openssl pkeyutl -sign -inkey "pkcs11:token=no-such-token;object=x;pin-value=$PIN" \
    -in secret.msg -out /dev/null 2>>"$ALL_ERR" || rc=$?
[ "$rc" != 0 ] || kw_fail "signing with a key on a token that does not exist succeeded"
kw_run openssl pkeyutl -sign -inkey "pkcs11:token=audit;object=no-such-key;pin-value=$PIN" \
    -in secret.msg -out /dev/null 2>>"$ALL_ERR" || true
kw_run openssl storeutl "pkcs11:token=no-such-token;pin-value=$PIN" >/dev/null 2>>"$ALL_ERR" || true
fi

# ---- 4. PKCS#11, PIN in hand ----
if want keys; then
    "$B/tests/audit/audit-p11" "$KW_MODULE" "$TOKEN" "$PIN_FILE" >p11.out 2>&1 ||
        { cat p11.out >&2; kw_fail "audit-p11: $(tail -1 p11.out)"; }
    kw_log "ok: PKCS#11: $(tail -1 p11.out)"
fi

# ---- 4c. key bytes keyward handled: imports into the keyring token ----
# The one place private key bytes pass through keyward's code: `keyward keyring import` and the
# module's C_CreateObject (keyward's PKCS#8 attribute, and pkcs11-tool's standard RSA/EC ones).
# With the debug log at level 3, neither the log nor any error output may hold them.
if [ "$GROUP" = keyring ]; then
    KEYWARD=$B/tools/keyward
    [ -x "$KEYWARD" ] || kw_fail "keyward CLI not built"
    kw_default openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out imp-rsa.key 2>/dev/null
    kw_default openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out imp-ec.key 2>/dev/null
    KEYWARD_PKCS11_MODULE=$KW_MODULE kw_run "$KEYWARD" keyring import imp-rsa.key --label imp-rsa \
        --id a1 >imp.out 2>>"$ALL_ERR" || kw_fail "keyward keyring import of an RSA key"
    KEYWARD_PKCS11_MODULE=$KW_MODULE kw_run "$KEYWARD" keyring import imp-ec.key --label imp-ec \
        --id a2 >>imp.out 2>>"$ALL_ERR" || kw_fail "keyward keyring import of an EC key"
    kw_run pkcs11-tool --module "$KW_MODULE" --login --pin 0000 --write-object imp-rsa.key \
        --type privkey --id a3 --label imp-rsa-std >>imp.out 2>>"$ALL_ERR" ||
        kw_fail "pkcs11-tool import of an RSA key (CKA_PRIVATE_EXPONENT, CKA_PRIME_1, ...)"
    # Each private number, as hex (with and without colons, either case) and as raw bytes.
    secrets() { # KEYFILE FIELD...: hex of each field of `pkey -text`
        local f=$1 field
        shift
        for field in "$@"; do
            kw_default openssl pkey -in "$f" -noout -text | awk -v f="$field:" '
                $1 == f { on = 1; next } on && /^ +[0-9a-f:]+$/ { gsub(/[ :]/, ""); h = h $0; next }
                on { on = 0 } END { sub(/^00/, "", h); print h }'
        done
    }
    found=""
    probe() { # FILE: which private numbers FILE holds
        local h c
        for h in $(secrets imp-rsa.key privateExponent prime1 prime2) $(secrets imp-ec.key priv); do
            [ ${#h} -ge 64 ] || kw_fail "could not read a private number from the key's text"
            # The first 12 bytes: 2^-96 to match by chance, and on one line of `pkey -text`.
            c=$(echo "$h" | cut -c1-24)
            grep -qiF -- "$c" "$1" && found="$found hex:$(basename "$1")"
            grep -qiF -- "$(echo "$c" | sed 's/../&:/g;s/:$//')" "$1" && found="$found colonhex:$(basename "$1")"
            printf '%b' "$(echo "$c" | sed 's/../\\x&/g')" >probe.raw
            grep -qaF -f <(head -c 16 probe.raw | tr -d '\0\n') "$1" 2>/dev/null && found="$found raw:$(basename "$1")"
        done
        return 0
    }
    # Control: the probe sees the numbers where they are.
    kw_default openssl pkey -in imp-rsa.key -noout -text >control.txt
    probe control.txt
    case $found in *colonhex:control.txt*) ;; *) kw_fail "the key-byte probe does not find the key in its own text" ;; esac
    found=""
    [ -s debug.log ] || kw_fail "the keyring module wrote no debug log at level 3"
    for l in imp-rsa imp-ec imp-rsa-std; do
        grep -Eq "key '$l' (stored|loaded)" debug.log || kw_fail "the debug log does not trace the import of $l"
    done
    probe debug.log
    probe "$ALL_ERR"
    [ -z "$found" ] || kw_fail "private key bytes in logs or error output:$found"
    kw_log "ok: 3 key imports (keyward keyring import RSA and EC, pkcs11-tool RSA): no private number in the level-3 debug log ($(wc -l <debug.log) lines) or error output"
fi
# ---- 4b. the kernel keyring itself ----
if [ "$GROUP" = keyring ]; then
    kernel=0
    soft=0
    # keyctl show: "SERIAL PERMS UID GID \_ TYPE: DESCRIPTION", recursively.
    while read -r serial type desc; do
        case $desc in
        keyward:priv:*)
            kernel=$((kernel + 1))
            ! keyctl read "$serial" >/dev/null 2>&1 || kw_fail "keyctl read gave out kernel-resident key $desc"
            ! keyctl pipe "$serial" >/dev/null 2>&1 || kw_fail "keyctl pipe gave out kernel-resident key $desc"
            ! keyctl print "$serial" >/dev/null 2>&1 || kw_fail "keyctl print gave out kernel-resident key $desc"
            ;;
        keyward:soft:*)
            soft=$((soft + 1))
            # Software mode keeps PKCS#8 in a user key: only its possessor may read it. User,
            # group and other may at most view its description: read, write, search, link or
            # setattr (which could grant the rest) would let someone else get at the key.
            perm=$(keyctl rdescribe "$serial" | cut -d';' -f4)
            [ $((0x$perm & 0x003e3e3e)) = 0 ] ||
                kw_fail "software-mode key $desc has permissions $perm: others than its possessor may read it"
            ;;
        esac
    done < <(keyctl show @s 2>/dev/null | sed -n 's/^ *\([0-9][0-9]*\) .*\\_ \([a-z_]*\): \(.*\)$/\1 \2 \3/p')
    [ $((kernel + soft)) -gt 0 ] || kw_fail "no keyward private keys found in the session keyring"
    if [ "$kernel" -gt 0 ]; then
        kw_log "ok: keyctl read/pipe/print refused on $kernel kernel-resident keys"
    fi
    if [ "$soft" -gt 0 ]; then
        kw_log "ok: $soft software-mode keys are possessor-only user keys"
    fi
    # In the VM (audit-keyring-vm) the kernel has the PKCS#8 parser: the RSA key must be there.
    if [ -n "${KW_AUDIT_NEED_KERNEL:-}" ] && [ "$kernel" = 0 ]; then
        kw_fail "no kernel-resident key although this kernel ($(uname -r)) should hold the RSA key"
    fi
    if [ "$kernel" = 0 ]; then
        echo "SKIP (part): this kernel puts keyward-pkcs11 in software mode: its private keys are user keys their possessor can read (docs/security.md); keyctl read on kernel-resident keys is checked where the token is in kernel mode (audit-keyring-vm)" >&2
    fi
fi
want logs || exit 0

# ---- 5. logs and error output ----
unset KEYWARD_DEBUG
[ -s debug.log ] || kw_fail "KEYWARD_DEBUG=file:...,3 wrote no log: the grep below would prove nothing"
grep -q 'C_Sign' debug.log || kw_fail "the debug log does not trace PKCS#11 calls at level 3"
hexof() { od -An -tx1 "$1" | tr -d ' \n'; }
HEXU=$(hexof secret.msg | tr a-f A-F)
leaks=""
grep -v -e '^Could not read private key from' -e '^Could not open file or uri' "$ALL_ERR" >stderr.ours || true
for f in debug.log stderr.ours; do
    grep -qF -- "$PIN" "$f" && leaks="$leaks PIN-in-$(basename "$f")"
    for s in secret.msg ecdh.bin; do
        h=$(hexof "$s")
        grep -qiF -- "$h" "$f" && leaks="$leaks $s-hex-in-$(basename "$f")"
        grep -qiF -- "$(echo "$h" | sed 's/../&:/g;s/:$//')" "$f" && leaks="$leaks $s-colonhex-in-$(basename "$f")"
        grep -qF -- "$(base64 -w0 <"$s")" "$f" && leaks="$leaks $s-base64-in-$(basename "$f")"
        # raw bytes (only meaningful for long random secrets, which never match by chance)
        grep -qF -- "$(head -c 12 "$s" | tr -d '\0\n')" "$f" 2>/dev/null && leaks="$leaks $s-raw-in-$(basename "$f")"
    done
done
: "$HEXU"
problems=""
if [ -n "$leaks" ]; then
    for f in debug.log stderr.ours; do grep -nF -- "$PIN" "$f" | sed "s|$PIN|<PIN>|g" | head -5 >&2; done
    problems="secrets found in logs or error output:$leaks"
fi
[ -z "$problems" ] &&
    kw_log "ok: debug log ($(wc -l <debug.log) lines at level 3) and stderr hold no PIN, message or ECDH secret"
# The log is the operator's: nobody else may read it.
mode=$(stat -c %a debug.log)
case $mode in
600 | 400) kw_log "ok: debug log mode $mode" ;;
*) problems="$problems; debug log created mode $mode (umask $(umask)): readable by others" ;;
esac
[ -z "$problems" ] || kw_fail "$problems"

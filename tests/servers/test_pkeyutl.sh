#!/bin/bash
# RSA decryption and ECDH on the token with openssl pkeyutl:
#  - encrypt with the public key and the default provider alone, decrypt with the token key
#    (URI key file, and pkcs11: URI): PKCS#1 v1.5, OAEP SHA-1/256/384/512 (MGF1 same digest,
#    and SHA-256 with MGF1-SHA-1), with and without a label, raw (no padding); RSA-2048 and 3072.
#    A wrong label, wrong digest or a damaged ciphertext must never give the plaintext back.
#  - ECDH P-256/384/521: token key with a peer's public key, and the peer's private key (default
#    provider) with the token's public key: both secrets must be equal. A peer on another curve
#    must be refused.
set -u
. "$(dirname "$0")/lib.sh"

kws_setup pk
failures=0
cases=0

fail() {
    echo "--- FAIL $1" >&2
    [ -n "${2:-}" ] && [ -f "$2" ] && cat "$2" >&2
    failures=$((failures + 1))
}

# ---- RSA decryption -------------------------------------------------------------------------
head -c 32 /dev/urandom >"$KW_TMP/pt"

# rsa_case KEY-NAME LABEL OPTS...: encrypt (default provider) then decrypt on the token.
rsa_case() {
    local name=$1 what=$2 ct=$KW_TMP/ct.$cases out=$KW_TMP/out.$cases err=$KW_TMP/err.$cases
    shift 2
    cases=$((cases + 1))
    if ! kw_default openssl pkeyutl -encrypt -pubin -inkey "$KW_TMP/$name.pub" -in "$KW_TMP/pt" \
        -out "$ct" "$@" 2>"$err"; then
        fail "encrypt ($what) with the default provider" "$err"
        return
    fi
    for keyarg in "$KW_TMP/$name.pem" "pkcs11:token=pk;object=$name;type=private"; do
        rm -f "$out"
        if kw_run openssl pkeyutl -decrypt -inkey "$keyarg" -in "$ct" -out "$out" "$@" 2>"$err" &&
            cmp -s "$KW_TMP/pt" "$out"; then
            kw_log "ok: $name decrypt $what (key $(basename "${keyarg%%;*}"))"
        else
            fail "$name decrypt $what with -inkey $keyarg" "$err"
        fi
    done
}

# rsa_never NAME WHAT CT DECRYPT-OPTS...: decrypting CT must not give the plaintext.
rsa_never() {
    local name=$1 what=$2 ct=$3 out=$KW_TMP/never.out err=$KW_TMP/never.err rc=0
    shift 3
    cases=$((cases + 1))
    rm -f "$out"
    kw_run openssl pkeyutl -decrypt -inkey "$KW_TMP/$name.pem" -in "$ct" -out "$out" "$@" \
        2>"$err" || rc=$?
    if [ "$rc" -ge 128 ]; then
        fail "$name $what: killed by signal $((rc - 128))" "$err"
    elif [ -f "$out" ] && cmp -s "$KW_TMP/pt" "$out"; then
        fail "$name $what: gave the plaintext back"
    else
        kw_log "ok: $name $what: no plaintext (exit $rc)"
    fi
}

oaep() { echo -pkeyopt rsa_padding_mode:oaep -pkeyopt "rsa_oaep_md:$1" -pkeyopt "rsa_mgf1_md:${2:-$1}"; }

for spec in rsa:rsa2048:61 rsa3072:rsa3072:62; do
    IFS=: read -r type name id <<<"$spec"
    if ! (kws_genkey "$type" "$name" "$id"); then
        fail "no $type key: its decryption cases are not run"
        continue
    fi
    kws_pubkey "$name" "$id"
    rsa_case "$name" "PKCS#1 v1.5" -pkeyopt rsa_padding_mode:pkcs1
    # shellcheck disable=SC2046
    for md in sha1 sha256 sha384 sha512; do
        rsa_case "$name" "OAEP $md" $(oaep "$md")
        rsa_case "$name" "OAEP $md label" $(oaep "$md") -pkeyopt rsa_oaep_label:6b6579776172642d6c6162656c
    done
    # shellcheck disable=SC2046
    rsa_case "$name" "OAEP sha256 mgf1 sha1" $(oaep sha256 sha1)

    # Raw RSA: a full-size block below the modulus (leading zero byte).
    bytes=$(($(kw_default openssl pkey -pubin -in "$KW_TMP/$name.pub" -noout -text |
        sed -n 's/.*Public-Key: (\([0-9]*\) bit).*/\1/p') / 8))
    { printf '\000'; head -c $((bytes - 1)) /dev/urandom; } >"$KW_TMP/raw.pt"
    cases=$((cases + 1))
    if kw_default openssl pkeyutl -encrypt -pubin -inkey "$KW_TMP/$name.pub" -in "$KW_TMP/raw.pt" \
        -out "$KW_TMP/raw.ct" -pkeyopt rsa_padding_mode:none 2>"$KW_TMP/raw.err" &&
        kw_run openssl pkeyutl -decrypt -inkey "$KW_TMP/$name.pem" -in "$KW_TMP/raw.ct" \
            -out "$KW_TMP/raw.out" -pkeyopt rsa_padding_mode:none 2>"$KW_TMP/raw.err" &&
        cmp -s "$KW_TMP/raw.pt" "$KW_TMP/raw.out"; then
        kw_log "ok: $name decrypt raw ($bytes bytes)"
    else
        fail "$name raw RSA decrypt" "$KW_TMP/raw.err"
    fi

    # Negative cases on a fresh OAEP-SHA256 ciphertext with a label.
    # shellcheck disable=SC2046
    kw_default openssl pkeyutl -encrypt -pubin -inkey "$KW_TMP/$name.pub" -in "$KW_TMP/pt" \
        -out "$KW_TMP/neg.ct" $(oaep sha256) -pkeyopt rsa_oaep_label:01020304
    # shellcheck disable=SC2046
    rsa_never "$name" "OAEP wrong label" "$KW_TMP/neg.ct" $(oaep sha256) -pkeyopt rsa_oaep_label:01020305
    # shellcheck disable=SC2046
    rsa_never "$name" "OAEP no label" "$KW_TMP/neg.ct" $(oaep sha256)
    # shellcheck disable=SC2046
    rsa_never "$name" "OAEP wrong digest" "$KW_TMP/neg.ct" $(oaep sha384) -pkeyopt rsa_oaep_label:01020304
    kw_default openssl pkeyutl -encrypt -pubin -inkey "$KW_TMP/$name.pub" -in "$KW_TMP/pt" \
        -out "$KW_TMP/p1.ct" -pkeyopt rsa_padding_mode:pkcs1
    # Flip one byte in the middle of the PKCS#1 ciphertext.
    cp "$KW_TMP/p1.ct" "$KW_TMP/p1bad.ct"
    off=$((bytes / 2))
    b=$(od -An -tu1 -j "$off" -N1 "$KW_TMP/p1.ct" | tr -d ' ')
    printf "\\$(printf '%03o' $(((b + 1) % 256)))" |
        dd of="$KW_TMP/p1bad.ct" bs=1 seek="$off" conv=notrunc status=none
    rsa_never "$name" "PKCS#1 damaged ciphertext" "$KW_TMP/p1bad.ct" -pkeyopt rsa_padding_mode:pkcs1
done

# ---- ECDH -----------------------------------------------------------------------------------
for spec in p256:ec256:71:P-256:32 p384:ec384:72:P-384:48 p521:ec521:73:P-521:66; do
    IFS=: read -r type name id curve len <<<"$spec"
    if ! (kws_genkey "$type" "$name" "$id"); then
        fail "no $type key: its ECDH cases are not run"
        continue
    fi
    kws_pubkey "$name" "$id"
    kw_default openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:$curve" \
        -out "$KW_TMP/peer-$name.key"
    kw_default openssl pkey -in "$KW_TMP/peer-$name.key" -pubout -out "$KW_TMP/peer-$name.pub"
    cases=$((cases + 1))
    rm -f "$KW_TMP/s1" "$KW_TMP/s2"
    if ! kw_run openssl pkeyutl -derive -inkey "$KW_TMP/$name.pem" \
        -peerkey "$KW_TMP/peer-$name.pub" -out "$KW_TMP/s1" 2>"$KW_TMP/derive.err"; then
        fail "ECDH $curve on the token" "$KW_TMP/derive.err"
    elif ! kw_default openssl pkeyutl -derive -inkey "$KW_TMP/peer-$name.key" \
        -peerkey "$KW_TMP/$name.pub" -out "$KW_TMP/s2" 2>"$KW_TMP/derive.err"; then
        fail "ECDH $curve with the default provider" "$KW_TMP/derive.err"
    elif [ "$(stat -c %s "$KW_TMP/s1")" != "$len" ] || ! cmp -s "$KW_TMP/s1" "$KW_TMP/s2"; then
        fail "ECDH $curve: token secret ($(stat -c %s "$KW_TMP/s1") bytes) differs from the peer's"
    else
        kw_log "ok: ECDH $curve: token and peer derive the same $len-byte secret"
    fi
    # Same with the key given by URI.
    cases=$((cases + 1))
    if kw_run openssl pkeyutl -derive -inkey "pkcs11:token=pk;object=$name;type=private" \
        -peerkey "$KW_TMP/peer-$name.pub" -out "$KW_TMP/s3" 2>"$KW_TMP/derive.err" &&
        cmp -s "$KW_TMP/s3" "$KW_TMP/s2"; then
        kw_log "ok: ECDH $curve by pkcs11: URI"
    else
        fail "ECDH $curve by URI" "$KW_TMP/derive.err"
    fi
done

# A peer on another curve is refused, not derived into garbage.
if [ -f "$KW_TMP/ec256.pem" ] && [ -f "$KW_TMP/peer-ec384.pub" ]; then
    cases=$((cases + 1))
    rc=0
    kw_run openssl pkeyutl -derive -inkey "$KW_TMP/ec256.pem" -peerkey "$KW_TMP/peer-ec384.pub" \
        -out "$KW_TMP/s4" 2>"$KW_TMP/derive.err" || rc=$?
    if [ "$rc" = 0 ] || [ "$rc" -ge 128 ]; then
        fail "ECDH P-256 token key with a P-384 peer: exit $rc (want a clean refusal)" "$KW_TMP/derive.err"
    else
        kw_log "ok: ECDH with a peer on another curve refused"
    fi
fi

echo "# pkeyutl: $cases cases, $failures failures" >&2
[ "$failures" = 0 ] || kw_fail "$failures decrypt/derive cases failed"

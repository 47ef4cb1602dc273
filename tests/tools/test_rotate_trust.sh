#!/bin/bash
# Issue 13, CA trust across generations, seen from the relying party. Generation 1 issues A
# (valid) and B (revoked, keyCompromise); rotate; generation 2 issues C (valid) and D (revoked).
# With only what an operator publishes (crl/crl.pem, crl/gen-K.crl, ca/ca-K.crt, exports):
# stock openssl verify -crl_check_all, nginx (ssl_verify_client on, ssl_crl = the bundle, one
# root) with curl doing mTLS on client token keys, and keyward verify accept A and C and refuse
# B and D for a client trusting only the old root and for one trusting only the new root. Then
# foreign CRLs, no CRL, --no-revocation-check, CRL files readable by anyone after a plain cp,
# every export target, --package READMEs run as written, revoke of a name with two valid
# certificates, --date before notBefore, and a third generation.
. "$(dirname "$0")/lib.sh"
need_softhsm
command -v nginx >/dev/null || skip "nginx not installed"
command -v curl >/dev/null || skip "curl not installed"
command -v setpriv >/dev/null || skip "setpriv not installed"
[ "$(id -u)" = 0 ] || skip "the published files are read as nobody through setpriv, which needs root"
id nobody >/dev/null 2>&1 || skip "no user nobody"

make_token ca 11112222
make_token client 33334444
make_token other 55556666
P=$T/pki
SUBJ="CN=Trust CA,O=Example"
cl() { echo "pkcs11:token=client;object=$1;pin-source=file:$T/client.pin"; }
# stock openssl: default provider only, nothing from the CA directory
ossl() { OPENSSL_CONF=/dev/null openssl "$@"; }
# programs that load keyward.so (curl) under the asan setup need its runtime first
run_kw() {
    if [ -n "${KEYWARD_ASAN_PRELOAD:-}" ] && [ -f "$KEYWARD_ASAN_PRELOAD" ]; then
        LD_PRELOAD=$KEYWARD_ASAN_PRELOAD${LD_PRELOAD:+:$LD_PRELOAD} "$@"
    else
        "$@"
    fi
}

# The published copies live where nobody can traverse ($T is 0700): a 0755 dir of its own.
PUB=$(mktemp -d /tmp/kwt-pub.XXXXXX)
chmod 755 "$PUB"
trap 'cleanup; rm -rf "$PUB"' EXIT

declare -A GEN     # leaf name -> issuing generation
declare -A STATE   # leaf name -> ok | revoked
LEAVES=""
CUR=1

# issue NAME STATE: key on the client token, CSR, signed by the current generation; a URI key
# file for curl; revoked (keyCompromise) when STATE=revoked.
issue() {
    local n=$1
    expect_rc 0 "$KW" req --key "$(cl "$n")" --subject "CN=$n,O=Example" --out "$T/$n.csr"
    expect_rc 0 "$KW" --dir "$P" ca sign "$T/$n.csr" --profile client --name "$n"
    expect_rc 0 "$KW" uri2pem "$(cl "$n")" --out "$T/$n.key"
    [ -f "$P/issued/$n.crt" ] || fail "no issued/$n.crt"
    if [ "$2" = revoked ]; then
        expect_rc 0 "$KW" --dir "$P" ca revoke "$n" --reason keyCompromise
    fi
    GEN[$n]=$CUR
    STATE[$n]=$2
    LEAVES="$LEAVES $n"
}
serial_of() { ossl x509 -in "$1" -noout -serial | cut -d= -f2; }
# on_crl CRLPEM SERIAL: SERIAL is listed in that CRL
on_crl() { ossl crl -in "$1" -noout -text | grep -qi "Serial Number: $2\$"; }

# export_pem NAME TARGET -> $T/exp/NAME.TARGET.pem, checked: leaf first, no self-signed cert
export_pem() {
    local n=$1 tg=$2 out=$T/exp/$1.$2.pem
    mkdir -p "$T/exp"
    expect_rc 0 "$KW" --dir "$P" ca export "$n" --for "$tg" --format pem-bundle --out "$out"
    [ -s "$out" ] || fail "export $n --for $tg wrote nothing"
    [ "$(ossl x509 -in "$out" -noout -fingerprint -sha256)" = \
        "$(ossl x509 -in "$P/issued/$n.crt" -noout -fingerprint -sha256)" ] ||
        fail "export $n --for $tg does not start with the leaf"
    no_selfsigned "$out" "export $n --for $tg"
}
# no_selfsigned FILE WHAT: no certificate in FILE verifies under its own key (the link
# certificates share the subject with the roots, so names alone cannot tell)
no_selfsigned() {
    local d=$T/split i
    rm -rf "$d"; mkdir "$d"
    awk -v d="$d" '/-----BEGIN CERTIFICATE-----/ { i++ } i { print > (d "/" i ".pem") }' "$1"
    for i in "$d"/*.pem; do
        ossl verify -no-CApath -no-CAstore -CAfile "$i" "$i" >/dev/null 2>&1 &&
            fail "$2 contains a self-signed certificate: $(ossl x509 -in "$i" -noout -subject -ext subjectKeyIdentifier | tr '\n' ' ')"
    done
    return 0
}

# ov WANT ROOT UNTRUSTED LEAF CRLFILE WHAT: stock openssl verify -crl_check_all;
# WANT ok -> exit 0 and ": OK", revoked -> non-zero and "certificate revoked"
ov() {
    local want=$1 root=$2 untr=$3 leaf=$4 crl=$5 what=$6 rc=0
    ossl verify -no-CApath -no-CAstore -crl_check_all -CAfile "$root" -untrusted "$untr" \
        -CRLfile "$crl" "$leaf" >"$T/ov.out" 2>&1 || rc=$?
    case $want in
    ok) [ "$rc" = 0 ] && grep -q ": OK\$" "$T/ov.out" && return 0 ;;
    revoked) [ "$rc" != 0 ] && grep -q "certificate revoked" "$T/ov.out" && return 0 ;;
    esac
    cat "$T/ov.out" >&2
    fail "openssl verify $what: want $want, got exit $rc (root $(basename "$root"), CRL $crl)"
}

# kv WANT WHAT ARGS...: keyward verify; 0 -> PASS line, 1 -> FAIL line and no PASS
kv() {
    local want=$1 what=$2
    shift 2
    "$KW" "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" != "$want" ]; then
        cat "$T/out" "$T/err" >&2
        fail "keyward $* ($what): want exit $want, got $rc"
    fi
    if [ "$want" = 0 ]; then
        grep -q '^PASS' "$T/out" || { cat "$T/out"; fail "keyward $* ($what): exit 0 without PASS"; }
    else
        grep -q '^PASS' "$T/out" && { cat "$T/out"; fail "keyward $* ($what): exit $rc but prints PASS"; }
        grep -q '^FAIL' "$T/out" "$T/err" || { cat "$T/out" "$T/err"; fail "keyward $* ($what): no FAIL line"; }
    fi
    return 0
}

# der_bundle: the per-generation DER files, each checked against its own root, as one PEM file
der_bundle() {
    local k out=$T/der-bundle.pem
    : >"$out"
    for k in $(seq 1 "$CUR"); do
        [ -f "$P/crl/gen-$k.crl" ] || fail "crl/gen-$k.crl is missing"
        ossl crl -inform DER -in "$P/crl/gen-$k.crl" -noout -CAfile "$P/ca/ca-$k.crt" 2>&1 |
            grep -q "verify OK" || fail "crl/gen-$k.crl is not signed by generation $k's key"
        ossl crl -inform DER -in "$P/crl/gen-$k.crl" >>"$out" || fail "crl/gen-$k.crl is not a DER CRL"
        ossl crl -in "$P/crl/gen-$k.pem" -outform DER | cmp -s - "$P/crl/gen-$k.crl" ||
            fail "crl/gen-$k.crl and crl/gen-$k.pem are not the same CRL"
    done
    cmp -s "$P/crl/crl.der" "$P/crl/gen-$CUR.crl" || fail "crl/crl.der is not the current generation's CRL"
    [ -e "$P/crl/crl-1.pem" ] && fail "crl/crl-1.pem still exists (the spec drops it)"
    return 0
}

# openssl_checks GENS...: every leaf, for a client trusting only ca/ca-K.crt (K in GENS) with
# the --for gen-K export as -untrusted, with the bundle, the DER files, and (gen-1 leaves under
# root 1) the DER file alone as -CRLfile
openssl_checks() {
    local k n
    [ "$(grep -c 'BEGIN X509 CRL' "$P/crl/crl.pem")" = "$CUR" ] ||
        fail "crl/crl.pem holds $(grep -c 'BEGIN X509 CRL' "$P/crl/crl.pem") CRLs, want $CUR (one per generation)"
    der_bundle
    for k in "$@"; do
        for n in $LEAVES; do
            export_pem "$n" "gen-$k"
            ov "${STATE[$n]}" "$P/ca/ca-$k.crt" "$T/exp/$n.gen-$k.pem" "$P/issued/$n.crt" \
                "$P/crl/crl.pem" "$n (gen ${GEN[$n]}) trusting root $k, CRL bundle"
            ov "${STATE[$n]}" "$P/ca/ca-$k.crt" "$T/exp/$n.gen-$k.pem" "$P/issued/$n.crt" \
                "$T/der-bundle.pem" "$n (gen ${GEN[$n]}) trusting root $k, gen-K.crl DER files"
            if [ "$k" = 1 ] && [ "${GEN[$n]}" = 1 ]; then
                ov "${STATE[$n]}" "$P/ca/ca-1.crt" "$T/exp/$n.gen-1.pem" "$P/issued/$n.crt" \
                    "$P/crl/gen-1.crl" "$n trusting root 1, crl/gen-1.crl (DER) alone"
            fi
        done
    done
}

# keyward_checks GENS...: in the CA dir (own CRL, then --crl bundle), and as a relying party
# outside it with --ca ca-K.crt --untrusted EXPORT --crl (published copy of the bundle)
keyward_checks() {
    local k n want
    cp "$P/crl/crl.pem" "$PUB/crl.pem"
    for n in $LEAVES; do
        want=0
        [ "${STATE[$n]}" = revoked ] && want=1
        kv $want "$n in the CA dir" --dir "$P" verify "$P/issued/$n.crt"
        [ $want = 1 ] && ! grep -qi "revoked" "$T/out" && { cat "$T/out"; fail "verify $n: FAIL does not say revoked"; }
        kv $want "$n in the CA dir, --crl bundle" --dir "$P" verify "$P/issued/$n.crt" --crl "$P/crl/crl.pem"
        for k in "$@"; do
            [ -f "$T/exp/$n.gen-$k.pem" ] || export_pem "$n" "gen-$k"
            (cd "$T/nowhere" && kv $want "$n outside, root $k" verify "$P/issued/$n.crt" \
                --ca "$P/ca/ca-$k.crt" --untrusted "$T/exp/$n.gen-$k.pem" --crl "$PUB/crl.pem") || exit 1
        done
    done
}

mkdir "$T/nowhere"
unset KEYWARD_DIR

# ---------------------------------------------------------------- generation 1
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=gen1" --subject "$SUBJ" \
    --key-type ec:P-256 --pin-source "file:$T/ca.pin" --crl-url 'http://pki.example.com/gen-{gen}.crl'
issue a ok
issue b revoked
# r: two valid certificates of one name across generations (renewed with --keep-old below)
expect_rc 0 "$KW" req --key "$(cl r)" --subject "CN=r,O=Example" --out "$T/r.csr"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/r.csr" --profile client --name r
r_old=$(serial_of "$P/issued/r.crt")
cp "$P/issued/r.crt" "$T/r-old.crt"
ok "generation 1: A valid, B revoked"

# ---------------------------------------------------------------- generation 2
expect_rc 0 "$KW" --dir "$P" ca rotate --key "pkcs11:token=ca;object=gen2" --key-type ec:P-384
CUR=2
for f in ca/ca-1.crt ca/ca-2.crt ca/cross-2.crt ca/oldwithnew-2.crt crl/crl.pem crl/gen-1.crl crl/gen-2.crl; do
    [ -f "$P/$f" ] || fail "no $f after rotation"
done
issue c ok
issue d revoked
ossl x509 -in "$P/issued/a.crt" -noout -ext crlDistributionPoints | grep -q 'http://pki.example.com/gen-1.crl' ||
    fail "A's CRL distribution point is not the gen-1 URL"
ossl x509 -in "$P/issued/c.crt" -noout -ext crlDistributionPoints | grep -q 'http://pki.example.com/gen-2.crl' ||
    fail "C's CRL distribution point is not the gen-2 URL"
# each revocation is on its own generation's CRL, signed by that generation's key
for k in 1 2; do
    ossl crl -in "$P/crl/gen-$k.pem" -noout -CAfile "$P/ca/ca-$k.crt" 2>&1 | grep -q "verify OK" ||
        fail "crl/gen-$k.pem is not signed by generation $k"
done
on_crl "$P/crl/gen-1.pem" "$(serial_of "$P/issued/b.crt")" || fail "B is not on crl/gen-1.pem"
on_crl "$P/crl/gen-2.pem" "$(serial_of "$P/issued/d.crt")" || fail "D is not on crl/gen-2.pem"
ok "generation 2: C valid, D revoked; each on its own generation's CRL; CDP per generation"

openssl_checks 1 2
ok "openssl verify -crl_check_all: A,C OK and B,D revoked, trusting only root 1 or only root 2 (bundle and DER files)"

# ---------------------------------------------------------------- nginx + curl mTLS
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/srv.key" \
    -out "$T/srv.crt" -subj /CN=localhost -days 2 \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null || fail "server certificate"
cat >"$T/client.cnf" <<EOF
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
keyward = keyward_sect
[default_sect]
activate = 1
[keyward_sect]
module = $KEYWARD_PROVIDER_PATH
activate = 1
keyward-module = $SOFTHSM_MODULE
keyward-pin-source = file:$T/client.pin
EOF
NGX_PID=""
NGX_PORT=""
# nginx_start ROOT: one root trusted, the published bundle as ssl_crl, on 127.0.0.1:free port
nginx_start() {
    local d=$T/nginx i
    rm -rf "$d"
    NGX_PORT=$(free_port)
    nginx_conf "$d" "$NGX_PORT" "$T/srv.crt" "$T/srv.key" "$1" "ssl_verify_depth 5;" \
        "ssl_crl $P/crl/crl.pem;"
    OPENSSL_CONF=/dev/null nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" \
        -g 'daemon off;' >"$d/logs/stdout" 2>&1 &
    NGX_PID=$!
    KWT_PIDS="$KWT_PIDS $NGX_PID"
    for i in $(seq 100); do
        kill -0 "$NGX_PID" 2>/dev/null || { cat "$d/logs/"*; fail "nginx exited at start (root $1)"; }
        awk -v p=":$(printf '%04X' "$NGX_PORT")" \
            'NR > 1 && substr($2, length($2) - 4) == p && $4 == "0A" { f = 1 } END { exit !f }' \
            /proc/net/tcp && return 0
        sleep 0.1
    done
    cat "$d/logs/"*
    fail "nginx does not listen on 127.0.0.1:$NGX_PORT"
}
nginx_stop() {
    kill "$NGX_PID" 2>/dev/null
    wait "$NGX_PID" 2>/dev/null
    KWT_PIDS=${KWT_PIDS/ $NGX_PID/}
    NGX_PID=""
}
# mtls WANT NAME CHAIN: curl with the client token key through the provider
mtls() {
    local want=$1 n=$2 chain=$3 code rc=0 log=$T/nginx/logs/error.log before
    before=$(wc -l <"$log")
    code=$(OPENSSL_CONF=$T/client.cnf run_kw timeout 30 curl -sS -o "$T/body" -w '%{http_code}' \
        --cacert "$T/srv.crt" --cert "$chain" --key "$T/$n.key" \
        --resolve "localhost:$NGX_PORT:127.0.0.1" "https://localhost:$NGX_PORT/" 2>"$T/curl.err") || rc=$?
    case $want in
    ok)
        [ "$rc" = 0 ] && [ "$code" = 200 ] && grep -q "^verify=SUCCESS dn=.*CN=$n\\b" "$T/body" &&
            return 0 ;;
    revoked)
        [ "$code" = 400 ] && tail -n +"$((before + 1))" "$log" | grep -q "certificate revoked" &&
            return 0 ;;
    esac
    echo "--- curl exit $rc, HTTP $code" >&2
    cat "$T/curl.err" "$T/body" >&2 2>/dev/null
    tail -n +"$((before + 1))" "$log" | grep -i "client" >&2
    fail "nginx mTLS $n with $(basename "$chain"): want $want"
}
# nginx_checks GENS...: one nginx per trusted root; every leaf with its --for gen-K export
nginx_checks() {
    local k n
    for k in "$@"; do
        nginx_start "$P/ca/ca-$k.crt"
        for n in $LEAVES; do
            [ -f "$T/exp/$n.gen-$k.pem" ] || export_pem "$n" "gen-$k"
            mtls "${STATE[$n]}" "$n" "$T/exp/$n.gen-$k.pem"
        done
        nginx_stop
    done
}
nginx_checks 1 2
ok "nginx ssl_verify_client + ssl_crl bundle: A,C connect and B,D refused (revoked), trusting only root 1 or only root 2"

# ---------------------------------------------------------------- keyward verify
keyward_checks 1 2
ok "keyward verify: A,C pass and B,D fail in the CA dir, with --crl bundle, and outside with one root"

# a CRL from an unrelated CA, and one from an impostor with the same subject but its own key
expect_rc 0 "$KW" --dir "$T/foreign" ca init --key "pkcs11:token=other;object=foreign" \
    --subject "CN=Foreign CA,O=Elsewhere" --pin-source "file:$T/other.pin"
expect_rc 0 "$KW" --dir "$T/impostor" ca init --key "pkcs11:token=other;object=impostor" \
    --subject "$SUBJ" --pin-source "file:$T/other.pin"
for n in a c; do
    kv 1 "$n with a foreign CRL" --dir "$P" verify "$P/issued/$n.crt" --crl "$T/foreign/crl/crl.pem"
    grep -hi 'no crl' "$T/out" "$T/err" | grep -qi 'issuer' ||
        { cat "$T/out" "$T/err"; fail "verify $n with a foreign CRL does not say it has no CRL from the issuer"; }
    (cd "$T/nowhere" && kv 1 "$n outside with a foreign CRL" verify "$P/issued/$n.crt" \
        --ca "$P/ca/ca-${GEN[$n]}.crt" --crl "$T/foreign/crl/crl.pem") || exit 1
done
ok "keyward verify with an unrelated CA's CRL: FAIL, no CRL from the issuer"
for n in a c; do
    kv 1 "$n with the impostor's CRL (same issuer name, other key)" --dir "$P" verify "$P/issued/$n.crt" \
        --crl "$T/impostor/crl/crl.pem"
done
ok "keyward verify with a same-name impostor's CRL: FAIL"

# a CA dir whose generation-1 CRL is gone: A fails (no CRL for its generation), C still passes
cp -a "$P" "$T/pki-nogen1"
rm -f "$T/pki-nogen1/crl/gen-1.crl" "$T/pki-nogen1/crl/gen-1.pem"
cp "$T/pki-nogen1/crl/gen-2.pem" "$T/pki-nogen1/crl/crl.pem"
kv 1 "A in a CA dir without gen 1's CRL" --dir "$T/pki-nogen1" verify "$P/issued/a.crt"
kv 0 "C in a CA dir without gen 1's CRL" --dir "$T/pki-nogen1" verify "$P/issued/c.crt"
rm -rf "$T/pki-nogen1"
ok "keyward verify in a CA dir without the issuing generation's CRL: FAIL"

(cd "$T/nowhere" && kv 1 "A outside the CA dir, --ca only" verify "$P/issued/a.crt" --ca "$P/ca/ca-1.crt") || exit 1
(cd "$T/nowhere" && kv 1 "C outside the CA dir, --ca only" verify "$P/issued/c.crt" --ca "$P/ca/ca-2.crt") || exit 1
(cd "$T/nowhere" && kv 0 "A with --no-revocation-check" verify "$P/issued/a.crt" --ca "$P/ca/ca-1.crt" \
    --no-revocation-check) || exit 1
grep -Eqi '^SKIP.*revocation|revocation.*skip' "$T/out" ||
    { cat "$T/out"; fail "--no-revocation-check does not print that revocation was skipped"; }
ok "keyward verify outside the CA dir: --ca only fails closed; --no-revocation-check passes and says SKIP"

# ---------------------------------------------------------------- published files
# check_published: each file copied as the guide's cron line does (plain cp) is readable by nobody
check_published() {
    local f b
    for f in "$P"/crl/crl.pem "$P"/crl/crl.der "$P"/crl/gen-*.crl "$P"/crl/gen-*.pem "$P"/ca/ca-*.crt \
        "$P"/ca/cross-*.crt "$P"/ca/oldwithnew-*.crt "$P"/ca.crt; do
        [ -f "$f" ] || fail "published file $f is missing"
        b=$(basename "$f")
        rm -f "$PUB/$b"
        (umask 022 && cp "$f" "$PUB/$b") || fail "cp $f"
        setpriv --reuid=nobody --regid=nogroup --clear-groups cat "$PUB/$b" >/dev/null 2>"$T/setpriv.err" ||
            { cat "$T/setpriv.err"; fail "a cp of ${f#"$P"/} is not readable by nobody (mode $(stat -c %a "$f"))"; }
    done
    # control: the check can fail
    (umask 077 && cp "$P/crl/crl.pem" "$PUB/private.pem")
    setpriv --reuid=nobody --regid=nogroup --clear-groups cat "$PUB/private.pem" >/dev/null 2>&1 &&
        fail "nobody reads a 0600 file (test is wrong)"
    rm -f "$PUB/private.pem"
}
check_published
ok "published CRLs and CA certificates: a plain cp is readable by nobody"

# ---------------------------------------------------------------- exports
# export_checks: every --for target verifies with stock openssl against the root it is for
export_checks() {
    local n k roots tg bad=
    for n in $LEAVES; do
        for tg in old-root new-root all $(for k in $(seq 1 "$CUR"); do echo "gen-$k"; done); do
            case $tg in
            gen-*) roots=${tg#gen-} ;;
            old-root) roots=$((CUR - 1)) ;;
            new-root) roots=$CUR ;;
            all) roots=$(seq 1 "$CUR") ;;
            esac
            export_pem "$n" "$tg"
            for k in $roots; do
                ossl verify -no-CApath -no-CAstore -CAfile "$P/ca/ca-$k.crt" -untrusted "$T/exp/$n.$tg.pem" \
                    "$P/issued/$n.crt" >"$T/ov.out" 2>&1 ||
                    { cat "$T/ov.out" >&2; bad="$bad $n(gen ${GEN[$n]}):--for $tg:ca-$k.crt"; }
            done
        done
    done
    [ -z "$bad" ] || fail "exports that do not verify (leaf:target:root):$bad"
}
export_checks
# control: a gen-2 leaf does not reach root 1 without the link certificates
ossl verify -no-CApath -no-CAstore -CAfile "$P/ca/ca-1.crt" "$P/issued/c.crt" >/dev/null 2>&1 &&
    fail "C verifies against root 1 with no chain (test is wrong)"
[ "$(grep -c 'BEGIN CERTIFICATE' "$T/exp/c.gen-1.pem")" -ge 2 ] ||
    fail "the gen-1 export of C has no link certificate"
ok "exports gen-1, gen-2, old-root, new-root, all verify against their roots; no self-signed certificate in any"

# readme_cmds README: the command lines, as written (indented keyward/openssl lines, with their
# backslash continuations joined), one per output line
readme_cmds() {
    awk '
        cont { line = line " " $0; if (line !~ /\\$/) { print line; cont = 0 } else sub(/\\$/, "", line); next }
        /^[ \t]+(\$[ \t]+)?(keyward|openssl)[ \t]/ {
            line = $0; sub(/^[ \t]+(\$[ \t]+)?/, "", line)
            if (line ~ /\\$/) { sub(/\\$/, "", line); cont = 1 } else print line
        }' "$1"
}
# package NAME TARGET ROOT WANT: --package DIR holds NAME.crt, chain.pem, ca.crt (= ROOT),
# crl.pem and a README whose commands all exit 0 (WANT=ok) / not all exit 0 (WANT=revoked)
package() {
    local n=$1 tg=$2 root=$3 want=$4 d=$T/pkg-$1-$2 cmd failed=0 count=0
    rm -rf "$d"
    expect_rc 0 "$KW" --dir "$P" ca export "$n" --for "$tg" --package "$d"
    for f in "$n.crt" chain.pem ca.crt crl.pem README; do
        [ -f "$d/$f" ] || fail "package $n --for $tg lacks $f"
    done
    cmp -s "$d/ca.crt" "$root" || fail "package $n --for $tg: ca.crt is not $(basename "$root")"
    cmp -s "$d/crl.pem" "$P/crl/crl.pem" || fail "package $n --for $tg: crl.pem is not the CRL bundle"
    no_selfsigned "$d/chain.pem" "package $n --for $tg chain.pem"
    readme_cmds "$d/README" >"$T/cmds"
    while IFS= read -r cmd; do
        count=$((count + 1))
        if ! (cd "$d" && env -u KEYWARD_DIR PATH="$KEYWARD_BUILD/tools:$PATH" bash -c "$cmd") \
            >"$T/cmd.out" 2>&1; then
            failed=$((failed + 1))
            [ "$want" = ok ] && { cat "$d/README" "$T/cmd.out"; fail "package $n --for $tg: README command fails: $cmd"; }
        fi
    done <"$T/cmds"
    [ "$count" -gt 0 ] || { cat "$d/README"; fail "package $n --for $tg: no command found in the README"; }
    grep -q 'verify' "$T/cmds" || { cat "$d/README"; fail "package $n --for $tg: README has no verify command"; }
    if [ "$want" = revoked ] && [ "$failed" = 0 ]; then
        cat "$d/README" >&2
        fail "package $n --for $tg: every README command passes for a revoked certificate (no revocation check)"
    fi
    return 0
}
package a gen-1 "$P/ca/ca-1.crt" ok
package a gen-2 "$P/ca/ca-2.crt" ok
package c gen-1 "$P/ca/ca-1.crt" ok
package c gen-2 "$P/ca/ca-2.crt" ok
package a all "$P/ca/ca-2.crt" ok
package c both "$P/ca/ca-2.crt" ok
ok "--package: files as specified, README commands run as written from inside the package"
package d gen-1 "$P/ca/ca-1.crt" revoked
ok "--package of a revoked certificate: the README's verify fails"

# ---------------------------------------------------------------- revoke
expect_rc 0 "$KW" --dir "$P" ca renew r --keep-old
r_new=$(serial_of "$P/issued/r.crt")
[ "$r_new" != "$r_old" ] || fail "renew kept the serial"
sum=$(tree_sum "$P")
expect_rc 1 "$KW" --dir "$P" ca revoke r --reason superseded
if ! grep -qi "$r_old" "$T/out" "$T/err" || ! grep -qi "$r_new" "$T/out" "$T/err"; then
    cat "$T/out" "$T/err"
    fail "ca revoke r (two valid certificates) does not list both serials"
fi
[ "$(tree_sum "$P")" = "$sum" ] || fail "the refused ca revoke r changed the CA"
kv 0 "r (new) still valid" --dir "$P" verify "$P/issued/r.crt"
expect_rc 0 "$KW" --dir "$P" ca revoke r --all --reason superseded
on_crl "$P/crl/gen-1.pem" "$r_old" || fail "revoke --all: r's gen-1 certificate is not on crl/gen-1.pem"
on_crl "$P/crl/gen-2.pem" "$r_new" || fail "revoke --all: r's gen-2 certificate is not on crl/gen-2.pem"
kv 1 "r (old) after --all" --dir "$P" verify "$T/r-old.crt"
kv 1 "r (new) after --all" --dir "$P" verify "$P/issued/r.crt"
ok "ca revoke NAME with two valid certificates: exit 1 listing both; --all revokes both"

expect_rc 0 "$KW" req --key "$(cl x)" --subject "CN=x,O=Example" --out "$T/x.csr"
expect_rc 0 "$KW" --dir "$P" ca sign "$T/x.csr" --profile client --name x
sum=$(tree_sum "$P")
expect_rc 2 "$KW" --dir "$P" ca revoke x --reason keyCompromise --date 2000-01-01T00:00Z
expect_rc 2 "$KW" --dir "$P" ca revoke x --reason keyCompromise --date 2099-01-01T00:00Z
[ "$(tree_sum "$P")" = "$sum" ] || fail "a refused revoke --date changed the CA"
kv 0 "x after refused revokes" --dir "$P" verify "$P/issued/x.crt"
ok "ca revoke --date before notBefore or in the future: exit 2, nothing changed"

# ---------------------------------------------------------------- generation 3
expect_rc 0 "$KW" --dir "$P" ca rotate --key "pkcs11:token=ca;object=gen3" --key-type ec:P-256
CUR=3
issue e ok
issue f revoked
expect_rc 0 "$KW" --dir "$P" ca crl
openssl_checks 1 2 3
ok "three generations: openssl verify -crl_check_all, trusting only root 1, 2 or 3"
keyward_checks 1 2 3
ok "three generations: keyward verify"
nginx_checks 1 2 3
ok "three generations: nginx mTLS trusting only root 1, 2 or 3"
check_published
export_checks
package a all "$P/ca/ca-3.crt" ok
package e old-root "$P/ca/ca-2.crt" ok
package f gen-1 "$P/ca/ca-1.crt" revoked
ok "three generations: published files, every export target, packages as run from their README"
echo PASS

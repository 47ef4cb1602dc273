#!/bin/bash
# Software-mode key bytes in a core dump (issue 17, item 12): known EC P-256 and RSA-2048 keys are
# imported into keyward-pkcs11.so's software mode by one process (pkcs11-tool); another signs 20
# times with each and dies of SIGSEGV; its core must not hold the EC private scalar, the RSA
# private exponent or either prime (whole, or their first or last 16 bytes). Control: a process
# that held the key file's bytes in freed heap has them in its core, so the search can see a leak.
# Usage: core_scan.sh MODULE CORE_SIGN
set -u -o pipefail
MOD=$(readlink -f "${1:?module}")
CS=$(readlink -f "${2:?core_sign}")
[ -n "${KW_CORE_IN_SESSION:-}" ] || { KW_CORE_IN_SESSION=1 exec keyctl session - "$0" "$@" 2>/dev/null; }
for t in pkcs11-tool openssl keyctl; do
    command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
if [ -n "${KEYWARD_ASAN_PRELOAD:-}" ]; then
    # ASan keeps freed memory in quarantine and maps shadow memory: its cores are neither
    # comparable nor small. The plain build is what this checks.
    echo "SKIP: core dumps are not checked under ASan"; exit 77
fi
case $(cat /proc/sys/kernel/core_pattern) in
core*) ;;
*) echo "SKIP: core_pattern is '$(cat /proc/sys/kernel/core_pattern)': cores do not land in the working directory"; exit 77 ;;
esac
W=$(mktemp -d)
trap '[ -n "${KWK_KEEP:-}" ] || rm -rf "$W"' EXIT
cd "$W"
# meson sets MALLOC_PERTURB_, which makes glibc overwrite freed memory: real processes do not.
unset MALLOC_PERTURB_
echo "token keyring session:kwk-core-$$ software" >conf
export KEYWARD_PKCS11_CONF=$W/conf
FAILS=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }
hexfield() { # KEYFILE FIELD: the named number of `openssl pkey -text`, as plain hex
    openssl pkey -in "$1" -text -noout |
        awk -v f="$2:" '$1==f{p=1; next} p&&/^ /{printf "%s", $0; next} p{exit}' | tr -d ' :\n' |
        sed 's/^00//'
}
core_of() { # LABEL: sign, crash, print the core's path
    rm -f core core.*
    (ulimit -c unlimited && "$CS" sign "$MOD" "$1" 20) >/dev/null 2>&1
    ls core core.* 2>/dev/null | head -1
}
scan() { # CORE WHAT HEX
    local c=$1 what=$2 hex=$3 n=${#3}
    for part in "$hex" "${hex:0:32}" "${hex:$((n - 32))}"; do
        if "$CS" find "$c" "$part"; then
            bad "$what found in the core ($(( ${#part} / 2 )) bytes)"
            return
        fi
    done
    ok "$what not in the core"
}

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null
pkcs11-tool --module "$MOD" --write-object ec.pem --type privkey --label ec --id 01 >log 2>&1 ||
    { cat log; bad "import EC key"; }
pkcs11-tool --module "$MOD" --write-object rsa.pem --type privkey --label rsa --id 02 >>log 2>&1 ||
    { cat log; bad "import RSA key"; }
D_EC=$(hexfield ec.pem priv)
D_RSA=$(hexfield rsa.pem privateExponent)
P_RSA=$(hexfield rsa.pem prime1)
Q_RSA=$(hexfield rsa.pem prime2)
[ ${#D_EC} -ge 60 ] && [ ${#D_RSA} -ge 500 ] && [ ${#P_RSA} -ge 250 ] || bad "private numbers read from the key files"

# Control: the search finds key bytes a process left in freed heap.
openssl pkey -in ec.pem -outform DER -out ec.der
rm -f core core.*
(ulimit -c unlimited && "$CS" hold ec.der) >/dev/null 2>&1
c=$(ls core core.* 2>/dev/null | head -1)
if [ -z "$c" ]; then
    echo "SKIP: no core file was written (ulimit -c or core_pattern)"; exit 77
fi
"$CS" find "$c" "$D_EC" && ok "control: the EC scalar is found in a core that holds it" ||
    bad "control: the search cannot find the EC scalar"

c=$(core_of ec)
[ -n "$c" ] && ok "core after 20 ECDSA signatures ($(stat -c %s "$c") bytes)" || bad "EC signer left a core"
[ -n "$c" ] && scan "$c" "EC private scalar" "$D_EC"
c=$(core_of rsa)
[ -n "$c" ] && ok "core after 20 RSA signatures ($(stat -c %s "$c") bytes)" || bad "RSA signer left a core"
if [ -n "$c" ]; then
    scan "$c" "RSA private exponent" "$D_RSA"
    scan "$c" "RSA prime p" "$P_RSA"
    scan "$c" "RSA prime q" "$Q_RSA"
fi
echo "$FAILS failure(s)"
[ $FAILS = 0 ]

#!/bin/bash
# `keyward keyring import|list|remove` against keyward-pkcs11.so in a fresh session keyring.
# Usage: keyring_tool.sh KEYRING_TOOL MODULE
set -u -o pipefail
TOOL=$(readlink -f "${1:?tool}")
export KEYWARD_PKCS11_MODULE=$(readlink -f "${2:?module}")
[ -n "${KWK_IN_SESSION:-}" ] || { KWK_IN_SESSION=1 exec keyctl session - "$0" "$@" 2>/dev/null; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
echo "token keyring session:kwk-tool-$$" >conf
export KEYWARD_PKCS11_CONF=$W/conf
FAILS=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

openssl req -x509 -newkey rsa:2048 -nodes -keyout web.pem -subj /CN=web -days 2 -out web.crt 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec.pem 2>/dev/null
openssl pkey -in ec.pem -outform DER -out ec.der
openssl pkey -in web.pem -aes256 -passout pass:s3cret -out enc.pem
openssl req -x509 -newkey rsa:2048 -nodes -keyout other.pem -subj /CN=other -days 2 -out other.crt 2>/dev/null

"$TOOL" import web.pem --label web --id 0a --cert web.crt >out 2>err && grep -q "imported 'web' (RSA 2048" out &&
    ok "import PEM key with certificate" || { bad "import web"; cat out err; }
"$TOOL" import ec.der --label ec >out 2>err && grep -q "EC 384" out && grep -q "SOFTWARE mode" err &&
    ok "import DER EC key; software mode announced" || { bad "import ec"; cat out err; }
# Encrypted PEM: the passphrase is read from the terminal; without one the import fails cleanly.
"$TOOL" import enc.pem --label enc </dev/null >out 2>err && bad "encrypted key without passphrase refused" ||
    { grep -q "wrong passphrase" err && ok "encrypted key without passphrase refused"; }
"$TOOL" import web.pem --label x --cert other.crt >out 2>err && bad "mismatched certificate refused" ||
    { grep -q "does not belong" err && ok "mismatched certificate refused"; }
"$TOOL" import web.pem --label x --id zz >/dev/null 2>&1; [ $? = 2 ] && ok "bad --id is a usage error" || bad "bad --id"
"$TOOL" import missing.pem --label x >/dev/null 2>&1 && bad "missing file" || ok "missing key file refused"
"$TOOL" list >list 2>list.err
# Software-mode keys are readable by any process of the uid that links the keyring: said on stderr.
grep -q "warning: 'ec' is in SOFTWARE mode" list.err && ok "list warns about the software-mode key" ||
    { bad "list warns about software mode"; cat list.err; }
grep -E '^web +0a +RSA +2048 +(kernel|software) ' list >/dev/null && ok "list shows web RSA 2048 with its mode" || { bad "list web"; cat list; }
grep -E '^ec +- +EC +384 +software ' list >/dev/null && ok "list shows ec EC 384 software" || { bad "list ec"; cat list; }
grep -E '^web +0a +cert ' list >/dev/null && ok "list shows the certificate" || { bad "list cert"; cat list; }
"$TOOL" list --json >json
python3 -c 'import json,sys; d=json.load(open("json")); assert any(o["label"]=="web" and o["object"]=="private" and o["bits"]==2048 for o in d)' 2>/dev/null &&
    ok "list --json parses" || { bad "list --json"; cat json; }
cp web.pem copy.pem
"$TOOL" import copy.pem --label shredded --shred >/dev/null 2>&1 && [ ! -e copy.pem ] && ok "--shred removes the key file" || bad "--shred"
"$TOOL" remove web >out 2>&1 && grep -q "removed 'web' (3 objects)" out && ok "remove web (key, public key, certificate)" || { bad "remove"; cat out; }
"$TOOL" remove web >/dev/null 2>&1 && bad "remove of a missing label fails" || ok "remove of a missing label fails"
"$TOOL" list | grep -q '^web ' && bad "web gone after remove" || ok "web gone after remove"
"$TOOL" bogus >/dev/null 2>&1; [ $? = 2 ] && ok "unknown subcommand is a usage error" || bad "unknown subcommand"
echo "$FAILS failure(s)"
[ $FAILS = 0 ]

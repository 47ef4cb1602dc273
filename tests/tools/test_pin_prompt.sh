#!/bin/bash
# A PIN prompt that works (issue 14, item 10): on a terminal, `keyward req --key URI` without a
# PIN source asked through openssl's look-up, and then genpkey failed with "PIN required". Now
# keyward asks once and every openssl step of the command gets the PIN through an inherited
# sealed memory file (pin-source fd:N): never argv, the environment or a file on disk.
. "$(dirname "$0")/lib.sh"
need_softhsm
command -v python3 >/dev/null || skip "python3 (pty) not installed"
make_token cl 4711
# an openssl that logs each run's argv and environment, to prove the PIN is in neither
mkdir -p "$T/bin"
REAL=$(command -v openssl)
printf '#!/bin/sh\n{ echo "ARGV: $*"; env; } >> %s/openssl.log\nexec %s "$@"\n' "$T" "$REAL" >"$T/bin/openssl"
chmod 755 "$T/bin/openssl"
export KEYWARD_OPENSSL=$T/bin/openssl
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"

# run ARGS on a pseudo-terminal, typing PIN at each "PIN for token" prompt; prints the transcript
# and PROMPTS=n RC=n
on_pty() {
    python3 - "$@" <<'PY'
import os, pty, select, sys, time
pin = sys.argv[1].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
out, prompts, end = b"", 0, time.time() + 60
while time.time() < end:
    if not select.select([fd], [], [], 1)[0]:
        continue
    try:
        d = os.read(fd, 4096)
    except OSError:
        break
    if not d:
        break
    out += d
    n = out.count(b"PIN for token") + out.count(b"pass phrase")
    if n > prompts:
        prompts = n
        time.sleep(0.2)
        os.write(fd, pin + b"\n")
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
print("\nPROMPTS=%d RC=%d" % (prompts, os.waitstatus_to_exitcode(st)))
PY
}

on_pty 4711 "$KW" req --key "pkcs11:token=cl;object=dev1" --subject CN=dev1 --out "$T/dev1.csr" >"$T/tr"
grep -q "PROMPTS=1 RC=0" "$T/tr" || { cat "$T/tr"; fail "req on a terminal: not one prompt and success"; }
openssl req -in "$T/dev1.csr" -noout -verify 2>/dev/null || fail "no valid CSR"
grep -c "^ARGV: " "$T/openssl.log" | grep -qv '^[01]$' || fail "expected several openssl steps"
grep -q "ARGV: genpkey" "$T/openssl.log" && grep -q "ARGV: req" "$T/openssl.log" ||
    { cat "$T/openssl.log"; fail "genpkey and req did not both run"; }
grep -q 4711 "$T/openssl.log" && fail "the PIN is in an openssl argv or environment"
grep -rq 4711 "$TMPDIR" && fail "the PIN is in a file under TMPDIR"
ok "req on a terminal: one prompt, and every openssl step had the PIN (not in argv, env or files)"

# the key exists now: a second CSR for it also asks once
on_pty 4711 "$KW" req --key "pkcs11:token=cl;object=dev1" --subject CN=dev1 --out "$T/dev1b.csr" >"$T/tr"
grep -q "PROMPTS=1 RC=0" "$T/tr" || { cat "$T/tr"; fail "existing key: not one prompt"; }
# a wrong PIN is named as such, after one prompt
on_pty 0000 "$KW" req --key "pkcs11:token=cl;object=dev2" --subject CN=dev2 --out "$T/dev2.csr" >"$T/tr"
grep -q "PROMPTS=1 RC=1" "$T/tr" && grep -q "PIN incorrect" "$T/tr" && grep -q "typed" "$T/tr" ||
    { cat "$T/tr"; fail "wrong typed PIN"; }
ok "existing key asks once; a wrong typed PIN is named"

# the CA commands: ca init (genpkey, self-sign, CRL) and ca sign (look-up, openssl ca, CRLs)
# with no pin_source also ask once; the PIN's descriptor is never written into the CA's files
make_token ca 8642
: >"$T/openssl.log"
on_pty 8642 "$KW" --dir "$T/pki" ca init --key "pkcs11:token=ca;object=ca" --subject "CN=Pty CA" >"$T/tr"
grep -q "PROMPTS=1 RC=0" "$T/tr" || { cat "$T/tr"; fail "ca init on a terminal: not one prompt and success"; }
grep -q "ARGV: genpkey" "$T/openssl.log" && grep -q "ARGV: ca -batch -gencrl" "$T/openssl.log" ||
    { cat "$T/openssl.log"; fail "ca init: genpkey and the CRL did not both run"; }
on_pty 8642 "$KW" --dir "$T/pki" ca sign "$T/dev1.csr" --profile client >"$T/tr"
grep -q "PROMPTS=1 RC=0" "$T/tr" || { cat "$T/tr"; fail "ca sign on a terminal: not one prompt and success"; }
openssl verify -CAfile "$T/pki/ca.crt" "$T/pki/issued/dev1.crt" >/dev/null || fail "ca sign: no valid certificate"
grep -q 8642 "$T/openssl.log" && fail "the CA PIN is in an openssl argv or environment"
grep -rq 8642 "$TMPDIR" && fail "the CA PIN is in a file under TMPDIR"
grep -rqs "fd:" "$T/pki" && fail "the PIN's descriptor was written into the CA directory"
ok "ca init and ca sign on a terminal: one prompt each, every openssl step had the PIN"

# no terminal: no prompt, the cause is named
expect_rc 1 "$KW" req --key "pkcs11:token=cl;object=dev3" --subject CN=dev3 --out "$T/dev3.csr" </dev/null
grep -q "PIN required" "$T/err" || { cat "$T/err"; fail "no terminal: PIN required not named"; }
ok "without a terminal the missing PIN is named"
echo PASS

#!/bin/bash
# CA crash consistency (issue 7): `keyward ca sign`, `ca revoke` and `ca rotate` are killed with
# SIGKILL at chosen system calls, then the CA must be consistent and never reuse a serial.
#
# Kill points: strace's fault injection delivers SIGKILL to keyward when it enters the Nth call
# of a chosen system call (counted per call and per process; keyward only, the openssl it runs
# is not traced). The calls are the ones that change files (openat, write, fsync, fdatasync,
# rename*, link*, symlink*, unlink*, mkdir, close); N runs over every invocation an uninterrupted
# run makes, so the CA is left at each step of its write-fsync-rename sequence. Rounds past
# those use random N. Default 240 rounds (KW_CRASH_ROUNDS).
#
# After each round: `keyward ca crl` (the next writer, which recovers) and `keyward check` exit
# 0; the index parses, has no duplicate serial, and the serial file is above every serial in it;
# the CRL lists exactly the revoked rows; every row has its certificate and that certificate has
# the row's serial; and no serial ever names two different certificates across rounds (a
# certificate that was committed once keeps its serial; a serial is never handed out twice).
. "$(dirname "$0")/../tools/lib.sh"
need_softhsm
command -v strace >/dev/null || skip "strace not installed (scripts/deps.sh test installs it)"
command -v python3 >/dev/null || skip "python3 not installed"
# strace needs ptrace; a container without it cannot run this test.
strace -qq -o /dev/null true 2>/dev/null || skip "strace cannot trace here (ptrace not permitted)"

ROUNDS=${KW_CRASH_ROUNDS:-240}
make_token ca 11112222
P=$T/pki
expect_rc 0 "$KW" --dir "$P" ca init --key "pkcs11:token=ca;object=gen0" \
    --subject "CN=Crash CA" --pin-source "file:$T/ca.pin"
for i in $(seq 1 "$ROUNDS") probe first after; do
    OPENSSL_CONF=/dev/null openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout /dev/null -subj "/CN=c$i" -out "$T/c$i.csr" 2>/dev/null || fail "csr $i"
done

# LeakSanitizer cannot run under ptrace: keyward under strace runs without leak checks (its
# leaks are checked by the tools tests, which run it untraced); ASan's memory checks stay on.
traced() { ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0 strace "$@"; }

SYSCALLS="openat write fsync fdatasync rename renameat renameat2 link linkat symlink symlinkat unlink unlinkat mkdir mkdirat close"
# Serials seen so far: serial -> sha256 of its certificate (the ledger of issued certificates).
LEDGER=$T/ledger.json
echo '{}' >"$LEDGER"

consistent() {
    python3 - "$P" "$LEDGER" "$1" <<'PY' || fail "CA inconsistent after round $3: $(cat "$T/why" 2>/dev/null)"
import hashlib, json, os, subprocess, sys
P, ledger_path, rnd = sys.argv[1], sys.argv[2], sys.argv[3]
def bad(why):
    open(os.path.join(os.path.dirname(ledger_path), "why"), "w").write(why)
    print(f"round {rnd}: {why}", file=sys.stderr)
    sys.exit(1)
rows = [l.rstrip("\n").split("\t") for l in open(f"{P}/state/index.txt") if l.strip()]
if not all(len(r) == 6 and r[0] in "VRE" for r in rows):
    bad("index malformed")
serials = [r[3].upper() for r in rows]
if len(set(serials)) != len(serials):
    bad("duplicate serial in the index")
nxt = int(open(f"{P}/state/serial").read().strip(), 16)
if not all(int(s, 16) < nxt for s in serials):
    bad("serial file not above every issued serial")
crl = subprocess.run(["openssl", "crl", "-in", f"{P}/crl/crl.pem", "-noout", "-text"],
                     capture_output=True, text=True, check=True).stdout
on_crl = {int(l.split(":")[1].strip(), 16) for l in crl.splitlines() if "Serial Number:" in l}
revoked = {int(r[3], 16) for r in rows if r[0] == "R"}
if on_crl != revoked:
    bad(f"CRL lists {len(on_crl)} serials, the index {len(revoked)} revoked")
ledger = json.load(open(ledger_path))
for s in serials:
    path = f"{P}/certs/{s}.pem"
    if not os.path.exists(path):
        bad(f"index row {s} without certificate")
    got = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-serial"],
                         capture_output=True, text=True, check=True).stdout.strip()
    if got.split("=")[1].upper() != s:
        bad(f"certs/{s}.pem holds serial {got}")
    der = subprocess.run(["openssl", "x509", "-in", path, "-outform", "DER"],
                         capture_output=True, check=True).stdout
    h = hashlib.sha256(der).hexdigest()
    if ledger.get(s, h) != h:
        bad(f"serial {s} now names another certificate (serial reused)")
    ledger[s] = h
ledger["_next"] = max(nxt, ledger.get("_next", 0))
if nxt < ledger["_next"]:
    bad("the serial counter went back")
json.dump(ledger, open(ledger_path, "w"))
PY
}

# counts OP...: invocations per system call of one uninterrupted run (on a scratch copy).
declare -A COUNT
count_calls() {
    local op=$1
    rm -rf "$T/probe" && cp -a "$P" "$T/probe"
    local -a cmd
    case $op in
    sign) cmd=(ca sign "$T/cprobe.csr" --profile client) ;;
    revoke) cmd=(ca revoke "$(awk -F'\t' '$1=="V"{print $5; exit}' "$P/state/index.txt")" --reason superseded) ;;
    rotate) cmd=(ca rotate --key "pkcs11:token=ca;object=probe-$op") ;;
    esac
    traced -qq -o "$T/strace.log" -e trace="${SYSCALLS// /,}" \
        "$KW" --dir "$T/probe" "${cmd[@]}" >"$T/probe.out" 2>&1 || { tail -30 "$T/probe.out" >&2; fail "uninterrupted $op failed"; }
    for s in $SYSCALLS; do
        COUNT[$op.$s]=$(grep -c "^$s(" "$T/strace.log" || true)
    done
}

# A first valid certificate, so revoke has something to act on while counting.
expect_rc 0 "$KW" --dir "$P" ca sign "$T/cfirst.csr" --profile client --name first
for op in sign revoke rotate; do count_calls "$op"; done
rm -rf "$T/probe"

# The kill points in order: every (call, N) of each operation, interleaved, then random ones.
plan=$T/plan
: >"$plan"
for op in sign revoke rotate; do
    for s in $SYSCALLS; do
        n=${COUNT[$op.$s]}
        for i in $(seq 1 "$n"); do echo "$op $s $i"; done
    done
done | shuf --random-source=<(yes) >"$plan"
total_points=$(wc -l <"$plan")
echo "kill points from uninterrupted runs: $total_points" \
    "(sign $(for s in $SYSCALLS; do echo -n "${COUNT[sign.$s]}+"; done)0)"

killed=0
completed=0
gen=1
for round in $(seq 1 "$ROUNDS"); do
    line=$(sed -n "${round}p" "$plan")
    if [ -z "$line" ]; then
        ops=(sign sign revoke rotate)
        op=${ops[$((RANDOM % 4))]}
        set -- $SYSCALLS
        shift $((RANDOM % $#))
        s=$1
        n=${COUNT[$op.$s]:-0}
        [ "$n" -gt 0 ] || n=1
        line="$op $s $((1 + RANDOM % n))"
    fi
    read -r op s n <<<"$line"
    case $op in
    sign) cmd=(ca sign "$T/c$round.csr" --profile client) ;;
    revoke)
        name=$(awk -F'\t' '$1=="V"{print $5}' "$P/state/index.txt" | shuf -n1)
        if [ -z "$name" ]; then
            cmd=(ca sign "$T/c$round.csr" --profile client)
        else
            cmd=(ca revoke "$name" --reason keyCompromise)
        fi
        ;;
    rotate)
        gen=$((gen + 1))
        cmd=(ca rotate --key "pkcs11:token=ca;object=gen$gen")
        ;;
    esac
    rc=0
    # (the braces take the shell's "Killed" notice away from the log)
    { traced -qq -o /dev/null -e trace="$s" -e inject="$s":signal=KILL:when="$n" \
        "$KW" --dir "$P" "${cmd[@]}" >"$T/op.out" 2>&1; } 2>/dev/null || rc=$?
    # strace exits with the tracee's status: 128+9 when the kill point was reached.
    if [ "$rc" = 137 ]; then
        killed=$((killed + 1))
    elif [ "$rc" = 0 ]; then
        completed=$((completed + 1))
    else
        cat "$T/op.out" >&2
        fail "round $round: $op failed without being killed (exit $rc)"
    fi
    # The next writer recovers; readers see the committed state.
    expect_rc 0 "$KW" --dir "$P" ca crl
    expect_rc 0 "$KW" --dir "$P" check
    consistent "$round ($op killed at $s #$n)"
done
echo "rounds $ROUNDS: killed $killed, completed $completed"
[ "$killed" -ge $((ROUNDS / 2)) ] || fail "only $killed of $ROUNDS runs were killed mid-way"

# The CA still works end to end after all of that.
expect_rc 0 "$KW" --dir "$P" ca sign "$T/cafter.csr" --profile client --name after
expect_rc 0 "$KW" --dir "$P" ca revoke after --reason superseded
expect_rc 0 "$KW" --dir "$P" check
consistent final
ok "CA consistent after $killed kills at $total_points system-call points, no serial reused"
echo PASS

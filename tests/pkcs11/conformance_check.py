#!/usr/bin/env python3
"""Compare the conformance suites' results (tests/pkcs11/conformance.sh) with the expected ones.

Usage: conformance_check.py OUTDIR XFAIL_FILE

OUTDIR/TARGET/RUN.out and RUN.rc hold each suite run (TARGET: softhsm, the control, and the
keyward tokens kw-nopin and kw-pin; RUN: test, p11test, test-ec-CURVE, test-threads-N). Each
run is reduced to failure signatures, one line each, "RUN: where: what" (RUN without its
variant: test, p11test, test-ec, test-threads). XFAIL_FILE lines: SUITE | TARGETS | ERE |
SECTION | WHY
(TARGETS a glob over target names). A signature no entry matches is unexpected: on keyward a
failure, on the control a problem of the suite's set-up. An entry that matches nothing on a
target it names has stopped failing there: reported so the list can shrink.
Exit 0 when nothing unexpected failed, 1 otherwise.
"""
import fnmatch
import os
import re
import sys

TARGETS = ["softhsm", "kw-nopin", "kw-pin"]
CONTROL = "softhsm"
# p11test result columns per test, named as its own table headers name them.
P11T_COLS = {
    "readonly_tests": ["sign&verify", "encrypt&decrypt"],
    "multipart_tests": ["multipart sign&verify"],
    "pss_oaep_test": ["sign&verify", "encrypt&decrypt"],
}


def norm(s):
    # Pointers and hex dumps differ between runs; the rest of a message is kept.
    s = re.sub(r"0x[0-9a-fA-F]{6,}", "0x…", s)
    return re.sub(r"\s+", " ", s).strip()


def parse_test(lines, rc):
    """pkcs11-tool --test: each ERR/error/warning line, with its section, key and mechanism."""
    sigs, ok = [], 0
    section, key, mech = "start", "-", "-"
    sections = [("C_SeedRandom", "random"), ("Digests", "digest"), ("Signatures", "sign"),
                ("Verify", "verify"), ("Key unwrap", "unwrap"), ("Unwrap", "unwrap"),
                ("Decryption", "decrypt"), ("Decrypt:", "decrypt")]
    for line in lines:
        for prefix, name in sections:
            if line.startswith(prefix):
                section, key, mech = name, "-", "-"
        m = re.match(r"\s+testing key \d+(?: \(([^)]*)\))?", line)
        if m:
            key, mech = m.group(1) or "?", "-"
        m = re.match(r"\s{2,}([A-Z][A-Z0-9_-]+): ?(.*)", line)
        if m and not line.lstrip().startswith("ERR:"):
            mech = m.group(1)
            if m.group(2).startswith("OK"):
                ok += 1
        if line.strip() == "OK":
            ok += 1
        if "(Label) present" in line and not mech.endswith("+label"):
            mech += "+label"
        if re.search(r"\bERR:|^error:|warning:|doesn't match|openssl error|failed, returning|"
                     r"Internal error|buffer too small", line):
            sigs.append(f"test: {section}: {key}: {mech}: {norm(line)}")
    if rc != 0 and not sigs:
        sigs.append(f"test: exit status {rc}")
    elif not any(line.startswith("No errors") for line in lines) and not sigs:
        sigs.append("test: no 'No errors' line")
    return sigs, ok


def parse_test_ec(lines, rc, curve):
    sigs = [f"test-ec: {curve}: {norm(line)}" for line in lines
            if re.search(r"\bERR:|^error:|warning:", line)]
    passed = any(line.startswith("==> OK") for line in lines)
    if not passed and not sigs:
        sigs.append(f"test-ec: {curve}: no '==> OK' (exit status {rc})")
    return sigs, int(passed)


def parse_test_threads(lines, rc, spec):
    sigs, last = [], {}
    good = ("CKR_OK", "CKR_CRYPTOKI_ALREADY_INITIALIZED")
    for line in lines:
        m = re.match(r"test_threads thread:(\d+) state:(-?\d+), rv:(\S+)", line)
        if m:
            last[m.group(1)] = (m.group(2), m.group(3))
        m = re.match(r"Main C_Initialize\(.*\) rv:(\S+)", line)
        if m and m.group(1) not in good:
            sigs.append(f"test-threads: {spec}: main C_Initialize returned {m.group(1)}")
        if "Unknown test" in line:
            sigs.append(f"test-threads: {spec}: {norm(line)}")
    names = spec.split()
    for t, (state, rv) in sorted(last.items()):
        what = names[int(t)] if int(t) < len(names) else "?"
        if state != "-1":
            sigs.append(f"test-threads: {spec}: thread {t} ({what}) did not end")
        elif rv not in good:
            sigs.append(f"test-threads: {spec}: thread {t} ({what}) ended with {rv}")
    if not last:
        sigs.append(f"test-threads: {spec}: no thread reported (exit status {rc})")
    elif rc != 0:
        sigs.append(f"test-threads: {spec}: exit status {rc}")
    return sigs, len(last)


MARKS = re.compile(r"(?<!^)(?=( ?\[ ERROR |\[FAIL |\[KEY ID\]|\[  ERROR   \]|\[   LINE   \]|"
                   r"\[  FAILED  \]|\[       OK \]|\[ RUN      \]|\[  SKIPPED \]))")


def split_groups(text):
    """Top-level [...] groups of a table row (results nest a [./] inside one)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            if depth > 0:
                cur += ch
            depth += 1
        elif ch == "]" and depth > 0:
            depth -= 1
            if depth == 0:
                out.append(cur)
                cur = ""
            else:
                cur += ch
        elif depth > 0:
            cur += ch
    return out


def parse_p11test(lines, rc):
    """Cases that failed, p11test's ERROR/FAIL lines, and the result table rows."""
    text = []
    for line in lines:
        text.extend(MARKS.sub("\n", line).split("\n"))
    sigs, rows, passed, test, keyid, assert_msg = [], {}, 0, None, "-", None
    finished = False
    for line in text:
        m = re.match(r"\[ RUN      \] (\S+)", line)
        if m:
            test, keyid = m.group(1), "-"
            continue
        m = re.match(r"\[ +(OK|FAILED|SKIPPED) +\] (\S+)$", line)
        if m and m.group(2) == test:
            if m.group(1) == "OK":
                passed += 1
            elif m.group(1) == "FAILED":
                if not any(s.startswith(f"p11test: {test}:") for s in sigs):
                    sigs.append(f"p11test: {test}: FAILED")
            test = None
            continue
        if re.match(r"\[=+\] \d+ test\(s\) run", line):
            finished = True
        if test is None:
            continue
        m = re.match(r"\[  ERROR   \] --- (.*)", line)
        if m:
            assert_msg = m.group(1).strip()
            continue
        m = re.match(r"\[   LINE   \] --- (\S+?):? error: Failure", line)
        if m:
            sigs.append(f"p11test: {test}: assertion {assert_msg or ''} failed at {m.group(1)}")
            assert_msg = None
            continue
        m = re.match(r"\s*\[ ?(ERROR|FAIL) ([0-9a-fA-F]+) ?\] (.*)", line)
        if m:
            sigs.append(f"p11test: {test}: key {m.group(2)}: {norm(m.group(3))}")
            continue
        m = re.match(r"\[([0-9a-fA-F]+) *\] \[", line)
        if m:
            keyid = m.group(1)
            continue
        m = re.match(r"\s+\[ ([A-Z][A-Z0-9_]*) *\](.*)", line)
        if m and test in P11T_COLS:
            params, results = [], []
            for g in split_groups(m.group(2)):
                if "./" in g:
                    results.append(True)
                elif g.strip() == "":
                    results.append(False)
                else:
                    params.append(g.strip())
            name = " ".join([m.group(1)] + params)
            rows[(test, keyid, name)] = results
    if not finished:
        sigs.append(f"p11test: did not finish (exit status {rc})")
    return sigs, rows, passed


def run_sigs(outdir, target, control_rows):
    """All failure signatures of one target, and the number of checks that passed."""
    sigs, ok, rows = [], 0, {}
    tdir = os.path.join(outdir, target)
    for f in sorted(os.listdir(tdir)):
        if not f.endswith(".out"):
            continue
        run = f[:-4]
        with open(os.path.join(tdir, f), errors="replace") as fh:
            lines = fh.read().splitlines()
        try:
            with open(os.path.join(tdir, run + ".rc")) as fh:
                rc = int(fh.read().strip() or 1)
        except (OSError, ValueError):
            rc = 1
        if run == "test":
            s, n = parse_test(lines, rc)
        elif run.startswith("test-ec-"):
            s, n = parse_test_ec(lines, rc, run[len("test-ec-"):])
        elif run.startswith("test-threads-"):
            spec = ""
            if os.path.exists(os.path.join(tdir, run + ".spec")):
                with open(os.path.join(tdir, run + ".spec")) as fh:
                    spec = fh.read().strip()
            s, n = parse_test_threads(lines, rc, spec)
        elif run == "p11test":
            s, rows, n = parse_p11test(lines, rc)
            n += sum(r.count(True) for r in rows.values())
        else:
            continue
        sigs += s
        ok += n
    # Table rows: a result that works on the control must work here; a row (a mechanism the
    # token offers) on which nothing works is a failure whatever the control says.
    for (test, keyid, name), res in sorted(rows.items()):
        cols = P11T_COLS.get(test, [])
        ctl = control_rows.get((test, keyid, name)) if control_rows is not None else None
        if not any(res):
            # Unless it works nowhere: PSS or OAEP with SHA-512 does not fit a 1024-bit key.
            # The control's own rows are the reference: they are compared to nothing.
            if control_rows is not None and (ctl is None or any(ctl)):
                sigs.append(f"p11test: {test}: key {keyid}: {name}: nothing works")
            continue
        for i, works in enumerate(res):
            if ctl is not None and i < len(ctl) and ctl[i] and not works:
                col = cols[i] if i < len(cols) else f"column {i + 1}"
                sigs.append(f"p11test: {test}: key {keyid}: {name}: {col} fails (works on SoftHSM)")
    return sigs, ok, rows


def ran_suites(tdir):
    """The suites (test, p11test, test-ec, test-threads) that have output in tdir."""
    out = set()
    for f in os.listdir(tdir):
        if f.endswith(".out"):
            m = re.match(r"(test-ec|test-threads)-", f)
            out.add(m.group(1) if m else f[:-4])
    return out


def main():
    outdir, xfail_file = sys.argv[1], sys.argv[2]
    xfail = []
    with open(xfail_file) as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            suite, targets, ere, section, why = (line.split(" | ", 4) + [""] * 5)[:5]
            xfail.append({"suite": suite, "targets": targets, "re": re.compile(ere),
                          "section": section, "why": why, "hit": set()})
    problems, setup_problems, report = 0, 0, []
    control_rows = None
    for target in TARGETS:
        if not os.path.isdir(os.path.join(outdir, target)):
            continue
        sigs, ok, rows = run_sigs(outdir, target, control_rows)
        if target == CONTROL:
            control_rows = rows
        unexpected, expected = [], []
        for s in sigs:
            hit = None
            for x in xfail:
                if (s.startswith(x["suite"] + ":") and fnmatch.fnmatch(target, x["targets"])
                        and x["re"].search(s)):
                    hit = x
                    break
            if hit:
                hit["hit"].add(target)
                expected.append((s, hit))
            else:
                unexpected.append(s)
        print(f"== {target}: {ok} checks passed, {len(expected)} expected failure(s), "
              f"{len(unexpected)} unexpected")
        for s, x in expected:
            print(f"xfail {target}: {s}\n      [{x['section']}] {x['why']}")
        for s in unexpected:
            if target == CONTROL:
                print(f"FAIL  {target} (the control: a problem of the suite set-up, "
                      f"not of keyward): {s}")
                setup_problems += 1
            else:
                print(f"FAIL  {target}: {s}")
                problems += 1
        if ok == 0:
            print(f"FAIL  {target}: no check passed at all (did the suites run?)")
            problems += 1
    for x in xfail:
        for target in TARGETS:
            # "(sometimes)": a race on the control, which a run may or may not hit.
            if (fnmatch.fnmatch(target, x["targets"]) and target not in x["hit"]
                    and not x["why"].startswith("(sometimes)")
                    and os.path.isdir(os.path.join(outdir, target))
                    and x["suite"] in ran_suites(os.path.join(outdir, target))):
                report.append(f"XPASS {target}: '{x['re'].pattern}' ({x['suite']}) no longer "
                              f"fails: remove it from the list (conformance.sh, docs/security.md)")
    for r in report:
        print(r)
    print(f"conformance: {problems} unexpected failure(s) on keyward, {setup_problems} on the "
          f"control, {len(report)} expected failure(s) now passing")
    return 1 if problems or setup_problems else 0


if __name__ == "__main__":
    sys.exit(main())

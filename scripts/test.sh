#!/bin/bash
# Install what the tests need, build with -Werror and run the tests in stages:
#   main          the whole suite (meson test) on a plain build, from a directory only root may
#                 enter (a copy of the working tree when others may enter the checkout)
#   fuzz          every libFuzzer target (tests/fuzz/run.sh) for KEYWARD_FUZZ_SECONDS (default 60) s
#   tsan          the thread tests on a ThreadSanitizer build
#   valgrind      memcheck (the valgrind setup) on the main build over the tests that load
#                 keyward's code in-process: every unit test and fuzz corpus, every provider test,
#                 the keyring module's tests, fault-recover (VALGRIND_TESTS below)
#   asan          the whole suite under the asan setup, on a fresh ASan+UBSan build
#   valgrind-all  memcheck over the whole suite (by hand: hours on two CPUs)
# Usage: scripts/test.sh [--stages "main asan ..."] [meson test args...]
#   With no arguments (what CI runs): main, fuzz, tsan, valgrind and asan, in that order.
#   Meson test arguments alone (scripts/test.sh --suite unit) run the main stage with them.
#   KEYWARD_CI_STAGES="..." picks the stages as --stages does; KEYWARD_TEST_SETUP=asan|valgrind
#   (older spelling) runs that one stage with the given meson test arguments.
# Every stage runs even when an earlier one failed; the summary names each stage's result and
# time, and the exit status is non-zero when any stage failed.
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
ALL_STAGES="main fuzz tsan valgrind asan valgrind-all"
# What runs with no --stages: every stage but valgrind-all.
DEFAULT_STAGES="main fuzz tsan valgrind asan"

stages=${KEYWARD_CI_STAGES:-}
case "${1:-}" in
--stages)
    stages=${2:?--stages needs a list, e.g. --stages "main fuzz"}
    shift 2
    ;;
--stages=*)
    stages=${1#--stages=}
    shift
    ;;
esac
if [ -z "$stages" ]; then
    if [ -n "${KEYWARD_TEST_SETUP:-}" ]; then
        stages=$KEYWARD_TEST_SETUP
    elif [ $# -gt 0 ]; then
        stages=main
    else
        stages=$DEFAULT_STAGES
    fi
fi
for s in $stages; do
    case " $ALL_STAGES " in *" $s "*) ;; *)
        echo "unknown stage '$s' (stages: $ALL_STAGES)" >&2
        exit 2
        ;;
    esac
done

"$SRC/scripts/deps.sh" test || {
    echo "test.sh: installing test packages failed" >&2
    exit 1
}

BUILD=${KEYWARD_BUILD_DIR:-$SRC/build-test}
NPROC=$(nproc)

# setup DIR [meson options]: configure DIR once with --werror (sources: $SETUP_SRC, default
# $SRC), then build it.
setup() {
    local dir=$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "${SETUP_SRC:-$SRC}" --werror -Dtests=enabled "$@" || return 1
    fi
    ninja -C "$dir"
}

# The main stage's tree. Tests that run something as another user (nobody, www-data) must not
# depend on that user entering the checkout: a newcomer's clone in /root (mode 0700) is root's
# alone, while CI's clone lives where anyone may enter. So when we are root and others may enter
# the checkout or $BUILD, the main stage (and the valgrind stages, which test its build) run on a
# copy of the working tree in $BUILD-private/src, a directory only root may enter, built in
# $BUILD-private/build: every test then runs as from /root. The copy keeps the files' times, so
# its build stays incremental; the copy takes about 0.1 s (docs/security.md).
MAIN_SRC=$SRC
MAIN_BUILD=$BUILD
# others_may_enter PATH: every existing directory from / down to PATH lets others search it.
others_may_enter() {
    local d perm
    d=$(realpath -m "$1")
    while :; do
        if [ -d "$d" ]; then
            perm=$(stat -L -c %A "$d") || return 1
            case ${perm:9:1} in x | t) ;; *) return 1 ;; esac
        fi
        [ "$d" = / ] && return 0
        d=$(dirname "$d")
    done
}
if [ "$(id -u)" = 0 ] && { others_may_enter "$SRC" || others_may_enter "$BUILD"; }; then
    MAIN_SRC=$BUILD-private/src
    MAIN_BUILD=$BUILD-private/build
fi
# main_tree: the copy in $BUILD-private when the main stage uses one (the working tree as it
# is, .git included, builds and the demo's state left out).
main_tree() {
    local priv rel
    if [ "$MAIN_SRC" = "$SRC" ]; then
        if [ "$(id -u)" != 0 ]; then
            echo "main stage: in $SRC as uid $(id -u): the tests that run a program as another user SKIP (they need root)"
        else
            echo "main stage: in $SRC, which only root may enter (as from /root)"
        fi
        return 0
    fi
    priv=$(dirname "$MAIN_SRC")
    local -a ex=(--anchored --exclude=./build --exclude='./build-*' --exclude=./keyward-demo)
    for rel in "$BUILD" "$priv"; do
        case $rel in "$SRC"/*) ex+=("--exclude=./${rel#"$SRC"/}" "--exclude=./${rel#"$SRC"/}-*") ;; esac
    done
    mkdir -p "$priv" && chmod 700 "$priv" && rm -rf "$MAIN_SRC" && mkdir "$MAIN_SRC" || return 1
    tar -C "$SRC" "${ex[@]}" -cf - . | tar -C "$MAIN_SRC" --no-same-owner -xf - || return 1
    if others_may_enter "$MAIN_SRC"; then
        echo "test.sh: others may still enter $MAIN_SRC" >&2
        return 1
    fi
    echo "main stage: on a copy of the working tree in $MAIN_SRC (only root may enter $priv)"
}

stage_main() {
    main_tree && SETUP_SRC=$MAIN_SRC setup "$MAIN_BUILD" &&
        meson test -C "$MAIN_BUILD" --print-errorlogs --num-processes "$NPROC" "$@"
}

# A fresh build: an ASan build left from an older tree could hide a finding. Every test runs
# but these, whose keyward code paths another test runs under ASan (together 17 of the 69
# test-minutes the whole suite takes under ASan on two CPUs; CI has 90 minutes for all stages):
#   tpm-nginx-single, tpm-nginx-p11kit  tpm-nginx's provider paths, one worker / through p11-kit
#   servers-nginx-softhsm-default       servers-nginx's; SoftHSM2 without reset_on_fork: the
#                                       child re-initialisation it needs runs in
#                                       servers-fork-thread-softhsm-default
#   fault-ca-crash                      keyward SIGKILLed under strace (no leak checks under
#                                       ptrace); the recovery after a kill runs in tools-crash
#   audit-keyring-vm                    the keyring module's kernel paths run under ASan in
#                                       pkcs11-vm; the memory scan in audit-keyring
#   tools-rotate-trust                  ~100 keyward runs over the paths tools-rotate,
#                                       tools-ocsp-rotate and tools-lifecycle run under ASan
#                                       (rotate, export, verify, crl, ocsp); 680 s under ASan
#   tools-est                           322 s under ASan with 20 parallel clients (50 now) and
#                                       slow-client deadlines; passed under ASan once then; CI's
#                                       90 minutes have no room for it in asan or valgrindcli
# Given meson test arguments (a test name, --suite), the stage runs what they pick.
ASAN_SKIP='^(tpm-nginx-(single|p11kit)|servers-nginx-softhsm-default|fault-ca-crash|audit-keyring-vm|tools-rotate-trust|tools-est)$'
stage_asan() {
    local dir=$BUILD-asan names
    rm -rf "$dir"
    setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false || return 1
    if [ $# -eq 0 ]; then
        names=$(meson test -C "$dir" --list 2>/dev/null |
            awk -v re="$ASAN_SKIP" '$2 == "/" && $3 !~ re { print $3 }')
        [ -n "$names" ] || {
            echo "asan stage: no tests selected" >&2
            return 1
        }
        # shellcheck disable=SC2116,SC2086
        echo "asan stage: $(echo $names | wc -w) tests (left to the main stage: $ASAN_SKIP)"
        set -- $names
    fi
    meson test -C "$dir" --setup asan --print-errorlogs --num-processes "$NPROC" "$@"
}

# memcheck on the plain build (the same binaries the main stage tested). The whole suite under
# memcheck takes hours on two CPUs (an openssl run costs ~40x, a provider test ~50 s), so CI's
# stage runs, under the `valgrind` setup, the tests that put keyward's code in the processes
# they check, where memcheck sees every allocation: every unit test (the fuzz corpora replayed
# included), every provider test (openssl with keyward.so), the keyring module's (api_test,
# pkcs11-tool and keyward keyring on it) and fault-recover (one process through ~200 injected
# faults: the error paths); then the tools tests under `valgrindcli`, which traces the keyward
# command but runs openssl natively. Servers, backends and the other fault tests: valgrind-all.
# Measured in CI's stage: about 15 minutes.
VALGRIND_TESTS='^(provider-.*|pkcs11-(api|host|keyring-tool)|fault-recover)$'
VALGRIND_CLI_TESTS='^tools-'
# tools-guide replays docs/ca-guide.md and tools-rotate-trust drives openssl, nginx and curl
# across three CA generations: both run the keyward paths that tools-rotate and the other tools
# tests trace (rotate, export, verify, crl, ocsp), with about a hundred keyward runs each
# (tools-rotate-trust alone took 560 s under memcheck); the main and asan stages run them.
# tools-completion runs keyward ~200 times for parser checks (~250 s under memcheck); the asan
# stage covers `keyward __complete` with its hostile words. tools-lifecycle (141 s under memcheck)
# runs the sign/renew/revoke/export paths every other tools test traces; tools-crash (76 s) kills
# keyward mid-transaction, whose recovery the asan stage checks: both left to main and asan so
# that the five fleet tests fit CI's 90 minutes.
VALGRIND_CLI_SKIP='^tools-(guide|rotate-trust|completion|lifecycle|crash|est)$'
# valgrind_pick RE: "keyward:SUITE / NAME" lines; the names matching RE (units with RE "unit").
valgrind_pick() {
    meson test -C "$MAIN_BUILD" --list 2>/dev/null | awk -v re="$1" \
        '$2 == "/" && (re == "unit" ? $1 == "keyward:unit" : $1 != "keyward:unit" && $3 ~ re) { print $3 }'
}
stage_valgrind() {
    local names cli
    main_tree && SETUP_SRC=$MAIN_SRC setup "$MAIN_BUILD" || return 1
    names="$(valgrind_pick unit) $(valgrind_pick "$VALGRIND_TESTS")"
    cli=$(valgrind_pick "$VALGRIND_CLI_TESTS" | grep -v -E "$VALGRIND_CLI_SKIP")
    if [ -z "${names// /}" ] || [ -z "$cli" ]; then
        echo "valgrind stage: no tests selected" >&2
        return 1
    fi
    # shellcheck disable=SC2086,SC2116
    echo "valgrind stage: $(echo $names | wc -w) tests: $(echo $names)"
    # shellcheck disable=SC2086
    meson test -C "$MAIN_BUILD" --setup valgrind --print-errorlogs --num-processes "$NPROC" $names "$@" ||
        return 1
    # shellcheck disable=SC2086,SC2116
    echo "valgrind stage, the keyward command (openssl native): $(echo $cli | wc -w) tests: $(echo $cli)"
    # shellcheck disable=SC2086
    meson test -C "$MAIN_BUILD" --setup valgrindcli --print-errorlogs --num-processes "$NPROC" $cli "$@"
}

stage_valgrind-all() {
    main_tree && SETUP_SRC=$MAIN_SRC setup "$MAIN_BUILD" &&
        meson test -C "$MAIN_BUILD" --setup valgrind --print-errorlogs --num-processes "$NPROC" "$@"
}

# Each target KEYWARD_FUZZ_SECONDS seconds, as many at once as there are CPUs; run.sh prints
# the execs of each and the total. Its exit 77 (no clang) is a failure here: CI installs clang.
stage_fuzz() {
    KEYWARD_FUZZ_BUILD=${KEYWARD_FUZZ_BUILD:-$BUILD-fuzz} \
        "$SRC/tests/fuzz/run.sh" "${KEYWARD_FUZZ_SECONDS:-60}"
}

# The tests that run threads against one module (tests/unit p11 worker threads, the keyring
# module's api_test thread and fork parts, tests/servers thread-sign, fork-sign and
# fork-thread-sign: a threaded parent forking) on a gcc
# ThreadSanitizer build. gcc's libtsan is a shared library, so keyward.so and
# keyward-pkcs11.so (linked with -z defs) resolve it; the programs the tests run are ours and
# instrumented; openssl, which the tests use to make keys, gets libtsan preloaded (the fixtures'
# KEYWARD_ASAN_PRELOAD hook). Fewer signatures per thread and 20 forked children instead of 50
# (each fork lands mid-operation all the same) than the main stage: TSan is 5-15x slower.
TSAN_TESTS="p11 pkcs11-api servers-fork-thread servers-fork-thread-softhsm-default
    servers-fork-threaded-parent"
stage_tsan() {
    local dir=$BUILD-tsan
    setup "$dir" -Db_sanitize=thread -Db_lundef=false || return 1
    TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$SRC/tests/tsan.supp" \
        KEYWARD_ASAN_PRELOAD=$(gcc -print-file-name=libtsan.so) \
        KWS_THREAD_COUNT=${KWS_THREAD_COUNT:-200} KWS_FORK_CHILDREN=${KWS_FORK_CHILDREN:-20} \
        meson test -C "$dir" --print-errorlogs --num-processes "$NPROC" $TSAN_TESTS "$@"
}

results=()
failed=""
t_all=$SECONDS
for s in $stages; do
    echo "==== stage $s ===="
    t0=$SECONDS
    log=$BUILD-stage-$s.log
    mkdir -p "$(dirname "$log")"
    if [ "$s" = main ] || [ -n "${KEYWARD_TEST_SETUP:-}" ]; then
        "stage_$s" "$@" 2>&1 | tee "$log"
    else
        "stage_$s" 2>&1 | tee "$log"
    fi
    rc=${PIPESTATUS[0]}
    dt=$((SECONDS - t0))
    if [ "$rc" -eq 0 ]; then
        results+=("$(printf '%-9s ok      %5ds' "$s" "$dt")")
    else
        results+=("$(printf '%-9s FAILED  %5ds  (exit %d)' "$s" "$dt" "$rc")")
        failed="$failed $s"
    fi
done
echo "==== summary ($((SECONDS - t_all)) s) ===="
printf '%s\n' "${results[@]}"
if [ -n "$failed" ]; then
    # CI may keep only the end of the console: repeat the end of each failed stage's output.
    for s in $failed; do
        echo "==== end of the failed stage $s (whole output: $BUILD-stage-$s.log) ===="
        grep -v -E '^\[[0-9]+/[0-9]+\] (Compiling|Linking|Generating)' "$BUILD-stage-$s.log" | tail -n 80
    done
    echo "==== summary, again ===="
    printf '%s\n' "${results[@]}"
    echo "test.sh: stages that failed:$failed" >&2
    exit 1
fi
echo "test.sh: all stages passed: $stages"

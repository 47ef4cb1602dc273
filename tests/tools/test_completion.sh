#!/bin/bash
# Shell completion (issue 15, item 7): tools/keyward.bash-completion asks `keyward __complete`,
# which computes the candidates from the help texts. This test checks, from `keyward help`:
# (a) every command, subcommand and every option of each command's synopsis is completed;
# (b) the bash shim itself, sourced in a plain bash, fills COMPREPLY;
# (c) every option completed for a command is accepted by that command's parser, and an option
#     that a help text mentions but completion does not offer is refused by the parser (it
#     names another command's option);
# (d) arbitrary words: exit 0, nothing on stderr, only command names and options printed.
# Needs no token, provider or CA directory.
set -u
KEYWARD_BUILD=${KEYWARD_BUILD:?run through meson test (KEYWARD_BUILD unset)}
KEYWARD_SRC=${KEYWARD_SRC:?run through meson test (KEYWARD_SRC unset)}
KW="$KEYWARD_BUILD/tools/keyward"
SHIM="$KEYWARD_SRC/tools/keyward.bash-completion"
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }
[ -x "$KW" ] || fail "keyward binary missing at $KW"
[ -f "$SHIM" ] || fail "completion shim missing at $SHIM"
T=$(mktemp -d /tmp/kwt-compl.XXXXXX)
trap 'rm -rf "$T"' EXIT
mkdir "$T/empty" "$T/bin"
ln -s "$KW" "$T/bin/keyward"

# complete WORD...: the candidates, one a line (the words after "keyward", the last completed)
complete_words() {
    "$KW" __complete "$@" 2>"$T/compl.err"
    local rc=$?
    local args
    args=$(printf '%q ' "$@")
    [ "$rc" = 0 ] || fail "__complete ${args:0:200} exited $rc"
    [ ! -s "$T/compl.err" ] || { cat "$T/compl.err"; fail "__complete ${args:0:200} wrote to stderr"; }
}
# has LIST WORD: LIST (lines) contains WORD
has() { grep -qxF -- "$2" <<<"$1"; }
# synopsis TEXT: the usage lines (the first and the indented ones after it)
synopsis() { awk 'NR > 1 && !/^[ \t]/ { exit } { print }' <<<"$1"; }
# options TEXT: the -x/--xyz words of TEXT (after a blank, "[", "|" or at a line start)
options() { grep -oE '(^|[][ |])--?[A-Za-z][A-Za-z0-9-]*' <<<"$1" | sed 's/^[][ |]//' | sort -u; }

# ---- the commands, as `keyward help` lists them ----
"$KW" help >"$T/help" 2>&1 || fail "keyward help"
top=$(cat "$T/help")
cmds=$(awk '/^commands:/ { on = 1; next } on && /^  [a-z]/ { sub(/^  /, ""); sub(/  .*/, "");
    print }' "$T/help")
[ -n "$cmds" ] || { cat "$T/help"; fail "no command list in keyward help"; }
globals=$(options "$(synopsis "$top")")
for g in --dir --dry-run --json -v -q; do
    has "$globals" "$g" || fail "global option $g missing from the keyward help synopsis"
done
grep -q __complete "$T/help" && fail "keyward help shows the hidden __complete"

names=$(complete_words "")
full=() # the commands with a usage text: "ca sign", "req", "keyring import" ...
while read -r c1 c2; do
    has "$names" "$c1" || fail "'keyward <TAB>' does not offer $c1 (offers: $names)"
    [ "$c1" = help ] && continue
    if [ "$c1" = keyring ] && ! "$KW" help keyring >"$T/kr" 2>/dev/null; then
        echo "note: keyring not built in, its subcommands not checked"
        continue
    fi
    if [ "$c1" = keyring ]; then
        # the keyring's texts live with keyring.c: its subcommands from its usage lines
        while read -r s; do
            full+=("keyring $s")
        done < <(sed -n 's/^usage: keyward keyring \([a-z]*\).*/\1/p' "$T/kr")
        continue
    fi
    [[ $c2 == [A-Z]* ]] && c2=""
    full+=("$c1${c2:+ $c2}")
done <<<"$cmds"
has "$names" "help" || fail "'keyward <TAB>' does not offer help"
# the subcommands, after the group and after help GROUP
for g in $(for c in "${full[@]}"; do [[ $c == *" "* ]] && echo "${c%% *}"; done | sort -u); do
    subs=$(complete_words "$g" "")
    hsubs=$(complete_words help "$g" "")
    for c in "${full[@]}"; do
        [[ $c == "$g "* ]] || continue
        has "$subs" "${c#* }" || fail "'keyward $g <TAB>' does not offer ${c#* } (offers: $subs)"
        has "$hsubs" "${c#* }" || fail "'keyward help $g <TAB>' does not offer ${c#* }"
    done
done
ok "every command and subcommand of keyward help is completed (${#full[@]} commands)"

# ---- (a) options; (c) each one accepted by the command's parser ----
# parses CMD OPT: false when the command's parser says "unknown option" for OPT
parses() {
    local rc
    # shellcheck disable=SC2086 # $1 is the command's words
    timeout 20 "$KW" --dir "$T/empty" $1 "$2" </dev/null >"$T/p.out" 2>"$T/p.err"
    rc=$?
    [ "$rc" != 124 ] || fail "keyward $1 $2 did not finish in 20 s"
    ! grep -qi "unknown option" "$T/p.err"
}
nopts=0
for c in "${full[@]}"; do
    read -ra cw <<<"$c"
    text=$("$KW" help "${cw[@]}" 2>&1) || fail "keyward help $c: $text"
    offered=$(complete_words "${cw[@]}" -)
    for o in $(options "$(synopsis "$text")") $globals; do
        has "$offered" "$o" || fail "'keyward $c -<TAB>' does not offer $o of its synopsis"
    done
    while read -r o; do
        [[ $o == -* ]] || fail "'keyward $c -<TAB>' offers '$o', not an option"
        has "$globals" "$o" && continue # main takes them out before any command
        parses "$c" "$o" || { cat "$T/p.err"; fail "keyward $c refuses $o, which its help shows"; }
        nopts=$((nopts + 1))
    done <<<"$offered"
    # an option the prose mentions without offering it: another command's (e.g. renew's
    # --keep-old in revoke's text), so this command's parser must refuse it
    for o in $(options "$text" | grep -- '^--'); do
        has "$offered" "$o" && continue
        ! parses "$c" "$o" ||
            fail "keyward $c accepts $o (its help mentions it) but completion does not offer it"
    done
done
ok "every option in the help's synopses is completed and accepted by its command ($nopts)"

# ---- (b) the bash shim ----
: >"$T/x.csr"
cat >"$T/drive.sh" <<'EOF'
source "$1"
complete -p keyward | grep -q -- '-F _keyward' || { echo "not registered"; exit 1; }
# comp WORD...: complete the last WORD of "keyward WORD..."; prints COMPREPLY sorted, one line
comp() {
    COMP_WORDS=(keyward "$@")
    COMP_CWORD=$#
    COMP_LINE="keyward $*"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    _keyward keyward "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
    echo
}
comp ca si
comp ca sign --pro
comp --dir /tmp ca re
comp help ca ""
comp --dir "$2/emp"
comp ca sign "$2/x.c"
comp ca sign --csr "$2/x."
EOF
PATH="$T/bin:$PATH" bash --norc "$T/drive.sh" "$SHIM" "$T" >"$T/shim.out" 2>"$T/shim.err" ||
    { cat "$T/shim.out" "$T/shim.err"; fail "the shim driver failed"; }
ca_subs=$(for c in "${full[@]}"; do read -r a b <<<"$c"; [ "$a" = ca ] && echo "$b"; done |
    sort | tr '\n' ' ' | sed 's/ $//')
ca_re=$(tr ' ' '\n' <<<"$ca_subs" | grep '^re' | tr '\n' ' ' | sed 's/ $//')
want=("sign" "--profile" "$ca_re" "$ca_subs" "$T/empty" "$T/x.csr" "$T/x.csr")
what=("keyward ca si" "keyward ca sign --pro" "keyward --dir /tmp ca re" "keyward help ca "
    "keyward --dir \$T/emp (a directory)" "keyward ca sign \$T/x.c (no candidate: files)"
    "keyward ca revoke --csr \$T/x. (a path option)")
i=0
while IFS= read -r got; do
    [ "$got" = "${want[i]}" ] || { cat "$T/shim.err"; fail "${what[i]}<TAB>: got '$got', want '${want[i]}'"; }
    i=$((i + 1))
done <"$T/shim.out"
[ "$i" = "${#want[@]}" ] || { cat "$T/shim.out" "$T/shim.err"; fail "shim: $i results of ${#want[@]}"; }
[ ! -s "$T/shim.err" ] || { cat "$T/shim.err"; fail "the shim wrote to stderr"; }
ok "the bash shim completes commands, subcommands, options and file names"

# ---- (d) arbitrary words ----
allnames=$(complete_words ""; for c in "${full[@]}"; do read -r a b <<<"$c"; echo "$b"; done)
# check WORD...: __complete exits 0, is silent on stderr, prints names and options only
check() {
    local out l
    out=$(complete_words "$@") || exit 1
    while IFS= read -r l; do
        [ -z "$l" ] && continue
        [[ $l =~ ^--?[a-zA-Z][a-zA-Z0-9-]*$ ]] && continue
        has "$allnames" "$l" || fail "__complete printed '${l:0:100}' for: $(printf '%.100q ' "$@")"
    done <<<"$out"
}
# (one argument may have 128 KiB)
long=$(head -c 100000 /dev/zero | tr '\0' a)
# shellcheck disable=SC2016 # literal words, not to be expanded
hostile=("$long" "-$long" "--$long" '$(id)' '`id`' '--' '-' '=' '' ' ' $'\t\n' '*' '../../..'
    '--dir' '--dir=' 'help' 'ca' '%s%n%s' $'\xff\xfe' '-v' '--json' "ca sign")
check
for h in "${hostile[@]}"; do
    check "$h"
    check --dir "$h" ca s
    check ca sign "$h" "-"
done
check "${hostile[@]}"
check "${hostile[@]}" ""
mapfile -t many < <(yes -- --dir | head -n 5000)
check "${many[@]}" ca
for _ in $(seq 10); do
    words=()
    for _ in $(seq $((RANDOM % 5 + 1))); do
        words+=("$(head -c $((RANDOM % 40)) /dev/urandom | tr -d '\0')")
    done
    check "${words[@]}"
    check ca "${words[@]}"
done
ok "arbitrary words: exit 0, only command names and options printed"

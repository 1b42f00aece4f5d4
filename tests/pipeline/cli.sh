# Every program: --help and --version on stdout with exit 0; a bad option is one error line
# naming it plus the hint, exit 2; -j 0 means the default; every option in --help is in the man
# page, with the same default.
. "$DFM_TOP/tests/lib.sh"
# man_entry PAGE OPTION — the text of OPTION's entry in a man page source (the .TP paragraph
# whose tag names it), font escapes and macros removed, on one line
man_entry() {
  awk -v opt="$2" '
    function clean(s) {
      gsub(/\\f[BIRP]/, "", s); gsub(/\\-/, "-", s); gsub(/\\\(mu/, "x", s); gsub(/\\[ ~]/, " ", s)
      gsub(/\\&/, "", s); sub(/^\.[A-Z]+ ?/, "", s); gsub(/"/, "", s); return s
    }
    /^\.(TP|SH|SS|PP|LP|P)( |$)/ { if (on) exit; tag = $1 == ".TP"; next }
    tag { tag = 0; n = split(clean($0), w, /[ ,]+/); for (i = 1; i <= n; i++) if (w[i] == opt) on = 1 }
    on { printf "%s ", clean($0) }
  ' "$1"
}
# help_defaults PROGRAM — "OPTION VALUE" for every --help line that states a default: "(default X",
# "(default: X", "(default, or X:", or "X (default)" where X is one of the option's a|b|c choices
help_defaults() {
  "$1" --help | awk '
    /^  +-/ { opt = ""; for (i = 1; i <= NF; i++) if ($i ~ /^--[a-z]/) { opt = $i; sub(/[,=].*/, "", opt); break }
             choices = "|" $(i + 1) "|" }
    /\(default/ && opt != "" {
      s = substr($0, index($0, "(default") + 8)
      if (s ~ /^, or /) { s = substr(s, 6); sub(/:.*/, "", s); print opt, s; next }
      sub(/^:? */, "", s)
      if (match(s, /^[A-Za-z0-9.+_-]+/)) { print opt, substr(s, 1, RLENGTH); next }
      b = substr($0, 1, index($0, "(default") - 1); n = split(b, w, " ")
      if (n && index(choices, "|" w[n] "|")) print opt, w[n]
    }'
}
# man_agrees PROGRAM — every default PROGRAM --help states, its man page states too (a mismatch
# is appended to ./disagree); every long option in --help (saved in ./h) is in the man page
man_agrees() {
  help_defaults $1 > defaults
  while read -r o v; do
    e=$(man_entry "$DFM_TOP/man/man1/$1.1" "$o")
    x=$(printf '%s' "$v" | sed 's/[.+]/\\&/g')
    if [ -z "$e" ]; then
      echo "$1: no entry for $o in man/man1/$1.1" >> disagree
    elif ! printf '%s\n' "$e" | grep -Eqi -- "default[:,]? (or )?$x([^A-Za-z0-9]|\$)|(^|[^A-Za-z0-9])$x \((the )?default"; then
      echo "$1 $o: --help says the default is '$v'; man/man1/$1.1 says: $e" >> disagree
    fi
  done < defaults
  for o in $(grep -oE -- '--[a-z][a-z0-9-]+' h | sort -u); do
    grep -q -- "$(echo "$o" | sed 's/-/\\\\-/g')" "$DFM_TOP/man/man1/$1.1" || \
      grep -q -- "$o" "$DFM_TOP/man/man1/$1.1" || fail "$1: option $o is not in man/man1/$1.1"
  done
}
for p in dfm-decode dfm-bucket dfm-shard dfm-vae-encode dfm-vae-decode dfm-text-encode; do
  $p --help > h 2>/dev/null || fail "$p --help exit"
  expect_grep "^usage: $p" h
  $p --version > v || fail "$p --version exit"
  expect_grep "^$p [0-9]+\.[0-9]+\.[0-9]+" v
  set +e
  $p --no-such-option > /dev/null 2>err; rc=$?
  set -e
  expect_eq "$p bad option" $rc 2
  expect_grep "hint: try '$p --help'" err
  # one error line naming the option (no getopt message before it), then the hint
  for bad in "--bogus:unknown option '--bogus'" "--bogus=1:unknown option '--bogus'" "-Y:unknown option '-Y'" \
             "--quiet=1:option '--quiet' takes no value" "--format:option '--format' needs a value" \
             "-o:option '-o' \(--output\) needs a value" "-qY:unknown option '-Y'"; do
    set +e
    $p ${bad%%:*} < /dev/null > /dev/null 2>err; rc=$?
    set -e
    expect_eq "$p ${bad%%:*} exit" $rc 2
    expect_eq "$p ${bad%%:*} lines" "$(lines err)" 2
    expect_grep "^$p: error: ${bad#*:}\$" err
  done
  # -j 0 is the default (one per core), accepted wherever -j is
  if grep -q -- '--threads' h; then
    $p -j 0 --help > /dev/null 2>err || fail "$p -j 0: $(cat err)"
    $p --threads=0 --help > /dev/null 2>err || fail "$p --threads=0: $(cat err)"
    set +e
    $p -j -1 --help > /dev/null 2>err; rc=$?
    set -e
    expect_eq "$p -j -1 exit" $rc 2
  fi
  man_agrees $p
done
[ ! -s disagree ] || { cat disagree >&2; fail "defaults in --help and the man pages disagree"; }
set +e
dfm-decode > /dev/null 2>err; rc=$?
set -e
expect_eq "decode without PATH" $rc 2
# a closed pipe ends quietly
dfm-decode "$DFM_TEST_MEDIA/media/videos" 2>err | head -c 10 > /dev/null
expect_no_grep "Broken pipe|error" err

# dfm-train, dfm-lora, dfm-sample and dfm-stats: no stream options, their own usage
for p in dfm-train dfm-lora dfm-sample dfm-stats; do
  $p --help > h 2>/dev/null || fail "$p --help exit"
  expect_grep "^usage: $p" h
  $p --version > v || fail "$p --version exit"
  expect_grep "^$p [0-9]+\.[0-9]+\.[0-9]+" v
  set +e
  $p --no-such-option > /dev/null 2>err; rc=$?
  set -e
  expect_eq "$p bad option" $rc 2
  expect_grep "hint: try '$p --help'" err
done
# dfm-stats: every option and default of --help in its man page
dfm-stats --help > h
man_agrees dfm-stats
[ ! -s disagree ] || { cat disagree >&2; fail "defaults in dfm-stats --help and its man page disagree"; }
# dfm-sample: -j 0 is the default; its man page has every option and default of --help; usage
# errors found before any model is read exit 2
dfm-sample -j 0 --help > /dev/null 2>err || fail "dfm-sample -j 0: $(cat err)"
dfm-sample --help > h
man_agrees dfm-sample
[ ! -s disagree ] || { cat disagree >&2; fail "defaults in dfm-sample --help and its man page disagree"; }
for bad in "-p x -o x.mp4|no --model DIR" "--model . -o x.mp4|no -p PROMPT or --prompts FILE" \
           "--model no-such-dir -p x -o x.mp4|--model 'no-such-dir'" \
           "--model . -p x -o x.mp4 --lora no-such.safetensors:0.5|--lora 'no-such.safetensors'" \
           "--model . -p x -o x.gif|the name must end in .mp4, .webp, .png or .npy" \
           "--model . -p x -o x.png --frames 5|a .png holds one frame" \
           "--model . -p x -o x.mp4 --lora a:inf|the scale after ':' is not finite"; do
  set +e
  dfm-sample ${bad%%|*} > /dev/null 2>err; rc=$?
  set -e
  expect_eq "dfm-sample ${bad%%|*} exit" $rc 2
  expect_grep "^dfm-sample: error: .*${bad#*|}" err
done

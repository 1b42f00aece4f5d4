# One progress line per pipeline: all stages share the terminal, so only the last stage (stdout
# not a pipe, or files written) draws it, with the count and, for file inputs, how far through
# the input it is; --progress forces a middle stage to draw, -q silences. Runs the pipelines
# under script(1) to give them a terminal; skips (77) without it.
. "$DFM_TOP/tests/lib.sh"
command -v script > /dev/null || { echo "no script(1) to make a terminal"; exit 77; }
dfm-decode "$M/images" 2>/dev/null > s.mp
# on_tty CMD: run the shell command CMD with stderr (and stdout) on a terminal; progress lines, one
# per \r redraw, into the file lines
on_tty() { script -qfec "$1" /dev/null < /dev/null | tr '\r' '\n' | sed 's/\x1b\[K//g' > lines; }
drew() { grep -Eq "^$1: [0-9]+ samples" lines; }

on_tty "dfm-shard --cat s.mp | dfm-bucket --size 32x32 | dfm-shard -o out/t-%03d.tar"
drew dfm-shard || { cat lines; fail "the last stage (shards) drew no progress"; }
drew dfm-bucket && { cat lines; fail "a middle stage drew progress"; }
expect_grep '^dfm-bucket: read 11, written 11' lines   # summaries always come
on_tty "dfm-shard --cat s.mp | dfm-bucket --size 32x32 > o.mp"
drew dfm-bucket || { cat lines; fail "the last stage (> file) drew no progress"; }
drew dfm-shard && { cat lines; fail "the first stage drew progress"; }
on_tty "dfm-bucket --size 32x32 s.mp -o o2.mp"
grep -Eq '^dfm-bucket: [0-9]+ samples.*, input [0-9]+%' lines || { cat lines; fail "no input share for a file"; }
# --progress: a middle stage draws too; -q: nobody
rm -rf out
on_tty "dfm-shard --cat s.mp | dfm-bucket --progress --size 32x32 | dfm-shard -q -o out/t-%03d.tar"
drew dfm-bucket || { cat lines; fail "--progress did not draw"; }
drew dfm-shard && { cat lines; fail "-q drew"; }
# without a terminal nothing is drawn
rm -rf out
dfm-shard --cat s.mp 2>err | dfm-bucket --size 32x32 2>>err | dfm-shard -o out/t-%03d.tar 2>>err
expect_no_grep 'samples' err

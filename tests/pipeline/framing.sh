# Framings: msgpack <-> tar <-> tar.zst convert losslessly; detection is by bytes, not names.
. "$DFM_TOP/tests/lib.sh"
dfm-decode "$M/images/wide" "$M/videos/night_drive.mkv" 2>/dev/null > s.mp
dfm-shard --list s.mp > l0 2>/dev/null
dfm-shard --cat --format tar s.mp > s.tar 2>/dev/null
dfm-shard --cat --format tar.zst s.tar > s.zst 2>/dev/null
dfm-shard --cat s.zst > back.mp 2>/dev/null
cmp -s s.mp back.mp || fail "msgpack -> tar -> tar.zst -> msgpack is not lossless"
# names lie, bytes don't
cp s.tar lies.mp; cp s.mp lies.tar
dfm-shard --list lies.mp > l1 2>/dev/null; cmp -s l0 l1 || fail "tar named .mp"
dfm-shard --list lies.tar > l2 2>/dev/null; cmp -s l0 l2 || fail "msgpack named .tar"
# every program writes tar with --format tar
dfm-decode --format tar "$M/images/wide" 2>/dev/null > d.tar
tar -tf d.tar > members
expect_grep '^images%2Fwide%2Fpanorama%2Ewebp\.txt$|^wide%2Fpanorama%2Ewebp\.txt$' members
dfm-bucket --format tar --size 32x32 s.mp 2>/dev/null | tar -tf - > m2
expect_grep '\.frames\.npy$' m2
# empty input is zero samples, not an error
: > empty
dfm-shard --list empty > l 2>err
expect_grep 'read 0, written 0, skipped 0' err
# -o writes atomically: no .tmp left, file complete
dfm-bucket --size 32x32 -o out.mp s.mp 2>/dev/null
[ -f out.mp ] && [ ! -f out.mp.tmp ] || fail "-o"
expect_eq "-o samples" "$(dfm-shard --list out.mp 2>/dev/null | wc -l | tr -d ' ')" 3

# dfm-decode on images: every caption source, formats, keys, json, shapes.
. "$DFM_TOP/tests/lib.sh"
dfm-decode "$M/images" 2>err | dfm-shard --list > list
expect_grep 'read 10, written 11, skipped 0' err
expect_eq samples "$(lines list)" 11
expect_eq "sidecar txt, cleaned" "$(field 'images%2Ffox_in_snow%2Ejpg' txt list)" "A red fox in deep snow."
expect_eq "jpeg shape" "$(field 'images%2Ffox_in_snow%2Ejpg' frames.npy list)" "u1[1,480,640,3]"
expect_eq "sidecar json" "$(field 'images%2Ftall_tree%2Epng' txt list)" "a tall pine tree"
expect_eq "meta.json items" "$(field 'images%2Fwide%2Fpanorama%2Ewebp' txt list)" "a mountain panorama at dawn"
expect_eq "meta.json filename" "$(field 'images%2Fwide%2Fstrip%2Ebmp' txt list)" "a thin strip of colour"
expect_eq "webp shape" "$(field 'images%2Fwide%2Fpanorama%2Ewebp' frames.npy list)" "u1[1,384,1024,3]"
expect_eq "captions.json 1" "$(field 'images%2Fmulti%2Fcat%2Ebmp' txt list)" "a cat on a sofa"
expect_eq "captions.json 2" "$(field 'images%2Fmulti%2Fcat%2Ebmp@c1' txt list)" "a small grey cat"
expect_eq "internvl" "$(field 'images%2Fnemo%2Ftuxemon_sample_0002%2Ejpg' txt list)" "a green monster"
expect_eq "file name" "$(field 'images%2Fgrey_square%2Epng' txt list)" "grey square"
expect_eq "grey to rgb" "$(field 'images%2Fgrey_square%2Epng' frames.npy list)" "u1[1,500,500,3]"
expect_eq "16-bit png" "$(field 'images%2Fdeep_colour%2Epng' frames.npy list)" "u1[1,600,800,3]"
j=$(field 'images%2Ffox_in_snow%2Ejpg' json list)
echo "$j" | grep -q '"source":"images/fox_in_snow.jpg"' || fail "json source: $j"
echo "$j" | grep -q '"media":"image"' || fail "json media: $j"
echo "$j" | grep -q '"width":640,"height":480' || fail "json size: $j"
echo "$j" | grep -q '"caption_source":"txt"' || fail "json caption_source: $j"
# Alpha is composited on white: red at 50% over white is (255, 128±1, 128±1).
dfm-decode "$M/images/alpha_badge.png" 2>/dev/null | dfm-shard --cat --format tar 2>/dev/null > a.tar
tar -xf a.tar
px=$(od -An -tu1 -j128 -N3 media%2Fimages%2Falpha_badge%2Epng.frames.npy | tr -s ' ')
case "$px" in " 255 12"[78]" 12"[78]) ;; *) fail "alpha over white: got '$px'";; esac
# The same input twice gives the same bytes (keys and fields are stable).
dfm-decode "$M/images" 2>/dev/null | md5sum > h1
dfm-decode "$M/images" 2>/dev/null | md5sum > h2
cmp -s h1 h2 || fail "decode output is not deterministic"
# Paths from stdin, and a file given twice gets a unique key.
printf '%s\n' "$M/images/tall_tree.png" "$M/images/tall_tree.png" | dfm-decode - 2>err | dfm-shard --list > l2
expect_eq "stdin paths" "$(cut -f1 l2 | tr '\n' ' ')" "media%2Fimages%2Ftall_tree%2Epng media%2Fimages%2Ftall_tree%2Epng@dup2 "
expect_grep "duplicate key" err

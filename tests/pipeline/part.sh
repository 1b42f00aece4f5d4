# --part K/N: N parts of a data-preparation run together give exactly the samples of one run.
#   1. dfm-decode | dfm-bucket | dfm-shard over the generated media (bad files included) with
#      --part 0/1, with 3 parts run one after the other, and with --part auto under fake
#      launcher variables (Open MPI's, then Slurm's, set by hand: no mpirun needed): each part
#      writes its own series, --merge-index writes one index over them; the union of the parts'
#      samples equals the one-part run's (same keys, same bytes per sample: the tar members
#      compared file by file), no key is in two parts, the summaries add up
#   2. the stream programs split the samples of the files they are given (bucket, shard --cat,
#      text-encode), take a stream on a pipe whole (with a warning), and dfm-shard -o selects
#      nothing
#   3. the latent chain (vae-encode, text-encode with the tiny fixtures) in 2 parts, merged: the
#      training loader (dfm-train) reads the merged directory and finds every sample
#   4. errors: a bad --part names the value (exit 2); a launcher with a bad rank (exit 2); a
#      missing or unfinished part, a merge into a series' directory (exit 1)
. "$DFM_TOP/tests/lib.sh"
FX="$DFM_TOP/tests/fixtures"
# no launcher of the machine running the tests may leak in: --part auto must be 0/1 here
for v in $(env | sed -n 's/^\(\(OMPI_COMM_WORLD\|SLURM\|PMIX\|PMI\|MPI_LOCAL\)[A-Z_]*\)=.*/\1/p'); do unset "$v"; done

# code CMD... — run CMD with stdout in out and stderr in err, print its exit status
code() { set +e; "$@" > out 2> err; echo $?; set -e; }
# unpack DIR SHARD... — every shard's members (KEY.FIELD) into DIR; a member met twice fails
unpack() {
  d=$1; shift; mkdir -p "$d"
  for s in "$@"; do
    tar -tf "$s" >> "$d.members"
    tar -xf "$s" -C "$d"
  done
  [ -z "$(sort "$d.members" | uniq -d)" ] || fail "$d: members in two shards: $(sort "$d.members" | uniq -d | head -3)"
}
# keys LISTING — the sorted keys of a --list listing
keys() { cut -f1 "$1" | sort; }
# summary ERRFILE — "READ WRITTEN SKIPPED" of the summary line
summary() { sed -n 's/^dfm-[a-z-]*: read \([0-9]*\), written \([0-9]*\), skipped \([0-9]*\),.*/\1 \2 \3/p' "$1" | tail -n 1; }

# ---- 1. decode | bucket | shard: one part, 3 parts, auto -----------------------------------
prep() { # prep PART OUTDIR — the chain with --part PART at both ends
  { dfm-decode --part "$1" "$M/images" "$M/videos" "$M/bad" 2> "dec.$2.${1%%/*}.err" | dfm-bucket -q --size 32x32 |
    dfm-shard -q --part "$1" -o "$2/train-%06d.tar" --max-count 4; } 2> "prep.$2.err" ||
    { cat "dec.$2.${1%%/*}.err" "prep.$2.err" >&2; fail "prep --part $1"; }
}
dfm-decode "$M/images" "$M/videos" "$M/bad" 2> dec.err | dfm-bucket -q --size 32x32 | dfm-shard -q -o one/train-%06d.tar --max-count 4
prep 0/1 p1
# --part 0/1 is the plain run, byte for byte, in the same place
expect_eq "--part 0/1 names" "$(cd p1 && ls | tr '\n' ' ')" "$(cd one && ls | tr '\n' ' ')"
for f in one/*; do cmp -s "$f" "p1/${f#one/}" || fail "--part 0/1: $f differs"; done
for k in 0 1 2; do prep $k/3 p3; done
expect_eq "3 parts: directories" "$(cd p3 && ls | tr '\n' ' ')" "part-00000-of-00003 part-00001-of-00003 part-00002-of-00003 "
for k in 0 1 2; do [ -f "p3/part-0000$k-of-00003/index.json" ] || fail "part $k: no index.json"; done
[ ! -e p3/index.json ] || fail "a part wrote the top index.json"
dfm-shard --merge-index p3 2> merge.err || { cat merge.err >&2; fail "--merge-index p3"; }
expect_grep "^dfm-shard: merged 3 parts: [0-9]+ shards, 16 samples, in 'p3/index.json'$" merge.err
# the merged index lists every part's shards, relative to p3, and nothing else
python3 - p3 <<'EOF' || fail "merged index: $(cat p3/index.json)"
import glob, json, os, sys
d = sys.argv[1]
j = json.load(open(os.path.join(d, "index.json")))
urls = [e["url"] for e in j["shardlist"]]
want = sorted(os.path.relpath(p, d) for p in glob.glob(os.path.join(d, "part-*", "*.tar")))
assert urls == want, (urls, want)
assert sum(e["nsamples"] for e in j["shardlist"]) == j["dfm"]["samples"] == 16
assert j["dfm"]["complete"] is True and j["dfm"]["parts"] == 3
for e in j["shardlist"]:
    assert os.path.getsize(os.path.join(d, e["url"])) == e["filesize"]
EOF
# the union of the parts is the one-part run: same keys, same bytes, no key in two parts
unpack u1 one/*.tar
unpack u3 p3/part-*/*.tar
diff -r u1 u3 > d13 || { head -5 d13 >&2; fail "3 parts differ from one run"; }
expect_eq "members of one run" "$(wc -l < u1.members | tr -d ' ')" 48
# the summaries add up: every file read once, every bad file skipped once
expect_eq "one run's decode summary" "$(summary dec.err)" "18 16 3"
expect_eq "3 parts' decode summaries added" \
  "$(for k in 0 1 2; do summary dec.p3.$k.err; done | awk '{ r += $1; w += $2; s += $3 } END { print r, w, s }')" "18 16 3"

# --part auto under Open MPI's variables (2 ranks), then Slurm's (srun sets SLURM_STEP_NUM_TASKS)
for k in 0 1; do
  OMPI_COMM_WORLD_RANK=$k OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_LOCAL_RANK=$k OMPI_COMM_WORLD_LOCAL_SIZE=2 \
    sh -c 'dfm-decode -q --part auto "$1/images" "$1/videos" "$1/bad" 2>/dev/null | dfm-bucket -q --size 32x32 |
           dfm-shard -q --part auto -o pa/train-%06d.tar --max-count 4' sh "$M" || fail "auto rank $k"
done
expect_eq "auto: directories" "$(cd pa && ls | tr '\n' ' ')" "part-00000-of-00002 part-00001-of-00002 "
dfm-shard --merge-index pa 2> merge.err || { cat merge.err >&2; fail "--merge-index pa"; }
unpack ua pa/part-*/*.tar
diff -r u1 ua > d1a || { head -5 d1a >&2; fail "auto (mpirun) parts differ from one run"; }
for k in 0 1 2 3; do
  SLURM_PROCID=$k SLURM_NTASKS=4 SLURM_STEP_NUM_TASKS=4 SLURM_LOCALID=$k \
    sh -c 'dfm-decode -q --part auto "$1/images" "$1/videos" "$1/bad" 2>/dev/null | dfm-bucket -q --size 32x32 |
           dfm-shard -q --part auto -o ps/train-%06d.tar.zst' sh "$M" || fail "auto slurm rank $k"
done
expect_eq "auto (srun): directories" "$(cd ps && ls | tr '\n' ' ')" "part-00000-of-00004 part-00001-of-00004 part-00002-of-00004 part-00003-of-00004 "
dfm-shard --list ps/part-*/*.tar.zst 2>/dev/null | keys /dev/stdin > ks
dfm-shard --list one/*.tar 2>/dev/null | keys /dev/stdin > k1
cmp -s ks k1 || fail "auto (srun): keys differ from one run"
# --part auto outside a launcher is 0/1: the plain run
dfm-decode -q --part auto "$M/images" "$M/videos" "$M/bad" 2>/dev/null | dfm-bucket -q --size 32x32 |
  dfm-shard -q --part auto -o p0/train-%06d.tar --max-count 4
for f in one/*; do cmp -s "$f" "p0/${f#one/}" || fail "--part auto without a launcher: $f differs"; done

# more parts than files: the empty parts say so and still write a (complete, empty) index
dfm-decode --part 5/6 "$M/images/wide" 2> err | dfm-shard -q --part 5/6 -o pe/x-%d.tar
expect_grep "warning: --part 5/6: no file falls to this part \(2 media files found, fewer than the parts\)" err

# ---- 2. the stream programs split files, take pipes whole -----------------------------------
dfm-decode -q "$M/images" "$M/videos" 2>/dev/null > s
dfm-bucket -q --size 32x32 s > all.b
dfm-shard --list all.b > l.all 2>/dev/null
for k in 0 1 2; do dfm-bucket -q --size 32x32 --part $k/3 s > b.$k; done
dfm-shard --list b.0 b.1 b.2 2>/dev/null | sort > l.parts
sort l.all > l.alls
cmp -s l.parts l.alls || fail "dfm-bucket --part k/3: the union differs from one run"
# part k takes samples k, k+3, ... by position
dfm-shard --list s 2>/dev/null | cut -f1 | awk 'NR % 3 == 2' > want.1
dfm-shard --list b.1 2>/dev/null | cut -f1 > got.1
cmp -s want.1 got.1 || fail "dfm-bucket --part 1/3 did not take samples 1, 4, 7, ..."
# dfm-shard --cat over shard files, auto too
for k in 0 1; do OMPI_COMM_WORLD_RANK=$k OMPI_COMM_WORLD_SIZE=2 dfm-shard --cat --part auto one/*.tar 2>/dev/null > c.$k; done
dfm-shard --list c.0 c.1 2>/dev/null | keys /dev/stdin > kc
cmp -s kc k1 || fail "dfm-shard --cat --part auto: keys differ"
[ "$(dfm-shard --list c.0 2>/dev/null | wc -l)" -eq 8 ] || fail "--cat --part 0/2: not half the samples"
# dfm-text-encode --tokens-only on a file, in 2 parts
dfm-text-encode -q --tokenizer "$FX/tokenizer/rules" --tokens-only --format tar all.b > t.all 2>/dev/null
for k in 0 1; do
  dfm-text-encode -q --tokenizer "$FX/tokenizer/rules" --tokens-only --part $k/2 --format tar all.b > t.$k 2>/dev/null
done
unpack tt.all t.all
unpack tt.parts t.0 t.1
diff -r tt.all tt.parts > dt || { head -5 dt >&2; fail "dfm-text-encode --part: the union differs"; }
expect_eq "text-encode: members" "$(wc -l < tt.all.members | tr -d ' ')" 64
# a stream on a pipe is taken whole, with a warning
cat s | dfm-bucket --size 32x32 --part 1/3 2> err > piped
expect_grep "warning: --part 1/3: the input is not a regular file .* every sample is taken" err
dfm-shard --list piped > l.piped 2>/dev/null
cmp -s l.piped l.all || fail "a piped stream with --part was not taken whole"
# dfm-shard -o selects nothing: --part only names the series
dfm-shard -q --part 2/3 -o sel/t-%d.tar s
expect_eq "shard -o --part 2/3 keeps every sample" "$(dfm-shard --list sel/part-00002-of-00003/*.tar 2>/dev/null | wc -l | tr -d ' ')" 16

# ---- 3. the latent chain in 2 parts; dfm-train reads the merged directory --------------------
latents() { latent_shards "$1" "$2/train-%06d.tar" --max-count 3; } # latents PART OUTDIR
latents 0/1 lat1
for k in 0 1; do latents $k/2 lat2; done
dfm-shard --merge-index lat2 2>/dev/null || fail "--merge-index lat2"
unpack ul1 lat1/*.tar
unpack ul2 lat2/part-*/*.tar
diff -r ul1 ul2 > dl || { head -5 dl >&2; fail "latent chain: 2 parts differ from one run"; }
cat > c.yaml <<EOF
seed: 7
model:
  path: $FX/wan_transformer_demo
  text_len: 32
data:
  batch_size: 2
train:
  max_steps: 1
  threads: 2
lora:
  rank: 4
checkpoint:
  every: 1
EOF
expect_eq "dfm-train on one run: exit" "$(code dfm-train c.yaml --data.shards lat1 --checkpoint.dir r1)" 0
n1=$(sed -n 's/^dfm-train: steps .*, \([0-9]*\) samples, .*/\1/p' err)
expect_eq "dfm-train on the merged index: exit" "$(code dfm-train c.yaml --data.shards lat2 --checkpoint.dir r2)" 0
n2=$(sed -n 's/^dfm-train: steps .*, \([0-9]*\) samples, .*/\1/p' err)
[ -n "$n1" ] || fail "no sample count in the dfm-train summary"
expect_eq "dfm-train samples: merged parts vs one run" "$n2" "$n1"
expect_eq "dfm-train on lat2/index.json: exit" "$(code dfm-train c.yaml --data.shards lat2/index.json --checkpoint.dir r3)" 0

# ---- 4. errors -------------------------------------------------------------------------------
for bad in 3/3 1/0 x -1/2 2 auto2 ""; do
  expect_eq "dfm-decode --part '$bad': exit" "$(code dfm-decode --part "$bad" "$M/images")" 2
  expect_grep "^dfm-decode: error: option '--part': '$bad'" err
done
for p in dfm-bucket dfm-vae-encode dfm-vae-decode dfm-text-encode; do
  expect_eq "$p --part 4/4: exit" "$(code $p --part 4/4 --model model s)" 2
  expect_grep "^$p: error: option '--part': '4/4': K counts from 0 and must be below N \(the parts of 4 are 0/4 \.\.\. 3/4\)" err
done
expect_eq "dfm-shard --part 1/x: exit" "$(code dfm-shard --part 1/x -o z/t-%d.tar s)" 2
expect_grep "^dfm-shard: error: option '--part': '1/x' is not K/N or auto" err
expect_eq "a rank outside the launcher's size: exit" "$(OMPI_COMM_WORLD_RANK=2 OMPI_COMM_WORLD_SIZE=2 code dfm-decode --part auto "$M/images")" 2
expect_grep "^dfm-decode: error: --part auto: launcher variable OMPI_COMM_WORLD_RANK=2 is not below OMPI_COMM_WORLD_SIZE=2" err
expect_eq "--merge-index with -o: exit" "$(code dfm-shard --merge-index p3 -o x/t-%d.tar)" 2
# a missing part
rm -r pa/part-00001-of-00002
expect_eq "--merge-index, a part missing: exit" "$(code dfm-shard --merge-index pa)" 1
expect_grep "^dfm-shard: error: part 1 of 2 is missing: no 'pa/part-00001-of-00002'" err
# an unfinished part (its run failed: "complete": false)
printf 'not a stream' | dfm-shard -q --part 1/2 -o pa/train-%06d.tar 2>/dev/null && fail "a failed part succeeded"
expect_eq "--merge-index, an unfinished part: exit" "$(code dfm-shard --merge-index pa)" 1
expect_grep "pa/part-00001-of-00002/index.json' says \"complete\": false" err
# the index of a series written in the directory itself is never replaced
expect_eq "--merge-index into a series' directory: exit" "$(code dfm-shard --merge-index one one)" 1
expect_grep "'one/index.json' already exists and is not a merged index" err
cmp -s one/index.json p1/index.json || fail "--merge-index touched one/index.json"
# parts of two runs with different N side by side
cp -r p3/part-00000-of-00003 pa/
rm -r pa/part-00001-of-00002
expect_eq "--merge-index, mixed runs: exit" "$(code dfm-shard --merge-index pa)" 1
expect_grep "different numbers of parts" err
[ -z "$(find . -name '*.tmp')" ] || fail "left .tmp files: $(find . -name '*.tmp')"

# TensorBoard reads our event files and we read its: the unit-test binary writes a resumed run
# (a crashed run purged after its checkpoint at step 9, then the resumed run's file) and three
# special values into logs/ (DFM_TB_OUT, tests/unit/test_tb_events.c), which TensorBoard's own
# EventAccumulator must read back exactly — every step once, with purge_orphaned_data off so
# TensorBoard hides no duplicate; then tensorboard's EventFileWriter writes a file (several values
# per summary, an image value, UTF-8 tags, NaN/Inf, negative and large steps) that dfm_tb_read
# must list exactly (DFM_TB_IN). Python: $DFM_PYTHON, else python3; skips (77) when it cannot
# import tensorboard (e.g. DFM_PYTHON=/tmp/venv-wan/bin/python tests/run.sh build/bin all).
. "$DFM_TOP/tests/lib.sh"
py=${DFM_PYTHON:-python3}
"$py" -c "import tensorboard" 2>/dev/null || { echo "$py cannot import tensorboard (set DFM_PYTHON)"; exit 77; }

mkdir logs
DFM_TB_OUT="$PWD/logs" dfm-unit-tests tb_events_write_for_interop > out 2>&1 || { cat out >&2; fail "writing logs/"; }
expect_grep "^1 passed, 0 failed" out
expect_eq "events files" "$(ls logs | grep -c tfevents)" 3

cat > read.py <<'PY'
import math, struct, sys
from tensorboard.backend.event_processing import event_accumulator as ea

def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]

acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0}, purge_orphaned_data=False)
acc.Reload()
got = {t: [(e.step, e.value, e.wall_time) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
bad = []
def expect(what, a, b):
    if a != b:
        bad.append("%s: got %r, want %r" % (what, a, b))

expect("tags", sorted(got), sorted(["loss/train", "lr", "m\u00e9trique/\u00e9", "special/nan",
                                    "special/inf", "special/big_step"]))
def run(tag, k, steps):  # the uninterrupted run: (k+1)/(step+1), wall 1.7e9+step (+100 resumed)
    return [(s, f32((k + 1) / (s + 1)), 1.7e9 + s + (100 if s > 9 else 0)) for s in steps]
expect("loss/train", got.get("loss/train"), run("loss/train", 0, range(15)))
expect("lr", got.get("lr"), run("lr", 1, [0, 5, 10]))
expect("m\u00e9trique/\u00e9", got.get("m\u00e9trique/\u00e9"), run("", 2, [3]))
nan = got.get("special/nan", [(0, 0.0, 0)])
expect("nan step", nan[0][0], 20)
expect("nan is nan", math.isnan(nan[0][1]), True)
expect("inf", got.get("special/inf"), [(21, math.inf, 1.7e9 + 201)])
expect("big step", got.get("special/big_step"), [(2**63 - 1, -1.5, 1.7e9 + 202)])
print("\n".join(bad) if bad else "tensorboard read %d scalars" % sum(map(len, got.values())))
sys.exit(1 if bad else 0)
PY
"$py" read.py logs > r 2>err || { cat r err >&2; fail "TensorBoard disagrees with dfm's events files"; }
expect_grep "^tensorboard read 22 scalars" r

cat > write.py <<'PY'
import glob, sys
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.compat.proto import event_pb2, summary_pb2
V = summary_pb2.Summary.Value
w = EventFileWriter("pylogs")
rows = []
def add(step, wall, values):
    w.add_event(event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(value=values)))
    rows.extend((v.tag, step, v.simple_value, wall) for v in values if v.HasField("simple_value"))
add(0, 1.5e9, [V(tag="loss", simple_value=2.5)])
add(1, 1.5e9 + 0.25, [V(tag="loss", simple_value=2.25), V(tag="grad/norm", simple_value=float("nan")),
                      V(tag="img", image=summary_pb2.Summary.Image(height=1, width=1)),
                      V(tag="\u635f\u5931/\U0001f525", simple_value=float("-inf"))])
w.add_event(event_pb2.Event(wall_time=1.5e9 + 1, step=2, file_version="brain.Event:2"))
add(-7, 0.0, [V(tag="neg", simple_value=-0.0)])
add(2**62 + 3, 1.5e9 + 3, [V(tag="loss", simple_value=1e-30)])
w.close()
print(glob.glob("pylogs/*tfevents*")[0])
with open("want", "w", encoding="utf-8") as f:
    for t, s, v, wt in rows:
        f.write("%s\t%d\t%r\t%r\n" % (t, s, v, wt))
PY
"$py" write.py > pyfile 2>err || { cat err >&2; fail "tensorboard's EventFileWriter"; }
DFM_TB_IN="$(cat pyfile)" DFM_TB_LIST="$PWD/got" dfm-unit-tests tb_events_read_for_interop > out 2>&1 || { cat out >&2; fail "dfm_tb_read on tensorboard's file"; }
cat > cmp.py <<'PY'
import math, struct, sys
def rows(path):
    out = []
    for line in open(path, encoding="utf-8"):
        t, s, v, w = line.rstrip("\n").split("\t")
        v = float(v)
        out.append((t, int(s), "nan" if math.isnan(v) else struct.pack("<f", v).hex(), float(w)))
    return out
got, want = rows("got"), rows("want")
if got != want:
    print("dfm read:\n%s\ntensorboard wrote:\n%s" % ("\n".join(map(repr, got)), "\n".join(map(repr, want))))
    sys.exit(1)
print("dfm read %d scalars" % len(got))
PY
"$py" cmp.py > r || { cat r >&2; fail "dfm_tb_read disagrees with tensorboard's writer"; }
expect_grep "^dfm read 6 scalars" r

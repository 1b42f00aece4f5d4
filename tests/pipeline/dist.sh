# lib/dist: every collective as a job of one and under mpirun -np 2 and -np 3, checked bit for bit
# against rank-ordered sums computed in each rank (dfm-dist-check, tests/dist/dist_check.c); the
# same bits on a second run; the error without the MPI plugin; and jobs that lose a rank (one
# exits, one hangs past the deadline, one calls dfm_dist_abort) end with an error, not a hang.
. "$DFM_TOP/tests/lib.sh"

# A job of one needs no MPI: no launcher, or a launcher of size 1.
dfm-dist-check > one 2>err || { cat err >&2; fail "a job of one"; }
expect_grep '^rank 0 of 1 backend single digest [0-9a-f]{16} order-sensitive 0$' one
OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=1 dfm-dist-check > one1 2>err || { cat err >&2; fail "mpirun size 1"; }
cmp -s one one1 || fail "a launcher of size 1 differs from none: $(cat one1)"
rc=0; dfm-dist-check --fail abort > /dev/null 2>err || rc=$?
expect_eq "dfm_dist_abort as a job of one: status" "$rc" 5
expect_grep '^dfm: rank 0 of 1: dfm-dist-check: asked to fail \(--fail abort\)$' err

# Without dfm-dist-mpi.so next to the program: a clear error (the launcher's variables suffice).
mkdir noplugin && cp "$(command -v dfm-dist-check)" noplugin/
rc=0; OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2 DFM_DIST_PLUGIN= noplugin/dfm-dist-check > /dev/null 2>err || rc=$?
expect_eq "no plugin: status" "$rc" 1
expect_grep 'error: launched as rank 1 of 2 by mpirun, but dfm was built without Open MPI \(no dfm-dist-mpi.so next to the executable in .*/noplugin, .*\): install libopenmpi-dev' err
rc=0; OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_LOCAL_RANK=x dfm-dist-check > /dev/null 2>err || rc=$?
expect_eq "malformed launcher variable: status" "$rc" 1
expect_grep "OMPI_COMM_WORLD_LOCAL_RANK='x' is not a non-negative integer" err

# N ranks (skips here without mpirun or the plugin): every rank checks every result; two runs
# print the same digests.
for n in 2 3; do
  mpirun_n $n dfm-dist-check > run1 2>err || { cat run1 err >&2; fail "mpirun -np $n"; }
  mpirun_n $n dfm-dist-check > run2 2>err || { cat run2 err >&2; fail "mpirun -np $n (again)"; }
  sort run1 > np$n.a; sort run2 > np$n.b
  expect_eq "-np $n: ranks reporting" "$(grep -c "^rank [0-9] of $n backend mpi digest " np$n.a)" "$n"
  cmp -s np$n.a np$n.b || { cat np$n.a np$n.b >&2; fail "-np $n: results differ between two runs"; }
done
# With 3 ranks a sum's order shows in its bits (reverse order differs for many elements), so the
# bit-for-bit comparison with the rank-ordered sum is a real check.
awk '$NF + 0 < 1000 { bad = 1 } END { exit bad }' np3.a || { cat np3.a >&2; fail "-np 3: sums are not order-sensitive"; }

# A rank exits before its first collective: the job ends with an error.
rc=0; mpirun_n 2 dfm-dist-check --timeout 5 --fail exit > /dev/null 2>err || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || { cat err >&2; fail "a rank exits: status $rc"; }
expect_grep 'exit code|exited|did not complete' err
# A rank hangs: the others' deadline (2 s) reports it and takes the job down.
rc=0; mpirun_n 3 dfm-dist-check --timeout 2 --fail hang > /dev/null 2>err || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || { cat err >&2; fail "a rank hangs: status $rc"; }
expect_grep '^dfm: rank [01] of 3: allreduce of 1 element did not complete in 2 s \(a rank died or hangs\); aborting the job$' err
# dfm_dist_abort on one rank ends every rank.
rc=0; mpirun_n 2 dfm-dist-check --fail abort > /dev/null 2>err || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || { cat err >&2; fail "dfm_dist_abort: status $rc"; }
expect_grep '^dfm: rank 1 of 2: dfm-dist-check: asked to fail \(--fail abort\)$' err

#!/bin/sh
# tests/cli_elastic.sh -- the elastic grid: `dist.data: auto` and lists of head and context
# sizes. A run started on 4 ranks (data 2 x heads 2), preempted, resumed on 3 ranks (heads 2 no
# longer divides the world: data 3 x heads 1) and then on 2 gives the losses of the
# uninterrupted one-rank run within 1e-5; so does a grid whose data ranks do not divide the
# micro-batch (3 ranks, micro_batch 4 x grad_accum 3 becomes 3 x 4: the same 12 sequences a
# step). Rank 0 names the grid it chose and why; a world no choice fits is one line, exit 2.
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" train.steps=9 \
    train.micro_batch=12 run.ckpt_every=0 train.threads=1 train.val_every=3 'dist.heads=[2, 1]'

expect_exit 0 "uninterrupted on one rank" "$HW" train "$@" run.dir="$T/u"
ok "  one rank: heads 2 skipped" grep -q "grid chosen for 1 ranks: data 1 (auto), heads 1, context 1 (skipped: heads 2 x context 1 does not divide 1 ranks)" "$T/out"
HW_STOP_AFTER_STEP=3 expect_exit 4 "4 ranks (data auto x heads [2, 1]), preempted at 3" \
    $MPIRUN -np 4 -x HW_STOP_AFTER_STEP "$HW" train "$@" run.dir="$T/e"
ok "  4 ranks: data 2 x heads 2" grep -q "grid chosen for 4 ranks: data 2 (auto), heads 2, context 1$" "$T/out"
HW_STOP_AFTER_STEP=6 expect_exit 4 "resumed on 3 ranks, preempted at 6" \
    $MPIRUN -np 3 -x HW_STOP_AFTER_STEP "$HW" train "$@" run.dir="$T/e"
unset HW_STOP_AFTER_STEP
ok "  3 ranks: data 3 x heads 1, heads 2 skipped" grep -q "grid chosen for 3 ranks: data 3 (auto), heads 1, context 1 (skipped: heads 2 x context 1 does not divide 3 ranks)" "$T/out"
ok "  resumed from the 4-rank checkpoint" grep -q "resumed from $T/e/ckpt_00000003.h5 at step 3" "$T/out"
expect_exit 0 "resumed on 2 ranks to step 9" $MPIRUN -np 2 "$HW" train "$@" run.dir="$T/e"
ok "  2 ranks: heads 2" grep -q "grid chosen for 2 ranks: data 1 (auto), heads 2, context 1" "$T/out"
metric_lines "$T/u/metrics.jsonl" >"$T/mu"
metric_lines "$T/e/metrics.jsonl" >"$T/me"
ok "  9 steps logged" test "$(wc -l <"$T/me")" = 9
ok "  losses and gradient norms of the one-rank run (rel 1e-5)" close "$T/mu" "$T/me" 1e-5
vals() { sed -n 's/.*"val_loss":\([^,}]*\).*/\1/p' "$1"; }
vals "$T/u/metrics.jsonl" >"$T/vu"
vals "$T/e/metrics.jsonl" >"$T/ve"
ok "  validation losses too (3 of them)" sh -c "test \$(wc -l <'$T/ve') = 3 && awk 'NR==FNR{a[FNR]=\$1;next}{d=a[FNR]-\$1;if(d<0)d=-d;if(d>1e-5*\$1)exit 1}' '$T/vu' '$T/ve'"

# the global batch kept when the data ranks do not divide the micro-batch
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" train.steps=4 \
    train.micro_batch=4 train.grad_accum=3 run.ckpt_every=0 train.threads=1
expect_exit 0 "micro_batch 4 x grad_accum 3 on one rank" "$HW" train "$@" run.dir="$T/b1"
expect_exit 0 "  on 3 ranks (data auto)" $MPIRUN -np 3 "$HW" train "$@" run.dir="$T/b3"
ok "  becomes 3 x 4" grep -q "global batch 12 sequences: micro_batch 4 x grad_accum 3 becomes 3 x 4 (3 data ranks)" "$T/out"
metric_lines "$T/b1/metrics.jsonl" >"$T/m1"
metric_lines "$T/b3/metrics.jsonl" >"$T/m3"
ok "  the same losses (rel 1e-5)" close "$T/m1" "$T/m3" 1e-5

# nothing fits
expect_exit 2 "5 ranks and a global batch of 12" $MPIRUN -np 5 "$HW" train "$@" \
    run.dir="$T/x5"
err_has "error: dist: no grid fits the job's 5 ranks: data 5 does not divide the global batch of 4 x 3 sequences"
ok "  one line" test "$(grep -c 'no grid fits' "$T/err")" = 1
ok "  nothing written" test ! -e "$T/x5"
expect_exit 2 "dist.data 2 on 3 ranks" $MPIRUN -np 3 "$HW" train "$@" dist.data=2 run.dir="$T/x3"
err_has "<override 8>:1:11: error: dist: no grid fits the job's 3 ranks: heads 1 x context 1 leaves data 3, not a dist.data value"
finish

#!/bin/sh
# tests/cli_rec.sh -- the rec model end to end: a small synthetic DARE run writes metrics with
# validation AUC, a checkpoint (parameters by name, BatchNorm statistics, moments) and the
# results JSON; a resumed run continues with the same losses; 2 and 4 ranks (tables split by
# rows) give the losses and scores of one rank; headwise eval rescoring on 1 and 2 ranks; the
# LM option model.embedding dare (train, sample, head/context parallel, resume guard); bad data and
# config errors fail with one line.
. tests/lib.sh
set -- configs/rec-synth.yaml rec.synth_users=200 rec.synth_items=300 rec.max_len=20 \
    rec.top_k=5 rec.hidden1=16 rec.hidden2=8 rec.train_targets=3 train.micro_batch=60 \
    train.log_every=5 train.threads=1
expect_exit 0 "synthetic DARE, 2 epochs" "$HW" train "$@" run.dir="$T/one"
R=$T/one/eval/results_rec.json
ok "  results JSON has val/test auc, gauc, logloss" python3 -c "
import json,sys; r=json.load(open('$R'))['results']
for s in ('rec_val','rec_test'):
    for k in ('auc','gauc','logloss','auc_calc_ref'): assert 0 < r[s][k] < 5, (s,k,r[s][k])
assert r['rec_test']['samples'] == 600"
ok "  metrics.jsonl has val_auc" grep -q '"val_auc"' "$T/one/metrics.jsonl"
ok "  checkpoint stores tables, MLP and BN statistics by name" sh -c \
    "$HW ckpt verify $T/one/ckpt_00000058.h5 | grep -q 'checksums ok' && \
     h5ls -r $T/one/ckpt_*.h5 | grep -q 'model/emb_attn.item' && \
     h5ls -r $T/one/ckpt_*.h5 | grep -q 'model/mlp.bn.running_var'"
loss_at() { sed -n 's/.*"step":\([0-9]*\),"loss":\([^,]*\),.*/\1 \2/p' "$1"; }
loss_at "$T/one/metrics.jsonl" >"$T/l1"
# resume: one epoch, then the second from its checkpoint
expect_exit 0 "first epoch" "$HW" train "$@" rec.epochs=1 run.dir="$T/res"
expect_exit 0 "resume for the second" "$HW" train "$@" run.resume=auto run.dir="$T/res"
ok "  resumed from the checkpoint" grep -q "resumed from .* at step 29" "$T/out" "$T/err"
loss_at "$T/res/metrics.jsonl" >"$T/l2"
ok "  same losses as the uninterrupted run" cmp -s "$T/l1" "$T/l2"
if command -v mpirun >/dev/null; then
    for np in 2 4; do
        expect_exit 0 "np $np: tables split by rows" $MPIRUN -np $np "$HW" train "$@" \
            dist.data=$np run.dir="$T/np$np"
        ok "  tables sharded" grep -q "split by rows over $np rank" "$T/out" "$T/err"
        loss_at "$T/np$np/metrics.jsonl" >"$T/ln"
        ok "  losses of one rank (rel 1e-5)" awk 'NR==FNR { a[$1] = $2; next }
            { d = a[$1] - $2; if (d < 0) d = -d; if (d > 1e-5 * ($2 < 0 ? -$2 : $2)) bad = 1 }
            END { exit bad }' "$T/l1" "$T/ln"
        ok "  test AUC of one rank (1e-4)" python3 -c "
import json; a=json.load(open('$R'))['results']; b=json.load(open('$T/np$np/eval/results_rec.json'))['results']
assert abs(a['rec_test']['auc']-b['rec_test']['auc']) < 1e-4, (a['rec_test'], b['rec_test'])"
    done
    # a table set over one rank's budget: refused on 1 rank, trains on 4
    expect_exit 2 "tables over the per-rank budget on 1 rank" "$HW" train "$@" \
        rec.table_budget_mb=0.05 run.dir="$T/budget1"
    err_has "rec.table_budget_mb: the tables need"
    expect_exit 0 "  the same budget on 4 ranks trains" $MPIRUN -np 4 "$HW" train "$@" \
        dist.data=4 rec.table_budget_mb=0.05 run.dir="$T/budget4"
else
    echo "SKIP np 2/4: mpirun not installed"
fi
# headwise eval rebuilds the model from the checkpoint alone, on any rank count
expect_exit 0 "eval --tasks rec on the run directory" "$HW" eval --ckpt "$T/one" --tasks rec \
    --output "$T/ev1"
if command -v mpirun >/dev/null; then
    expect_exit 0 "  the same on 2 ranks" $MPIRUN -np 2 "$HW" eval --ckpt "$T/one" --tasks rec \
        --output "$T/ev2"
    ok "  same scores" python3 -c "
import json,glob; a=json.load(open(glob.glob('$T/ev1/results_*.json')[0]))['results']
b=json.load(open(glob.glob('$T/ev2/results_*.json')[0]))['results']
for s in ('rec_val','rec_test'):
    for k in ('auc','gauc','logloss'): assert abs(a[s][k]-b[s][k]) < 1e-6, (s,k,a[s][k],b[s][k])"
fi
# the language-model option: model.embedding dare (attention table for the first layer's Q/K)
D=$T/lmdata
prepare_tiny "$D"
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" model.n_kv_heads=4 \
    train.steps=4 run.ckpt_every=0 train.threads=1 model.embedding=dare
expect_exit 0 "LM with model.embedding dare" "$HW" train "$@" run.dir="$T/lm1"
ok "  checkpoint holds tok_emb_attn" sh -c "h5ls -r $T/lm1/ckpt_00000004.h5 | grep -q 'model/tok_emb_attn.weight'"
expect_exit 0 "  sample from it" "$HW" sample "$T/lm1" --tokens 4 --prompt "copy ab"
if command -v mpirun >/dev/null; then
    expect_exit 0 "  heads 2" $MPIRUN -np 2 "$HW" train "$@" dist.heads=2 run.dir="$T/lm2"
    ok "  same losses as one rank" sh -c "[ \"\$(grep -o '\"loss\":[^,]*' $T/lm1/metrics.jsonl)\" = \
        \"\$(grep -o '\"loss\":[^,]*' $T/lm2/metrics.jsonl)\" ]"
    expect_exit 0 "  context 2 (ulysses)" $MPIRUN -np 2 "$HW" train "$@" dist.context=2 \
        dist.context_mode=ulysses run.dir="$T/lm3"
    ok "  same losses as one rank" sh -c "[ \"\$(grep -o '\"loss\":[^,]*' $T/lm1/metrics.jsonl)\" = \
        \"\$(grep -o '\"loss\":[^,]*' $T/lm3/metrics.jsonl)\" ]"
fi
expect_exit 2 "  resuming an ordinary run as dare is refused" "$HW" train configs/tiny.yaml \
    data.train="$D/train.h5" data.val="$D/val.h5" model.n_kv_heads=4 train.steps=6 \
    run.ckpt_every=0 train.threads=1 run.dir="$T/lm1" run.resume=auto
err_has "does not match"
# bad data: one line with file:line
mkdir -p "$T/ml"
printf '1|A|x||u|0|0|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n' >"$T/ml/u.item"
printf '1\t1\t5\t10\n1\t7\t5\t11\n' >"$T/ml/u.data"
expect_exit 1 "unknown item" "$HW" train configs/rec-movielens.yaml rec.path="$T/ml" \
    run.dir="$T/bad"
err_has "$T/ml/u.data:2: error: item 7 is not in u.item"
printf '1\t1\t5\n' >"$T/ml/u.data"
expect_exit 1 "malformed row" "$HW" train configs/rec-movielens.yaml rec.path="$T/ml" \
    run.dir="$T/bad"
err_has "$T/ml/u.data:1: error: expected 4 tab-separated integers"
expect_exit 2 "twin_proj needs the rec family" "$HW" train configs/tiny.yaml \
    model.embedding=twin_proj
err_has "twin_proj exists only for model.family rec"
expect_exit 2 "top_k > max_len" "$HW" train configs/rec-synth.yaml rec.max_len=20 rec.top_k=30
err_has "rec.top_k 30 exceeds rec.max_len 20"
finish

#!/bin/sh
# tests/cli_gpu.sh -- `headwise train` on the cuda backend against the cpu backend, end to end
# (issue 16's GPU checks that need no bf16): 20 steps of the tiny model on one GPU give the CPU's
# losses and gradient norms within rel 1e-4 (dense GQA, MoH + S2, Titans MAL + MAG, Titans MAC +
# memory-only), and sampling a Titans checkpoint on the GPU gives the CPU's text; the rec model
# (DARE) gives the CPU's losses and scores, and its tables split over two ranks; conditional SFT
# gives the CPU's losses and `eval` on the GPU the CPU's scores, and so does the classifier head;
# two ranks sharing the GPU
# (their collectives staged through pinned host memory: dist/stage.c) on data 2, heads 2,
# context 2 ring and context 2 Ulysses give the one-GPU losses within rel 1e-5; a GPU
# checkpoint resumes on the CPU and a CPU checkpoint on the GPU with the losses of an
# uninterrupted run (rel 1e-4); the layout table names every rank's GPU; train.precision bf16
# tracks fp32 over 300 steps (10-step means within 2 %) and two ranks in bf16 agree with one;
# dist.transport nccl on one rank (the only NCCL run one GPU allows).
# Without a CUDA build or a GPU it exits 77 (skipped) and says why. Run by tools/device_check.sh
# on the GPU machine with the CUDA build: sh tests/cli_gpu.sh build/cuda/headwise
. tests/lib.sh
D=$T/data
prepare_tiny "$D" || exit 1
LM="configs/tiny.yaml data.train=$D/train.h5 data.val=$D/val.h5 model.n_kv_heads=2
    train.steps=20 train.val_every=10 train.val_batches=1 run.ckpt_every=0 train.threads=1"
"$HW" train $LM train.steps=3 run.backend=cuda run.dir="$T/probe" >"$T/probe.out" 2>&1
rc=$?
if [ $rc != 0 ]; then
    why=$(grep -m1 -E "CUDA|cuda" "$T/probe.out")
    echo "SKIP cli_gpu: no GPU run possible here (exit $rc: ${why:-see below})"
    [ -n "$why" ] || tail -3 "$T/probe.out"
    [ $rc = 2 ] && exit 77
    exit 1
fi
# steps_close A B N TOL: both metric_lines files have N steps and agree within rel TOL
steps_close() {
    [ "$(wc -l <"$1")" = "$3" ] && [ "$(wc -l <"$2")" = "$3" ] && close "$1" "$2" "$4"
}
# both NAME ARGS...: the same run on the cpu and on the cuda backend, one rank
# pair BASE NAME STEPS ARGS...: the same run of config BASE on both backends, STEPS steps
pair() {
    base=$1 name=$2 steps=$3
    shift 3
    expect_exit 0 "$name: cpu" "$HW" train $base "$@" run.dir="$T/$name.cpu"
    expect_exit 0 "$name: cuda" "$HW" train $base "$@" run.backend=cuda run.dir="$T/$name.gpu"
    metric_lines "$T/$name.cpu/metrics.jsonl" >"$T/$name.mc"
    metric_lines "$T/$name.gpu/metrics.jsonl" >"$T/$name.mg"
    ok "  $steps steps: the GPU's losses and grad norms are the CPU's (rel 1e-4)" \
        steps_close "$T/$name.mc" "$T/$name.mg" "$steps" 1e-4
}
both() {
    name=$1
    shift
    pair "$LM" "$name" 20 "$@"
}
both dense
ok "  the layout names the GPU" grep -q "rank 0: .*cuda:0 " "$T/out"
both moh_s2 "model.attention.layers=[moh, mha]" "model.moh={shared_heads: 1, top_k: 2}" \
    "model.sparsity={kind: s2, block: 16, local_blocks: 1, vert_stride: 2, dense_layers: [1]}"
# the Titans memory (ops/titans_cuda.cu): MAL + MAG with a depth-2 memory, conv and clamp; MAC +
# memory-only with a linear memory, theta per chunk and the recomputing backward
MALMAG="model.memory={layers: [mal, mag], heads: 2, chunk: 4, ttt_batch: 8, conv: 2, max_grad_norm: 1.0}"
both mal_mag "$MALMAG" run.ckpt_every=20
both mac_memory "model.memory={layers: [mac, memory], heads: 2, chunk: 2, ttt_batch: 8, segment: 16, persistent: 4, depth: 1, theta_per_chunk: true, recompute: true}"
# token-by-token decoding of the memory on the GPU: the same greedy text as the CPU's
for be in cpu cuda; do
    expect_exit 0 "sample the MAL + MAG checkpoint ($be)" "$HW" sample --ckpt "$T/mal_mag.cpu" \
        --prompt "To be" --tokens 24 --top-k 1 --backend $be
    cp "$T/out" "$T/mal_mag.sample.$be"
done
ok "  the GPU samples the CPU's text" cmp "$T/mal_mag.sample.cpu" "$T/mal_mag.sample.cuda"
expect_exit 0 "2 ranks on one GPU: Titans chain over context 2" $MPIRUN -np 2 "$HW" train $LM \
    "$MALMAG" dist.context=2 dist.context_mode=ring run.backend=cuda run.dir="$T/r2mem"
metric_lines "$T/r2mem/metrics.jsonl" >"$T/r2mem.m"
ok "  the one-GPU losses (rel 1e-5)" steps_close "$T/mal_mag.mg" "$T/r2mem.m" 20 1e-5

# conditional SFT on the GPU (train.task sft from a pretrained checkpoint: packed conversations,
# the added [IND] row, response-only loss) against the CPU, then `headwise eval` of that
# checkpoint with run.backend cuda (perplexity, RoleMRC fixtures, synthetic recall: greedy
# generation) against the CPU's results
P256="configs/tiny.yaml data.train=$D/train.h5 data.val=$D/val.h5 model.max_seq=256 train.threads=1"
expect_exit 0 "pretrain for SFT (cpu)" "$HW" train $P256 run.dir="$T/pre"
i=0
while [ $i -lt 12 ]; do
    cat >>"$T/conv.jsonl" <<EOF
{"id": "s$i", "conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "the code is $i$i. what is the code"}, {"from": "gpt", "value": "$i$i"}]}
{"question": [{"role": "User", "content": "name $i"}], "reference": "n$i", "task": "k"}
EOF
    i=$((i + 1))
done
SFT="train.task=sft train.init_from=$T/pre/ckpt_00000012.h5 data.train= data.val=
    sft.train=$T/conv.jsonl sft.val=$T/conv.jsonl train.seq_len=256 train.steps=6
    train.warmup=1 train.val_every=3"
pair "$P256 $SFT" sft 6
for be in cpu cuda; do
    expect_exit 0 "eval the SFT checkpoint ($be)" "$HW" eval --ckpt "$T/sft.cpu/ckpt_00000006.h5" \
        --tasks perplexity,rolemrc,synth --perplexity-data "$D/val.h5" \
        --rolemrc-data tests/fixtures/rolemrc_fixture.jsonl --limit 20 --output "$T/ev.$be" \
        eval.max_new_tokens=16 eval.bootstrap_iters=50 run.backend=$be
done
ok "  the GPU's scores are the CPU's (rel 1e-4)" python3 -c "
import glob, json
def res(d):
    return json.load(open(glob.glob(d + '/results*.json')[0]))['results']
a, b = res('$T/ev.cpu'), res('$T/ev.cuda')
def walk(x, y, path):
    if isinstance(x, dict):
        assert set(x) == set(y), path
        for k in x:
            walk(x[k], y[k], path + '.' + k)
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        assert abs(x - y) <= 1e-4 * max(1.0, abs(x)), (path, x, y)
walk(a, b, 'results')"

# the classifier head (train.task classify) on a generated MultiFC-style file (../shared does not
# travel to the GPU machine): fine-tuned from the pretrained checkpoint on the GPU against the
# CPU, and `eval --tasks multifc_classify` on the GPU against the CPU
python3 -c "
import random
r = random.Random(7)
print('claimID,claim,label')
for i in range(160):
    dom = ('pomt', 'snes', 'tron')[i % 3]
    lab = ('true', 'false')[(i // 3) % 2]
    words = ' '.join(r.choice(('tax', 'bridge', 'cat', 'tram', 'moon', 'vote', 'city', 'rain'))
                     for _ in range(6))
    print('%s-%05d,Says the %s %s,%s' % (dom, i, words, 'is real' if lab == 'true' else 'never happened', lab))
" >"$T/mfc.csv"
CLS="train.task=classify data.multifc=$T/mfc.csv train.init_from=$T/pre/ckpt_00000012.h5
    train.steps=6 train.val_every=3 run.ckpt_every=6"
pair "$P256 $CLS" cls 6
for be in cpu cuda; do
    expect_exit 0 "eval multifc_classify ($be)" "$HW" eval --ckpt "$T/cls.cpu/ckpt_00000006.h5" \
        --tasks multifc_classify --output "$T/ce.$be" run.backend=$be
done
ok "  the GPU's F1 and accuracy are the CPU's" python3 -c "
import json
a = json.load(open('$T/ce.cpu/results_ckpt_00000006.json'))['results']
b = json.load(open('$T/ce.cuda/results_ckpt_00000006.json'))['results']
assert a == b, (a, b)"

# the rec model (ops/rec_cuda.cu): DARE with the auxiliary loss on one GPU against the CPU, then
# its tables split by rows over two ranks sharing the GPU (lookups and gradient scatters through
# the backend, dist/emb_shard.c)
REC="configs/rec-synth.yaml rec.synth_users=200 rec.synth_items=300 rec.max_len=20 rec.top_k=5
    rec.hidden1=16 rec.hidden2=8 rec.train_targets=3 train.micro_batch=60 train.log_every=1
    train.threads=1 rec.epochs=1"
rec_losses() { sed -n 's/.*"step":\([0-9]*\),"loss":\([^,]*\),.*/\1 \2 0 0/p' "$1"; }
expect_exit 0 "rec dare + aux: cpu" "$HW" train $REC run.dir="$T/rec.cpu"
expect_exit 0 "rec dare + aux: cuda" "$HW" train $REC run.backend=cuda run.dir="$T/rec.gpu"
rec_losses "$T/rec.cpu/metrics.jsonl" >"$T/rec.mc"
rec_losses "$T/rec.gpu/metrics.jsonl" >"$T/rec.mg"
ok "  29 steps: the GPU's losses are the CPU's (rel 1e-6)" \
    steps_close "$T/rec.mc" "$T/rec.mg" 29 1e-6
ok "  the GPU's val/test AUC, GAUC and log-loss are the CPU's (1e-6)" python3 -c "
import json
a = json.load(open('$T/rec.cpu/eval/results_rec.json'))['results']
b = json.load(open('$T/rec.gpu/eval/results_rec.json'))['results']
for s in ('rec_val', 'rec_test'):
    for k in ('auc', 'gauc', 'logloss'):
        assert abs(a[s][k] - b[s][k]) <= 1e-6, (s, k, a[s][k], b[s][k])"
expect_exit 0 "eval --tasks rec of the CPU's checkpoint on the GPU" "$HW" eval --ckpt "$T/rec.cpu" \
    --tasks rec --output "$T/rec.ev" run.backend=cuda
ok "  the training run's own scores (1e-6)" python3 -c "
import glob, json
a = json.load(open('$T/rec.cpu/eval/results_rec.json'))['results']
b = json.load(open(glob.glob('$T/rec.ev/results_*.json')[0]))['results']
for s in ('rec_val', 'rec_test'):
    for k in ('auc', 'gauc', 'logloss'):
        assert abs(a[s][k] - b[s][k]) <= 1e-6, (s, k, a[s][k], b[s][k])"
expect_exit 0 "rec, 2 ranks on one GPU: tables split by rows" $MPIRUN -np 2 "$HW" train $REC \
    dist.data=2 run.backend=cuda run.dir="$T/rec.r2"
rec_losses "$T/rec.r2/metrics.jsonl" >"$T/rec.r2.m"
ok "  the one-GPU losses (rel 1e-5)" steps_close "$T/rec.mg" "$T/rec.r2.m" 29 1e-5

# two ranks sharing the GPU: every collective staged through pinned host memory
for grid in "dist.data=2" "dist.heads=2" "dist.context=2 dist.context_mode=ring" \
    "dist.context=2 dist.context_mode=ulysses"; do
    tag=$(echo "$grid" | tr -c 'a-z0-9\n' '_')
    expect_exit 0 "2 ranks on one GPU: $grid" $MPIRUN -np 2 "$HW" train $LM $grid \
        run.backend=cuda run.dir="$T/r2$tag"
    metric_lines "$T/r2$tag/metrics.jsonl" >"$T/r2$tag.m"
    ok "  the one-GPU losses (rel 1e-5)" steps_close "$T/dense.mg" "$T/r2$tag.m" 20 1e-5
    ok "  staged bytes reported" grep -q '"staged_bytes"' "$T/r2$tag/metrics.jsonl"
done
ok "  the layout names the shared GPU" grep -q "rank 1: .*cuda:0 .*shared by 2 ranks" "$T/out"

# bf16 mixed precision: 300 steps of the tiny model track the fp32 curve (10-step means within
# 2 %); two ranks sharing the GPU in bf16 give the one-GPU bf16 losses within bf16 tolerance
B16="train.steps=300 train.val_every=0 train.log_every=1 run.backend=cuda"
expect_exit 0 "bf16: 300 steps on the GPU" "$HW" train $LM $B16 train.precision=bf16 \
    run.dir="$T/b16"
ok "  the start line says bf16" grep -q "backend cuda bf16" "$T/out"
expect_exit 0 "fp32: the same 300 steps" "$HW" train $LM $B16 run.dir="$T/f32"
means_close() { # A B TOL: 10-step means of the losses agree within rel TOL
    paste "$1" "$2" | awk -v tol="$3" '{ a += $2; b += $6; k++ }
        k == 10 { r = (b - a) / a; if (r < 0) r = -r; if (r > m) m = r; a = b = k = 0; n++ }
        END { printf "     max relative difference of 10-step means: %.3f%%\n", 100 * m;
              exit !(n == 30 && m < tol) }'
}
metric_lines "$T/b16/metrics.jsonl" >"$T/b16.m"
metric_lines "$T/f32/metrics.jsonl" >"$T/f32.m"
ok "  bf16 tracks fp32 (10-step means within 2 %)" means_close "$T/f32.m" "$T/b16.m" 0.02
ok "  and is not fp32 (the losses differ)" sh -c "! cmp -s '$T/f32.m' '$T/b16.m'"
expect_exit 0 "bf16, 2 ranks on one GPU (data 2)" $MPIRUN -np 2 "$HW" train $LM dist.data=2 \
    run.backend=cuda train.precision=bf16 run.dir="$T/b16r2"
expect_exit 0 "bf16, one GPU" "$HW" train $LM run.backend=cuda train.precision=bf16 \
    run.dir="$T/b16r1"
metric_lines "$T/b16r1/metrics.jsonl" >"$T/b16r1.m"
metric_lines "$T/b16r2/metrics.jsonl" >"$T/b16r2.m"
ok "  the one-GPU bf16 losses (rel 2e-2)" steps_close "$T/b16r1.m" "$T/b16r2.m" 20 2e-2

# dist.transport: nccl. The GPU machine has one GPU and NCCL takes one GPU a rank, so only one
# rank can run it here: its communicators (of one rank) are built and the losses are the
# one-GPU run's; two ranks on the one GPU must fail cleanly (NCCL refuses a duplicate GPU), not
# hang. Docs: docs/gpu.md.
expect_exit 0 "dist.transport nccl, one rank" "$HW" train $LM run.backend=cuda \
    dist.transport=nccl run.dir="$T/nccl1"
ok "  NCCL named at start-up" grep -q "dist.transport nccl: NCCL [0-9]" "$T/out"
metric_lines "$T/nccl1/metrics.jsonl" >"$T/nccl1.m"
ok "  the one-GPU losses" steps_close "$T/dense.mg" "$T/nccl1.m" 20 1e-6
timeout 120 $MPIRUN -np 2 "$HW" train $LM run.backend=cuda dist.data=2 dist.transport=nccl \
    run.dir="$T/nccl2" >"$T/nccl2.out" 2>&1
rc=$?
ok "  2 ranks on one GPU with NCCL: ended (exit $rc), not hung, NCCL named" sh -c \
    "[ $rc != 0 ] && [ $rc != 124 ] && grep -qi nccl '$T/nccl2.out'"

# checkpoints cross backends: GPU -> CPU and CPU -> GPU continue the uninterrupted run
R="train.steps=20 run.ckpt_every=10"
HW_STOP_AFTER_STEP=10 expect_exit 4 "GPU run preempted at step 10" "$HW" train $LM $R \
    run.backend=cuda run.dir="$T/g2c"
expect_exit 0 "  resumed on the CPU to step 20" "$HW" train $LM $R run.dir="$T/g2c"
ok "  resumed from the GPU's checkpoint" grep -q "resumed from $T/g2c/ckpt_00000010.h5" "$T/out"
metric_lines "$T/g2c/metrics.jsonl" >"$T/g2c.m"
ok "  the uninterrupted GPU run's losses (rel 1e-4)" steps_close "$T/dense.mg" "$T/g2c.m" 20 1e-4
HW_STOP_AFTER_STEP=10 expect_exit 4 "CPU run preempted at step 10" "$HW" train $LM $R \
    run.dir="$T/c2g"
expect_exit 0 "  resumed on the GPU to step 20" "$HW" train $LM $R run.backend=cuda \
    run.dir="$T/c2g"
metric_lines "$T/c2g/metrics.jsonl" >"$T/c2g.m"
ok "  the uninterrupted CPU run's losses (rel 1e-4)" steps_close "$T/dense.mc" "$T/c2g.m" 20 1e-4
expect_exit 0 "  the GPU-written checkpoint verifies" "$HW" ckpt verify "$T/c2g/ckpt_00000020.h5"
finish

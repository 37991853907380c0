#!/bin/sh
# tests/cli_tensorboard.sh -- run.tensorboard: every training run writes RUN_DIR/tb/events.*,
# TFRecords of tensorflow.Event protos with one scalar per number of each metrics.jsonl line.
# Checked two ways: an independent reader in the standard library of Python (record framing,
# both masked CRC-32C of every record, the Event and Summary fields) that must find exactly the
# numbers of metrics.jsonl (as float32) at their steps; and TensorBoard's own event reader
# (EventAccumulator, from the PyPI package `tensorboard`, installed once into a venv beside the
# build; the check says SKIP when it cannot be installed). Also: run.tensorboard=false writes
# none; a resumed run adds a second file and the two cover every step; a tb path that cannot be
# created is a warning, not a failed run.
. tests/lib.sh
D=$T/data
prepare_tiny "$D"
set -- configs/tiny.yaml data.train="$D/train.h5" data.val="$D/val.h5" train.threads=1 \
    train.val_every=2 run.ckpt_every=3
PY=/usr/bin/python3
[ -x $PY ] || PY=python3

cat >"$T/read.py" <<'EOF'
# read.py EVENT_FILE... : prints "step key value" for every scalar; checks framing and CRCs
import struct, sys

def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF

def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value

def varint(b, i):
    v = s = 0
    while True:
        x = b[i]; i += 1
        v |= (x & 0x7F) << s; s += 7
        if x < 0x80:
            return v, i

def fields(b):
    i = 0
    while i < len(b):
        k, i = varint(b, i)
        f, w = k >> 3, k & 7
        if w == 0:
            v, i = varint(b, i)
        elif w == 1:
            v = b[i:i + 8]; i += 8
        elif w == 5:
            v = b[i:i + 4]; i += 4
        elif w == 2:
            n, i = varint(b, i); v = b[i:i + n]; i += n
        else:
            raise SystemExit("wire type %d" % w)
        yield f, w, v

for path in sys.argv[1:]:
    data = open(path, "rb").read()
    i = n = 0
    while i < len(data):
        (ln,) = struct.unpack_from("<Q", data, i)
        (hc,) = struct.unpack_from("<I", data, i + 8)
        assert hc == masked(data[i:i + 8]), "length crc at %d" % i
        rec = data[i + 12:i + 12 + ln]
        (dc,) = struct.unpack_from("<I", data, i + 12 + ln)
        assert dc == masked(rec), "data crc at %d" % i
        i += 16 + ln
        ev = {f: v for f, w, v in fields(rec)}
        assert 1 in ev and len(ev[1]) == 8, "wall_time"
        if n == 0:
            assert ev.get(3) == b"brain.Event:2", "first record: file_version"
        n += 1
        if 5 in ev:
            for f, w, val in fields(ev[5]):
                assert f == 1 and w == 2
                v = {g: x for g, _, x in fields(val)}
                print(ev.get(2, 0), v[1].decode(), repr(struct.unpack("<f", v[2])[0]))
EOF
cat >"$T/expect.py" <<'EOF'
# expect.py METRICS_JSONL: "step key value" for every number of every line (as float32)
import json, struct, sys
for line in open(sys.argv[1]):
    j = json.loads(line)
    for k, v in j.items():
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
            print(j["step"], k, repr(struct.unpack("<f", struct.pack("<f", v))[0]))
EOF

expect_exit 0 "8 steps, validation every 2, checkpoints every 3" "$HW" train "$@" \
    train.steps=8 run.dir="$T/a"
ok "  one event file in run.dir/tb" test "$(ls "$T/a/tb" | grep -c '^events.out.tfevents.')" = 1
ok "  the summary names it" grep -q "tensorboard: $T/a/tb/events.out.tfevents." "$T/out"
ok "  framing, masked CRC-32C and protos read back (independent reader)" sh -c \
    "$PY '$T/read.py' '$T'/a/tb/events.* | sort >'$T/got'"
$PY "$T/expect.py" "$T/a/metrics.jsonl" | sort >"$T/want"
ok "  every number of metrics.jsonl at its step, as float32 ($(wc -l <"$T/want") scalars)" \
    sh -c "test -s '$T/want' && cmp -s '$T/want' '$T/got'"
ok "  loss, lr, grad_norm, val_loss, ckpt_s among the tags" sh -c \
    "for k in loss lr grad_norm val_loss ckpt_s; do grep -q \" \$k \" '$T/got' || exit 1; done"

# TensorBoard's own reader
TBPY=$(pypi_venv tb-venv tensorboard tensorboard)
if [ -n "$TBPY" ]; then
    ok "TensorBoard's EventAccumulator reads the same scalars" "$TBPY" -c "
import glob, struct, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(glob.glob('$T/a/tb/events.*')[0]); ea.Reload()
got = sorted('%d %s %r' % (e.step, k, e.value) for k in ea.Tags()['scalars'] for e in ea.Scalars(k))
want = sorted(open('$T/want').read().split('\n')[:-1])
assert got == want, (got[:5], want[:5])
"
else
    echo "SKIP TensorBoard's reader: the PyPI package tensorboard could not be installed into $(dirname "$HW")/tb-venv ($(tail -n 1 "$T/pip.log" 2>/dev/null))"
fi

expect_exit 0 "run.tensorboard=false" "$HW" train "$@" train.steps=3 run.tensorboard=false \
    run.dir="$T/off"
ok "  no tb directory" test ! -e "$T/off/tb"

# a resumed run: a second file, and the two cover every step once the duplicates of the steps
# re-run after the checkpoint are merged
HW_STOP_AFTER_STEP=4 expect_exit 4 "preempted at step 4" "$HW" train "$@" train.steps=8 \
    run.dir="$T/r"
unset HW_STOP_AFTER_STEP
expect_exit 0 "  resumed to step 8" "$HW" train "$@" train.steps=8 run.dir="$T/r"
ok "  two event files" test "$(ls "$T/r/tb" | grep -c '^events.out.tfevents.')" = 2
ok "  together they hold steps 1 to 8" sh -c \
    "$PY '$T/read.py' '$T'/r/tb/events.* | awk '\$2 == \"loss\" { print \$1 }' | sort -un | tr '\n' ' ' | grep -qx '1 2 3 4 5 6 7 8 '"

# run.dir/tb taken by a file: a warning, and the run goes on
mkdir -p "$T/w"
: >"$T/w/tb"
expect_exit 0 "run.dir/tb is a file: the run still trains" "$HW" train "$@" train.steps=3 \
    run.dir="$T/w"
err_has "warning: run.tensorboard: "
finish

#!/bin/sh
# fuzz/run.sh BUILD SECONDS "TARGETS" "FLAGS" -- run by `make fuzz` (docs/fuzzing.md).
# Runs BUILD/fuzz/fuzz_<target> for SECONDS each on BUILD/fuzz/corpus/<target> (new inputs go
# there) plus the seeds fuzz/corpus/<target> and fuzz/regress/<target>; crashes are written to
# BUILD/fuzz/crash-<target>-*. The HDF5 targets (ckpt, shard) run in fork mode and keep going
# after a crash, since libhdf5 1.10 itself crashes on many corrupt files. Every new crash file
# is then replayed and classified by the first stack frame that is not a sanitizer or libc
# interceptor (or that owns the overrun memory): "libhdf5" (a bug inside libhdf5, see
# fuzz/known-hdf5/), "oom" (the RSS limit, no culprit), "timeout", "flaky" (does not reproduce
# alone) or "HEADWISE" (ours: fix it, then keep the input under fuzz/regress/<target>/). Exits 1
# if any crash is ours; look at oom and timeout inputs too.
# Prints one summary line per target: seconds, executions, crashes by class.
BUILD=$1
SECONDS_EACH=$2
TARGETS=$3
FLAGS=$4
out=$BUILD/fuzz
ours=0
summary=""
classify() { # binary file -> class
    rep=$("$1" -timeout=60 "$2" 2>&1)
    case "$rep" in
    *"ERROR: "* | *"runtime error:"* | *"property broken"* | *"deadly signal"* | *"fuzz target exited"*) ;;
    *)
        echo flaky
        return
        ;;
    esac
    case "$rep" in
    *"out-of-memory (used:"*)
        echo oom
        return
        ;;
    *"libFuzzer: timeout"*)
        echo timeout
        return
        ;;
    esac
    skip='interceptor|__sanitizer|__asan|__ubsan|fuzzer::|MallocHook|libc\.so|libc_start|sysdeps|[ (]_start|[ (]malloc|[ (]calloc|[ (]realloc|[ (]strdup|[ (]memcpy|[ (]memmove|[ (]abort|[ (]raise'
    # the memory that was overrun: a stack frame or the allocating call of ours makes it ours,
    # even when the write happened inside libhdf5 (e.g. an H5Aread into a too small buffer)
    owner=$(echo "$rep" | grep -A1 'is located in stack of thread' | grep -E '^ *#[0-9]+ 0x' | head -n 1)
    [ -n "$owner" ] || owner=$(echo "$rep" | sed -n '/allocated by thread/,/^$/p' |
        grep -E '^ *#[0-9]+ 0x' | grep -vE "$skip" | head -n 1)
    case "$owner" in
    *libhdf5*) ;;
    *.c:[0-9]*)
        echo HEADWISE
        return
        ;;
    esac
    # a stack overflow that recurses through our code is ours
    case "$rep" in *stack-overflow*)
        if [ "$(echo "$rep" | grep -E '^ *#[0-9]+ 0x.*\.c:[0-9]' | grep -vcE 'libhdf5|fuzz_|LLVMFuzzer')" -gt 3 ]; then
            echo HEADWISE
            return
        fi
        ;;
    esac
    frame=$(echo "$rep" | grep -E '^ *#[0-9]+ 0x' | grep -vE "$skip" | head -n 1)
    case "$frame" in
    *libhdf5*) echo libhdf5 ;;
    *) echo HEADWISE ;;
    esac
}
for t in $TARGETS; do
    bin=$out/fuzz_$t
    mkdir -p "$out/corpus/$t"
    before=$(ls "$out" | grep "^crash-$t-" | sort)
    extra=""
    case "$t" in ckpt | shard)
        case "$FLAGS" in *-fork=*) ;; *) extra="-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1" ;; esac
        ;;
    esac
    seeds="fuzz/corpus/$t"
    [ -d "fuzz/regress/$t" ] && seeds="$seeds fuzz/regress/$t"
    log=$out/log-$t.txt
    echo "== fuzz_$t: $SECONDS_EACH s (log: $log)"
    t0=$(date +%s)
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -artifact_prefix="$out/crash-$t-" \
        $FLAGS $extra "$out/corpus/$t" $seeds >"$log" 2>&1
    t1=$(date +%s)
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    [ -n "$execs" ] || execs=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed 's/^#\([0-9]*\).*/\1/')
    counts=""
    for f in $(ls "$out" | grep "^crash-$t-" | sort); do
        echo "$before" | grep -qx "$f" && continue
        c=$(classify "$bin" "$out/$f")
        echo "   $c: $out/$f"
        counts="$counts $c"
        [ "$c" = HEADWISE ] && ours=$((ours + 1))
    done
    n() { echo "$counts" | tr ' ' '\n' | grep -cx "$1"; }
    line=$(printf '%-8s %5ss %10s execs   crashes: %s headwise, %s libhdf5, %s oom, %s timeout, %s flaky' \
        "$t" $((t1 - t0)) "${execs:-?}" "$(n HEADWISE)" "$(n libhdf5)" "$(n oom)" "$(n timeout)" "$(n flaky)")
    echo "$line"
    summary="$summary
$line"
done
echo "---$summary"
if [ $ours -gt 0 ]; then
    echo "fuzz: $ours crash(es) in headwise code (HEADWISE above)"
    exit 1
fi
echo "fuzz: no crashes in headwise code"

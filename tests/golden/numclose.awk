# tests/golden/numclose.awk -- compares two text files line by line: the text between numbers
# must match exactly and each pair of numbers must agree within rtol (relative to the larger
# magnitude) or atol. The golden cases are exact on the machine that recorded them; another
# CPU (AVX-512 instead of AVX2 kernels in OpenBLAS or the compiler's -march=native code) moves
# the last bits of a sum, so the check is float rounding, not bit equality.
#
#   awk -v rtol=1e-4 -v atol=1e-7 -f tests/golden/numclose.awk EXPECTED GOT
#
# Prints "EXPECTED:LINE: ..." for the first mismatch and exits 1; on success prints the worst
# relative difference seen (0 means bit-identical) and exits 0.
function split_nums(s, nums, n, skel, re) {
    re = "-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?"
    n = 0
    skel = ""
    while (match(s, re)) {
        skel = skel substr(s, 1, RSTART - 1) "#"
        nums[++n] = substr(s, RSTART, RLENGTH)
        s = substr(s, RSTART + RLENGTH)
    }
    SKEL = skel s
    return n
}
function absf(x) { return x < 0 ? -x : x }
BEGIN {
    if (rtol == "") rtol = 1e-4
    if (atol == "") atol = 1e-7
    worst = 0
}
# the seconds and bytes of a checkpoint save (ckpt_s, ckpt_write_s, ckpt_bytes) are timings and
# file sizes, not results: left out on both sides
{ gsub(/,"ckpt_(s|write_s|bytes)":[-0-9.eE+]+/, "") }
FNR == NR { exp_line[FNR] = $0; n_exp = FNR; next }
{
    if (FNR > n_exp) { printf "%s:%d: extra line in %s\n", ARGV[1], FNR, FILENAME; bad = 1; exit 1 }
    delete a; delete b
    na = split_nums(exp_line[FNR], a); sa = SKEL
    nb = split_nums($0, b); sb = SKEL
    if (na != nb || sa != sb) {
        printf "%s:%d: text differs: expected '%s', got '%s'\n", ARGV[1], FNR, exp_line[FNR], $0
        bad = 1; exit 1
    }
    for (i = 1; i <= na; i++) {
        x = a[i] + 0; y = b[i] + 0
        d = absf(x - y); m = absf(x) > absf(y) ? absf(x) : absf(y)
        if (d > atol + rtol * m) {
            printf "%s:%d: number %d: expected %s, got %s (rtol %g)\n", ARGV[1], FNR, i, a[i], b[i], rtol
            bad = 1; exit 1
        }
        if (m > 0 && d / m > worst) worst = d / m
    }
    n_got = FNR
}
END {
    if (bad) exit 1
    if (n_got < n_exp) { printf "%s:%d: missing line in the output\n", ARGV[1], n_got + 1; exit 1 }
    printf "worst relative difference %.3g\n", worst
}

/* ops/attention_cudnn.cu -- dense causal attention (MHA and GQA) through cuDNN's fused flash
 * attention, built directly with the cuDNN graph (backend) C API of cudnn_graph.h, plus the
 * fp32 <-> bf16 conversions its callers need. Contracts and layouts: attention.h.
 *
 * The operation graphs are the ones cudnn-frontend's SDPA nodes lower to (its composite
 * "scaled_dot_product_flash_attention" forward and backward, non-ragged, no dropout, no bias,
 * top-left causal mask), which cuDNN's runtime fusion engines recognise as flash attention:
 *   forward:  S = Q K^T; S *= scale; causal select (row >= col, else -inf); M = rowmax S;
 *             E = exp(S - M); Z = rowsum E; Stats = M + log Z; P = E / Z (bf16); O = P V
 *   backward: softmax_sum = rowsum(dO * O); P = exp(select(Q K^T * scale - Stats));
 *             dV = P^T dO; dS = P (dO V^T - softmax_sum) scale; dK = dS^T Q; dQ = dS K
 *             (GQA: dK/dV over all query heads, then summed over each group by a reduction)
 * Stats is the natural-log log-sum-exp of every row, i.e. headwise's lse. The deterministic
 * backward (dQ written directly, cudnn-frontend's choice on Hopper for
 * is_deterministic_algorithm) is tried first; only if no engine takes it, the dQ-accumulator
 * variant is used and attention_cudnn_deterministic() says so.
 * q, k and v are read straight out of the fused (B, T, ld_qkv) buffer through strides, and dq,
 * dk, dv written into the same layout. Plans are built once per shape and kept for the life of
 * the process (with every descriptor they were built from), as llm.c's cudnn_att.cpp does with
 * cudnn-frontend graphs. */
#include "cuda_common.cuh"

#include "attention.h"

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

/* ------------------------------------------------------------------------------------------ */
/* CUDA kernels */

__global__ void f32_to_bf16_kernel(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat16_as_ushort(__float2bfloat16_rn(src[i]));
}

__global__ void bf16_to_f32_kernel(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(__ushort_as_bfloat16(src[i]));
}

unsigned grid_for(size_t n) {
    const size_t b = (n + 255) / 256;
    return (unsigned)(b < 8192 ? (b ? b : 1) : 8192);
}

/* ------------------------------------------------------------------------------------------ */
/* graph building */

/* unique ids of the tensors the caller binds (virtual tensors get ids from VIRT up) */
enum {
    UID_Q = 1,
    UID_K,
    UID_V,
    UID_O,
    UID_STATS,
    UID_SCALE,
    UID_NEG_INF,
    UID_DO,
    UID_DQ,
    UID_DK,
    UID_DV,
    UID_SOFTMAX_SUM,
    UID_ONE,
    UID_DQ_ACCUM,
    UID_VIRT = 100,
};

char g_why[512]; /* why the last graph could not be built */

void set_why(int line, const char *what, cudnnStatus_t st) {
    char last[256] = "";
    cudnnGetLastErrorString(last, sizeof(last));
    snprintf(g_why, sizeof(g_why), "attention_cudnn.cu:%d: %s: %s%s%s", line, what,
             cudnnGetErrorString(st), last[0] ? " -- " : "", last);
}

/* every backend call of the builder: on failure record where and why, and give up this graph */
#define TRY(call)                                                                                  \
    do {                                                                                           \
        cudnnStatus_t st_ = (call);                                                                \
        if (st_ != CUDNN_STATUS_SUCCESS) {                                                         \
            set_why(__LINE__, #call, st_);                                                         \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

typedef cudnnBackendDescriptor_t desc_t;

/* Builds one operation graph; owns every descriptor it creates (kept alive with the plan). */
struct builder {
    std::vector<desc_t> keep;
    std::vector<desc_t> ops;
    int64_t next_uid = UID_VIRT;

    bool create(cudnnBackendDescriptorType_t type, desc_t *d) {
        *d = nullptr;
        TRY(cudnnBackendCreateDescriptor(type, d));
        keep.push_back(*d);
        return true;
    }

    /* A 4-d tensor; uid 0 means "virtual, next free id". */
    bool tensor(desc_t *t, int64_t uid, cudnnDataType_t dt, const int64_t dim[4],
                const int64_t str[4], bool by_value = false) {
        const bool virt = uid == 0;
        if (virt)
            uid = next_uid++;
        const int64_t align = 16;
        if (!create(CUDNN_BACKEND_TENSOR_DESCRIPTOR, t))
            return false;
        TRY(cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1,
                                     &dt));
        TRY(cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dim));
        TRY(cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, str));
        TRY(cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid));
        TRY(cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1,
                                     &align));
        TRY(cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1,
                                     &virt));
        if (by_value)
            TRY(cudnnBackendSetAttribute(*t, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1,
                                         &by_value));
        TRY(cudnnBackendFinalize(*t));
        return true;
    }

    /* A float scalar passed by value at execution (dims and strides all 1). */
    bool scalar(desc_t *t, int64_t uid) {
        const int64_t one[4] = {1, 1, 1, 1};
        return tensor(t, uid, CUDNN_DATA_FLOAT, one, one, true);
    }

    bool add_op(desc_t op) {
        TRY(cudnnBackendFinalize(op));
        ops.push_back(op);
        return true;
    }

    bool matmul(desc_t a, desc_t b, desc_t c) {
        desc_t md, op;
        const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
        if (!create(CUDNN_BACKEND_MATMUL_DESCRIPTOR, &md))
            return false;
        TRY(cudnnBackendSetAttribute(md, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1,
                                     &comp));
        TRY(cudnnBackendFinalize(md));
        if (!create(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, &op))
            return false;
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_MATMUL_ADESC,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a));
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_MATMUL_BDESC,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b));
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_MATMUL_CDESC,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c));
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_MATMUL_DESC,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &md));
        return add_op(op);
    }

    /* y = mode(x[, b[, t]]); prec: the math precision; axis: GEN_INDEX only */
    bool pointwise(cudnnPointwiseMode_t mode, desc_t x, desc_t b, desc_t t, desc_t y,
                   cudnnDataType_t prec = CUDNN_DATA_FLOAT, int64_t axis = -1) {
        desc_t pw, op;
        if (!create(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, &pw))
            return false;
        TRY(cudnnBackendSetAttribute(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1,
                                     &mode));
        TRY(cudnnBackendSetAttribute(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1,
                                     &prec));
        if (mode == CUDNN_POINTWISE_GEN_INDEX)
            TRY(cudnnBackendSetAttribute(pw, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1,
                                         &axis));
        TRY(cudnnBackendFinalize(pw));
        if (!create(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, &op))
            return false;
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw));
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x));
        if (b)
            TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b));
        if (t)
            TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_TDESC,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t));
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y));
        const float one = 1.0f;
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1,
                                     &one));
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1,
                                     &one));
        return add_op(op);
    }

    bool reduction(cudnnReduceTensorOp_t mode, desc_t x, desc_t y) {
        desc_t rd, op;
        const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
        if (!create(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, &rd))
            return false;
        TRY(cudnnBackendSetAttribute(rd, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1,
                                     &comp));
        TRY(cudnnBackendSetAttribute(rd, CUDNN_ATTR_REDUCTION_OPERATOR,
                                     CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode));
#if CUDNN_VERSION >= 91100
        if (cudnnGetVersion() >= 91100) {
            const bool det = false; /* as cudnn-frontend's SDPA nodes leave it */
            TRY(cudnnBackendSetAttribute(rd, CUDNN_ATTR_REDUCTION_IS_DETERMINISTIC,
                                         CUDNN_TYPE_BOOLEAN, 1, &det));
        }
#endif
        TRY(cudnnBackendFinalize(rd));
        if (!create(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, &op))
            return false;
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_REDUCTION_DESC,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &rd));
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_REDUCTION_XDESC,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x));
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_REDUCTION_YDESC,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y));
        return add_op(op);
    }

    bool reshape(desc_t x, desc_t y) {
        desc_t op;
        if (!create(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, &op))
            return false;
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_RESHAPE_XDESC,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x));
        TRY(cudnnBackendSetAttribute(op, CUDNN_ATTR_OPERATION_RESHAPE_YDESC,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y));
        return add_op(op);
    }

    /* Top-left causal mask on scores s (B, H, T, T): row >= col keeps s, else neg_inf. */
    bool causal(desc_t s, desc_t neg_inf, desc_t out, const int64_t dim[4], const int64_t str[4]) {
        desc_t row, col, keep;
        if (!tensor(&row, 0, CUDNN_DATA_INT32, dim, str) ||
            !tensor(&col, 0, CUDNN_DATA_INT32, dim, str) ||
            !tensor(&keep, 0, CUDNN_DATA_BOOLEAN, dim, str))
            return false;
        return pointwise(CUDNN_POINTWISE_GEN_INDEX, s, nullptr, nullptr, row, CUDNN_DATA_FLOAT,
                         2) &&
               pointwise(CUDNN_POINTWISE_GEN_INDEX, s, nullptr, nullptr, col, CUDNN_DATA_FLOAT,
                         3) &&
               pointwise(CUDNN_POINTWISE_CMP_GE, row, col, nullptr, keep, CUDNN_DATA_BOOLEAN) &&
               pointwise(CUDNN_POINTWISE_BINARY_SELECT, s, neg_inf, keep, out);
    }
};

/* One cached graph + plan. */
struct sdpa_plan {
    int B, T, H, Hkv, hd, ld, bwd;
    int ok;            /* the plan exists */
    int deterministic; /* backward: no dQ accumulator and no nondeterministic engine */
    int dq_accum;      /* backward: the dQ-accumulator variant (needs its workspace zeroed) */
    desc_t plan;
    int64_t ws;     /* bytes the plan needs */
    int64_t engine; /* global index of the engine, for the log */
    std::vector<desc_t> keep;
};

std::vector<sdpa_plan *> g_plans;
void *g_ws;
size_t g_ws_bytes;

/* The layouts of the fused buffers as 4-d (B, heads, T, hd) views. */
struct views {
    int64_t q[4], qs[4];       /* Q and dQ: (B, H, T, hd) in qkv */
    int64_t kt[4], kts[4];     /* K^T and V^T: (B, Hkv, hd, T) in qkv */
    int64_t kv[4], kvs[4];     /* V, dK, dV: (B, Hkv, T, hd) in qkv */
    int64_t o[4], os[4];       /* O, dO: (B, H, T, hd) in (B, T, H*hd) */
    int64_t st[4], sts[4];     /* Stats, softmax_sum: (B, H, T, 1) */
    int64_t s[4], ss[4];       /* scores (B, H, T, T) */
    int64_t st_t[4], sts_t[4]; /* transposed scores (B, H, T, T) with T x T transposed */
};

views views_of(int B, int T, int H, int Hkv, int hd, int ld) {
    views v;
    const int64_t b = B, t = T, h = H, g = Hkv, d = hd, l = ld;
    const int64_t q[4] = {b, h, t, d}, qs[4] = {t * l, d, l, 1};
    const int64_t kt[4] = {b, g, d, t}, kts[4] = {t * l, d, 1, l};
    const int64_t kv[4] = {b, g, t, d}, kvs[4] = {t * l, d, l, 1};
    const int64_t o[4] = {b, h, t, d}, os[4] = {t * h * d, d, h * d, 1};
    const int64_t st[4] = {b, h, t, 1}, sts[4] = {h * t, t, 1, 1};
    const int64_t s[4] = {b, h, t, t}, ss[4] = {h * t * t, t * t, t, 1};
    const int64_t sts_t[4] = {h * t * t, t * t, 1, t};
    memcpy(v.q, q, sizeof(q));
    memcpy(v.qs, qs, sizeof(qs));
    memcpy(v.kt, kt, sizeof(kt));
    memcpy(v.kts, kts, sizeof(kts));
    memcpy(v.kv, kv, sizeof(kv));
    memcpy(v.kvs, kvs, sizeof(kvs));
    memcpy(v.o, o, sizeof(o));
    memcpy(v.os, os, sizeof(os));
    memcpy(v.st, st, sizeof(st));
    memcpy(v.sts, sts, sizeof(sts));
    memcpy(v.s, s, sizeof(s));
    memcpy(v.ss, ss, sizeof(ss));
    memcpy(v.st_t, s, sizeof(s));
    memcpy(v.sts_t, sts_t, sizeof(sts_t));
    return v;
}

bool build_forward(builder &g, const sdpa_plan &p) {
    const views v = views_of(p.B, p.T, p.H, p.Hkv, p.hd, p.ld);
    const cudnnDataType_t BF = CUDNN_DATA_BFLOAT16, F = CUDNN_DATA_FLOAT;
    desc_t Q, KT, V, O, Stats, scale, ninf;
    desc_t S0, S1, S2, M, S3, E, Z, LZ, P;
    return g.tensor(&Q, UID_Q, BF, v.q, v.qs) && g.tensor(&KT, UID_K, BF, v.kt, v.kts) &&
           g.tensor(&V, UID_V, BF, v.kv, v.kvs) && g.tensor(&O, UID_O, BF, v.o, v.os) &&
           g.tensor(&Stats, UID_STATS, F, v.st, v.sts) && g.scalar(&scale, UID_SCALE) &&
           g.scalar(&ninf, UID_NEG_INF) && g.tensor(&S0, 0, F, v.s, v.ss) &&
           g.tensor(&S1, 0, F, v.s, v.ss) && g.tensor(&S2, 0, F, v.s, v.ss) &&
           g.tensor(&M, 0, F, v.st, v.sts) && g.tensor(&S3, 0, F, v.s, v.ss) &&
           g.tensor(&E, 0, F, v.s, v.ss) && g.tensor(&Z, 0, F, v.st, v.sts) &&
           g.tensor(&LZ, 0, F, v.st, v.sts) && g.tensor(&P, 0, BF, v.s, v.ss) &&
           /* S = Q K^T * scale, causal */
           g.matmul(Q, KT, S0) && g.pointwise(CUDNN_POINTWISE_MUL, S0, scale, nullptr, S1) &&
           g.causal(S1, ninf, S2, v.s, v.ss) &&
           /* softmax with its statistics: Stats = max + log(sum exp) */
           g.reduction(CUDNN_REDUCE_TENSOR_MAX, S2, M) &&
           g.pointwise(CUDNN_POINTWISE_SUB, S2, M, nullptr, S3) &&
           g.pointwise(CUDNN_POINTWISE_EXP, S3, nullptr, nullptr, E) &&
           g.reduction(CUDNN_REDUCE_TENSOR_ADD, E, Z) &&
           g.pointwise(CUDNN_POINTWISE_LOG, Z, nullptr, nullptr, LZ) &&
           g.pointwise(CUDNN_POINTWISE_ADD, M, LZ, nullptr, Stats) &&
           g.pointwise(CUDNN_POINTWISE_DIV, E, Z, nullptr, P) &&
           /* O = P V */
           g.matmul(P, V, O);
}

/* dst = a^T b over all query heads, then (GQA) summed over each group of heads into dst. */
bool grad_kv(builder &g, const sdpa_plan &p, const views &v, desc_t aT, desc_t b, desc_t dst) {
    if (p.H == p.Hkv)
        return g.matmul(aT, b, dst);
    const int64_t full[4] = {p.B, p.H, p.T, p.hd};
    const int64_t fulls[4] = {(int64_t)p.H * p.T * p.hd, (int64_t)p.T * p.hd, p.hd, 1};
    desc_t F;
    (void)v;
    return g.tensor(&F, 0, CUDNN_DATA_BFLOAT16, full, fulls) && g.matmul(aT, b, F) &&
           g.reduction(CUDNN_REDUCE_TENSOR_ADD, F, dst);
}

bool build_backward(builder &g, const sdpa_plan &p) {
    const views v = views_of(p.B, p.T, p.H, p.Hkv, p.hd, p.ld);
    const cudnnDataType_t BF = CUDNN_DATA_BFLOAT16, F = CUDNN_DATA_FLOAT;
    const int64_t b = p.B, h = p.H, t = p.T, d = p.hd;
    /* dO * O: the strides cudnn-frontend gives this virtual tensor */
    const int64_t dod[4] = {b, h, t, d}, dos[4] = {h * t * d, t * d, h * d, 1};
    desc_t Q, KT, VT, O, dO, Stats, scale, one, ninf, dQ, dK, dV, ssum;
    desc_t t1, t2, S0, S1, S2, S3, P, PT, dP, t3, t4, dS, dST, Kr;
    const bool ok =
        g.tensor(&Q, UID_Q, BF, v.q, v.qs) && g.tensor(&KT, UID_K, BF, v.kt, v.kts) &&
        g.tensor(&VT, UID_V, BF, v.kt, v.kts) && g.tensor(&O, UID_O, BF, v.o, v.os) &&
        g.tensor(&dO, UID_DO, BF, v.o, v.os) && g.tensor(&Stats, UID_STATS, F, v.st, v.sts) &&
        g.scalar(&scale, UID_SCALE) && g.scalar(&one, UID_ONE) && g.scalar(&ninf, UID_NEG_INF) &&
        g.tensor(&dQ, UID_DQ, BF, v.q, v.qs) && g.tensor(&dK, UID_DK, BF, v.kv, v.kvs) &&
        g.tensor(&dV, UID_DV, BF, v.kv, v.kvs) &&
        g.tensor(&ssum, UID_SOFTMAX_SUM, F, v.st, v.sts) && g.tensor(&t1, 0, F, dod, dos) &&
        g.tensor(&t2, 0, F, v.st, v.sts) && g.tensor(&S0, 0, F, v.s, v.ss) &&
        g.tensor(&S1, 0, F, v.s, v.ss) && g.tensor(&S2, 0, F, v.s, v.ss) &&
        g.tensor(&S3, 0, F, v.s, v.ss) && g.tensor(&P, 0, F, v.s, v.ss) &&
        g.tensor(&PT, 0, BF, v.st_t, v.sts_t) && g.tensor(&dP, 0, F, v.s, v.ss) &&
        g.tensor(&t3, 0, F, v.s, v.ss) && g.tensor(&t4, 0, F, v.s, v.ss) &&
        g.tensor(&dS, 0, F, v.s, v.ss) && g.tensor(&dST, 0, BF, v.st_t, v.sts_t) &&
        g.tensor(&Kr, 0, BF, v.kv, v.kvs) &&
        /* softmax_sum = rowsum(dO * O) (a non-virtual fp32 buffer of ours) */
        g.pointwise(CUDNN_POINTWISE_MUL, dO, O, nullptr, t1) &&
        g.reduction(CUDNN_REDUCE_TENSOR_ADD, t1, t2) &&
        g.pointwise(CUDNN_POINTWISE_MUL, t2, one, nullptr, ssum) &&
        /* P = exp(causal(Q K^T * scale - Stats)) */
        g.matmul(Q, KT, S0) && g.pointwise(CUDNN_POINTWISE_MUL, S0, scale, nullptr, S1) &&
        g.pointwise(CUDNN_POINTWISE_SUB, S1, Stats, nullptr, S2) &&
        g.causal(S2, ninf, S3, v.s, v.ss) &&
        g.pointwise(CUDNN_POINTWISE_EXP, S3, nullptr, nullptr, P) &&
        /* dV = P^T dO */
        g.reshape(P, PT) && grad_kv(g, p, v, PT, dO, dV) &&
        /* dS = P (dO V^T - softmax_sum) scale */
        g.matmul(dO, VT, dP) && g.pointwise(CUDNN_POINTWISE_SUB, dP, ssum, nullptr, t3) &&
        g.pointwise(CUDNN_POINTWISE_MUL, t3, P, nullptr, t4) &&
        g.pointwise(CUDNN_POINTWISE_MUL, t4, scale, nullptr, dS) &&
        /* dK = dS^T Q */
        g.reshape(dS, dST) && grad_kv(g, p, v, dST, Q, dK) &&
        /* dQ = dS K */
        g.reshape(KT, Kr);
    if (!ok)
        return false;
    if (!p.dq_accum)
        return g.matmul(dS, Kr, dQ);
    const int64_t qa[4] = {b, h, t, d}, qas[4] = {h * t * d, t * d, d, 1};
    desc_t acc;
    return g.tensor(&acc, UID_DQ_ACCUM, F, qa, qas) && g.matmul(dS, Kr, acc) &&
           g.pointwise(CUDNN_POINTWISE_IDENTITY, acc, nullptr, nullptr, dQ);
}

bool engine_index(desc_t cfg, int64_t *index, bool *nondet) {
    desc_t eng;
    int64_t n = 0;
    *index = -1;
    *nondet = false;
    TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng));
    cudnnStatus_t st = cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE,
                                                CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &eng);
    if (st == CUDNN_STATUS_SUCCESS) {
        cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
        int64_t nn = 0;
        cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n,
                                 index);
        if (cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                     CUDNN_TYPE_NUMERICAL_NOTE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT,
                                     &nn, notes) == CUDNN_STATUS_SUCCESS)
            for (int64_t i = 0; i < nn && i < CUDNN_NUMERICAL_NOTE_TYPE_COUNT; i++)
                if (notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC)
                    *nondet = true;
    }
    cudnnBackendDestroyDescriptor(eng);
    if (st != CUDNN_STATUS_SUCCESS) {
        set_why(__LINE__, "cudnnBackendGetAttribute(CUDNN_ATTR_ENGINECFG_ENGINE)", st);
        return false;
    }
    return true;
}

/* Finalize the operation graph and take the first engine config of the heuristics (mode A,
 * then the fallback list) that gives an execution plan; with want_det, engines that declare
 * themselves nondeterministic are passed over. */
bool make_plan(builder &g, sdpa_plan &p, bool want_det) {
    cudnnHandle_t handle = cuda_ctx()->dnn;
    desc_t graph;
    if (!g.create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &graph))
        return false;
    TRY(cudnnBackendSetAttribute(graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1,
                                 &handle));
    TRY(cudnnBackendSetAttribute(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, (int64_t)g.ops.size(),
                                 g.ops.data()));
    TRY(cudnnBackendFinalize(graph));
    int skipped_nondet = 0, tried = 0;
    const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    for (int mi = 0; mi < 2; mi++) {
        desc_t heur;
        if (!g.create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur))
            return false;
        TRY(cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph));
        TRY(cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1,
                                     &modes[mi]));
        if (cudnnBackendFinalize(heur) != CUDNN_STATUS_SUCCESS)
            continue; /* e.g. no fallback list for this graph */
        int64_t count = 0;
        TRY(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr));
        if (count <= 0)
            continue;
        std::vector<desc_t> cfgs((size_t)count);
        for (auto &c : cfgs)
            if (!g.create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &c))
                return false;
        int64_t got = 0;
        TRY(cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, cfgs.data()));
        for (int64_t i = 0; i < got && i < count; i++) {
            int64_t index;
            bool nondet;
            if (!engine_index(cfgs[(size_t)i], &index, &nondet))
                continue;
            if (want_det && nondet) {
                skipped_nondet++;
                continue;
            }
            tried++;
            desc_t plan;
            if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan) !=
                CUDNN_STATUS_SUCCESS)
                continue;
            cudnnStatus_t st = cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE,
                                                        CUDNN_TYPE_HANDLE, 1, &handle);
            if (st == CUDNN_STATUS_SUCCESS)
                st = cudnnBackendSetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[(size_t)i]);
            if (st == CUDNN_STATUS_SUCCESS)
                st = cudnnBackendFinalize(plan);
            int64_t ws = 0, n = 0;
            if (st == CUDNN_STATUS_SUCCESS)
                st = cudnnBackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                              CUDNN_TYPE_INT64, 1, &n, &ws);
            if (st != CUDNN_STATUS_SUCCESS) {
                set_why(__LINE__, "execution plan for an engine config", st);
                cudnnBackendDestroyDescriptor(plan);
                continue;
            }
            g.keep.push_back(plan);
            p.plan = plan;
            p.ws = ws;
            p.engine = index;
            p.deterministic = !nondet;
            return true;
        }
    }
    snprintf(g_why + strlen(g_why), sizeof(g_why) - strlen(g_why),
             "%sno engine built a plan (%d tried, %d nondeterministic ones passed over)",
             g_why[0] ? "; " : "", tried, skipped_nondet);
    return false;
}

void drop(builder &g) {
    for (auto it = g.keep.rbegin(); it != g.keep.rend(); ++it)
        cudnnBackendDestroyDescriptor(*it);
    g.keep.clear();
    g.ops.clear();
}

/* Build (forward, or backward: deterministic graph first, then the dQ-accumulator one; with
 * HW_CUDNN_ATTN_NONDET=1 in the environment the other way round, e.g. to measure what
 * determinism costs). */
void build(sdpa_plan &p) {
    g_why[0] = 0;
    const char *env = getenv("HW_CUDNN_ATTN_NONDET");
    const int accum_first = env && env[0] == '1';
    for (int attempt = 0; attempt < (p.bwd ? 2 : 1); attempt++) {
        builder g;
        p.dq_accum = p.bwd && (attempt == 1) != accum_first;
        const bool det = p.bwd && !p.dq_accum;
        const bool built = p.bwd ? build_backward(g, p) : build_forward(g, p);
        if (built && make_plan(g, p, det)) {
            p.deterministic = p.deterministic && !p.dq_accum;
            p.keep.swap(g.keep);
            p.ok = 1;
            return;
        }
        drop(g);
    }
    p.ok = 0;
}

bool expressible(const struct attn_shape *s, const char **why) {
    *why = nullptr;
    if (s->s2 || s->qsel || s->seg || s->np > 0)
        *why = "S2, MoH, segments and the prefix are not expressible in the cuDNN graph";
    else if (s->B < 1 || s->T < 1 || s->H < 1 || s->Hkv < 1 || s->H % s->Hkv)
        *why = "bad shape";
    else if (s->hd % 8 || s->hd > 128 || s->ld_qkv % 8)
        *why = "needs hd % 8 == 0, hd <= 128 and ld_qkv % 8 == 0 (16-byte aligned bf16 rows)";
    else if (s->ld_qkv < (s->H + 2 * s->Hkv) * s->hd)
        *why = "ld_qkv < (H + 2 Hkv) hd";
    return *why == nullptr;
}

sdpa_plan *lookup(const struct attn_shape *s, int bwd) {
    for (sdpa_plan *p : g_plans)
        if (p->B == s->B && p->T == s->T && p->H == s->H && p->Hkv == s->Hkv && p->hd == s->hd &&
            p->ld == s->ld_qkv && p->bwd == bwd)
            return p;
    sdpa_plan *p = new sdpa_plan();
    p->B = s->B;
    p->T = s->T;
    p->H = s->H;
    p->Hkv = s->Hkv;
    p->hd = s->hd;
    p->ld = s->ld_qkv;
    p->bwd = bwd;
    build(*p);
    if (!p->ok)
        fprintf(stderr,
                "attention_cudnn: no %s plan for B=%d T=%d H=%d Hkv=%d hd=%d ld=%d (cuDNN %zu): "
                "%s\n",
                bwd ? "backward" : "forward", s->B, s->T, s->H, s->Hkv, s->hd, s->ld_qkv,
                cudnnGetVersion(), g_why);
    else if (getenv("HW_CUDNN_VERBOSE"))
        fprintf(stderr,
                "attention_cudnn: %s plan for B=%d T=%d H=%d Hkv=%d hd=%d: engine %lld, "
                "workspace %.1f MiB%s%s\n",
                bwd ? "backward" : "forward", s->B, s->T, s->H, s->Hkv, s->hd, (long long)p->engine,
                p->ws / 1048576.0, p->dq_accum ? ", dQ accumulator" : "",
                bwd && !p->deterministic ? ", NONDETERMINISTIC" : "");
    g_plans.push_back(p);
    return p;
}

/* The plan's workspace followed by our fp32 buffers (softmax_sum, dQ accumulator). */
void *workspace(size_t bytes) {
    if (bytes > g_ws_bytes) {
        struct cuda_ctx *c = cuda_ctx();
        if (g_ws) {
            HW_CHECK_CUDA(cudaStreamSynchronize(c->stream));
            HW_CHECK_CUDA(cudaFree(g_ws));
        }
        g_ws = nullptr;
        HW_CHECK_CUDA(cudaMalloc(&g_ws, bytes));
        g_ws_bytes = bytes;
    }
    return g_ws;
}

size_t align256(size_t n) {
    return (n + 255) & ~(size_t)255;
}

void execute(const sdpa_plan &p, int n, const int64_t *uids, void *const *ptrs, void *ws) {
    desc_t vp;
    HW_CHECK_CUDNN(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp));
    HW_CHECK_CUDNN(cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                                            CUDNN_TYPE_INT64, n, uids));
    HW_CHECK_CUDNN(cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                            CUDNN_TYPE_VOID_PTR, n, ptrs));
    HW_CHECK_CUDNN(cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                            CUDNN_TYPE_VOID_PTR, 1, &ws));
    HW_CHECK_CUDNN(cudnnBackendFinalize(vp));
    HW_CHECK_CUDNN(cudnnBackendExecute(cuda_ctx()->dnn, p.plan, vp));
    HW_CHECK_CUDNN(cudnnBackendDestroyDescriptor(vp));
}

sdpa_plan *need_plan(const struct attn_shape *s, int bwd) {
    const char *why;
    if (!expressible(s, &why))
        hw_die_at(__FILE__, __LINE__, "attention_cudnn: %s (check attention_cudnn_available)", why);
    sdpa_plan *p = lookup(s, bwd);
    if (!p->ok)
        hw_die_at(__FILE__, __LINE__,
                  "attention_cudnn: no %s plan for this shape: %s (check "
                  "attention_cudnn_available and fall back to attention_*_cuda)",
                  bwd ? "backward" : "forward", g_why);
    return p;
}

/* masked scores: -inf, or the lowest float where cuDNN before 9.10 preferred it */
float neg_inf_value() {
    return cudnnGetVersion() < 91000 ? -FLT_MAX : -INFINITY;
}

} // namespace

/* ------------------------------------------------------------------------------------------ */
/* the attention.h contracts */

extern "C" int attention_cudnn_available(const struct attn_shape *s) {
    const char *why;
    if (!expressible(s, &why))
        return 0;
    return lookup(s, 0)->ok && lookup(s, 1)->ok;
}

extern "C" int attention_cudnn_deterministic(const struct attn_shape *s) {
    const char *why;
    if (!expressible(s, &why))
        return 0;
    const sdpa_plan *p = lookup(s, 1);
    return p->ok && p->deterministic;
}

extern "C" void attention_forward_cudnn(uint16_t *out, float *lse, const uint16_t *qkv,
                                        const struct attn_shape *s) {
    const sdpa_plan *p = need_plan(s, 0);
    const size_t HD = (size_t)s->H * s->hd, KD = (size_t)s->Hkv * s->hd;
    float scale = 1.0f / sqrtf((float)s->hd), ninf = neg_inf_value();
    void *ws = workspace(p->ws > 0 ? (size_t)p->ws : 256);
    const int64_t uids[] = {UID_Q, UID_K, UID_V, UID_O, UID_STATS, UID_SCALE, UID_NEG_INF};
    void *const ptrs[] = {(void *)qkv,  (void *)(qkv + HD), (void *)(qkv + HD + KD),
                          (void *)out,  (void *)lse,        (void *)&scale,
                          (void *)&ninf};
    execute(*p, 7, uids, ptrs, ws);
}

extern "C" void attention_backward_cudnn(uint16_t *dqkv, const uint16_t *dout, const uint16_t *out,
                                         const float *lse, const uint16_t *qkv,
                                         const struct attn_shape *s) {
    const sdpa_plan *p = need_plan(s, 1);
    const size_t HD = (size_t)s->H * s->hd, KD = (size_t)s->Hkv * s->hd;
    const size_t rows = (size_t)s->B * s->H * s->T;
    const size_t off_sum = align256((size_t)p->ws);
    const size_t off_acc = off_sum + align256(sizeof(float) * rows);
    const size_t total = off_acc + (p->dq_accum ? sizeof(float) * rows * s->hd : 0);
    char *ws = (char *)workspace(total);
    if (p->dq_accum)
        HW_CHECK_CUDA(
            cudaMemsetAsync(ws + off_acc, 0, sizeof(float) * rows * s->hd, cuda_ctx()->stream));
    float scale = 1.0f / sqrtf((float)s->hd), one = 1.0f, ninf = neg_inf_value();
    const int64_t uids[] = {UID_Q,     UID_K,     UID_V,           UID_O,       UID_DO,
                            UID_STATS, UID_SCALE, UID_ONE,         UID_NEG_INF, UID_DQ,
                            UID_DK,    UID_DV,    UID_SOFTMAX_SUM, UID_DQ_ACCUM};
    void *const ptrs[] = {(void *)qkv,
                          (void *)(qkv + HD),
                          (void *)(qkv + HD + KD),
                          (void *)out,
                          (void *)dout,
                          (void *)lse,
                          (void *)&scale,
                          (void *)&one,
                          (void *)&ninf,
                          (void *)dqkv,
                          (void *)(dqkv + HD),
                          (void *)(dqkv + HD + KD),
                          (void *)(ws + off_sum),
                          (void *)(ws + off_acc)};
    execute(*p, p->dq_accum ? 14 : 13, uids, ptrs, ws);
}

extern "C" void attention_f32_to_bf16_cuda(uint16_t *dst, const float *src, size_t n) {
    if (!n)
        return;
    f32_to_bf16_kernel<<<grid_for(n), 256, 0, cuda_ctx()->stream>>>(dst, src, n);
    HW_CHECK_LAUNCH();
}

extern "C" void attention_bf16_to_f32_cuda(float *dst, const uint16_t *src, size_t n) {
    if (!n)
        return;
    bf16_to_f32_kernel<<<grid_for(n), 256, 0, cuda_ctx()->stream>>>(dst, src, n);
    HW_CHECK_LAUNCH();
}

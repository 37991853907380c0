/* ops/matmul_cuda.cu -- GEMMs on the GPU (matmul.h, gemm.h). A row-major product is cuBLASLt's
 * column-major one with the operands swapped (C^T = op(B)^T op(A)^T). Each shape gets one cached
 * plan (descriptor, layouts and the heuristic's first algorithm), so a shape always runs the same
 * kernel with the same workspace: bit-identical results run after run. bf16 layers fuse bias and
 * GELU into cuBLASLt's epilogue where it offers one. cuBLAS proper does fp64 (dgemm) and any
 * shape cuBLASLt has no algorithm for. */
#include "cuda_common.cuh"
#include "cuda_ctx.h"
#include "gemm.h"
#include "matmul.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define GELU_K 0.7978845608028654f /* sqrt(2/pi), as act_cpu.c */

/* element access in the precision the CPU computes in (float for fp32 and bf16, double for fp64) */
template <typename T> struct elt;
template <> struct elt<float> {
    typedef float acc;
    static __device__ __forceinline__ float get(float x) {
        return x;
    }
    static __device__ __forceinline__ float put(float x) {
        return x;
    }
};
template <> struct elt<double> {
    typedef double acc;
    static __device__ __forceinline__ double get(double x) {
        return x;
    }
    static __device__ __forceinline__ double put(double x) {
        return x;
    }
};
template <> struct elt<__nv_bfloat16> {
    typedef float acc;
    static __device__ __forceinline__ float get(__nv_bfloat16 x) {
        return __bfloat162float(x);
    }
    static __device__ __forceinline__ __nv_bfloat16 put(float x) {
        return __float2bfloat16(x);
    }
};

// ----------------------------------------------------------------------------------------------
// CUDA kernels

/* C (m x n, row stride ldc) = beta C, exactly 0 when beta == 0: gemm with k == 0 */
template <typename T>
__global__ void gemm_scale_kernel(T *C, int m, int n, size_t ldc, typename elt<T>::acc beta) {
    typedef typename elt<T>::acc A;
    size_t total = (size_t)m * n, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += stride) {
        T *p = C + (i / n) * ldc + i % n;
        *p = elt<T>::put(beta == A(0) ? A(0) : beta * elt<T>::get(*p));
    }
}

__device__ __forceinline__ float gelu_f(float x) {
    return 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
}

__device__ __forceinline__ float gelu_grad_f(float x) {
    float t = tanhf(GELU_K * (x + 0.044715f * x * x * x));
    float du = GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

/* The epilogue cuBLASLt could not fuse. src (rows, cols) holds the product; bias (cols) is added;
 * with pre, pre = value and out = gelu(value), else out = value. src is pre or out. */
template <typename T>
__global__ void bias_gelu_kernel(T *out, T *pre, const T *bias, size_t rows, int cols) {
    size_t total = rows * (size_t)cols, stride = (size_t)gridDim.x * blockDim.x;
    const T *src = pre ? pre : out;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += stride) {
        float v = elt<T>::get(src[i]);
        if (bias)
            v += elt<T>::get(bias[i % cols]);
        if (pre) {
            pre[i] = elt<T>::put(v);
            v = gelu_f(v);
        }
        out[i] = elt<T>::put(v);
    }
}

/* d *= gelu'(pre) elementwise (the DGELU epilogue, unfused) */
template <typename T> __global__ void dgelu_kernel(T *d, const T *pre, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += stride)
        d[i] = elt<T>::put(elt<T>::get(d[i]) * gelu_grad_f(elt<T>::get(pre[i])));
}

// ----------------------------------------------------------------------------------------------
// cuBLASLt plans, cached per shape

/* Everything the heuristic's choice depends on; zero-initialised, so it hashes and compares as
 * bytes (no padding: int32 fields first, int64 after). */
struct lt_key {
    int32_t ab, cd; /* enum hw_dtype of A and B, of C and D */
    int32_t ta, tb, m, n, k;
    int32_t epi;                               /* cublasLtEpilogue_t */
    int32_t tf32;                              /* CUBLAS_COMPUTE_32F_FAST_TF32 for fp32 */
    int32_t al_a, al_b, al_c, al_bias, al_aux; /* pointer alignments in bytes, capped at 256 */
    int64_t lda, ldb, ldc, ld_aux;
};

struct lt_plan {
    struct lt_key key;
    int used;
    int ok; /* 0: cuBLASLt has no algorithm (or refused it): take the fallback */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc; /* cuBLASLt's A (our B), its B (our A), C = D */
    cublasLtMatmulAlgo_t algo;
};

enum { LT_SLOTS = 256 };
static struct lt_plan g_plans[LT_SLOTS];
static int g_tf32 = -1; /* -1: not read from the environment yet */

static int tf32_on(void) {
    if (g_tf32 < 0) {
        const char *e = getenv("HW_CUDA_TF32");
        g_tf32 = e && atoi(e) == 1;
    }
    return g_tf32;
}

extern "C" int matmul_cuda_allow_tf32(int on) {
    int prev = tf32_on();
    g_tf32 = on != 0;
    return prev;
}

static int32_t align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    if (!a)
        return 256;
    int32_t al = 1;
    while (al < 256 && !(a & (uintptr_t)al))
        al <<= 1;
    return al;
}

static cudaDataType_t cuda_type(int t) {
    switch (t) {
    case HW_F32:
        return CUDA_R_32F;
    case HW_BF16:
        return CUDA_R_16BF;
    case HW_F64:
        return CUDA_R_64F;
    }
    hw_die_at(__FILE__, __LINE__, "matmul_cuda: no CUDA type for %d", t);
}

static cublasComputeType_t compute_type(int ab, int tf32) {
    if (ab == HW_F64)
        return CUBLAS_COMPUTE_64F;
    return ab == HW_F32 && tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

static uint64_t key_hash(const struct lt_key *k) {
    const unsigned char *b = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof(*k); i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static void lt_plan_destroy(struct lt_plan *p) {
    if (!p->used)
        return;
    cublasLtMatrixLayoutDestroy(p->lc);
    cublasLtMatrixLayoutDestroy(p->lb);
    cublasLtMatrixLayoutDestroy(p->la);
    cublasLtMatmulDescDestroy(p->desc);
    memset(p, 0, sizeof(*p));
}

static void lt_plan_build(struct lt_plan *p, const struct lt_key *k, const void *bias,
                          const void *aux) {
    struct cuda_ctx *c = cuda_ctx();
    memset(p, 0, sizeof(*p));
    p->key = *k;
    p->used = 1;
    HW_CHECK_CUBLAS(cublasLtMatmulDescCreate(&p->desc, compute_type(k->ab, k->tf32), CUDA_R_32F));
    int32_t opa = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    HW_CHECK_CUBLAS(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
    HW_CHECK_CUBLAS(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
    cudaDataType_t tab = cuda_type(k->ab), tcd = cuda_type(k->cd);
    /* column-major view: our B (k x n, or n x k transposed) is cuBLASLt's A, our A its B */
    HW_CHECK_CUBLAS(
        cublasLtMatrixLayoutCreate(&p->la, tab, k->tb ? k->k : k->n, k->tb ? k->n : k->k, k->ldb));
    HW_CHECK_CUBLAS(
        cublasLtMatrixLayoutCreate(&p->lb, tab, k->ta ? k->m : k->k, k->ta ? k->k : k->m, k->lda));
    HW_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&p->lc, tcd, k->n, k->m, k->ldc));
    uint32_t epi = (uint32_t)k->epi;
    HW_CHECK_CUBLAS(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    /* the heuristic reads these pointers for their alignment */
    if (bias)
        HW_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias, sizeof(bias)));
    if (aux) {
        HW_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(
            p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
        HW_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(
            p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &k->ld_aux, sizeof(k->ld_aux)));
    }
    cublasLtMatmulPreference_t pref;
    HW_CHECK_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = c->lt_ws_bytes;
    uint32_t al_a = (uint32_t)k->al_b, al_b = (uint32_t)k->al_a, al_c = (uint32_t)k->al_c;
    HW_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    HW_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof(al_a)));
    HW_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof(al_b)));
    HW_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof(al_c)));
    HW_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof(al_c)));
    cublasLtMatmulHeuristicResult_t res[8];
    int n = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->la, p->lb, p->lc, p->lc,
                                                       pref, 8, res, &n);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS)
        return; /* e.g. NOT_SUPPORTED for this type/epilogue combination: p->ok stays 0 */
    for (int i = 0; i < n; i++)
        if (res[i].state == CUBLAS_STATUS_SUCCESS && res[i].workspaceSize <= ws) {
            p->algo = res[i].algo;
            p->ok = 1;
            break;
        }
}

static struct lt_plan *lt_plan_get(const struct lt_key *k, const void *bias, const void *aux) {
    unsigned home = (unsigned)(key_hash(k) % LT_SLOTS);
    for (unsigned j = 0; j < LT_SLOTS; j++) {
        struct lt_plan *p = &g_plans[(home + j) % LT_SLOTS];
        if (!p->used) {
            lt_plan_build(p, k, bias, aux);
            return p;
        }
        if (!memcmp(&p->key, k, sizeof(*k)))
            return p;
    }
    /* every slot taken: replace the home slot (plans are only read when a matmul is enqueued) */
    struct lt_plan *p = &g_plans[home];
    lt_plan_destroy(p);
    lt_plan_build(p, k, bias, aux);
    return p;
}

/* One product through cuBLASLt: 1 when done, 0 when cuBLASLt has no algorithm for it. */
static int lt_matmul(int ab, int cd, int ta, int tb, int m, int n, int k, float alpha,
                     const void *A, size_t lda, const void *B, size_t ldb, float beta, void *C,
                     size_t ldc, cublasLtEpilogue_t epi, const void *bias, const void *aux,
                     int64_t ld_aux) {
    struct lt_key key;
    memset(&key, 0, sizeof(key));
    key.ab = ab;
    key.cd = cd;
    key.ta = ta;
    key.tb = tb;
    key.m = m;
    key.n = n;
    key.k = k;
    key.epi = (int32_t)epi;
    key.tf32 = ab == HW_F32 ? tf32_on() : 0;
    key.al_a = align_of(A);
    key.al_b = align_of(B);
    key.al_c = align_of(C);
    key.al_bias = bias ? align_of(bias) : 0;
    key.al_aux = aux ? align_of(aux) : 0;
    key.lda = (int64_t)lda;
    key.ldb = (int64_t)ldb;
    key.ldc = (int64_t)ldc;
    key.ld_aux = aux ? ld_aux : 0;
    struct lt_plan *p = lt_plan_get(&key, bias, aux);
    if (!p->ok)
        return 0;
    if (bias)
        HW_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias, sizeof(bias)));
    if (aux)
        HW_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(
            p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
    struct cuda_ctx *c = cuda_ctx();
    cublasStatus_t st = cublasLtMatmul(c->lt, p->desc, &alpha, B, p->la, A, p->lb, &beta, C, p->lc,
                                       C, p->lc, &p->algo, c->lt_ws, c->lt_ws_bytes, c->stream);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE) {
        p->ok = 0; /* refused before launching anything: remember, take the fallback */
        return 0;
    }
    HW_CHECK_CUBLAS(st);
    return 1;
}

/* cuBLAS proper: fp64, and what cuBLASLt has no algorithm for */
static void blas_gemm(int ab, int cd, int ta, int tb, int m, int n, int k, double alpha,
                      const void *A, size_t lda, const void *B, size_t ldb, double beta, void *C,
                      size_t ldc) {
    struct cuda_ctx *c = cuda_ctx();
    HW_CUDA_ASSERT(lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX);
    cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (ab == HW_F64) {
        HW_CHECK_CUBLAS(cublasDgemm(c->blas, opa, opb, n, m, k, &alpha, (const double *)B, (int)ldb,
                                    (const double *)A, (int)lda, &beta, (double *)C, (int)ldc));
        return;
    }
    float a = (float)alpha, b = (float)beta;
    HW_CHECK_CUBLAS(cublasGemmEx(c->blas, opa, opb, n, m, k, &a, B, cuda_type(ab), (int)ldb, A,
                                 cuda_type(ab), (int)lda, &b, C, cuda_type(cd), (int)ldc,
                                 compute_type(ab, ab == HW_F32 && tf32_on()), CUBLAS_GEMM_DEFAULT));
}

/* gemm.h's contract for one of the supported type pairs, shapes already checked */
static void gemm_plain(int ab, int cd, int ta, int tb, int m, int n, int k, double alpha,
                       const void *A, size_t lda, const void *B, size_t ldb, double beta, void *C,
                       size_t ldc) {
    if (m <= 0 || n <= 0)
        return;
    struct cuda_ctx *c = cuda_ctx();
    if (k <= 0) {
        size_t total = (size_t)m * n;
        if (cd == HW_F64)
            gemm_scale_kernel<double>
                <<<hw_grid1d(total, 256), 256, 0, c->stream>>>((double *)C, m, n, ldc, beta);
        else if (cd == HW_F32)
            gemm_scale_kernel<float>
                <<<hw_grid1d(total, 256), 256, 0, c->stream>>>((float *)C, m, n, ldc, (float)beta);
        else
            gemm_scale_kernel<__nv_bfloat16><<<hw_grid1d(total, 256), 256, 0, c->stream>>>(
                (__nv_bfloat16 *)C, m, n, ldc, (float)beta);
        HW_CHECK_LAUNCH();
        return;
    }
    if (ab != HW_F64 && lt_matmul(ab, cd, ta, tb, m, n, k, (float)alpha, A, lda, B, ldb,
                                  (float)beta, C, ldc, CUBLASLT_EPILOGUE_DEFAULT, NULL, NULL, 0))
        return;
    blas_gemm(ab, cd, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

// ----------------------------------------------------------------------------------------------
// train.precision: bf16. The fp32 entry points (matmul_*, gemm fp32 x fp32) round their operands
// to bf16 (ties to even) into device scratch and multiply them as bf16 with fp32 accumulation and
// an fp32 result: the CPU backend's rounded copies through sgemm, on the tensor cores.

static int g_bf16;

extern "C" void matmul_cuda_set_bf16(int on) {
    g_bf16 = on;
}

/* dst (rows x cols, dense) = bf16(src (rows x cols, row stride ld)) */
__global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t rows, size_t cols,
                               size_t ld) {
    const size_t n = rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[(i / cols) * ld + i % cols]);
}

/* three operand slots, grown on demand (only the compute stream uses them, in order) */
static __nv_bfloat16 *g_bf[3];
static size_t g_bf_n[3];

static const __nv_bfloat16 *bf16_copy(int slot, const float *src, size_t rows, size_t cols,
                                      size_t ld) {
    struct cuda_ctx *c = cuda_ctx();
    const size_t n = rows * cols;
    if (n > g_bf_n[slot]) {
        if (g_bf[slot]) {
            HW_CHECK_CUDA(cudaStreamSynchronize(c->stream)); /* queued GEMMs may read it */
            HW_CHECK_CUDA(cudaFree(g_bf[slot]));
            cuda_mem_note(g_bf[slot], 0);
        }
        const size_t want = n + n / 4 + 4096;
        g_bf[slot] = NULL;
        HW_CHECK_CUDA(cudaMalloc(&g_bf[slot], sizeof(__nv_bfloat16) * want));
        cuda_mem_note(g_bf[slot], sizeof(__nv_bfloat16) * want);
        g_bf_n[slot] = want;
    }
    if (n) {
        to_bf16_kernel<<<hw_grid1d(n, 256), 256, 0, c->stream>>>(g_bf[slot], src, rows, cols, ld);
        HW_CHECK_LAUNCH();
    }
    return g_bf[slot];
}

/* gemm.h's fp32 contract under bf16: A is (m x k), or (k x m) when ta; B (k x n), or (n x k) */
static void gemm_f32_as_bf16(int ta, int tb, int m, int n, int k, double alpha, const float *A,
                             size_t lda, const float *B, size_t ldb, double beta, float *C,
                             size_t ldc) {
    if (m <= 0 || n <= 0)
        return;
    const size_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    const __nv_bfloat16 *a = k > 0 ? bf16_copy(0, A, ar, ac, lda) : NULL;
    const __nv_bfloat16 *b = k > 0 ? bf16_copy(1, B, br, bc, ldb) : NULL;
    gemm_plain(HW_BF16, HW_F32, ta, tb, m, n, k, alpha, a, ac, b, bc, beta, C, ldc);
}

extern "C" double matmul_cuda_peak(double seconds, const char **what) {
    struct cuda_ctx *c = cuda_ctx();
    const int n = 4096, ab = g_bf16 ? HW_BF16 : HW_F32;
    const size_t el = g_bf16 ? sizeof(__nv_bfloat16) : sizeof(float), nn = (size_t)n * n;
    *what = g_bf16 ? "cuBLASLt bf16" : (tf32_on() ? "cuBLASLt tf32" : "cuBLASLt fp32");
    void *A = NULL, *B = NULL, *C = NULL;
    HW_CHECK_CUDA(cudaMalloc(&A, el * nn));
    HW_CHECK_CUDA(cudaMalloc(&B, el * nn));
    HW_CHECK_CUDA(cudaMalloc(&C, sizeof(float) * nn));
    HW_CHECK_CUDA(cudaMemsetAsync(A, 0, el * nn, c->stream));
    HW_CHECK_CUDA(cudaMemsetAsync(B, 0, el * nn, c->stream));
    cudaEvent_t e0, e1;
    HW_CHECK_CUDA(cudaEventCreate(&e0));
    HW_CHECK_CUDA(cudaEventCreate(&e1));
    gemm_plain(ab, HW_F32, 0, 1, n, n, n, 1.0, A, n, B, n, 0.0, C, n); /* plan and warm-up */
    double best = 0.0, spent = 0.0;
    for (int i = 0; i < 200 && spent < seconds; i++) {
        HW_CHECK_CUDA(cudaEventRecord(e0, c->stream));
        gemm_plain(ab, HW_F32, 0, 1, n, n, n, 1.0, A, n, B, n, 0.0, C, n);
        HW_CHECK_CUDA(cudaEventRecord(e1, c->stream));
        HW_CHECK_CUDA(cudaEventSynchronize(e1));
        float ms = 0.0f;
        HW_CHECK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
        spent += ms / 1e3;
        const double r = ms > 0.0f ? 2.0 * n * (double)n * n / (ms / 1e3) : 0.0;
        best = r > best ? r : best;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    HW_CHECK_CUDA(cudaFree(A));
    HW_CHECK_CUDA(cudaFree(B));
    HW_CHECK_CUDA(cudaFree(C));
    return best;
}

// ----------------------------------------------------------------------------------------------
// kernel launchers

extern "C" void gemm_cuda(enum hw_dtype ab, enum hw_dtype c, int ta, int tb, int m, int n, int k,
                          double alpha, const void *A, size_t lda, const void *B, size_t ldb,
                          double beta, void *C, size_t ldc) {
    int ok_types = (ab == HW_F32 && c == HW_F32) || (ab == HW_F64 && c == HW_F64) ||
                   (ab == HW_BF16 && (c == HW_F32 || c == HW_BF16));
    if (!ok_types)
        hw_die_at(__FILE__, __LINE__,
                  "gemm_cuda: %s x %s -> %s is not a supported combination (fp32, fp64, bf16 -> "
                  "fp32 or bf16)",
                  hw_dtype_name(ab), hw_dtype_name(ab), hw_dtype_name(c));
    if (m <= 0 || n <= 0)
        return;
    if (k > 0) {
        HW_CUDA_ASSERT(lda >= (size_t)(ta ? m : k));
        HW_CUDA_ASSERT(ldb >= (size_t)(tb ? k : n));
    }
    HW_CUDA_ASSERT(ldc >= (size_t)n);
    if (g_bf16 && ab == HW_F32) {
        gemm_f32_as_bf16(ta, tb, m, n, k, alpha, (const float *)A, lda, (const float *)B, ldb,
                         beta, (float *)C, ldc);
        return;
    }
    gemm_plain(ab, c, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

extern "C" void matmul_forward_cuda(float *out, const float *inp, const float *w, int N, int K,
                                    int M, float beta) {
    HW_CUDA_ASSERT(N >= 0 && K >= 0 && M >= 0);
    if (g_bf16)
        gemm_f32_as_bf16(0, 1, N, M, K, 1.0, inp, K, w, K, beta, out, M);
    else
        gemm_plain(HW_F32, HW_F32, 0, 1, N, M, K, 1.0, inp, K, w, K, beta, out, M);
}

extern "C" void matmul_backward_cuda(float *dinp, float *dw, const float *dout, const float *inp,
                                     const float *w, int N, int K, int M, float beta_dinp) {
    HW_CUDA_ASSERT(N >= 0 && K >= 0 && M >= 0);
    if (g_bf16 && N > 0 && M > 0 && K > 0) { /* dout rounded once for both products */
        const __nv_bfloat16 *g = bf16_copy(0, dout, (size_t)N, (size_t)M, (size_t)M);
        if (dinp)
            gemm_plain(HW_BF16, HW_F32, 0, 0, N, K, M, 1.0, g, M,
                       bf16_copy(1, w, (size_t)M, (size_t)K, (size_t)K), K, beta_dinp, dinp, K);
        if (dw)
            gemm_plain(HW_BF16, HW_F32, 1, 0, M, K, N, 1.0, g, M,
                       bf16_copy(2, inp, (size_t)N, (size_t)K, (size_t)K), K, 1.0, dw, K);
        return;
    }
    if (dinp)
        gemm_plain(HW_F32, HW_F32, 0, 0, N, K, M, 1.0, dout, M, w, K, beta_dinp, dinp, K);
    if (dw)
        gemm_plain(HW_F32, HW_F32, 1, 0, M, K, N, 1.0, dout, M, inp, K, 1.0, dw, K);
}

extern "C" void matmul_forward_bf16_cuda(void *out, void *pre_gelu, enum hw_dtype out_type,
                                         const void *inp, const void *w, const void *bias, int N,
                                         int K, int M, float beta) {
    HW_CUDA_ASSERT(out_type == HW_F32 || out_type == HW_BF16);
    HW_CUDA_ASSERT(N >= 0 && K >= 0 && M >= 0);
    HW_CUDA_ASSERT(!pre_gelu || beta == 0.0f);
    if (N == 0 || M == 0)
        return;
    if (bias || pre_gelu) {
        cublasLtEpilogue_t epi =
            pre_gelu ? (bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX)
                     : CUBLASLT_EPILOGUE_BIAS;
        /* cuBLASLt wants the GELU input's leading dimension divisible by 8 */
        if (K > 0 && (!pre_gelu || M % 8 == 0) &&
            lt_matmul(HW_BF16, out_type, 0, 1, N, M, K, 1.0f, inp, K, w, K, beta, out, M, epi, bias,
                      pre_gelu, M))
            return;
    }
    void *dst = pre_gelu ? pre_gelu : out;
    gemm_plain(HW_BF16, out_type, 0, 1, N, M, K, 1.0, inp, K, w, K, beta, dst, M);
    if (!bias && !pre_gelu)
        return;
    struct cuda_ctx *c = cuda_ctx();
    size_t total = (size_t)N * M;
    if (out_type == HW_F32)
        bias_gelu_kernel<float><<<hw_grid1d(total, 256), 256, 0, c->stream>>>(
            (float *)out, (float *)pre_gelu, (const float *)bias, (size_t)N, M);
    else
        bias_gelu_kernel<__nv_bfloat16><<<hw_grid1d(total, 256), 256, 0, c->stream>>>(
            (__nv_bfloat16 *)out, (__nv_bfloat16 *)pre_gelu, (const __nv_bfloat16 *)bias, (size_t)N,
            M);
    HW_CHECK_LAUNCH();
}

extern "C" void matmul_backward_bf16_cuda(void *dinp, enum hw_dtype dinp_type, float *dw,
                                          const void *dout, const void *inp, const void *w,
                                          const void *pre_gelu, int N, int K, int M,
                                          float beta_dinp) {
    HW_CUDA_ASSERT(N >= 0 && K >= 0 && M >= 0);
    HW_CUDA_ASSERT(!pre_gelu || beta_dinp == 0.0f);
    if (dinp) {
        HW_CUDA_ASSERT(dinp_type == HW_F32 || dinp_type == HW_BF16);
        int fused = pre_gelu && M > 0 && K % 8 == 0 && N > 0 && K > 0 &&
                    lt_matmul(HW_BF16, dinp_type, 0, 0, N, K, M, 1.0f, dout, M, w, K, 0.0f, dinp, K,
                              CUBLASLT_EPILOGUE_DGELU, NULL, pre_gelu, K);
        if (!fused) {
            gemm_plain(HW_BF16, dinp_type, 0, 0, N, K, M, 1.0, dout, M, w, K, beta_dinp, dinp, K);
            if (pre_gelu && N > 0 && K > 0) {
                struct cuda_ctx *c = cuda_ctx();
                size_t total = (size_t)N * K;
                if (dinp_type == HW_F32)
                    dgelu_kernel<float><<<hw_grid1d(total, 256), 256, 0, c->stream>>>(
                        (float *)dinp, (const float *)pre_gelu, total);
                else
                    dgelu_kernel<__nv_bfloat16><<<hw_grid1d(total, 256), 256, 0, c->stream>>>(
                        (__nv_bfloat16 *)dinp, (const __nv_bfloat16 *)pre_gelu, total);
                HW_CHECK_LAUNCH();
            }
        }
    }
    if (dw)
        gemm_plain(HW_BF16, HW_F32, 1, 0, M, K, N, 1.0, dout, M, inp, K, 1.0, dw, K);
}

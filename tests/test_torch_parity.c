/* tests/test_torch_parity.c -- headwise against PyTorch on the same weights (llm.c's
 * test_gpt2 idea): bench/torch_parity.py builds a tiny GQA + SwiGLU GPT, runs one fixed batch and
 * writes the weights, logits, mean loss and every parameter gradient; this test loads the same
 * weights into the CPU backend's model, runs the same batch and compares in fp32 (logits and
 * loss relative 1e-5, gradients relative 1e-4 of each tensor's largest entry). Skipped (exit 77,
 * with the reason) when python3 cannot import torch; HW_TORCH_PYTHON names another
 * interpreter. */
#define _POSIX_C_SOURCE 200809L
#include "../model/gpt.h"
#include "../ops/ops.h"
#include "check.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct rec {
    char name[65];
    int ndim;
    int64_t shape[8];
    size_t n;
    float *data;
};

static int read_recs(const char *path, struct rec *r, int max) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    int n = 0;
    while (n < max && fread(r[n].name, 1, 64, f) == 64) {
        r[n].name[64] = '\0';
        int32_t nd;
        if (fread(&nd, 4, 1, f) != 1 || nd < 0 || nd > 8)
            break;
        r[n].ndim = nd;
        r[n].n = 1;
        if (nd && fread(r[n].shape, 8, (size_t)nd, f) != (size_t)nd)
            break;
        for (int k = 0; k < nd; k++)
            r[n].n *= (size_t)r[n].shape[k];
        r[n].data = malloc(4 * (r[n].n ? r[n].n : 1));
        if (fread(r[n].data, 4, r[n].n, f) != r[n].n) {
            free(r[n].data);
            break;
        }
        n++;
    }
    fclose(f);
    return n;
}

static const struct rec *find(const struct rec *r, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(r[i].name, name))
            return &r[i];
    return NULL;
}

/* max |a - b| over max |b|: the error relative to the tensor's scale */
static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / (den > 0.0 ? den : 1.0);
}

int main(void) {
    const char *py = getenv("HW_TORCH_PYTHON");
    if (!py)
        py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    char cmd[1024], path[] = "/tmp/hw_torch_parity.XXXXXX";
    snprintf(cmd, sizeof(cmd), "%s -c 'import torch' >/dev/null 2>&1", py);
    if (system(cmd) != 0) {
        printf("SKIP test_torch_parity: %s cannot import torch (apt-get install python3-torch, "
               "or set HW_TORCH_PYTHON)\n",
               py);
        return 77;
    }
    int fd = mkstemp(path);
    if (fd < 0)
        return 1;
    close(fd);
    snprintf(cmd, sizeof(cmd), "%s bench/torch_parity.py %s", py, path);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_torch_parity: '%s' failed\n", cmd);
        unlink(path);
        return 1;
    }
    struct rec r[128];
    int n = read_recs(path, r, 128);
    unlink(path);
    const struct rec *shape = find(r, n, "shape");
    CHECK(n > 0 && shape && shape->n == 8);
    if (!shape)
        return check_report("test_torch_parity");
    const int V = (int)shape->data[0], C = (int)shape->data[1], L = (int)shape->data[2],
              H = (int)shape->data[3], Hkv = (int)shape->data[4], F = (int)shape->data[5],
              B = (int)shape->data[6], T = (int)shape->data[7];
    struct gpt_config gc = {.C = C,
                            .L = L,
                            .H = H,
                            .Hkv = Hkv,
                            .hd = C / H,
                            .F = F,
                            .V = V,
                            .max_T = T,
                            .mlp = GPT_MLP_SWIGLU,
                            .tied = 1,
                            .rope_theta = 10000.0f,
                            .eps = 1e-5f,
                            .init_std = 0.02f};
    struct gpt m;
    gpt_init(&m, &gc, ops_for(BACKEND_CPU), NULL);
    /* every parameter comes from the file, by name and shape */
    int loaded = 0;
    for (int i = 0; i < m.n_params; i++) {
        const struct param *p = &m.params[i];
        const struct rec *w = find(r, n, p->name);
        CHECK_MSG(w && w->n == p->numel, "parameter %s missing or of another size", p->name);
        if (w && w->n == p->numel) {
            memcpy(m.param_mem + p->offset, w->data, 4 * p->numel);
            loaded++;
        }
    }
    CHECK(loaded == m.n_params);
    const struct rec *tok = find(r, n, "tokens"), *lg = find(r, n, "logits"),
                     *loss = find(r, n, "loss");
    CHECK(tok && lg && loss && tok->n == (size_t)B * (T + 1) && lg->n == (size_t)B * T * V);
    if (!tok || !lg || !loss || loaded != m.n_params)
        return check_report("test_torch_parity");
    int32_t *in = malloc(4 * (size_t)B * T), *tgt = malloc(4 * (size_t)B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            in[b * T + t] = (int32_t)tok->data[b * (T + 1) + t];
            tgt[b * T + t] = (int32_t)tok->data[b * (T + 1) + t + 1];
        }
    gpt_alloc_acts(&m, B, T);
    /* logits from a forward without targets (with targets the buffer holds dlogits) */
    gpt_forward(&m, in, NULL, B, T, 0.0f, 0);
    double e_logits = rel_err(gpt_logits(&m), lg->data, lg->n);
    printf("logits: max rel err %.3g\n", e_logits);
    CHECK(e_logits < 1e-5);
    gpt_zero_grad(&m);
    double mean = gpt_forward(&m, in, tgt, B, T, 1.0f / (float)(B * T), 1) / (B * T);
    printf("loss: headwise %.7f, torch %.7f\n", mean, loss->data[0]);
    CHECK_CLOSE(mean, loss->data[0], 1e-5);
    gpt_backward(&m);
    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < m.n_params; i++) {
        const struct param *p = &m.params[i];
        char gname[80];
        snprintf(gname, sizeof(gname), "grad.%s", p->name);
        const struct rec *g = find(r, n, gname);
        CHECK_MSG(g && g->n == p->numel, "gradient %s missing", gname);
        if (!g || g->n != p->numel)
            continue;
        double e = rel_err(m.grad_mem + p->offset, g->data, p->numel);
        CHECK_MSG(e < 1e-4, "%s: gradient rel err %.3g", p->name, e);
        if (e > worst) {
            worst = e;
            worst_name = p->name;
        }
    }
    printf("gradients: %d tensors, worst rel err %.3g (%s)\n", m.n_params, worst, worst_name);
    free(in);
    free(tgt);
    for (int i = 0; i < n; i++)
        free(r[i].data);
    gpt_free(&m);
    return check_report("test_torch_parity");
}

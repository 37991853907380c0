/* eval/task_perplexity.c -- `perplexity`: loss (nats per token), perplexity and, on raw text,
 * bits per byte, over disjoint windows of the model's context (each window's first token is
 * given). The data is a token shard (.h5) or a text file tokenized with the checkpoint's own
 * tokenizer. Standard errors bootstrap over windows. */
#include "../core/check.h"
#include "../core/fsutil.h"
#include "../datasets/shards.h"
#include "../eval/metrics.h"
#include "tasks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ratio_ctx {
    const double *num, *den;
};

static double ratio_stat(const int *idx, int n, void *vc) {
    const struct ratio_ctx *r = vc;
    double a = 0.0, b = 0.0;
    for (int i = 0; i < n; i++) {
        a += r->num[idx[i]];
        b += r->den[idx[i]];
    }
    return b > 0 ? a / b : 0.0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int task_perplexity(struct eval_ctx *ctx, json_t *metrics, json_t *info, char *err) {
    const struct cfg_eval *e = &ctx->c->eval;
    const char *path = e->perplexity_data;
    if (!path[0])
        return hw_errf(err, HW_ECONFIG,
                       "perplexity: eval.perplexity_data is not set (a token "
                       "shard .h5 or a text file)");
    int32_t *tok = NULL;
    int64_t n = 0;
    size_t bytes = 0;
    int rc = 0;
    if (ends_with(path, ".h5")) {
        struct shard sh;
        if ((rc = shard_open(&sh, path, err)))
            return rc;
        /* every id must be an embedding row of the checkpoint's model */
        if ((rc = shard_check_vocab(&sh, ctx->lm->m->c.V, err))) {
            shard_close(&sh); /* a stop request may have come to this rank only */
            return eval_agree(ctx, rc, "perplexity", err);
        }
        n = sh.n;
        tok = HW_MALLOC(sizeof(int32_t) * (size_t)(n ? n : 1));
        rc = shard_read(&sh, tok, 0, n, err);
        shard_close(&sh);
        if (rc) {
            free(tok);
            return rc;
        }
    } else {
        char *text = fs_read_all(path, &bytes, err);
        if (!text)
            return HW_EIO;
        n = bpe_encode(ctx->lm->tok, text, bytes, 0, &tok);
        free(text);
    }
    const int T = ctx->lm->max_T;
    int n_win = n > 1 ? (int)((n - 2) / T + 1) : 0;
    if (e->limit && n_win > e->limit)
        n_win = e->limit;
    if (n_win == 0) {
        free(tok);
        return hw_errf(err, HW_EFORMAT, "%s: fewer than 2 tokens", path);
    }
    int64_t *start = HW_MALLOC(sizeof(int64_t) * (size_t)n_win);
    int mine = 0;
    for (int w = 0; w < n_win; w++)
        if (eval_mine(ctx, w))
            start[mine++] = (int64_t)w * T;
    double *ll_m = HW_CALLOC((size_t)(mine ? mine : 1), sizeof(double));
    int64_t *cnt_m = HW_CALLOC((size_t)(mine ? mine : 1), sizeof(int64_t));
    rc = lm_windows_loglik(ctx->lm, tok, n, start, mine, ll_m, cnt_m, err);
    if ((rc = eval_agree(ctx, rc, "perplexity", err))) {
        free(tok);
        free(start);
        free(ll_m);
        free(cnt_m);
        return rc;
    }
    double *nll = HW_CALLOC((size_t)n_win, sizeof(double)),
           *cnt = HW_CALLOC((size_t)n_win, sizeof(double));
    for (int w = 0, k = 0; w < n_win; w++)
        if (eval_mine(ctx, w)) {
            nll[w] = -ll_m[k];
            cnt[w] = (double)cnt_m[k++];
            if (ctx->samples) /* the window's own loss (nats per predicted token) */
                eval_sample(ctx, w,
                            json_pack("{s:s,s:I,s:I,s:f,s:f}", "task", "perplexity", "start",
                                      (json_int_t)((int64_t)w * T), "tokens", (json_int_t)cnt[w],
                                      "nll", nll[w], "loss", cnt[w] > 0 ? nll[w] / cnt[w] : 0.0));
        }
    eval_sum(ctx, nll, n_win);
    eval_sum(ctx, cnt, n_win);
    double tot = 0.0, tc = 0.0;
    for (int w = 0; w < n_win; w++) {
        tot += nll[w];
        tc += cnt[w];
    }
    struct ratio_ctx rcx = {nll, cnt};
    double loss = tot / tc;
    double se =
        metrics_bootstrap_stderr(ratio_stat, &rcx, n_win, e->bootstrap_iters, (uint64_t)e->seed);
    eval_put(metrics, "loss", loss, se);
    eval_put(metrics, "perplexity", exp(loss), exp(loss) * se);
    if (bytes && (int64_t)n_win * T >= n - 1)
        eval_put(metrics, "bits_per_byte", tot / ((double)bytes * log(2.0)), -1.0);
    rc = eval_info_file(info, "data", path, err);
    json_object_set_new(info, "windows", json_integer(n_win));
    json_object_set_new(info, "tokens_scored", json_integer((json_int_t)tc));
    json_object_set_new(info, "window_tokens", json_integer(T));
    free(tok);
    free(start);
    free(ll_m);
    free(cnt_m);
    free(nll);
    free(cnt);
    return rc;
}

/* tests/test_lm.c -- the evaluation LM: batched KV-cache generation equals generation without
 * a cache (a full forward per token) for every prompt and batch size; log-likelihoods do not
 * depend on the batch size (bit for bit); lm-eval pair encoding moves trailing context spaces
 * into the continuation. Uses a small random model over the byte-level tokenizer. */
#include "../core/check.h"
#include "../core/rng.h"
#include "../eval/lm.h"
#include "../ops/ops.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

static void make(struct gpt *m, struct bpe *tok) {
    bpe_init(tok);
    bpe_add_special(tok, "<|endoftext|>");
    struct gpt_config gc = {.C = 32,
                            .L = 2,
                            .H = 4,
                            .Hkv = 2,
                            .hd = 8,
                            .F = 64,
                            .V = bpe_vocab_size(tok),
                            .max_T = 96,
                            .mlp = GPT_MLP_SWIGLU,
                            .tied = 1,
                            .rope_theta = 10000.0f,
                            .eps = 1e-5f,
                            .init_std = 0.5f};
    gpt_init(m, &gc, ops_for(BACKEND_CPU), NULL);
    gpt_init_weights(m, 11);
}

int main(void) {
    ops_set_threads(2);
    struct gpt m;
    struct bpe tok;
    make(&m, &tok);
    struct lm lm = {.m = &m,
                    .tok = &tok,
                    .batch = 1,
                    .max_T = 96,
                    .eot = bpe_special_id(&tok, "<|endoftext|>")};
    const char *prompts[5] = {"hello", "The quick brown fox", "a", "copy abc > ",
                              "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"};
    struct cfg_list stop;
    memset(&stop, 0, sizeof(stop));
    char err[HW_ERR_LEN];
    char *ref[5];
    for (int i = 0; i < 5; i++)
        CHECK(lm_generate_nocache(&lm, prompts[i], 12, &stop, &ref[i], err) == 0);
    for (int batch = 1; batch <= 4; batch += 3) {
        char *out[5];
        lm.batch = batch;
        CHECK(lm_generate(&lm, prompts, 5, 12, &stop, out, err) == 0);
        for (int i = 0; i < 5; i++) {
            CHECK_MSG(!strcmp(out[i], ref[i]), "batch %d prompt %d: '%s' vs no-cache '%s'", batch,
                      i, out[i], ref[i]);
            free(out[i]);
        }
    }
    /* a stop string cuts the output before it */
    if (strlen(ref[1]) > 3) {
        char s2[4] = {ref[1][2], ref[1][3], 0, 0};
        memset(&stop, 0, sizeof(stop));
        snprintf(stop.item[0], CFG_PATH_MAX, "%s", s2);
        stop.n = 1;
        char *o;
        CHECK(lm_generate_nocache(&lm, prompts[1], 12, &stop, &o, err) == 0);
        CHECK(strstr(o, s2) == NULL && strlen(o) <= strlen(ref[1]));
        free(o);
    }
    for (int i = 0; i < 5; i++)
        free(ref[i]);
    /* log-likelihoods: batch size independent, bit for bit */
    const char *pairs[6][2] = {{"Claim: x\nVerdict:", " true"},
                               {"Claim: x\nVerdict:", " false"},
                               {"hello ", "world"},
                               {"a", "b"},
                               {"The quick brown", " fox jumps"},
                               {"", "x"}};
    struct lm_request a[6];
    memset(a, 0, sizeof(a));
    for (int i = 0; i < 6; i++) {
        a[i].ctx = pairs[i][0];
        a[i].cont = pairs[i][1];
    }
    struct lm_request b[6];
    memcpy(b, a, sizeof(a));
    lm.batch = 1;
    CHECK(lm_loglikelihood(&lm, a, 5, err) == 0);
    lm.batch = 4;
    CHECK(lm_loglikelihood(&lm, b, 5, err) == 0);
    for (int i = 0; i < 5; i++)
        CHECK_MSG(a[i].ll == b[i].ll && a[i].greedy == b[i].greedy, "request %d: %.17g vs %.17g", i,
                  a[i].ll, b[i].ll);
    /* "hello " + "world": the trailing space moves into the continuation (" world": 6 bytes) */
    CHECK(a[2].n_tokens == 6);
    /* an empty context: the continuation is scored after <|endoftext|> (lm-eval) */
    CHECK(lm_loglikelihood(&lm, &a[5], 1, err) == 0 && a[5].n_tokens == 1 && a[5].ll < 0);
    /* rolling log-likelihood: two windows equal the sum of their single-window parts */
    int32_t toks[150];
    for (int i = 0; i < 150; i++)
        toks[i] = (int32_t)(rng_uniform(3, (uint64_t)i) * 256);
    int64_t st[2] = {0, 96}, cnt[2];
    double ll[2], ll1, ll2;
    int64_t c1, c2;
    lm.batch = 2;
    CHECK(lm_windows_loglik(&lm, toks, 150, st, 2, ll, cnt, err) == 0);
    lm.batch = 1;
    CHECK(lm_windows_loglik(&lm, toks, 150, &st[0], 1, &ll1, &c1, err) == 0);
    CHECK(lm_windows_loglik(&lm, toks, 150, &st[1], 1, &ll2, &c2, err) == 0);
    CHECK(cnt[0] == 96 && cnt[1] == 53 && c1 == 96 && c2 == 53);
    CHECK(ll[0] == ll1 && ll[1] == ll2);
    gpt_free(&m);
    bpe_free(&tok);
    return check_report("test_lm");
}

/* cli/cmd_sample.c -- `headwise sample`: generate text from a checkpoint with a KV cache;
 * greedy, temperature or top-k sampling, seeded and reproducible. */
#include "../ckpt/ckpt.h"
#include "../ckpt/ckpt_model.h"
#include "../core/check.h"
#include "../core/log.h"
#include "../core/rng.h"
#include "../datasets/sft.h"
#include "cli.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pick the next token: argmax when temperature == 0, else softmax(logits / temperature) over
 * the top_k largest logits (all when top_k <= 0). Ties resolve to the lowest id. */
static int32_t pick_token(const float *logits, int V, double temperature, int top_k,
                          struct rng_stream *rng, int32_t *idx, double *p) {
    if (temperature <= 0.0) {
        int32_t best = 0;
        for (int v = 1; v < V; v++)
            if (logits[v] > logits[best])
                best = v;
        return best;
    }
    int k = top_k > 0 && top_k < V ? top_k : V;
    for (int v = 0; v < V; v++)
        idx[v] = v;
    for (int i = 0; i < k; i++) { /* partial selection sort: k is small in practice */
        int b = i;
        for (int j = i + 1; j < V; j++)
            if (logits[idx[j]] > logits[idx[b]])
                b = j;
        int32_t t = idx[i];
        idx[i] = idx[b];
        idx[b] = t;
    }
    double mx = logits[idx[0]], sum = 0.0;
    for (int i = 0; i < k; i++)
        sum += p[i] = exp((logits[idx[i]] - mx) / temperature);
    double u = rng_stream_uniform(rng) * sum, acc = 0.0;
    for (int i = 0; i < k; i++) {
        acc += p[i];
        if (u < acc)
            return idx[i];
    }
    return idx[k - 1];
}

int cmd_sample(int argc, char **argv, struct dist *d) {
    static const char *const valued[] = {"--prompt", "--tokens",  "--temperature",
                                         "--top-k",  "--seed",    "--system",
                                         "--pasta",  "--backend", NULL};
    char *pos[2], err[HW_ERR_LEN], file[CKPT_PATH_LEN];
    if (cli_positional(argc, argv, valued, pos, 2) != 1) {
        log_error("usage: headwise sample CKPT|RUN_DIR [--prompt S] [--tokens N] "
                  "[--temperature T] [--top-k K] [--seed S] [--chat [--system S] [--indicator] "
                  "[--pasta ALPHA]] [--backend cpu|cuda]");
        return HW_EXIT_CONFIG;
    }
    const char *prompt = cli_opt(argc, argv, "--prompt", "\n");
    long long n_new_l, top_k_l, seed;
    double temperature, pasta;
    if (cli_opt_int(argc, argv, "--tokens", 128, 1, INT_MAX, &n_new_l) ||
        cli_opt_num(argc, argv, "--temperature", 0.8, 0.0, 0, 1e6, 0, &temperature) ||
        cli_opt_int(argc, argv, "--top-k", 40, 0, INT_MAX, &top_k_l) ||
        cli_opt_int(argc, argv, "--seed", 1337, LLONG_MIN, LLONG_MAX, &seed) ||
        cli_opt_num(argc, argv, "--pasta", 1.0, 0.0, 1, 1.0, 0, &pasta))
        return HW_EXIT_CONFIG;
    int n_new = (int)n_new_l;
    const int top_k = (int)top_k_l;
    /* chat mode: the prompt is a user turn in the checkpoint's template (sft.tpl_*); the
     * indicator switch tags it as CSFT inference does; PASTA steers attention to it */
    const int chat = cli_flag(argc, argv, "--chat"),
              indicator = cli_flag(argc, argv, "--indicator");
    const char *system = cli_opt(argc, argv, "--system", NULL);
    if ((indicator || system || pasta != 1.0) && !chat) {
        log_error("sample: --system, --indicator and --pasta need --chat");
        return HW_EXIT_CONFIG;
    }
    if (!(pasta > 0.0 && pasta <= 1.0)) {
        log_error("sample: --pasta must be in (0, 1] (1 = off)");
        return HW_EXIT_CONFIG;
    }
    struct hw_config cfg;
    struct bpe tok;
    struct gpt m;
    memset(&m, 0, sizeof(m));
    int64_t step = 0;
    const char *why = NULL, *backend = cli_opt(argc, argv, "--backend", "cpu");
    const struct ops *be = ops_by_name(backend, &why);
    if (!be) {
        log_error("sample: --backend %s: %s", backend, why ? why : "unknown backend (cpu, cuda)");
        return HW_EXIT_CONFIG;
    }
    char device[96];
    dist_select_device(d, be, device, sizeof(device));
    int rc = ckpt_load_model(d, pos[0], be, &cfg, &tok, &m, &step, file, err);
    if (rc) {
        log_error("%s", err);
        bpe_free(&tok);
        gpt_free(&m);
        return HW_EXIT_FAIL;
    }
    ops_set_threads(cfg.train.threads);
    int32_t *ids = NULL;
    int64_t n_prompt = 0;
    struct sft_tokens st = {0};
    struct chat_template tpl;
    sft_template_from_cfg(&tpl, &cfg.sft);
    if (chat) {
        char err2[HW_ERR_LEN], *user = indicator ? sft_tag_text(prompt, cfg.sft.indicator) : NULL;
        struct chat_msg msgs[2] = {{"system", system ? system : ""},
                                   {"user", user ? user : prompt}};
        if (indicator && bpe_special_id(&tok, cfg.sft.indicator) < 0)
            log_info("sample: note: '%s' is not a token of this checkpoint (not a CSFT model)",
                     cfg.sft.indicator);
        rc = sft_encode(&tok, &tpl, system ? msgs : msgs + 1, system ? 2 : 1, 1, &st, err2);
        free(user);
        if (rc) {
            log_error("sample: %s", err2);
            bpe_free(&tok);
            gpt_free(&m);
            return HW_EXIT_CONFIG;
        }
        ids = HW_MALLOC(sizeof(int32_t) * (size_t)(st.n ? st.n : 1));
        memcpy(ids, st.ids, sizeof(int32_t) * (size_t)st.n);
        n_prompt = st.n;
    } else {
        n_prompt = bpe_encode(&tok, prompt, strlen(prompt), 1, &ids);
    }
    int max_T = m.c.max_T;
    if (n_prompt < 1 || n_prompt >= max_T) {
        log_error("sample: the prompt is %lld tokens; it must hold 1..%d", (long long)n_prompt,
                  max_T - 1);
        free(ids);
        sft_tokens_free(&st);
        bpe_free(&tok);
        gpt_free(&m);
        return HW_EXIT_CONFIG;
    }
    if (n_prompt + n_new > max_T)
        n_new = max_T - (int)n_prompt;
    ids = HW_REALLOC(ids, sizeof(int32_t) * (size_t)(n_prompt + n_new));
    struct gpt_kv kv;
    gpt_kv_init(&kv, &m, 1, (int)(n_prompt + n_new));
    kv.steer_alpha = (float)pasta;
    for (int64_t i = 0; chat && i < n_prompt; i++)
        kv.user[i] = (uint8_t)sft_is_user_content(&tok, &st, (int)i);
    struct rng_stream rng;
    rng_stream_init(&rng, (uint64_t)seed, 0x5a3b1e);
    int32_t *idx = HW_MALLOC(sizeof(int32_t) * (size_t)m.c.V);
    double *p = HW_MALLOC(sizeof(double) * (size_t)m.c.V);
    const float *logits = NULL;
    double t0 = log_now();
    for (int64_t i = 0; i < n_prompt; i++)
        logits = gpt_decode_step(&m, &kv, ids[i]);
    int32_t eot = bpe_special_id(&tok, "<|endoftext|>");
    int64_t n = n_prompt;
    for (int i = 0; i < n_new; i++) {
        int32_t next = pick_token(logits, m.c.V, temperature, top_k, &rng, idx, p);
        if (next >= bpe_vocab_size(&tok))
            next = eot >= 0 ? eot : 0; /* padded vocabulary rows are never real tokens */
        ids[n++] = next;
        if (next == eot)
            break;
        if (i + 1 < n_new)
            logits = gpt_decode_step(&m, &kv, next);
    }
    double dt = log_now() - t0;
    char *text = NULL;
    bpe_decode(&tok, chat ? ids + n_prompt : ids, chat ? n - n_prompt : n, &text);
    char *stop = chat && text && tpl.end_turn[0] ? strstr(text, tpl.end_turn) : NULL;
    if (stop) /* chat: the reply ends at the end-of-turn text */
        *stop = '\0';
    if (d->rank == 0) {
        fprintf(stderr,
                "[sample] %s (step %lld) | T=%.2f top-k=%d seed=%lld | %lld tokens in "
                "%.2fs | KV cache %.3f MiB (dense %.3f MiB)\n",
                file, (long long)step, temperature, top_k, seed, (long long)(n - n_prompt), dt,
                kv.floats * 4.0 / 1048576.0, kv.floats_dense * 4.0 / 1048576.0);
        fputs(text ? text : "", stdout);
        fputc('\n', stdout);
    }
    free(text);
    free(idx);
    free(p);
    free(ids);
    sft_tokens_free(&st);
    gpt_kv_free(&kv);
    bpe_free(&tok);
    gpt_free(&m);
    return 0;
}

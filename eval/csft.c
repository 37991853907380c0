/* eval/csft.c -- the CSFT indicator metric, tagging and histogram (see csft.h). */
#include "csft.h"

#include "../core/check.h"
#include "../model/gpt_probe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double csft_token_mass(const double *p, int H, int n_keys, const uint8_t *user) {
    double best = 0.0;
    for (int h = 0; h < H; h++) {
        double s = 0.0;
        for (int j = 0; j < n_keys; j++)
            if (user[j])
                s += p[(size_t)h * n_keys + j];
        best = s > best ? s : best;
    }
    return best;
}

int csft_score_conv(struct gpt *m, const struct bpe *tok, const struct chat_template *t,
                    const struct chat_msg *msgs, int n, int layer, double *scores, char *err) {
    struct sft_tokens st;
    for (int i = 0; i < n; i++)
        scores[i] = NAN;
    int rc = sft_encode(tok, t, msgs, n, 0, &st, err);
    if (rc)
        return rc;
    const int T = st.n < m->c.max_T ? st.n : m->c.max_T, cut = st.n - T;
    if (T < 2) {
        sft_tokens_free(&st);
        return cut;
    }
    gpt_forward(m, st.ids, NULL, 1, T, 0.0f, 0);
    const int H = m->c.H;
    uint8_t *user = HW_CALLOC((size_t)T, 1);
    double *p = HW_MALLOC(sizeof(double) * (size_t)H * T);
    double *sum = HW_CALLOC((size_t)n, sizeof(double));
    int *cnt = HW_CALLOC((size_t)n, sizeof(int));
    for (int i = 0; i < T; i++) {
        user[i] = (uint8_t)sft_is_user_content(tok, &st, i);
        if (st.role[i] != 'a' || st.kind[i] != SFT_KIND_CONTENT || st.msg[i] < 0)
            continue;
        /* the keys before the response: its own tokens are not user tokens anyway */
        gpt_attn_probs(m, layer, i, p);
        sum[st.msg[i]] += csft_token_mass(p, H, i + 1, user);
        cnt[st.msg[i]]++;
    }
    for (int k = 0; k < n; k++)
        if (cnt[k])
            scores[k] = sum[k] / cnt[k];
    free(user);
    free(p);
    free(sum);
    free(cnt);
    sft_tokens_free(&st);
    return cut;
}

int csft_tag_conv(struct sft_conv *c, const double *scores, double beta, const char *indicator) {
    int tagged = 0;
    uint8_t *done = HW_CALLOC((size_t)c->n_msgs, 1);
    for (int i = 0; i < c->n_msgs; i++) {
        if (strcmp(c->msgs[i].role, "assistant") || isnan(scores[i]) || !(scores[i] > beta))
            continue;
        int u = i - 1;
        while (u >= 0 && strcmp(c->msgs[u].role, "user"))
            u--;
        if (u < 0 || done[u])
            continue;
        char *s = sft_tag_text(c->msgs[u].content, indicator);
        sft_set_content(c, u, s);
        free(s);
        done[u] = 1;
        tagged++;
    }
    free(done);
    return tagged;
}

void csft_histogram(FILE *f, const double *scores, int n, double beta) {
    int bins[10] = {0}, total = 0, above = 0, mx = 1;
    for (int i = 0; i < n; i++) {
        if (isnan(scores[i]))
            continue;
        int b = (int)(scores[i] * 10.0);
        b = b < 0 ? 0 : b > 9 ? 9 : b;
        bins[b]++;
        total++;
        above += scores[i] > beta;
    }
    for (int b = 0; b < 10; b++)
        mx = bins[b] > mx ? bins[b] : mx;
    fprintf(f, "csft-score histogram (%d response turns):\n", total);
    for (int b = 0; b < 10; b++) {
        char bar[41];
        int w = (int)((double)bins[b] * 40.0 / mx + 0.5);
        memset(bar, '#', (size_t)w);
        bar[w] = '\0';
        fprintf(f, "  [%.1f, %.1f%c %7d  %s\n", b / 10.0, (b + 1) / 10.0, b == 9 ? ']' : ')',
                bins[b], bar);
    }
    fprintf(f, "  score > beta %.3g: %d of %d turns (%.1f%%)\n", beta, above, total,
            total ? 100.0 * above / total : 0.0);
}

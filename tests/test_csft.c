/* tests/test_csft.c -- conditional SFT (ALGORITHMS.md §4): the indicator metric (bounds, the
 * toy two-head examples of §4.4, template tokens never counted as user tokens, the naive
 * probabilities against the tiled kernel), the tagging rules, beta >= 1 as vanilla SFT, the
 * conversation reader, response-only loss masks, segment-masked attention for packed
 * examples (kernel against a naive masked reference; packed model forward/backward against
 * separately run examples), vocabulary growth keeping old rows bit-identical, and PASTA
 * steering in the decode kernel. */
#define _POSIX_C_SOURCE 200809L
#include "../core/check.h"
#include "../core/rng.h"
#include "../datasets/sft.h"
#include "../eval/csft.h"
#include "../model/gpt.h"
#include "../model/gpt_probe.h"
#include "../ops/attention.h"
#include "../ops/ops.h"
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void make_model(struct gpt *m, int V, int max_T) {
    struct gpt_config gc = {.C = 16,
                            .L = 2,
                            .H = 4,
                            .Hkv = 2,
                            .hd = 4,
                            .F = 32,
                            .V = V,
                            .max_T = max_T,
                            .mlp = GPT_MLP_SWIGLU,
                            .tied = 0,
                            .rope_theta = 10000.0f,
                            .eps = 1e-5f,
                            .init_std = 0.4f};
    gpt_init(m, &gc, ops_for(BACKEND_CPU), NULL);
    gpt_init_weights(m, 11);
}

static char *write_tmp(const char *text) {
    char *path = strdup("/tmp/test_csft_XXXXXX");
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* ---- §4.4 toy examples, formatting, tagging ---------------------------------------------- */

static void test_toy(void) {
    /* keys [BOS, tmpl, u1, u2, tmpl_asst, y] */
    const uint8_t user[6] = {0, 0, 1, 1, 0, 0};
    const double p1[12] = {.3, .1, .2, .2, .1,  .1, /* head 0: 0.4 on user tokens */
                           .1, 0,  .5, .3, .05, .05 /* head 1: 0.8 */};
    double s1 = csft_token_mass(p1, 2, 6, user);
    CHECK_CLOSE(s1, 0.8, 1e-12);
    /* a second response token whose best head puts 0.3 on the user tokens */
    const double p2[12] = {.3, .2, .1, .1, .2, .1, .4, .2, .2, .1, .05, .05};
    double s2 = csft_token_mass(p2, 2, 6, user);
    CHECK_CLOSE(s2, 0.3, 1e-12);
    /* moving mass from a user token onto a template token lowers the score */
    double p3[12];
    memcpy(p3, p1, sizeof(p3));
    p3[6 + 2] -= 0.2;
    p3[6 + 1] += 0.2;
    CHECK(csft_token_mass(p3, 2, 6, user) < s1);

    char *path = write_tmp("{\"conversations\": [{\"from\": \"human\", \"value\": \"u1 u2\"}, "
                           "{\"from\": \"gpt\", \"value\": \"y\"}]}\n");
    struct sft_data d;
    char err[HW_ERR_LEN];
    CHECK(sft_load(&d, path, err) == 0);
    double one[2] = {NAN, s1}, two[2] = {NAN, (s1 + s2) / 2};
    CHECK_CLOSE(two[1], 0.55, 1e-12);
    CHECK(csft_tag_conv(&d.conv[0], two, 0.6, "[IND]") == 0);
    CHECK(!strcmp(d.conv[0].msgs[0].content, "u1 u2"));
    CHECK(csft_tag_conv(&d.conv[0], one, 0.6, "[IND]") == 1);
    CHECK(!strcmp(d.conv[0].msgs[0].content, "u1 u2. [IND]"));
    /* the JSON holds the tagged text too */
    char *js = json_dumps(d.conv[0].root, JSON_COMPACT);
    CHECK(strstr(js, "\"u1 u2. [IND]\"") != NULL);
    free(js);
    sft_free(&d);
    unlink(path);
    free(path);
}

static void test_format(void) {
    char *a = sft_tag_text("Summarize this", "[IND]"), *b = sft_tag_text("What?", "[IND]");
    char *c = sft_tag_text("item 42", "[IND]"), *e = sft_tag_text("", "[IND]");
    CHECK(!strcmp(a, "Summarize this. [IND]"));
    CHECK(!strcmp(b, "What? [IND]"));
    CHECK(!strcmp(c, "item 42. [IND]"));
    CHECK(!strcmp(e, " [IND]"));
    free(a), free(b), free(c), free(e);
}

/* ---- the reader ------------------------------------------------------------------------- */

static void test_reader(void) {
    char *path = write_tmp(
        "\xEF\xBB\xBF{\"id\": 1, \"conversations\": [{\"from\": \"system\", \"value\": \"S\"}, "
        "{\"from\": \"human\", \"value\": \"Q\"}, {\"from\": \"gpt\", \"value\": \"A\"}]}\r\n"
        "\n"
        "{\"question\": [{\"role\": \"System\", \"content\": \"P\"}, {\"role\": \"User\", "
        "\"content\": \"U\"}], \"reference\": \"R\", \"task\": \"t\"}\n");
    struct sft_data d;
    char err[HW_ERR_LEN];
    CHECK(sft_load(&d, path, err) == 0);
    CHECK(d.n == 2);
    CHECK(d.conv[0].n_msgs == 3 && !strcmp(d.conv[0].msgs[1].role, "user") &&
          !strcmp(d.conv[0].msgs[2].role, "assistant") && d.conv[0].line == 1);
    CHECK(d.conv[1].n_msgs == 3 && d.conv[1].schema == SFT_SCHEMA_QUESTION &&
          !strcmp(d.conv[1].msgs[2].content, "R") && d.conv[1].line == 3);
    sft_free(&d);
    unlink(path);
    free(path);
    const char *bad[][2] = {
        {"{\"conversations\": [{\"from\": \"robot\", \"value\": \"x\"}]}\n",
         "unknown role 'robot'"},
        {"{\"conversations\": []}\n", "must be a non-empty array"},
        {"{\"question\": [{\"role\": \"User\", \"content\": \"x\"}]}\n", "'reference'"},
        {"{\"conversations\": [{\"from\": \"human\", \"value\": 3}]}\n", "got number"},
        {"{\"text\": \"x\"}\n", "missing key 'conversations'"},
        {"[1]\n", "expected a JSON object"},
        {"{\"conversations\": [\n", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        path = write_tmp(bad[i][0]);
        int rc = sft_load(&d, path, err);
        CHECK_MSG(rc == HW_EFORMAT && strstr(err, bad[i][1]) && strstr(err, ":1"), "bad %zu: %s", i,
                  err);
        unlink(path);
        free(path);
    }
}

/* ---- roles of tokens -------------------------------------------------------------------- */

static void byte_tokenizer(struct bpe *tok, int tags_special) {
    bpe_init(tok);
    if (tags_special) {
        bpe_add_special(tok, "<|user|>");
        bpe_add_special(tok, "<|assistant|>");
        bpe_add_special(tok, "<|end|>");
    }
    bpe_add_special(tok, "[IND]");
}

static void test_roles(void) {
    struct chat_template t;
    chat_template_default(&t);
    snprintf(t.bos, sizeof(t.bos), "<s>");
    struct chat_msg msgs[4] = {{"user", "line one\nline two"},
                               {"assistant", "ok."},
                               {"user", "more? [IND]"},
                               {"assistant", "done"}};
    for (int sp = 0; sp < 2; sp++) {
        struct bpe tok;
        byte_tokenizer(&tok, sp);
        struct sft_tokens st;
        char err[HW_ERR_LEN], *text = NULL;
        struct chat_span *spans = NULL;
        CHECK(sft_encode(&tok, &t, msgs, 4, 1, &st, err) == 0);
        int len = chat_render(&t, msgs, 4, 1, &text, &spans, err);
        int pos = 0, n_user = 0, n_ind = 0, newline_user = 0;
        for (int i = 0; i < st.n; i++) {
            int tl;
            bpe_token_bytes(&tok, st.ids[i], &tl);
            if (sft_is_user_content(&tok, &st, i)) {
                n_user++;
                /* inside a user message's content span */
                int k = st.msg[i];
                CHECK(k >= 0 && !strcmp(msgs[k].role, "user") && pos >= spans[k].content_start &&
                      pos + tl <= spans[k].content_end);
            }
            /* template strings never count: BOS, tags, end of turn, the generation prompt */
            int in_content = 0;
            for (int k = 0; k < 4; k++)
                in_content |= pos >= spans[k].content_start && pos < spans[k].content_end;
            if (!in_content)
                CHECK(!sft_is_user_content(&tok, &st, i) && st.kind[i] != SFT_KIND_CONTENT);
            if (st.role[i] == 'u' && st.kind[i] == SFT_KIND_CONTENT && text[pos] == '\n')
                newline_user += !sft_is_user_content(&tok, &st, i);
            n_ind += st.ids[i] == bpe_special_id(&tok, "[IND]");
            pos += tl;
        }
        CHECK(pos == len);
        CHECK(n_user > 10);
        CHECK(newline_user == 1); /* the newline inside the first user turn is excluded */
        CHECK(n_ind == 1);        /* [IND] is one token */
        CHECK(st.msg[st.n - 1] == -1 && st.kind[st.n - 1] == SFT_KIND_TEMPLATE);
        free(text);
        free(spans);
        sft_tokens_free(&st);
        bpe_free(&tok);
    }
}

/* ---- the metric on a model ---------------------------------------------------------------- */

static void test_metric_model(void) {
    struct bpe tok;
    byte_tokenizer(&tok, 0);
    struct gpt m;
    make_model(&m, bpe_vocab_size(&tok), 160);
    struct chat_template t;
    chat_template_default(&t);
    struct chat_msg msgs[5] = {{"system", "sys"},
                               {"user", "read: the key is 7"},
                               {"assistant", "7"},
                               {"user", "again"},
                               {"assistant", "it was 7"}};
    double sc[5];
    char err[HW_ERR_LEN];
    CHECK(csft_score_conv(&m, &tok, &t, msgs, 5, 1, sc, err) == 0);
    CHECK(isnan(sc[0]) && isnan(sc[1]) && isnan(sc[3]));
    for (int i = 2; i < 5; i += 2)
        CHECK_MSG(sc[i] >= 0.0 && sc[i] <= 1.0 + 1e-12, "score %g", sc[i]);

    /* the naive probabilities against the tiled kernel: P V == the kernel's attention output */
    struct sft_tokens st;
    CHECK(sft_encode(&tok, &t, msgs, 5, 0, &st, err) == 0);
    const int T = st.n, D = (m.c.H + 2 * m.c.Hkv) * m.c.hd, HD = m.c.H * m.c.hd;
    gpt_forward(&m, st.ids, NULL, 1, T, 0.0f, 0);
    double *p = malloc(sizeof(double) * (size_t)m.c.H * T), worst = 0, rowsum_err = 0;
    for (int l = 0; l < m.c.L; l++)
        for (int i = 0; i < T; i += 7) {
            gpt_attn_probs(&m, l, i, p);
            int ldq = 0;
            const float *qkv = gpt_attn_qkv(&m, l, &ldq), *att = gpt_attn_out(&m, l);
            for (int h = 0; h < m.c.H; h++) {
                double rs = 0;
                for (int j = 0; j <= i; j++)
                    rs += p[h * (i + 1) + j];
                rowsum_err = fmax(rowsum_err, fabs(rs - 1.0));
                const int kvh = h / (m.c.H / m.c.Hkv);
                for (int dd = 0; dd < m.c.hd; dd++) {
                    double o = 0;
                    for (int j = 0; j <= i; j++)
                        o += p[h * (i + 1) + j] *
                             qkv[(size_t)j * D + HD + (m.c.Hkv + kvh) * m.c.hd + dd];
                    worst = fmax(worst, fabs(o - att[(size_t)i * HD + h * m.c.hd + dd]));
                }
            }
        }
    CHECK_MSG(worst < 1e-5, "naive probs vs tiled kernel: %g", worst);
    CHECK(rowsum_err < 1e-12);
    free(p);
    sft_tokens_free(&st);

    /* beta >= 1: nothing is tagged, the data is unchanged (vanilla SFT) */
    char *path =
        write_tmp("{\"conversations\": [{\"from\": \"human\", \"value\": \"read: the key "
                  "is 7\"}, {\"from\": \"gpt\", \"value\": \"7\"}, {\"from\": \"human\", "
                  "\"value\": \"again\"}, {\"from\": \"gpt\", \"value\": \"it was 7\"}]}\n");
    struct sft_data d;
    CHECK(sft_load(&d, path, err) == 0);
    char *before = json_dumps(d.conv[0].root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    double s4[4];
    CHECK(csft_score_conv(&m, &tok, &t, d.conv[0].msgs, 4, 0, s4, err) == 0);
    CHECK(csft_tag_conv(&d.conv[0], s4, 1.0, "[IND]") == 0);
    CHECK(csft_tag_conv(&d.conv[0], s4, 5.0, "[IND]") == 0);
    char *after = json_dumps(d.conv[0].root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    CHECK(!strcmp(before, after));
    /* beta 0 tags every user turn that precedes a scored response */
    CHECK(csft_tag_conv(&d.conv[0], s4, 0.0, "[IND]") == 2);
    free(before);
    free(after);
    sft_free(&d);
    unlink(path);
    free(path);
    gpt_free(&m);
    bpe_free(&tok);
}

/* ---- loss masks and packing ------------------------------------------------------------ */

static void test_masks(void) {
    struct bpe tok;
    byte_tokenizer(&tok, 0);
    char *path = write_tmp("{\"conversations\": [{\"from\": \"human\", \"value\": \"q one\"}, "
                           "{\"from\": \"gpt\", \"value\": \"a1\"}]}\n"
                           "{\"conversations\": [{\"from\": \"system\", \"value\": \"s\"}, "
                           "{\"from\": \"human\", \"value\": \"q2\"}, {\"from\": \"gpt\", "
                           "\"value\": \"answer two\"}, {\"from\": \"human\", \"value\": \"q3\"}, "
                           "{\"from\": \"gpt\", \"value\": \"a3\"}]}\n");
    struct sft_data d;
    char err[HW_ERR_LEN];
    CHECK(sft_load(&d, path, err) == 0);
    struct chat_template t;
    chat_template_default(&t);
    struct sft_set sr, sa;
    struct sft_tokens e[2];
    CHECK(sft_encode(&tok, &t, d.conv[0].msgs, 2, 0, &e[0], err) == 0);
    CHECK(sft_encode(&tok, &t, d.conv[1].msgs, 5, 0, &e[1], err) == 0);
    const int T = e[0].n + e[1].n + 3; /* the two conversations and 3 padding tokens */
    HW_ASSERT(T <= 256);
    CHECK(sft_set_build(&sr, &d, &tok, &t, 0, T, 3, err) == 0);
    CHECK(sft_set_build(&sa, &d, &tok, &t, 1, T, 3, err) == 0);
    int32_t tok_r[256], tgt_r[256], seg_r[256], tok_a[256], tgt_a[256], seg_a[256];
    int64_t cr = 0, ca = 0;
    int nr = sft_fill_row(&sr, &cr, 1, 0, 0, tok_r, tgt_r, seg_r);
    int na = sft_fill_row(&sa, &ca, 1, 0, 0, tok_a, tgt_a, seg_a);
    CHECK(cr == 2 && ca == 2); /* both conversations packed into the row */
    CHECK(memcmp(tok_r, tok_a, sizeof(int32_t) * T) == 0 &&
          memcmp(seg_r, seg_a, sizeof(int32_t) * T) == 0);
    CHECK(nr > 0 && na > nr);
    /* response-only: every supervised target is an assistant token (content or end of turn) */
    int bad = 0, counted = 0, prompt_tokens = 0;
    for (int p = 0; p < T; p++) {
        const int s = seg_r[p];
        const int i = s == 0 ? p : p - e[0].n; /* index inside its example */
        if (s > 1) {
            CHECK(tgt_r[p] == -1 && tgt_a[p] == -1); /* padding */
            continue;
        }
        const struct sft_tokens *x = &e[s];
        CHECK(tok_r[p] == x->ids[i]);
        if (i + 1 == x->n) {
            CHECK(tgt_r[p] == -1 && tgt_a[p] == -1); /* never across examples */
            continue;
        }
        const int resp = x->role[i + 1] == 'a' && x->kind[i + 1] != SFT_KIND_TEMPLATE;
        prompt_tokens += !resp;
        bad += tgt_r[p] != (resp ? x->ids[i + 1] : -1);
        bad += tgt_a[p] != x->ids[i + 1];
        counted += resp;
    }
    CHECK(bad == 0);
    CHECK(counted == nr && prompt_tokens > 20);
    /* padding mode: one example per row */
    int64_t c1 = 0;
    sft_fill_row(&sr, &c1, 0, 0, 0, tok_r, tgt_r, seg_r);
    CHECK(c1 == 1 && seg_r[e[0].n] == 1 && seg_r[T - 1] == 1 && tgt_r[e[0].n] == -1 &&
          tok_r[T - 1] == 0);
    /* examples longer than T are cut; shuffled order is a permutation */
    struct sft_set ss;
    CHECK(sft_set_build(&ss, &d, &tok, &t, 0, 16, 3, err) == 0);
    CHECK(ss.n_truncated == 2);
    int64_t c2 = 0;
    int seen[2] = {0, 0};
    for (int r = 0; r < 4; r++) {
        int64_t before = c2;
        sft_fill_row(&ss, &c2, 1, 1, 0, tok_r, tgt_r, seg_r);
        CHECK(c2 == before + 1);
        seen[ss.perm[before % 2]]++;
    }
    CHECK(seen[0] == 2 && seen[1] == 2);
    sft_set_free(&ss);
    sft_tokens_free(&e[0]);
    sft_tokens_free(&e[1]);
    sft_set_free(&sr);
    sft_set_free(&sa);
    sft_free(&d);
    unlink(path);
    free(path);
    bpe_free(&tok);
}

/* ---- segment-masked attention ------------------------------------------------------------ */

/* naive masked attention: query i sees key j <= i with seg[j] == seg[i] */
static void ref_seg_attention(double *out, const float *qkv, const int32_t *seg, int B, int T,
                              int H, int Hkv, int hd, int ld) {
    double *p = malloc(sizeof(double) * (size_t)T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const int kvh = h / (H / Hkv);
            for (int i = 0; i < T; i++) {
                const float *q = qkv + ((size_t)b * T + i) * ld + (size_t)h * hd;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    p[j] = -INFINITY;
                    if (seg[b * T + j] != seg[b * T + i])
                        continue;
                    const float *k = qkv + ((size_t)b * T + j) * ld + (size_t)(H + kvh) * hd;
                    double s = 0;
                    for (int d = 0; d < hd; d++)
                        s += (double)q[d] * k[d];
                    p[j] = s / sqrt((double)hd);
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j <= i; j++)
                    sum += p[j] = p[j] == -INFINITY ? 0.0 : exp(p[j] - mx);
                for (int d = 0; d < hd; d++) {
                    double acc = 0;
                    for (int j = 0; j <= i; j++)
                        acc += p[j] / sum *
                               qkv[((size_t)b * T + j) * ld + (size_t)(H + Hkv + kvh) * hd + d];
                    out[((size_t)b * T + i) * H * hd + (size_t)h * hd + d] = acc;
                }
            }
        }
    free(p);
}

static void test_seg_kernel(void) {
    const int B = 2, T = 150, H = 4, Hkv = 2, hd = 8, ld = (H + 2 * Hkv) * hd;
    float *qkv = malloc(sizeof(float) * (size_t)B * T * ld);
    for (size_t i = 0; i < (size_t)B * T * ld; i++)
        qkv[i] = (float)rng_normal(21, i);
    int32_t seg[2 * 150];
    /* row 0: segments of 10, 70 (crossing tiles), 1, 69; row 1: one segment then padding */
    for (int t = 0; t < T; t++) {
        seg[t] = t < 10 ? 0 : t < 80 ? 1 : t < 81 ? 2 : 3;
        seg[T + t] = t < 130 ? 0 : 1;
    }
    struct attn_shape s = {.B = B, .T = T, .H = H, .Hkv = Hkv, .hd = hd, .ld_qkv = ld, .seg = seg};
    float *out = malloc(sizeof(float) * (size_t)B * T * H * hd);
    float *lse = malloc(sizeof(float) * (size_t)B * H * T);
    double *ref = malloc(sizeof(double) * (size_t)B * T * H * hd);
    attention_forward_cpu(out, lse, qkv, &s);
    ref_seg_attention(ref, qkv, seg, B, T, H, Hkv, hd, ld);
    double worst = 0;
    for (size_t i = 0; i < (size_t)B * T * H * hd; i++)
        worst = fmax(worst, fabs(out[i] - ref[i]));
    CHECK_MSG(worst < 2e-5, "segment attention forward vs naive: %g", worst);
    /* without segments the result differs (the masks matter) */
    struct attn_shape s0 = s;
    s0.seg = NULL;
    float *out0 = malloc(sizeof(float) * (size_t)B * T * H * hd);
    attention_forward_cpu(out0, lse, qkv, &s0);
    CHECK(fabs(out0[(size_t)20 * H * hd] - out[(size_t)20 * H * hd]) > 1e-4);
    free(qkv), free(out), free(out0), free(lse), free(ref);
}

/* packed rows against examples run one by one: logits, loss and every parameter gradient */
static void test_packed_model(void) {
    const int V = 40, L1 = 23, L2 = 61, T = 96;
    struct gpt m;
    make_model(&m, V, 128);
    int32_t tok[96], tgt[96], seg[96];
    for (int t = 0; t < T; t++) {
        tok[t] = (int32_t)(rng_uniform(31, t) * V);
        seg[t] = t < L1 ? 0 : t < L1 + L2 ? 1 : 2;
    }
    for (int t = 0; t < T; t++)
        tgt[t] = t + 1 < T && seg[t + 1] == seg[t] && seg[t] < 2 ? tok[t + 1] : -1;
    /* packed */
    gpt_zero_grad(&m);
    m.seg = seg;
    double loss_p = gpt_forward(&m, tok, tgt, 1, T, 1.0f, 1);
    float *logit_p = malloc(sizeof(float) * (size_t)T * V);
    gpt_forward(&m, tok, NULL, 1, T, 0.0f, 0);
    memcpy(logit_p, m.logits, sizeof(float) * (size_t)T * V);
    gpt_zero_grad(&m);
    gpt_forward(&m, tok, tgt, 1, T, 1.0f, 1);
    gpt_backward(&m);
    m.seg = NULL;
    float *g_p = malloc(sizeof(float) * m.num_params);
    memcpy(g_p, m.grad_mem, sizeof(float) * m.num_params);
    /* separately */
    gpt_zero_grad(&m);
    double loss_s = 0, worst_logit = 0;
    const int start[2] = {0, L1}, len[2] = {L1, L2};
    for (int e = 0; e < 2; e++) {
        loss_s += gpt_forward(&m, tok + start[e], tgt + start[e], 1, len[e], 1.0f, 1);
        gpt_backward(&m);
    }
    float *g_s = malloc(sizeof(float) * m.num_params);
    memcpy(g_s, m.grad_mem, sizeof(float) * m.num_params);
    for (int e = 0; e < 2; e++) {
        gpt_forward(&m, tok + start[e], NULL, 1, len[e], 0.0f, 0);
        for (size_t i = 0; i < (size_t)len[e] * V; i++)
            worst_logit = fmax(worst_logit, fabs(m.logits[i] - logit_p[(size_t)start[e] * V + i]));
    }
    CHECK_MSG(worst_logit < 1e-4, "packed vs separate logits: %g", worst_logit);
    CHECK_CLOSE(loss_p, loss_s, 1e-5);
    double gmax = 0, gerr = 0;
    for (size_t i = 0; i < m.num_params; i++) {
        gmax = fmax(gmax, fabs(g_s[i]));
        gerr = fmax(gerr, fabs(g_p[i] - g_s[i]));
    }
    CHECK_MSG(gerr < 1e-4 * fmax(gmax, 1.0), "packed vs separate gradients: %g (max %g)", gerr,
              gmax);
    /* a change in the first example never moves the second one's logits (it would without the
     * segment masks) */
    tok[5] = (tok[5] + 1) % V;
    m.seg = seg;
    gpt_forward(&m, tok, NULL, 1, T, 0.0f, 0);
    m.seg = NULL;
    CHECK(memcmp(m.logits + (size_t)L1 * V, logit_p + (size_t)L1 * V,
                 sizeof(float) * (size_t)L2 * V) == 0);
    CHECK(memcmp(m.logits + (size_t)5 * V, logit_p + (size_t)5 * V, sizeof(float) * V) != 0);
    gpt_forward(&m, tok, NULL, 1, T, 0.0f, 0);
    CHECK(memcmp(m.logits + (size_t)L1 * V, logit_p + (size_t)L1 * V,
                 sizeof(float) * (size_t)L2 * V) != 0);
    free(logit_p), free(g_p), free(g_s);
    gpt_free(&m);
}

/* ---- vocabulary growth ------------------------------------------------------------------ */

static void test_vocab_grow(void) {
    const int V0 = 37, V1 = 40, C = 12;
    float *old = malloc(sizeof(float) * V0 * C), *w = malloc(sizeof(float) * V1 * C);
    for (int i = 0; i < V0 * C; i++)
        old[i] = (float)rng_normal(5, (uint64_t)i) * 0.02f;
    memcpy(w, old, sizeof(float) * V0 * C);
    int64_t rows[3] = {37, 38, 39};
    gpt_rows_set_mean(w, C, V0, rows, 3);
    CHECK(memcmp(w, old, sizeof(float) * V0 * C) == 0);
    for (int j = 0; j < C; j++) {
        double mean = 0;
        for (int r = 0; r < V0; r++)
            mean += old[r * C + j];
        mean /= V0;
        for (int k = 0; k < 3; k++)
            CHECK_CLOSE(w[(V0 + k) * C + j], mean, 1e-6);
    }
    free(old), free(w);
    /* the tokenizer side: added specials extend the ids, old ids keep their bytes */
    struct bpe tok;
    bpe_init(&tok);
    struct cfg_sft cs;
    memset(&cs, 0, sizeof(cs));
    snprintf(cs.indicator, sizeof(cs.indicator), "[IND]");
    cs.add_tokens.n = 1;
    snprintf(cs.add_tokens.item[0], CFG_PATH_MAX, "[PAD]");
    char err[HW_ERR_LEN];
    CHECK(sft_extend_tokenizer(&tok, &cs, err) == 2);
    CHECK(bpe_special_id(&tok, "[IND]") == 256 && bpe_special_id(&tok, "[PAD]") == 257);
    CHECK(sft_extend_tokenizer(&tok, &cs, err) == 0); /* idempotent */
    bpe_free(&tok);
}

/* ---- PASTA steering --------------------------------------------------------------------- */

static void test_pasta(void) {
    const int H = 4, Hkv = 2, hd = 8, n = 30, ld = Hkv * hd;
    float q[32], kc[30 * 16], vc[30 * 16], o1[32], o2[32], sc[31];
    uint8_t user[30];
    for (int i = 0; i < H * hd; i++)
        q[i] = (float)rng_normal(41, i);
    for (int i = 0; i < n * ld; i++) {
        kc[i] = (float)rng_normal(42, i);
        vc[i] = (float)rng_normal(43, i);
    }
    for (int t = 0; t < n; t++)
        user[t] = t >= 5 && t < 20;
    attention_decode_cpu(o1, q, kc, vc, n, ld, H, Hkv, hd, sc);
    attention_decode_steer_cpu(o2, q, kc, vc, n, ld, H, Hkv, hd, sc, user, 1.0f);
    CHECK(memcmp(o1, o2, sizeof(o1)) == 0);
    const double alpha = 0.5;
    attention_decode_steer_cpu(o2, q, kc, vc, n, ld, H, Hkv, hd, sc, user, (float)alpha);
    double worst = 0;
    for (int h = 0; h < H; h++) {
        const int g = h / (H / Hkv);
        double p[30], mx = -INFINITY, sum = 0;
        for (int t = 0; t < n; t++) {
            double s = 0;
            for (int d = 0; d < hd; d++)
                s += (double)q[h * hd + d] * kc[t * ld + g * hd + d];
            p[t] = s / sqrt((double)hd);
            mx = fmax(mx, p[t]);
        }
        for (int t = 0; t < n; t++)
            sum += p[t] = exp(p[t] - mx);
        /* post-softmax: non-user weights times alpha, renormalised */
        double z = 0;
        for (int t = 0; t < n; t++)
            z += p[t] = p[t] / sum * (user[t] ? 1.0 : alpha);
        for (int d = 0; d < hd; d++) {
            double acc = 0;
            for (int t = 0; t < n; t++)
                acc += p[t] / z * vc[t * ld + g * hd + d];
            worst = fmax(worst, fabs(acc - o2[h * hd + d]));
        }
    }
    CHECK_MSG(worst < 1e-5, "PASTA decode vs reference: %g", worst);
    CHECK(fabs(o1[0] - o2[0]) > 1e-6);
}

int main(void) {
    ops_set_threads(2);
    test_toy();
    test_format();
    test_reader();
    test_roles();
    test_metric_model();
    test_masks();
    test_seg_kernel();
    test_packed_model();
    test_vocab_grow();
    test_pasta();
    return check_report("test_csft");
}

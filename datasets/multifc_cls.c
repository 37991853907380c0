/* datasets/multifc_cls.c -- MultiFC for the classifier head (see multifc_cls.h). */
#include "multifc_cls.h"

#include "../core/check.h"
#include "../core/interrupt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int multifc_cls_load(struct multifc_cls *c, const char *path, double val_frac, double test_frac,
                     uint64_t seed, const struct bpe *tok, int T, char *err) {
    memset(c, 0, sizeof(*c));
    int rc = multifc_load(&c->m, path, err);
    if (rc)
        return rc;
    const struct multifc *m = &c->m;
    if (!m->labelled) {
        multifc_free(&c->m);
        return hw_errf(err, HW_EFORMAT,
                       "%s: the file has no label column; a classifier needs "
                       "labels",
                       path);
    }
    const size_t n = (size_t)(m->n ? m->n : 1);
    c->T = T;
    /* sorted distinct label strings */
    char **all = HW_MALLOC(sizeof(char *) * n);
    for (int i = 0; i < m->n; i++)
        all[i] = m->ex[i].label;
    qsort(all, (size_t)m->n, sizeof(char *), cmp_str);
    c->names = HW_MALLOC(sizeof(char *) * n);
    for (int i = 0; i < m->n; i++)
        if (!c->n_cls || strcmp(c->names[c->n_cls - 1], all[i]))
            c->names[c->n_cls++] = all[i];
    free(all);
    c->label = HW_MALLOC(sizeof(int) * n);
    c->allowed = HW_CALLOC(n * (size_t)c->n_cls, 1);
    c->tok = HW_CALLOC(n * (size_t)T, sizeof(int32_t));
    c->last = HW_MALLOC(sizeof(int32_t) * n);
    c->cut = HW_CALLOC(n, 1);
    c->split = HW_MALLOC(sizeof(int) * n);
    for (int i = 0; i < m->n; i++) {
        char **hit = bsearch(&m->ex[i].label, c->names, (size_t)c->n_cls, sizeof(char *), cmp_str);
        c->label[i] = (int)(hit - c->names);
    }
    /* each claim may take the labels of its domain */
    for (int dI = 0; dI < m->n_dom; dI++) {
        unsigned char *row = HW_CALLOC((size_t)c->n_cls, 1);
        for (int l = 0; l < m->dom[dI].n_labels; l++) {
            char **hit =
                bsearch(&m->dom[dI].labels[l], c->names, (size_t)c->n_cls, sizeof(char *), cmp_str);
            row[hit - c->names] = 1;
        }
        for (int i = 0; i < m->n; i++)
            if (m->ex[i].domain == dI)
                memcpy(c->allowed + (size_t)i * c->n_cls, row, (size_t)c->n_cls);
        free(row);
    }
    for (int i = 0; i < m->n; i++) {
        if (hw_interrupted()) {
            const int total = m->n;
            multifc_cls_free(c);
            return hw_errf(err, HW_ESTOP,
                           "%s: stopped by a signal while tokenizing (claim %d of %d)", path, i + 1,
                           total);
        }
        size_t len = strlen(m->ex[i].claim) + 32;
        char *text = HW_MALLOC(len);
        snprintf(text, len, "Claim: %s\nVerdict:", m->ex[i].claim);
        int32_t *ids = NULL;
        int64_t k = bpe_encode(tok, text, strlen(text), 0, &ids);
        free(text);
        int64_t keep = k > T ? T : k;
        memcpy(c->tok + (size_t)i * T, ids + (k - keep), sizeof(int32_t) * (size_t)keep);
        c->last[i] = (int32_t)(keep - 1);
        c->cut[i] = keep < k;
        free(ids);
    }
    multifc_split(m, val_frac, test_frac, seed, c->split);
    for (int p = 0; p < 3; p++)
        c->idx[p] = HW_MALLOC(sizeof(int) * n);
    for (int i = 0; i < m->n; i++) {
        int p = c->split[i];
        c->idx[p][c->n_idx[p]++] = i;
    }
    c->major = HW_MALLOC(sizeof(int) * (size_t)(m->n_dom ? m->n_dom : 1));
    int *cnt = HW_MALLOC(sizeof(int) * (size_t)c->n_cls);
    for (int dI = 0; dI < m->n_dom; dI++) {
        memset(cnt, 0, sizeof(int) * (size_t)c->n_cls);
        for (int k = 0; k < c->n_idx[0]; k++) {
            int i = c->idx[0][k];
            if (m->ex[i].domain == dI)
                cnt[c->label[i]]++;
        }
        int best = -1; /* most frequent train label of the domain; ties: lowest class */
        for (int k = 0; k < c->n_cls; k++)
            if (cnt[k] > 0 && (best < 0 || cnt[k] > cnt[best]))
                best = k;
        c->major[dI] = best;
    }
    free(cnt);
    return 0;
}

void multifc_cls_free(struct multifc_cls *c) {
    multifc_free(&c->m);
    free(c->names);
    free(c->label);
    free(c->allowed);
    free(c->tok);
    free(c->last);
    free(c->cut);
    free(c->split);
    for (int p = 0; p < 3; p++)
        free(c->idx[p]);
    free(c->major);
    memset(c, 0, sizeof(*c));
}

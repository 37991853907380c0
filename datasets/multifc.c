/* datasets/multifc.c -- MultiFC loader: an RFC 4180 CSV reader and a plain TSV reader over one
 * in-memory copy of the file, merged-record detection, the sorted domain/label index, and the
 * seeded stratified split (see multifc.h). */
#define _POSIX_C_SOURCE 200809L
#include "multifc.h"

#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* record readers */

/* One record: field i is the NUL-terminated string at buf + off[i]. */
struct rec_ {
    char *buf;
    size_t len, cap;
    size_t *off; /* (fcap) */
    int nf, fcap;
    int line; /* line where the record starts */
};

struct reader_ {
    const char *path;
    const char *p, *end;
    int line; /* line of *p */
};

static void rec_putc_(struct rec_ *r, char c) {
    if (r->len == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 256;
        r->buf = HW_REALLOC(r->buf, r->cap);
    }
    r->buf[r->len++] = c;
}

static void rec_field_begin_(struct rec_ *r) {
    if (r->nf == r->fcap) {
        r->fcap = r->fcap ? 2 * r->fcap : 16;
        r->off = HW_REALLOC(r->off, (size_t)r->fcap * sizeof(*r->off));
    }
    r->off[r->nf++] = r->len;
}

static const char *rec_field_(const struct rec_ *r, int i) {
    return r->buf + r->off[i];
}

/* Skips empty lines (LF or CRLF); returns 0 at end of input. */
static int reader_skip_blank_(struct reader_ *rd) {
    for (;;) {
        if (rd->p >= rd->end)
            return 0;
        if (rd->p[0] == '\n') {
            rd->p++;
            rd->line++;
        } else if (rd->p[0] == '\r' && rd->p + 1 < rd->end && rd->p[1] == '\n') {
            rd->p += 2;
            rd->line++;
        } else {
            return 1;
        }
    }
}

/* Drops the '\r' of a CRLF line end from the field being built. */
static void rec_strip_cr_(struct rec_ *r) {
    if (r->len > r->off[r->nf - 1] && r->buf[r->len - 1] == '\r')
        r->len--;
}

/* RFC 4180: returns 1 with a record in r, 0 at end of input, or HW_EFORMAT. */
static int csv_next_(struct reader_ *rd, struct rec_ *r, char *err) {
    if (!reader_skip_blank_(rd))
        return 0;
    r->len = 0;
    r->nf = 0;
    r->line = rd->line;
    for (;;) {
        rec_field_begin_(r);
        if (rd->p < rd->end && *rd->p == '"') {
            int open_line = rd->line;
            rd->p++;
            for (;;) {
                if (rd->p >= rd->end)
                    return hw_errf(err, HW_EFORMAT,
                                   "%s:%d: error: quoted field opened on this line is never closed",
                                   rd->path, open_line);
                char c = *rd->p++;
                if (c == '"') {
                    if (rd->p < rd->end && *rd->p == '"') {
                        rd->p++;
                        rec_putc_(r, '"');
                        continue;
                    }
                    break;
                }
                if (c == '\n')
                    rd->line++;
                rec_putc_(r, c);
            }
            int crlf = rd->p + 1 < rd->end && rd->p[0] == '\r' && rd->p[1] == '\n';
            if (rd->p < rd->end && *rd->p != ',' && *rd->p != '\n' && !crlf &&
                !(rd->p + 1 == rd->end && *rd->p == '\r'))
                return hw_errf(err, HW_EFORMAT,
                               "%s:%d: error: text after a closing quote (a quote inside a "
                               "quoted field must be doubled: \"\")",
                               rd->path, rd->line);
            if (rd->p < rd->end && *rd->p == '\r')
                rd->p++;
        } else {
            /* A '"' inside an unquoted field is kept as it is (lenient, like Python's csv). */
            while (rd->p < rd->end && *rd->p != ',' && *rd->p != '\n')
                rec_putc_(r, *rd->p++);
            if (rd->p >= rd->end || *rd->p == '\n')
                rec_strip_cr_(r);
        }
        rec_putc_(r, '\0');
        if (rd->p >= rd->end)
            return 1;
        if (*rd->p == ',') {
            rd->p++;
            continue;
        }
        rd->p++; /* '\n' */
        rd->line++;
        return 1;
    }
}

/* One line = one record, fields split on tabs, no quoting. Returns 1 or 0 at end of input. */
static int tsv_next_(struct reader_ *rd, struct rec_ *r, char *err) {
    (void)err;
    if (!reader_skip_blank_(rd))
        return 0;
    r->len = 0;
    r->nf = 0;
    r->line = rd->line;
    rec_field_begin_(r);
    while (rd->p < rd->end && *rd->p != '\n') {
        char c = *rd->p++;
        if (c == '\t') {
            rec_putc_(r, '\0');
            rec_field_begin_(r);
        } else {
            rec_putc_(r, c);
        }
    }
    rec_strip_cr_(r);
    rec_putc_(r, '\0');
    if (rd->p < rd->end) {
        rd->p++;
        rd->line++;
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* checks on fields */

static int is_lower_(char c) {
    return c >= 'a' && c <= 'z';
}

static int is_digit_(char c) {
    return c >= '0' && c <= '9';
}

/* A whole claimID: 4 lowercase letters, '-', one or more digits. */
static int claim_id_ok_(const char *s) {
    for (int i = 0; i < 4; i++)
        if (!is_lower_(s[i]))
            return 0;
    if (s[4] != '-' || !is_digit_(s[5]))
        return 0;
    for (s += 5; *s; s++)
        if (!is_digit_(*s))
            return 0;
    return 1;
}

/* "xxxx-NNNNN" at s, not followed by another digit: the start of a swallowed record. */
static int claim_id_like_(const char *s) {
    for (int i = 0; i < 4; i++)
        if (!is_lower_(s[i]))
            return 0;
    if (s[4] != '-')
        return 0;
    for (int i = 5; i < 10; i++)
        if (!is_digit_(s[i]))
            return 0;
    return !is_digit_(s[10]);
}

/* Returns 1 and writes why when the record is broken and must not be used. */
static int record_broken_(const char *claim, const char *label, char *why, size_t cap) {
    const char *next_id = NULL;
    for (const char *q = strchr(claim, '\n'); q && !next_id; q = strchr(q + 1, '\n'))
        if (claim_id_like_(q + 1))
            next_id = q + 1;
    int tab = strchr(claim, '\t') != NULL;
    if (next_id) {
        snprintf(why, cap,
                 "merged record: the claim field holds %sa newline followed by record %.10s "
                 "(the label field is not this claim's)",
                 tab ? "tabs and " : "", next_id);
        return 1;
    }
    if (tab) {
        snprintf(why, cap, "merged record: the claim field holds a tab");
        return 1;
    }
    if (label && strpbrk(label, "\t\n")) {
        snprintf(why, cap, "the label field holds a tab or a newline");
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* loading */

struct id_line_ {
    char *id;
    int line;
};

static int cmp_id_line_(const void *a, const void *b) {
    const struct id_line_ *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int cmp_label_(const char *a, const char *b) {
    if (!a || !b)
        return (a != NULL) - (b != NULL);
    return strcmp(a, b);
}

/* Orders examples by (domain prefix, label). */
static int cmp_ex_ptr_(const void *a, const void *b) {
    const struct multifc_example *x = *(const struct multifc_example *const *)a;
    const struct multifc_example *y = *(const struct multifc_example *const *)b;
    int c = strncmp(x->claim_id, y->claim_id, 4);
    return c ? c : cmp_label_(x->label, y->label);
}

/* Fills m->dom and each example's domain / label_id from the usable examples. */
static void build_index_(struct multifc *m) {
    if (m->n == 0)
        return;
    struct multifc_example **s = HW_MALLOC((size_t)m->n * sizeof(*s));
    for (int i = 0; i < m->n; i++)
        s[i] = &m->ex[i];
    qsort(s, (size_t)m->n, sizeof(*s), cmp_ex_ptr_);
    int n_dom = 1;
    for (int i = 1; i < m->n; i++)
        n_dom += strncmp(s[i]->claim_id, s[i - 1]->claim_id, 4) != 0;
    m->dom = HW_CALLOC((size_t)n_dom, sizeof(*m->dom));
    m->n_dom = n_dom;
    int d = -1;
    for (int i = 0; i < m->n; i++) {
        int new_dom = i == 0 || strncmp(s[i]->claim_id, s[i - 1]->claim_id, 4) != 0;
        if (new_dom) {
            d++;
            memcpy(m->dom[d].name, s[i]->claim_id, 4);
            m->dom[d].name[4] = '\0';
            int nl = 0;
            for (int j = i; j < m->n && strncmp(s[j]->claim_id, s[i]->claim_id, 4) == 0; j++)
                nl += s[j]->label && (j == i || cmp_label_(s[j]->label, s[j - 1]->label) != 0);
            m->dom[d].labels = nl ? HW_MALLOC((size_t)nl * sizeof(char *)) : NULL;
        }
        struct multifc_domain *dm = &m->dom[d];
        s[i]->domain = d;
        s[i]->label_id = -1;
        if (s[i]->label) {
            if (new_dom || cmp_label_(s[i]->label, s[i - 1]->label) != 0)
                dm->labels[dm->n_labels++] = HW_STRDUP(s[i]->label);
            s[i]->label_id = dm->n_labels - 1;
        }
        dm->n_examples++;
    }
    free(s);
}

static void push_rejected_(struct multifc *m, int *cap, const char *id, int line, const char *why) {
    if (m->n_rejected == *cap) {
        *cap = *cap ? 2 * *cap : 8;
        m->rejected = HW_REALLOC(m->rejected, (size_t)*cap * sizeof(char *));
    }
    size_t n = strlen(id) + strlen(why) + 32;
    char *s = HW_MALLOC(n);
    snprintf(s, n, "%s: line %d: %s", id, line, why);
    m->rejected[m->n_rejected++] = s;
}

/* Reads the header (or the first record of a headerless TSV) and sets the column indices.
 * Returns 1 when the record in r is still to be used as data, 0 when it was a header. */
static int read_header_(struct reader_ *rd, struct rec_ *r, int tsv, int *ncol, int *c_id,
                        int *c_claim, int *c_label, char *err) {
    *ncol = r->nf;
    *c_id = *c_claim = *c_label = -1;
    if (tsv && strcmp(rec_field_(r, 0), "claimID") != 0) {
        if (r->nf != 13 && r->nf != 12)
            return hw_errf(err, HW_EFORMAT,
                           "%s:%d: error: %d tab-separated fields; expected a header line "
                           "starting with claimID, 13 fields (train/dev: claimID, claim, label, "
                           "...) or 12 (test: no label)",
                           rd->path, r->line, r->nf);
        *c_id = 0;
        *c_claim = 1;
        *c_label = r->nf == 13 ? 2 : -1;
        return 1;
    }
    for (int i = 0; i < r->nf; i++) {
        const char *name = rec_field_(r, i);
        int *col = !strcmp(name, "claimID") ? c_id
                   : !strcmp(name, "claim") ? c_claim
                   : !strcmp(name, "label") ? c_label
                                            : NULL;
        if (col && *col >= 0)
            return hw_errf(err, HW_EFORMAT, "%s:%d: error: header names column '%s' twice",
                           rd->path, r->line, name);
        if (col)
            *col = i;
    }
    if (*c_id < 0 || *c_claim < 0)
        return hw_errf(err, HW_EFORMAT,
                       "%s:%d: error: unrecognised header: expected columns claimID, claim and "
                       "optionally label (e.g. 'claimID,claim,label'), or a tab-separated file",
                       rd->path, r->line);
    return 0;
}

int multifc_load(struct multifc *m, const char *path, char *err) {
    memset(m, 0, sizeof(*m));
    size_t len;
    char *data = fs_read_all(path, &len, err);
    if (!data)
        return HW_EIO;
    struct reader_ rd = {path, data, data + len, 1};
    struct rec_ r = {0};
    struct id_line_ *ids = NULL;
    int n_ids = 0, ids_cap = 0, ex_cap = 0, rej_cap = 0, rc = 0;

    const char *nul = memchr(data, '\0', len);
    if (nul) {
        int line = 1;
        for (const char *q = data; q < nul; q++)
            line += *q == '\n';
        rc = hw_errf(err, HW_EFORMAT, "%s:%d: error: NUL byte (binary file?)", path, line);
        goto out;
    }
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        rd.p += 3;
    const char *eol = memchr(rd.p, '\n', (size_t)(rd.end - rd.p));
    int tsv = memchr(rd.p, '\t', (size_t)((eol ? eol : rd.end) - rd.p)) != NULL;
    int (*next)(struct reader_ *, struct rec_ *, char *) = tsv ? tsv_next_ : csv_next_;

    int got = next(&rd, &r, err);
    if (got == 0)
        rc = hw_errf(err, HW_EFORMAT, "%s:1: error: empty file (expected a header line)", path);
    if (got <= 0) {
        rc = got < 0 ? got : rc;
        goto out;
    }
    int ncol, c_id, c_claim, c_label;
    int first_is_data = read_header_(&rd, &r, tsv, &ncol, &c_id, &c_claim, &c_label, err);
    if (first_is_data < 0) {
        rc = first_is_data;
        goto out;
    }
    m->labelled = c_label >= 0;
    if (!first_is_data)
        got = next(&rd, &r, err);
    for (; got > 0; got = next(&rd, &r, err)) {
        if (r.nf != ncol) {
            rc = hw_errf(err, HW_EFORMAT, "%s:%d: error: %d %sfields, expected %d", path, r.line,
                         r.nf, tsv ? "tab-separated " : "", ncol);
            goto out;
        }
        const char *id = rec_field_(&r, c_id), *claim = rec_field_(&r, c_claim);
        const char *label = c_label >= 0 ? rec_field_(&r, c_label) : NULL;
        if (!claim_id_ok_(id)) {
            rc = hw_errf(err, HW_EFORMAT,
                         "%s:%d: error: bad claimID '%.40s' (expected 4 lowercase letters, '-', "
                         "digits, e.g. pomt-00123)",
                         path, r.line, id);
            goto out;
        }
        if (n_ids == ids_cap) {
            ids_cap = ids_cap ? 2 * ids_cap : 1024;
            ids = HW_REALLOC(ids, (size_t)ids_cap * sizeof(*ids));
        }
        ids[n_ids++] = (struct id_line_){HW_STRDUP(id), r.line};
        char why[200];
        if (record_broken_(claim, label, why, sizeof(why))) {
            push_rejected_(m, &rej_cap, id, r.line, why);
            continue;
        }
        if (label && !*label) {
            rc = hw_errf(err, HW_EFORMAT, "%s:%d: error: empty label for claimID '%s'", path,
                         r.line, id);
            goto out;
        }
        if (m->n == ex_cap) {
            ex_cap = ex_cap ? 2 * ex_cap : 1024;
            m->ex = HW_REALLOC(m->ex, (size_t)ex_cap * sizeof(*m->ex));
        }
        m->ex[m->n++] = (struct multifc_example){
            HW_STRDUP(id), HW_STRDUP(claim), label ? HW_STRDUP(label) : NULL, -1, -1, r.line};
    }
    if (got < 0) {
        rc = got;
        goto out;
    }
    if (n_ids > 1) {
        qsort(ids, (size_t)n_ids, sizeof(*ids), cmp_id_line_);
        for (int i = 1; i < n_ids; i++)
            if (strcmp(ids[i].id, ids[i - 1].id) == 0) {
                rc = hw_errf(err, HW_EFORMAT,
                             "%s:%d: error: duplicate claimID '%s' (first on line %d)", path,
                             ids[i].line, ids[i].id, ids[i - 1].line);
                goto out;
            }
    }
    if (m->n == 0) { /* a header alone, or nothing but malformed rows: nothing to score */
        rc = hw_errf(err, HW_EFORMAT,
                     "%s: error: no usable claims (%d malformed row%s rejected); expected "
                     "claimID, claim and label rows after the header",
                     path, m->n_rejected, m->n_rejected == 1 ? "" : "s");
        goto out;
    }
    build_index_(m);
out:
    for (int i = 0; i < n_ids; i++)
        free(ids[i].id);
    free(ids);
    free(r.buf);
    free(r.off);
    free(data);
    if (rc)
        multifc_free(m);
    return rc;
}

void multifc_free(struct multifc *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->ex[i].claim_id);
        free(m->ex[i].claim);
        free(m->ex[i].label);
    }
    free(m->ex);
    for (int d = 0; d < m->n_dom; d++) {
        for (int j = 0; j < m->dom[d].n_labels; j++)
            free(m->dom[d].labels[j]);
        free(m->dom[d].labels);
    }
    free(m->dom);
    for (int i = 0; i < m->n_rejected; i++)
        free(m->rejected[i]);
    free(m->rejected);
    memset(m, 0, sizeof(*m));
}

/* ------------------------------------------------------------------------------------------ */
/* split */

struct member_ {
    int dom, lab, idx;
};

static int cmp_member_(const void *a, const void *b) {
    const struct member_ *x = a, *y = b;
    if (x->dom != y->dom)
        return (x->dom > y->dom) - (x->dom < y->dom);
    if (x->lab != y->lab)
        return (x->lab > y->lab) - (x->lab < y->lab);
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static int round_count_(double frac, int k) {
    return (int)floor(frac * k + 0.5);
}

void multifc_split(const struct multifc *m, double frac_val, double frac_test, uint64_t seed,
                   int *split) {
    HW_ASSERT(frac_val >= 0 && frac_test >= 0 && frac_val + frac_test <= 1.0);
    if (m->n == 0)
        return;
    struct member_ *mem = HW_MALLOC((size_t)m->n * sizeof(*mem));
    for (int i = 0; i < m->n; i++)
        mem[i] = (struct member_){m->ex[i].domain, m->ex[i].label_id, i};
    qsort(mem, (size_t)m->n, sizeof(*mem), cmp_member_);
    for (int a = 0, b; a < m->n; a = b) {
        for (b = a + 1; b < m->n && mem[b].dom == mem[a].dom && mem[b].lab == mem[a].lab; b++)
            ;
        int k = b - a;
        const struct multifc_domain *dm = &m->dom[mem[a].dom];
        /* Keyed by names, not indices, so other strata's rows cannot change this one. */
        uint64_t key =
            rng_hash2(rng_hash2(seed, rng_hash_str(dm->name)),
                      mem[a].lab >= 0 ? rng_hash_str(dm->labels[mem[a].lab]) : UINT64_MAX);
        for (int i = k - 1; i > 0; i--) {
            int j = (int)(rng_uniform(key, (uint64_t)i) * (i + 1));
            if (j > i)
                j = i;
            struct member_ t = mem[a + i];
            mem[a + i] = mem[a + j];
            mem[a + j] = t;
        }
        int n_test = 0, n_val = 0;
        if (k > 1) {
            n_test = round_count_(frac_test, k);
            n_test = n_test > k ? k : n_test;
            n_val = round_count_(frac_val, k);
            n_val = n_val > k - n_test ? k - n_test : n_val;
        }
        for (int i = 0; i < k; i++)
            split[mem[a + i].idx] = i < n_test ? 2 : i < n_test + n_val ? 1 : 0;
    }
    free(mem);
}

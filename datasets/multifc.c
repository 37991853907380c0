/* datasets/multifc.c -- MultiFC loader: an RFC 4180 CSV reader and a plain TSV reader over one
 * in-memory copy of the file, merged-record detection, the sorted domain/label index, and the
 * seeded stratified split (see multifc.h). */
#define _POSIX_C_SOURCE 200809L
#include "multifc.h"

#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/interrupt.h"
#include "../core/log.h"
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

/* A claimID at s (four lowercase letters, a dash, five digits) not followed by another digit:
 * the start of a swallowed record. */
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

/* Offset of the first byte of s that does not belong to a well-formed UTF-8 sequence (RFC 3629:
 * no overlong forms, no surrogates, at most U+10FFFF), or -1. */
static long utf8_bad_(const char *str) {
    const unsigned char *s = (const unsigned char *)str, *p = s;
    while (*p) {
        int n = *p < 0x80             ? 0
                : (*p & 0xE0) == 0xC0 ? 1
                : (*p & 0xF0) == 0xE0 ? 2
                : (*p & 0xF8) == 0xF0 ? 3
                                      : -1;
        if (n < 0 || (n == 1 && *p < 0xC2) || (n == 3 && *p > 0xF4))
            return (long)(p - s);
        for (int k = 1; k <= n; k++)
            if ((p[k] & 0xC0) != 0x80)
                return (long)(p - s);
        if ((n == 2 && *p == 0xE0 && p[1] < 0xA0) || (n == 2 && *p == 0xED && p[1] >= 0xA0) ||
            (n == 3 && *p == 0xF0 && p[1] < 0x90) || (n == 3 && *p == 0xF4 && p[1] >= 0x90))
            return (long)(p - s);
        p += n + 1;
    }
    return -1;
}

/* The labels of the MultiFC dev split per domain (the staged file with its merged records
 * repaired: 151 (domain, label) pairs, 109 distinct strings), plus goop's scale 4..9. */
static const struct {
    const char *dom, *labels;
} known_[] = {
    {"abbc", "in-between|in-the-green|in-the-red"},
    {"afck", "correct|exaggerated|incorrect|misleading|mostly-correct|understated|unproven"},
    {"bove", "none|rating: false"},
    {"chct", "none|verdict: false|verdict: true|verdict: unsubstantiated"},
    {"clck", "incorrect|misleading|unsupported"},
    {"faan", "factscan score: false|factscan score: misleading|factscan score: true"},
    {"faly", "none|partly true|true|unverified"},
    {"fani", "conclusion: accurate"},
    {"farg", "distorts the facts|false|misleading|no evidence|none|not the whole story|spins the "
             "facts|unsupported"},
    {"goop", "0|1|2|3|4|5|6|7|8|9|10"},
    {"hoer", "bogus warning|facebook scams|fake news|misleading recommendations|statirical "
             "reports|true messages|unsubstantiated messages"},
    {"huca", "a little baloney|a lot of baloney|some baloney"},
    {"mpws", "accurate|false|misleading"},
    {"obry", "mostly_false|mostly_true|unobservable|verified"},
    {"para", "false|half flip|half-true|mostly false|mostly true|pants on fire!|true"},
    {"peck", "false|partially true|true"},
    {"pomt", "false|full flop|half flip|half-true|mostly false|mostly true|no flip|pants on "
             "fire!|true"},
    {"pose", "compromise|in the works|not yet rated|promise broken|promise kept|stalled"},
    {"ranz", "fact"},
    {"snes", "correct attribution|false|legend|misattributed|miscaptioned|mixture|mostly "
             "false|mostly true|outdated|scam|true|unproven"},
    {"thal", "half true|mostly false|mostly true|none|unproven|we rate this claim false"},
    {"thet", "false|half true|mostly false|mostly true|none|true"},
    {"tron", "authorship confirmed!|commentary!|confirmed authorship!|correct "
             "attribution!|disputed!|fiction!|fiction! & satire!|grass roots "
             "movement!|incorrect attribution!|investigation pending!|misleading!|mostly "
             "fiction!|mostly truth!|none|opinion!|outdated!|previously truth! now "
             "resolved!|scam!|truth!|truth! & disputed!|truth! & fiction!|truth! & "
             "misleading!|truth! & outdated!|truth! & unproven!|unproven!|virus!"},
    {"vees", "fake|false|misleading|none"},
    {"vogo", "determination: a stretch|determination: barely true|determination: "
             "false|determination: huckster propaganda|determination: "
             "misleading|determination: mostly true|determination: true|none"},
    {"wast", "2 pinnochios|3 pinnochios|4 pinnochios|false|needs context|not the whole story"},
};

const char *multifc_known_labels(const char *domain) {
    for (size_t i = 0; i < sizeof(known_) / sizeof(known_[0]); i++)
        if (!strcmp(known_[i].dom, domain))
            return known_[i].labels;
    return NULL;
}

/* ASCII lower case, spaces trimmed and runs collapsed to one, into out (cap bytes). */
static void fold_(const char *s, size_t n, char *out, size_t cap) {
    size_t k = 0;
    int space = 0;
    for (size_t i = 0; i < n && k + 2 < cap; i++) {
        char c = s[i];
        if (c == ' ' || c == '\t') {
            space = k > 0;
            continue;
        }
        if (space)
            out[k++] = ' ';
        space = 0;
        out[k++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    out[k] = '\0';
}

/* Optimal string alignment distance of a[0..na) and b[0..nb) (edits: insert, delete,
 * substitute, swap two neighbours), or 2 when it is more than 1. */
static int within_one_(const char *a, size_t na, const char *b, size_t nb) {
    if (na > nb + 1 || nb > na + 1)
        return 2;
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    if (i == na && i == nb)
        return 0;
    const char *x = a + i, *y = b + i;
    size_t nx = na - i, ny = nb - i;
    if (nx == ny) /* substitution, or a swap of neighbours */
        return !memcmp(x + 1, y + 1, nx - 1) ||
                       (nx >= 2 && x[0] == y[1] && x[1] == y[0] && !memcmp(x + 2, y + 2, nx - 2))
                   ? 1
                   : 2;
    return nx > ny ? (!memcmp(x + 1, y, ny) ? 1 : 2) : (!memcmp(x, y + 1, nx) ? 1 : 2);
}

/* Checks label against the known labels of the claimID's domain. Returns 0 (known, or a domain
 * outside the 26), 1 (unknown: keep it, note it) or HW_EFORMAT with err set (misspelled). */
static int label_check_(const char *path, int line, const char *id, const char *label, char *err) {
    char dom[5];
    memcpy(dom, id, 4);
    dom[4] = '\0';
    const char *list = multifc_known_labels(dom);
    if (!list)
        return 0;
    size_t nl = strlen(label);
    char fl[256], fk[256];
    fold_(label, nl, fl, sizeof(fl));
    const char *near = NULL;
    size_t near_n = 0;
    for (const char *k = list; *k;) {
        const char *e = strchr(k, '|');
        size_t n = e ? (size_t)(e - k) : strlen(k);
        if (n == nl && !memcmp(k, label, n))
            return 0;
        fold_(k, n, fk, sizeof(fk));
        if (!near && (!strcmp(fl, fk) || within_one_(label, nl, k, n) <= 1)) {
            near = k;
            near_n = n;
        }
        k += n + (e != NULL);
    }
    if (near)
        return hw_errf(err, HW_EFORMAT,
                       "%s:%d: error: label '%.60s' of claimID '%s' is not a %s label: did you "
                       "mean '%.*s'? (known %s labels: %.200s)",
                       path, line, label, id, dom, (int)near_n, near, dom, list);
    return 1;
}

/* One record of a merged row. */
struct piece_ {
    const char *id, *claim, *label;
    int line;
};

/* Splits a merged record back into its records (see multifc.h). work is a writable copy of the
 * claim field (cut in place; the last claim may need one byte more: work has room for it).
 * Returns the number of pieces written into *out (malloc'd), or 0 when the field does not have
 * the shape of a merged record. */
static int split_merged_(const char *id, char *work, const char *label, int line,
                         struct piece_ **out) {
    int n_lines = 1;
    for (const char *q = work; *q; q++)
        n_lines += *q == '\n';
    if (n_lines < 2)
        return 0;
    struct piece_ *pc = HW_CALLOC((size_t)n_lines, sizeof(*pc));
    char *f[14];
    char *p = work;
    for (int i = 0; i < n_lines; i++) {
        char *nl = strchr(p, '\n'), *next = nl ? nl + 1 : NULL;
        if (nl) {
            *nl = '\0';
            if (nl > p && nl[-1] == '\r')
                nl[-1] = '\0';
        }
        int nf = 0;
        for (char *q = p;; q++) {
            if (nf == 14)
                break;
            f[nf++] = q;
            q = strchr(q, '\t');
            if (!q)
                break;
            *q = '\0';
        }
        const int want = i == 0 ? 12 : i == n_lines - 1 ? 2 : 13;
        if (nf != want || (i > 0 && !claim_id_ok_(f[0]))) {
            free(pc);
            return 0;
        }
        if (i == 0)
            pc[i] = (struct piece_){id, f[0], f[1], line};
        else if (i < n_lines - 1)
            pc[i] = (struct piece_){f[0], f[1], f[2], line + i};
        else
            pc[i] = (struct piece_){f[0], f[1], label, line + i};
        if (!*pc[i].label) {
            free(pc);
            return 0;
        }
        p = next;
    }
    /* The merging reader took the last claim's opening '"' as the end of the quoted field. */
    char *last = (char *)pc[n_lines - 1].claim;
    size_t len = strlen(last), quotes = 0;
    for (size_t k = 0; k < len; k++)
        quotes += last[k] == '"';
    if (len && last[len - 1] == '"' && quotes % 2 == 1) {
        memmove(last + 1, last, len + 1);
        last[0] = '"';
    }
    *out = pc;
    return n_lines;
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

/* Appends "<id>: line <line>: <why>" to the list *arr of *n lines. */
static void push_line_(char ***arr, int *n, const char *id, int line, const char *why) {
    if ((*n & (*n - 1)) == 0) /* 0, 1, 2, 4, ...: grow to the next power of two */
        *arr = HW_REALLOC(*arr, (size_t)(*n ? 2 * *n : 1) * sizeof(char *));
    size_t len = strlen(id) + strlen(why) + 32;
    char *s = HW_MALLOC(len);
    snprintf(s, len, "%s: line %d: %s", id, line, why);
    (*arr)[(*n)++] = s;
}

struct load_ {
    const char *path;
    struct id_line_ *ids;
    int n_ids, ids_cap, ex_cap;
};

static void push_id_(struct load_ *L, const char *id, int line) {
    if (L->n_ids == L->ids_cap) {
        L->ids_cap = L->ids_cap ? 2 * L->ids_cap : 1024;
        L->ids = HW_REALLOC(L->ids, (size_t)L->ids_cap * sizeof(*L->ids));
    }
    L->ids[L->n_ids++] = (struct id_line_){HW_STRDUP(id), line};
}

/* Adds one usable example (its label checked). Returns 0 or HW_EFORMAT with err set. */
static int add_example_(struct multifc *m, struct load_ *L, const char *id, const char *claim,
                        const char *label, int line, char *err) {
    if (label && !*label)
        return hw_errf(err, HW_EFORMAT, "%s:%d: error: empty label for claimID '%s'", L->path, line,
                       id);
    if (label) {
        int k = label_check_(L->path, line, id, label, err);
        if (k < 0)
            return k;
        if (k == 1) {
            char why[160];
            snprintf(why, sizeof(why), "label '%.80s' is not a known %.4s label", label, id);
            push_line_(&m->unknown, &m->n_unknown, id, line, why);
        }
    }
    if (m->n == L->ex_cap) {
        L->ex_cap = L->ex_cap ? 2 * L->ex_cap : 1024;
        m->ex = HW_REALLOC(m->ex, (size_t)L->ex_cap * sizeof(*m->ex));
    }
    m->ex[m->n++] = (struct multifc_example){
        HW_STRDUP(id), HW_STRDUP(claim), label ? HW_STRDUP(label) : NULL, -1, -1, line};
    return 0;
}

/* A broken record: split back into its records when it is a merged record of the known shape
 * (listed in repaired), else listed in rejected. Returns 0 or an error. */
static int broken_record_(struct multifc *m, struct load_ *L, const char *id, const char *claim,
                          const char *label, int line, const char *why, char *err) {
    struct piece_ *pc = NULL;
    size_t len = strlen(claim);
    char *work = HW_MALLOC(len + 2);
    memcpy(work, claim, len + 1);
    int np = label && strchr(claim, '\t') ? split_merged_(id, work, label, line, &pc) : 0;
    int rc = 0;
    if (np == 0) {
        push_id_(L, id, line);
        push_line_(&m->rejected, &m->n_rejected, id, line, why);
    } else {
        char note[512];
        int k = snprintf(note, sizeof(note), "merged record split into %d claims:", np);
        for (int i = 0; i < np && !rc; i++) {
            if (k < (int)sizeof(note))
                k += snprintf(note + k, sizeof(note) - (size_t)k, "%s %s (line %d)", i ? "," : "",
                              pc[i].id, pc[i].line);
            push_id_(L, pc[i].id, pc[i].line);
            rc = add_example_(m, L, pc[i].id, pc[i].claim, pc[i].label, pc[i].line, err);
        }
        if (!rc)
            push_line_(&m->repaired, &m->n_repaired, id, line, note);
    }
    free(pc);
    free(work);
    return rc;
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
    struct load_ L = {.path = path};
    int rc = 0;

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
        if (hw_interrupted()) {
            rc = hw_errf(err, HW_ESTOP, "%s:%d: stopped by a signal while reading", path, r.line);
            goto out;
        }
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
        /* the text must be UTF-8: it goes into JSON results and sample logs */
        const char *field = claim, *what = "claim";
        long bad = utf8_bad_(claim);
        if (bad < 0 && label && (bad = utf8_bad_(label)) >= 0)
            field = label, what = "label";
        if (bad >= 0) {
            rc = hw_errf(err, HW_EFORMAT,
                         "%s:%d: error: the %s of claimID '%s' is not UTF-8 (byte 0x%02x at byte "
                         "%ld of the field)",
                         path, r.line, what, id, (unsigned char)field[bad], bad);
            goto out;
        }
        char why[200];
        if (record_broken_(claim, label, why, sizeof(why)))
            rc = broken_record_(m, &L, id, claim, label, r.line, why, err);
        else {
            push_id_(&L, id, r.line);
            rc = add_example_(m, &L, id, claim, label, r.line, err);
        }
        if (rc)
            goto out;
    }
    if (got < 0) {
        rc = got;
        goto out;
    }
    if (L.n_ids > 1) {
        qsort(L.ids, (size_t)L.n_ids, sizeof(*L.ids), cmp_id_line_);
        for (int i = 1; i < L.n_ids; i++)
            if (strcmp(L.ids[i].id, L.ids[i - 1].id) == 0) {
                rc = hw_errf(err, HW_EFORMAT,
                             "%s:%d: error: duplicate claimID '%s' (first on line %d)", path,
                             L.ids[i].line, L.ids[i].id, L.ids[i - 1].line);
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
    for (int i = 0; i < L.n_ids; i++)
        free(L.ids[i].id);
    free(L.ids);
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
    for (int i = 0; i < m->n_repaired; i++)
        free(m->repaired[i]);
    free(m->repaired);
    for (int i = 0; i < m->n_unknown; i++)
        free(m->unknown[i]);
    free(m->unknown);
    memset(m, 0, sizeof(*m));
}

/* "<id>: line <N>: <text>" -> "path:<N>: <id>: <kind><text>" on the console. */
static void log_line_(const char *path, const char *kind, const char *s) {
    const char *a = strstr(s, ": line ");
    int line = 0, off = 0;
    if (a && sscanf(a, ": line %d: %n", &line, &off) == 1 && off > 0)
        log_warn("%s:%d: %.*s: %s%s", path, line, (int)(a - s), s, kind, a + off);
    else
        log_warn("%s: %s%s", path, kind, s);
}

void multifc_log_notes(const struct multifc *m, const char *path) {
    for (int i = 0; i < m->n_rejected; i++)
        log_line_(path, "left out: ", m->rejected[i]);
    for (int i = 0; i < m->n_repaired; i++)
        log_line_(path, "", m->repaired[i]);
    for (int i = 0; i < m->n_unknown; i++)
        log_line_(path, "", m->unknown[i]);
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

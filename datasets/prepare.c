/* datasets/prepare.c -- streaming corpus tokenization into numbered shards (see prepare.h). */
#define _POSIX_C_SOURCE 200809L
#include "prepare.h"

#include "../core/check.h"
#include "../core/fsutil.h"
#include "shards.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BLOCK (4u << 20) /* text is read 4 MiB at a time */

/* a piece of the file: text[0..n) starting at byte off; doc: a JSONL document */
typedef int (*seg_fn)(void *ctx, const char *text, size_t n, int64_t off, int doc, char *err);

int prep_is_jsonl(const char *path, int jsonl) {
    size_t l = strlen(path);
    return jsonl >= 0 ? jsonl : (l > 6 && !strcmp(path + l - 6, ".jsonl"));
}

/* a segment may end at p when a newline precedes it and printable non-space ASCII follows */
static int safe_at_(const char *b, size_t p) {
    return p > 0 && b[p - 1] == '\n' && b[p] >= '!' && b[p] <= '~';
}

/* text: segments of at most about BLOCK bytes, one boundary at the first safe point at or after
 * split (so the train/val cut falls between segments) */
static int each_text_(const char *path, int64_t split, seg_fn fn, void *ctx, char *err) {
    FILE *f = fs_fopen_read(path, err);
    if (!f)
        return HW_EIO;
    size_t cap = BLOCK, have = 0;
    char *buf = HW_MALLOC(cap + 1);
    int64_t off = 0;
    int rc = 0, eof = 0;
    while (!rc && !eof) {
        size_t got = fread(buf + have, 1, cap - have, f);
        eof = got < cap - have;
        if (eof && ferror(f)) {
            rc = hw_errf(err, HW_EIO, "%s: read error", path);
            break;
        }
        have += got;
        size_t cut = 0;
        if (split > off && split < off + (int64_t)have) /* the first safe point from the split */
            for (size_t p = (size_t)(split - off); p < have && !cut; p++)
                cut = safe_at_(buf, p) ? p : 0;
        for (size_t p = have; !cut && p-- > 1;) /* else the last one */
            cut = safe_at_(buf, p) ? p : 0;
        if (eof)
            cut = cut ? cut : have;
        if (!cut) { /* no boundary in the whole buffer: read on */
            cap *= 2;
            buf = HW_REALLOC(buf, cap + 1);
            continue;
        }
        rc = fn(ctx, buf, cut, off, 0, err);
        memmove(buf, buf + cut, have - cut);
        have -= cut;
        off += (int64_t)cut;
        if (eof && have && !rc) {
            rc = fn(ctx, buf, have, off, 0, err);
            have = 0;
        }
    }
    free(buf);
    fclose(f);
    return rc > 0 ? 0 : rc;
}

/* JSONL: one call per document (the field's string) */
static int each_doc_(const char *path, const char *field, seg_fn fn, void *ctx, char *err) {
    FILE *f = fs_fopen_read(path, err);
    if (!f)
        return HW_EIO;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int64_t off = 0;
    int rc = 0, ln = 0;
    while (!rc && (len = getline(&line, &lcap, f)) >= 0) {
        ln++;
        const int64_t start = off;
        off += len;
        if (strspn(line, " \t\r\n") == (size_t)len)
            continue;
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)len, 0, &je);
        json_t *s = json_is_object(j) ? json_object_get(j, field) : NULL;
        if (!json_is_string(s))
            rc = hw_errf(err, HW_EFORMAT, "%s:%d:%d: error: %s '%s'", path, ln, j ? 1 : je.column,
                         j ? "expected an object with a string field" : je.text, field);
        else
            rc = fn(ctx, json_string_value(s), json_string_length(s), start, 1, err);
        json_decref(j);
    }
    free(line);
    fclose(f);
    return rc > 0 ? 0 : rc;
}

static int each_(const char *path, const struct prep_opts *o, int64_t split, seg_fn fn, void *ctx,
                 char *err) {
    return prep_is_jsonl(path, o->jsonl) ? each_doc_(path, o->field, fn, ctx, err)
                                         : each_text_(path, split, fn, ctx, err);
}

/* ---- shards ------------------------------------------------------------------------------- */

struct writer_ {
    const char *dir, *split;
    int idx, part, vocab;
    int32_t *buf;
    int64_t n, cap;
    int64_t *tokens;
    int *shards;
};

static int flush_(struct writer_ *w, char *err) {
    if (!w->n)
        return 0;
    char path[1200];
    snprintf(path, sizeof(path), "%.1000s/%s_%05d_%03d.h5", w->dir, w->split, w->idx, w->part);
    int rc = shard_write(path, w->buf, w->n, w->vocab, err);
    if (!rc) {
        w->part++;
        (*w->shards)++;
        *w->tokens += w->n;
        w->n = 0;
    }
    return rc;
}

static int add_(struct writer_ *w, const int32_t *ids, int64_t n, char *err) {
    int rc = 0;
    while (n > 0 && !rc) {
        int64_t k = w->cap - w->n < n ? w->cap - w->n : n;
        memcpy(w->buf + w->n, ids, sizeof(int32_t) * (size_t)k);
        w->n += k;
        ids += k;
        n -= k;
        if (w->n == w->cap)
            rc = flush_(w, err);
    }
    return rc;
}

struct tok_ctx_ {
    const struct bpe *tok;
    int32_t eot;
    int64_t split;
    struct writer_ train, val;
    int64_t docs;
};

static int tokenize_(void *ctx, const char *text, size_t n, int64_t off, int doc, char *err) {
    struct tok_ctx_ *c = ctx;
    int32_t *ids = NULL;
    int64_t k = bpe_encode(c->tok, text, n, 1, &ids);
    if (k < 0)
        return hw_errf(err, HW_EFORMAT, "tokenization failed at byte %lld", (long long)off);
    struct writer_ *w = off >= c->split ? &c->val : &c->train;
    int rc = add_(w, ids, k, err);
    if (!rc && doc)
        rc = add_(w, &c->eot, 1, err);
    c->docs += doc;
    free(ids);
    return rc;
}

int prep_file(const struct bpe *tok, const char *path, int idx, const struct prep_opts *o,
              struct prep_stats *st, char *err) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return hw_errf(err, HW_EIO, "%s: cannot open", path);
    struct tok_ctx_ c = {.tok = tok, .eot = bpe_eot_id(tok)};
    if (prep_is_jsonl(path, o->jsonl) && c.eot < 0)
        return hw_errf(err, HW_ECONFIG, "%s: the tokenizer has no end-of-text token for JSONL",
                       path);
    c.split = (int64_t)((double)sb.st_size * (1.0 - o->val_frac));
    if (o->val_frac <= 0)
        c.split = INT64_MAX;
    struct writer_ *ws[2] = {&c.train, &c.val};
    for (int i = 0; i < 2; i++) {
        *ws[i] = (struct writer_){.dir = o->out,
                                  .split = i ? "val" : "train",
                                  .idx = idx,
                                  .vocab = bpe_vocab_size(tok),
                                  .cap = o->shard_tokens,
                                  .tokens = i ? &st->val_tokens : &st->train_tokens,
                                  .shards = i ? &st->val_shards : &st->train_shards};
        ws[i]->buf = HW_MALLOC(sizeof(int32_t) * (size_t)o->shard_tokens);
    }
    int rc = each_(path, o, c.split, tokenize_, &c, err);
    for (int i = 0; i < 2; i++) {
        if (!rc)
            rc = flush_(ws[i], err);
        free(ws[i]->buf);
    }
    st->bytes += (int64_t)sb.st_size;
    st->docs += c.docs;
    return rc;
}

/* ---- a sample for tokenizer training -------------------------------------------------------- */

struct sample_ctx_ {
    char *buf;
    size_t n, max;
    const char *eot;
};

static int sample_(void *ctx, const char *text, size_t n, int64_t off, int doc, char *err) {
    struct sample_ctx_ *c = ctx;
    size_t eot = doc ? strlen(c->eot) : 0;
    if (n + eot > c->max - c->n)
        n = c->max - c->n > eot ? c->max - c->n - eot : 0;
    memcpy(c->buf + c->n, text, n);
    c->n += n;
    if (doc && c->max - c->n >= eot) {
        memcpy(c->buf + c->n, c->eot, eot);
        c->n += eot;
    }
    return c->n + 16 >= c->max; /* 1: enough */
}

char *prep_sample(char *const *paths, int n, const struct prep_opts *o, const char *eot,
                  size_t max_bytes, size_t *len, char *err) {
    struct sample_ctx_ c = {HW_MALLOC(max_bytes + 1), 0, max_bytes, eot};
    int rc = 0;
    for (int i = 0; i < n && !rc && c.n + 16 < c.max; i++)
        rc = each_(paths[i], o, INT64_MAX, sample_, &c, err);
    if (rc) {
        free(c.buf);
        return NULL;
    }
    c.buf[c.n] = 0;
    *len = c.n;
    return c.buf;
}

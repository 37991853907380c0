/* datasets/bpe.c -- byte-level BPE (see bpe.h): pre-tokeniser, incremental-count trainer,
 * heap-based per-chunk encoder with a per-call chunk cache, decoder, JSON format and files.
 * Training keeps pair -> count and pair -> words-containing-it, and a max-heap with lazy
 * re-insertion (counts of existing pairs only ever fall), so each merge touches only the words
 * that contain the merged pair. */
#define _POSIX_C_SOURCE 200809L

#include "bpe_impl.h"

#include "../core/check.h"
#include "../core/fsutil.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BPE_FORMAT       "headwise-bpe"
#define BPE_VERSION      1
#define BPE_PRETOKENIZER "headwise-v1"
#define BPE_MAX_VOCAB    (1 << 30)
/* Bytes of all token strings together that a tokenizer file may imply: each merge's token is
 * as long as its two parts, so a few dozen merges of a token with itself would otherwise ask
 * for terabytes (and overflow the 32-bit token lengths). */
#define BPE_MAX_TOKEN_BYTES ((size_t)1 << 28)
#define EMPTY_KEY           UINT64_MAX

// ------------------------------------------------------------------------------------------------
// hashing

static uint64_t mix64_(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t pair_key_(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

uint64_t bpe_impl_hash(const unsigned char *p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = mix64_(h ^ w) + 0x9e3779b97f4a7c15ULL;
    }
    uint64_t w = 0;
    for (size_t k = 0; i < n; i++, k++)
        w |= (uint64_t)p[i] << (8 * k);
    return mix64_(h ^ w);
}

// ------------------------------------------------------------------------------------------------
// token table and pair -> rank map

static int32_t rank_lookup_(const struct bpe *t, int32_t a, int32_t b) {
    if (!t->rank_cap)
        return -1;
    uint64_t key = pair_key_(a, b);
    size_t mask = t->rank_cap - 1;
    for (size_t i = mix64_(key) & mask;; i = (i + 1) & mask) {
        if (t->rank_key[i] == key)
            return t->rank_val[i];
        if (t->rank_key[i] == EMPTY_KEY)
            return -1;
    }
}

static void rank_insert_(struct bpe *t, uint64_t key, int32_t val) {
    size_t mask = t->rank_cap - 1;
    size_t i = mix64_(key) & mask;
    while (t->rank_key[i] != EMPTY_KEY && t->rank_key[i] != key)
        i = (i + 1) & mask;
    t->rank_key[i] = key;
    t->rank_val[i] = val;
}

static void rank_grow_(struct bpe *t) {
    size_t old_cap = t->rank_cap;
    uint64_t *old_key = t->rank_key;
    int32_t *old_val = t->rank_val;
    t->rank_cap = old_cap ? old_cap * 2 : 1024;
    t->rank_key = HW_MALLOC(t->rank_cap * sizeof(*t->rank_key));
    t->rank_val = HW_MALLOC(t->rank_cap * sizeof(*t->rank_val));
    for (size_t i = 0; i < t->rank_cap; i++)
        t->rank_key[i] = EMPTY_KEY;
    for (size_t i = 0; i < old_cap; i++)
        if (old_key[i] != EMPTY_KEY)
            rank_insert_(t, old_key[i], old_val[i]);
    free(old_key);
    free(old_val);
}

static void reserve_bytes_(struct bpe *t, size_t extra) {
    if (t->bytes_len + extra <= t->bytes_cap)
        return;
    size_t cap = t->bytes_cap ? t->bytes_cap : 4096;
    while (cap < t->bytes_len + extra)
        cap *= 2;
    t->bytes = HW_REALLOC(t->bytes, cap);
    t->bytes_cap = cap;
}

/* Makes room for token id and points it at the next n bytes of the pool (caller fills them).
 * Ids skipped over are empty tokens. */
static char *new_token_(struct bpe *t, int32_t id, size_t n) {
    if (id >= t->tok_cap) {
        int32_t cap = t->tok_cap ? t->tok_cap : 512;
        while (cap <= id)
            cap *= 2;
        t->tok_off = HW_REALLOC(t->tok_off, (size_t)cap * sizeof(*t->tok_off));
        t->tok_len = HW_REALLOC(t->tok_len, (size_t)cap * sizeof(*t->tok_len));
        memset(t->tok_off + t->tok_cap, 0, (size_t)(cap - t->tok_cap) * sizeof(*t->tok_off));
        memset(t->tok_len + t->tok_cap, 0, (size_t)(cap - t->tok_cap) * sizeof(*t->tok_len));
        t->tok_cap = cap;
    }
    reserve_bytes_(t, n);
    t->tok_off[id] = t->bytes_len;
    t->tok_len[id] = (uint32_t)n;
    t->bytes_len += n;
    return t->bytes + t->tok_off[id];
}

char *bpe_impl_new_token(struct bpe *t, int32_t id, size_t n) {
    return new_token_(t, id, n);
}

/* Appends (a, b) to the merge list and the pair -> rank map; returns its rank. */
static int32_t push_merge_(struct bpe *t, int32_t a, int32_t b) {
    int32_t r = t->n_merges;
    if ((size_t)(r + 1) * 2 > t->rank_cap)
        rank_grow_(t);
    rank_insert_(t, pair_key_(a, b), r);
    if (r == t->merges_cap) {
        t->merges_cap = t->merges_cap ? t->merges_cap * 2 : 256;
        t->merges = HW_REALLOC(t->merges, (size_t)t->merges_cap * sizeof(*t->merges));
        if (t->merge_id)
            t->merge_id = HW_REALLOC(t->merge_id, (size_t)t->merges_cap * sizeof(*t->merge_id));
    }
    t->merges[r][0] = a;
    t->merges[r][1] = b;
    return r;
}

void bpe_impl_add_merge(struct bpe *t, int32_t a, int32_t b, int32_t out) {
    if (!t->merge_id)
        t->merge_id = HW_MALLOC((size_t)(t->merges_cap ? t->merges_cap : 1) * sizeof(int32_t));
    int32_t r = push_merge_(t, a, b);
    t->merge_id[r] = out;
    t->n_merges++;
}

/* Appends merge (a, b) as id 256 + n_merges. Requires n_special == 0, a and b existing ids and
 * (a, b) not already a merge. */
static void add_merge_(struct bpe *t, int32_t a, int32_t b) {
    HW_ASSERT(t->n_special == 0 && !t->merge_id);
    int32_t r = push_merge_(t, a, b);
    size_t la = t->tok_len[a], lb = t->tok_len[b];
    char *dst = new_token_(t, BPE_N_BYTES + r, la + lb); /* may move the pool: index after */
    memcpy(dst, t->bytes + t->tok_off[a], la);
    memcpy(dst + la, t->bytes + t->tok_off[b], lb);
    t->n_merges++;
    t->n_vocab++;
}

void bpe_init(struct bpe *t) {
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < BPE_N_BYTES; i++) {
        *new_token_(t, i, 1) = (char)i;
        t->byte_id[i] = i;
    }
    t->n_vocab = BPE_N_BYTES;
}

void bpe_free(struct bpe *t) {
    free(t->merges);
    if (t->special)
        for (int32_t i = 0; i < t->n_special; i++)
            free(t->special[i]);
    free(t->special);
    free(t->bytes);
    free(t->tok_off);
    free(t->tok_len);
    free(t->rank_key);
    free(t->rank_val);
    free(t->sp_key);
    free(t->sp_child);
    free(t->sp_term);
    free(t->special_id);
    free(t->merge_id);
    bpe_hf_free(t->hf);
    memset(t, 0, sizeof(*t));
}

int bpe_vocab_size(const struct bpe *t) {
    return t->n_vocab;
}

int bpe_is_hf(const struct bpe *t) {
    return t->hf != NULL;
}

static const char *const eot_names[] = {"<|endoftext|>", "<|end_of_text|>", "</s>"};

const char *bpe_eot_string(const struct bpe *t) {
    for (size_t i = 0; i < sizeof(eot_names) / sizeof(eot_names[0]); i++)
        if (bpe_special_id(t, eot_names[i]) >= 0)
            return eot_names[i];
    return NULL;
}

int32_t bpe_eot_id(const struct bpe *t) {
    const char *s = bpe_eot_string(t);
    return s ? bpe_special_id(t, s) : -1;
}

const char *bpe_token_bytes(const struct bpe *t, int32_t id, int *len) {
    if (id < 0 || id >= bpe_vocab_size(t) || !t->tok_len) {
        *len = 0;
        return NULL;
    }
    *len = (int)t->tok_len[id];
    return t->bytes + t->tok_off[id];
}

// ------------------------------------------------------------------------------------------------
// special strings: a byte trie with its edges in a hash table

static int32_t sp_child_(const struct bpe *t, int32_t node, unsigned char c) {
    if (!t->sp_cap)
        return -1;
    uint64_t key = ((uint64_t)(uint32_t)node << 8) | c;
    size_t mask = t->sp_cap - 1;
    for (size_t i = mix64_(key) & mask;; i = (i + 1) & mask) {
        if (t->sp_key[i] == key)
            return t->sp_child[i];
        if (t->sp_key[i] == EMPTY_KEY)
            return -1;
    }
}

static void sp_edge_insert_(uint64_t *keys, int32_t *child, size_t cap, uint64_t key, int32_t v) {
    size_t mask = cap - 1;
    size_t i = mix64_(key) & mask;
    while (keys[i] != EMPTY_KEY)
        i = (i + 1) & mask;
    keys[i] = key;
    child[i] = v;
}

static int32_t sp_new_node_(struct bpe *t) {
    if (t->sp_nodes == t->sp_nodes_cap) {
        t->sp_nodes_cap = t->sp_nodes_cap ? t->sp_nodes_cap * 2 : 64;
        t->sp_term = HW_REALLOC(t->sp_term, (size_t)t->sp_nodes_cap * sizeof(*t->sp_term));
    }
    t->sp_term[t->sp_nodes] = -1;
    return t->sp_nodes++;
}

/* The node for s[0..n), made with its path if missing. */
static int32_t sp_insert_(struct bpe *t, const unsigned char *s, size_t n) {
    if (!t->sp_nodes)
        sp_new_node_(t); /* the root */
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = sp_child_(t, node, s[i]);
        if (c < 0) {
            if ((t->sp_edges + 1) * 2 > t->sp_cap) { /* keep the load at most 1/2 */
                size_t cap = t->sp_cap ? t->sp_cap * 2 : 256;
                uint64_t *keys = HW_MALLOC(cap * sizeof(*keys));
                int32_t *child = HW_MALLOC(cap * sizeof(*child));
                for (size_t k = 0; k < cap; k++)
                    keys[k] = EMPTY_KEY;
                for (size_t k = 0; k < t->sp_cap; k++)
                    if (t->sp_key[k] != EMPTY_KEY)
                        sp_edge_insert_(keys, child, cap, t->sp_key[k], t->sp_child[k]);
                free(t->sp_key);
                free(t->sp_child);
                t->sp_key = keys;
                t->sp_child = child;
                t->sp_cap = cap;
            }
            c = sp_new_node_(t);
            sp_edge_insert_(t->sp_key, t->sp_child, t->sp_cap,
                            ((uint64_t)(uint32_t)node << 8) | s[i], c);
            t->sp_edges++;
        }
        node = c;
    }
    return node;
}

/* Index of the special string s[0..n), or -1. */
static int32_t sp_find_(const struct bpe *t, const unsigned char *s, size_t n) {
    if (!t->sp_nodes)
        return -1;
    int32_t node = 0;
    for (size_t i = 0; i < n && node >= 0; i++)
        node = sp_child_(t, node, s[i]);
    return node >= 0 ? t->sp_term[node] : -1;
}

int32_t bpe_special_id(const struct bpe *t, const char *s) {
    if (!s)
        return -1;
    int32_t k = sp_find_(t, (const unsigned char *)s, strlen(s));
    return k >= 0 ? t->special_id[k] : -1;
}

static int utf8_valid_(const unsigned char *s, size_t n) {
    json_t *j = json_stringn((const char *)s, n);
    int ok = j != NULL;
    json_decref(j);
    return ok;
}

int32_t bpe_add_special(struct bpe *t, const char *s) {
    if (!s || !*s || !utf8_valid_((const unsigned char *)s, strlen(s)))
        return -1;
    int32_t id = bpe_special_id(t, s);
    if (id >= 0)
        return id;
    id = bpe_vocab_size(t);
    HW_ASSERT(id < BPE_MAX_VOCAB);
    size_t n = strlen(s);
    memcpy(new_token_(t, id, n), s, n);
    bpe_impl_add_special(t, s, n, id);
    t->n_vocab = id + 1;
    return id;
}

void bpe_impl_add_special(struct bpe *t, const char *s, size_t n, int32_t id) {
    if (t->n_special == t->special_cap) {
        t->special_cap = t->special_cap ? t->special_cap * 2 : 16;
        t->special = HW_REALLOC(t->special, (size_t)t->special_cap * sizeof(*t->special));
        t->special_id = HW_REALLOC(t->special_id, (size_t)t->special_cap * sizeof(int32_t));
    }
    int32_t node = sp_insert_(t, (const unsigned char *)s, n); /* may move sp_term */
    t->sp_term[node] = t->n_special;
    t->special_id[t->n_special] = id;
    t->special[t->n_special] = HW_MALLOC(n + 1);
    memcpy(t->special[t->n_special], s, n);
    t->special[t->n_special++][n] = '\0';
    unsigned char c = (unsigned char)s[0];
    t->special_first[c >> 3] |= (uint8_t)(1u << (c & 7));
}

// ------------------------------------------------------------------------------------------------
// pre-tokeniser

enum { CL_LETTER, CL_DIGIT, CL_NEWLINE, CL_SPACE, CL_PUNCT };

static int byte_class_(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80)
        return CL_LETTER;
    if (c >= '0' && c <= '9')
        return CL_DIGIT;
    if (c == '\n' || c == '\r')
        return CL_NEWLINE;
    if (c == ' ' || c == '\t' || c == '\v' || c == '\f')
        return CL_SPACE;
    return CL_PUNCT;
}

static int is_wordish_(int cl) {
    return cl == CL_LETTER || cl == CL_DIGIT || cl == CL_PUNCT;
}

static size_t next_chunk_(const unsigned char *s, size_t n, size_t i) {
    size_t j = i;
    if (s[j] == ' ' && j + 1 < n && is_wordish_(byte_class_(s[j + 1])))
        j++;
    int cl = byte_class_(s[j]);
    switch (cl) {
    case CL_DIGIT: {
        size_t end = j + 3 < n ? j + 3 : n;
        while (j < end && byte_class_(s[j]) == CL_DIGIT)
            j++;
        return j;
    }
    case CL_SPACE: {
        while (j < n && byte_class_(s[j]) == CL_SPACE)
            j++;
        if (j < n && j - i > 1 && s[j - 1] == ' ' && is_wordish_(byte_class_(s[j])))
            j--;
        return j;
    }
    default: /* LETTER, PUNCT, NEWLINE: a maximal run of the class */
        while (j < n && byte_class_(s[j]) == cl)
            j++;
        return j;
    }
}

size_t bpe_next_chunk(const char *text, size_t len, size_t pos) {
    HW_ASSERT(pos < len);
    return next_chunk_((const unsigned char *)text, len, pos);
}

// ------------------------------------------------------------------------------------------------
// training

struct chunk_ent {
    const unsigned char *p;
    size_t len;
    int64_t count;
};

struct chunk_tab {
    struct chunk_ent *ent;
    size_t n, ent_cap;
    int32_t *slot;  /* (cap) index into ent, -1 empty */
    uint64_t *hash; /* (ent_cap) */
    size_t cap;
};

static void chunk_tab_rehash_(struct chunk_tab *c) {
    free(c->slot);
    c->cap = c->cap ? c->cap * 2 : 4096;
    c->slot = HW_MALLOC(c->cap * sizeof(*c->slot));
    for (size_t i = 0; i < c->cap; i++)
        c->slot[i] = -1;
    size_t mask = c->cap - 1;
    for (size_t e = 0; e < c->n; e++) {
        size_t i = c->hash[e] & mask;
        while (c->slot[i] >= 0)
            i = (i + 1) & mask;
        c->slot[i] = (int32_t)e;
    }
}

static void chunk_tab_add_(struct chunk_tab *c, const unsigned char *p, size_t len) {
    if ((c->n + 1) * 2 > c->cap)
        chunk_tab_rehash_(c);
    uint64_t h = bpe_impl_hash(p, len);
    size_t mask = c->cap - 1;
    size_t i = h & mask;
    for (; c->slot[i] >= 0; i = (i + 1) & mask) {
        struct chunk_ent *e = &c->ent[c->slot[i]];
        if (c->hash[c->slot[i]] == h && e->len == len && memcmp(e->p, p, len) == 0) {
            e->count++;
            return;
        }
    }
    if (c->n == c->ent_cap) {
        c->ent_cap = c->ent_cap ? c->ent_cap * 2 : 4096;
        c->ent = HW_REALLOC(c->ent, c->ent_cap * sizeof(*c->ent));
        c->hash = HW_REALLOC(c->hash, c->ent_cap * sizeof(*c->hash));
    }
    HW_ASSERT(c->n < INT32_MAX);
    c->ent[c->n] = (struct chunk_ent){p, len, 1};
    c->hash[c->n] = h;
    c->slot[i] = (int32_t)c->n++;
}

struct pair_st {
    int32_t a, b;
    int64_t count;
    int32_t *words; /* words that contain (or once contained) the pair; may hold stale ids */
    int32_t nw, cw;
    int32_t touched; /* merge step that last raised the count */
};

struct heap_ent {
    int64_t count;
    int32_t a, b;
};

struct trainer {
    /* words: unique chunks; symbols of word w are sym[off[w] .. off[w] + len[w]) */
    int32_t *sym;
    size_t *off;
    int32_t *len;
    int64_t *wcount;
    int32_t *mark;
    int32_t n_words;
    /* pairs */
    struct pair_st *pairs;
    int32_t n_pairs, pairs_cap;
    uint64_t *pkey; /* (pcap) */
    int32_t *pval;  /* (pcap) */
    size_t pcap;
    /* max-heap on (count desc, a asc, b asc) */
    struct heap_ent *heap;
    size_t hn, hcap;
    /* pairs raised during the current merge step */
    int32_t *raised;
    int32_t n_raised, raised_cap;
};

static int heap_before_(const struct heap_ent *x, const struct heap_ent *y) {
    if (x->count != y->count)
        return x->count > y->count;
    if (x->a != y->a)
        return x->a < y->a;
    return x->b < y->b;
}

static void heap_push_(struct trainer *tr, int64_t count, int32_t a, int32_t b) {
    if (tr->hn == tr->hcap) {
        tr->hcap = tr->hcap ? tr->hcap * 2 : 4096;
        tr->heap = HW_REALLOC(tr->heap, tr->hcap * sizeof(*tr->heap));
    }
    struct heap_ent e = {count, a, b};
    size_t i = tr->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_before_(&e, &tr->heap[p]))
            break;
        tr->heap[i] = tr->heap[p];
        i = p;
    }
    tr->heap[i] = e;
}

static struct heap_ent heap_pop_(struct trainer *tr) {
    struct heap_ent top = tr->heap[0];
    struct heap_ent last = tr->heap[--tr->hn];
    size_t i = 0, n = tr->hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_before_(&tr->heap[c + 1], &tr->heap[c]))
            c++;
        if (!heap_before_(&tr->heap[c], &last))
            break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    if (n)
        tr->heap[i] = last;
    return top;
}

static void pmap_insert_(struct trainer *tr, uint64_t key, int32_t val) {
    size_t mask = tr->pcap - 1;
    size_t i = mix64_(key) & mask;
    while (tr->pkey[i] != EMPTY_KEY)
        i = (i + 1) & mask;
    tr->pkey[i] = key;
    tr->pval[i] = val;
}

static void pmap_grow_(struct trainer *tr) {
    size_t old_cap = tr->pcap;
    uint64_t *old_key = tr->pkey;
    int32_t *old_val = tr->pval;
    tr->pcap = old_cap ? old_cap * 2 : 4096;
    tr->pkey = HW_MALLOC(tr->pcap * sizeof(*tr->pkey));
    tr->pval = HW_MALLOC(tr->pcap * sizeof(*tr->pval));
    for (size_t i = 0; i < tr->pcap; i++)
        tr->pkey[i] = EMPTY_KEY;
    for (size_t i = 0; i < old_cap; i++)
        if (old_key[i] != EMPTY_KEY)
            pmap_insert_(tr, old_key[i], old_val[i]);
    free(old_key);
    free(old_val);
}

/* Index of pair (a, b) in tr->pairs, created with count 0 if new. */
static int32_t pair_get_(struct trainer *tr, int32_t a, int32_t b) {
    if ((size_t)(tr->n_pairs + 1) * 2 > tr->pcap)
        pmap_grow_(tr);
    uint64_t key = pair_key_(a, b);
    size_t mask = tr->pcap - 1;
    size_t i = mix64_(key) & mask;
    for (; tr->pkey[i] != EMPTY_KEY; i = (i + 1) & mask)
        if (tr->pkey[i] == key)
            return tr->pval[i];
    if (tr->n_pairs == tr->pairs_cap) {
        tr->pairs_cap = tr->pairs_cap ? tr->pairs_cap * 2 : 4096;
        tr->pairs = HW_REALLOC(tr->pairs, (size_t)tr->pairs_cap * sizeof(*tr->pairs));
    }
    int32_t idx = tr->n_pairs++;
    tr->pairs[idx] = (struct pair_st){a, b, 0, NULL, 0, 0, -1};
    tr->pkey[i] = key;
    tr->pval[i] = idx;
    return idx;
}

static void pair_add_word_(struct pair_st *p, int32_t w) {
    if (p->nw && p->words[p->nw - 1] == w)
        return;
    if (p->nw == p->cw) {
        p->cw = p->cw ? p->cw * 2 : 4;
        p->words = HW_REALLOC(p->words, (size_t)p->cw * sizeof(*p->words));
    }
    p->words[p->nw++] = w;
}

static void pair_dec_(struct trainer *tr, int32_t a, int32_t b, int64_t wc) {
    int32_t idx = pair_get_(tr, a, b); /* may move tr->pairs */
    tr->pairs[idx].count -= wc;
}

static void pair_inc_(struct trainer *tr, int32_t a, int32_t b, int64_t wc, int32_t w,
                      int32_t step) {
    int32_t idx = pair_get_(tr, a, b);
    struct pair_st *p = &tr->pairs[idx];
    p->count += wc;
    pair_add_word_(p, w);
    if (p->touched != step) {
        p->touched = step;
        if (tr->n_raised == tr->raised_cap) {
            tr->raised_cap = tr->raised_cap ? tr->raised_cap * 2 : 256;
            tr->raised = HW_REALLOC(tr->raised, (size_t)tr->raised_cap * sizeof(*tr->raised));
        }
        tr->raised[tr->n_raised++] = idx;
    }
}

static void trainer_free_(struct trainer *tr) {
    free(tr->sym);
    free(tr->off);
    free(tr->len);
    free(tr->wcount);
    free(tr->mark);
    for (int32_t i = 0; i < tr->n_pairs; i++)
        free(tr->pairs[i].words);
    free(tr->pairs);
    free(tr->pkey);
    free(tr->pval);
    free(tr->heap);
    free(tr->raised);
}

/* Merges every occurrence of (a, b) in word w into z, left to right, updating pair counts. */
static void merge_word_(struct trainer *tr, int32_t w, int32_t a, int32_t b, int32_t z,
                        int32_t step) {
    int32_t *s = tr->sym + tr->off[w];
    int32_t n = tr->len[w];
    int64_t wc = tr->wcount[w];
    int32_t i = 0, j = 0;
    while (i < n) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            pair_dec_(tr, a, b, wc);
            if (j > 0) {
                pair_dec_(tr, s[j - 1], a, wc);
                pair_inc_(tr, s[j - 1], z, wc, w, step);
            }
            if (i + 2 < n) {
                pair_dec_(tr, b, s[i + 2], wc);
                pair_inc_(tr, z, s[i + 2], wc, w, step);
            }
            s[j++] = z;
            i += 2;
        } else {
            s[j++] = s[i++];
        }
    }
    tr->len[w] = j;
}

int bpe_train(struct bpe *t, const char *text, size_t len, int vocab_size, char *err) {
    bpe_init(t);
    if (vocab_size < BPE_N_BYTES || vocab_size > BPE_MAX_VOCAB)
        return hw_errf(err, HW_ECONFIG, "bpe_train: vocab_size %d is out of range [%d, %d]",
                       vocab_size, BPE_N_BYTES, BPE_MAX_VOCAB);
    int32_t target = vocab_size - BPE_N_BYTES;
    if (target == 0 || len == 0)
        return 0;

    const unsigned char *s = (const unsigned char *)text;
    struct chunk_tab ct = {0};
    for (size_t i = 0; i < len;) {
        size_t e = next_chunk_(s, len, i);
        chunk_tab_add_(&ct, s + i, e - i);
        i = e;
    }

    struct trainer tr = {0};
    tr.n_words = (int32_t)ct.n;
    size_t total = 0;
    for (size_t w = 0; w < ct.n; w++)
        total += ct.ent[w].len;
    tr.sym = HW_MALLOC(total * sizeof(*tr.sym));
    tr.off = HW_MALLOC(ct.n * sizeof(*tr.off));
    tr.len = HW_MALLOC(ct.n * sizeof(*tr.len));
    tr.wcount = HW_MALLOC(ct.n * sizeof(*tr.wcount));
    tr.mark = HW_MALLOC(ct.n * sizeof(*tr.mark));
    size_t off = 0;
    for (int32_t w = 0; w < tr.n_words; w++) {
        const struct chunk_ent *e = &ct.ent[w];
        HW_ASSERT(e->len < INT32_MAX);
        tr.off[w] = off;
        tr.len[w] = (int32_t)e->len;
        tr.wcount[w] = e->count;
        tr.mark[w] = -1;
        for (size_t k = 0; k < e->len; k++)
            tr.sym[off + k] = e->p[k];
        off += e->len;
        for (size_t k = 0; k + 1 < e->len; k++) {
            int32_t idx = pair_get_(&tr, e->p[k], e->p[k + 1]); /* may move tr.pairs */
            struct pair_st *p = &tr.pairs[idx];
            p->count += e->count;
            pair_add_word_(p, w);
        }
    }
    free(ct.ent);
    free(ct.hash);
    free(ct.slot);
    for (int32_t i = 0; i < tr.n_pairs; i++)
        heap_push_(&tr, tr.pairs[i].count, tr.pairs[i].a, tr.pairs[i].b);

    for (int32_t step = 0; step < target; step++) {
        int32_t best = -1;
        while (tr.hn) {
            struct heap_ent top = heap_pop_(&tr);
            int32_t idx = pair_get_(&tr, top.a, top.b);
            int64_t cur = tr.pairs[idx].count;
            if (cur == top.count) {
                best = idx;
                break;
            }
            if (cur > 0) /* counts of old pairs only fall, so re-queue at the current count */
                heap_push_(&tr, cur, top.a, top.b);
        }
        if (best < 0 || tr.pairs[best].count < 2)
            break;
        int32_t a = tr.pairs[best].a, b = tr.pairs[best].b;
        int32_t z = BPE_N_BYTES + t->n_merges;
        add_merge_(t, a, b);
        /* the word list of (a, b) is not appended to during this step: only pairs with z are */
        const int32_t *words = tr.pairs[best].words;
        int32_t nw = tr.pairs[best].nw;
        tr.n_raised = 0;
        for (int32_t k = 0; k < nw; k++) {
            int32_t w = words[k];
            if (tr.mark[w] == step)
                continue;
            tr.mark[w] = step;
            merge_word_(&tr, w, a, b, z, step);
        }
        HW_ASSERT(tr.pairs[best].count == 0);
        free(tr.pairs[best].words);
        tr.pairs[best].words = NULL;
        tr.pairs[best].nw = tr.pairs[best].cw = 0;
        for (int32_t k = 0; k < tr.n_raised; k++) {
            const struct pair_st *p = &tr.pairs[tr.raised[k]];
            if (p->count > 0)
                heap_push_(&tr, p->count, p->a, p->b);
        }
    }
    trainer_free_(&tr);
    return 0;
}

// ------------------------------------------------------------------------------------------------
// encoding

struct out_buf {
    int32_t *ids;
    size_t n, cap;
};

static void out_reserve_(struct out_buf *o, size_t extra) {
    if (o->n + extra <= o->cap)
        return;
    size_t cap = o->cap ? o->cap : 1024;
    while (cap < o->n + extra)
        cap *= 2;
    o->ids = HW_REALLOC(o->ids, cap * sizeof(*o->ids));
    o->cap = cap;
}

struct enc_heap_ent {
    int32_t rank, pos;
};

struct enc_scratch {
    int32_t *sym, *prev, *next;
    struct enc_heap_ent *heap;
    size_t cap, hn, hcap;
};

static int enc_before_(struct enc_heap_ent x, struct enc_heap_ent y) {
    return x.rank != y.rank ? x.rank < y.rank : x.pos < y.pos;
}

static void enc_push_(struct enc_scratch *sc, int32_t rank, int32_t pos) {
    if (sc->hn == sc->hcap) {
        sc->hcap = sc->hcap ? sc->hcap * 2 : 256;
        sc->heap = HW_REALLOC(sc->heap, sc->hcap * sizeof(*sc->heap));
    }
    struct enc_heap_ent e = {rank, pos};
    size_t i = sc->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!enc_before_(e, sc->heap[p]))
            break;
        sc->heap[i] = sc->heap[p];
        i = p;
    }
    sc->heap[i] = e;
}

static struct enc_heap_ent enc_pop_(struct enc_scratch *sc) {
    struct enc_heap_ent top = sc->heap[0];
    struct enc_heap_ent last = sc->heap[--sc->hn];
    size_t i = 0, n = sc->hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && enc_before_(sc->heap[c + 1], sc->heap[c]))
            c++;
        if (!enc_before_(sc->heap[c], last))
            break;
        sc->heap[i] = sc->heap[c];
        i = c;
    }
    if (n)
        sc->heap[i] = last;
    return top;
}

/* Appends the ids of one chunk p[0..n) to o: merges by rank, leftmost first among equal ranks
 * (which is the order training applied them). O(n log n) even for huge chunks. */
static void encode_chunk_(const struct bpe *t, struct enc_scratch *sc, const unsigned char *p,
                          size_t n, struct out_buf *o) {
    out_reserve_(o, n);
    if (t->hf && n > 1) {
        int32_t whole = bpe_hf_whole_token(t, p, n);
        if (whole >= 0) {
            o->ids[o->n++] = whole;
            return;
        }
    }
    if (n == 1 || t->n_merges == 0) {
        for (size_t i = 0; i < n; i++)
            if (t->byte_id[p[i]] >= 0) /* a byte the vocabulary lacks is dropped, as in HF */
                o->ids[o->n++] = t->byte_id[p[i]];
        return;
    }
    HW_ASSERT(n < INT32_MAX);
    if (n > sc->cap) {
        sc->cap = n;
        sc->sym = HW_REALLOC(sc->sym, n * sizeof(*sc->sym));
        sc->prev = HW_REALLOC(sc->prev, n * sizeof(*sc->prev));
        sc->next = HW_REALLOC(sc->next, n * sizeof(*sc->next));
    }
    int32_t m = 0;
    int32_t *sym = sc->sym, *prev = sc->prev, *next = sc->next;
    sc->hn = 0;
    for (size_t k = 0; k < n; k++) {
        if (t->byte_id[p[k]] < 0)
            continue;
        sym[m] = t->byte_id[p[k]];
        prev[m] = m - 1;
        next[m] = m + 1;
        m++;
    }
    for (int32_t i = 0; i + 1 < m; i++) {
        int32_t r = rank_lookup_(t, sym[i], sym[i + 1]);
        if (r >= 0)
            enc_push_(sc, r, i);
    }
    while (sc->hn) {
        struct enc_heap_ent e = enc_pop_(sc);
        int32_t i = e.pos, j = next[i];
        /* stale if i was absorbed or its pair changed (symbols at a position only grow) */
        if (sym[i] != t->merges[e.rank][0] || j >= m || sym[j] != t->merges[e.rank][1])
            continue;
        sym[i] = t->merge_id ? t->merge_id[e.rank] : BPE_N_BYTES + e.rank;
        sym[j] = -1;
        next[i] = next[j];
        if (next[j] < m)
            prev[next[j]] = i;
        if (prev[i] >= 0) {
            int32_t r = rank_lookup_(t, sym[prev[i]], sym[i]);
            if (r >= 0)
                enc_push_(sc, r, prev[i]);
        }
        if (next[i] < m) {
            int32_t r = rank_lookup_(t, sym[i], sym[next[i]]);
            if (r >= 0)
                enc_push_(sc, r, i);
        }
    }
    for (int32_t i = 0; i < m; i = next[i])
        o->ids[o->n++] = sym[i];
}

/* Per-call cache: chunk bytes (pointing into the input) -> ids already written to the output. */
struct cache_slot {
    const unsigned char *p; /* NULL: empty slot */
    uint32_t len, n_ids;
    size_t out_off;
    uint64_t hash;
};

struct enc_cache {
    struct cache_slot *slot;
    size_t cap, n;
};

#define CACHE_MAX_CHUNK   256
#define CACHE_MAX_ENTRIES (1u << 20)

static void cache_grow_(struct enc_cache *c) {
    size_t old_cap = c->cap;
    struct cache_slot *old = c->slot;
    c->cap = old_cap ? old_cap * 2 : 4096;
    c->slot = HW_CALLOC(c->cap, sizeof(*c->slot));
    size_t mask = c->cap - 1;
    for (size_t k = 0; k < old_cap; k++) {
        if (!old[k].p)
            continue;
        size_t i = old[k].hash & mask;
        while (c->slot[i].p)
            i = (i + 1) & mask;
        c->slot[i] = old[k];
    }
    free(old);
}

struct enc_ctx {
    const struct bpe *t;
    struct enc_scratch sc;
    struct enc_cache cache;
    struct out_buf o;
};

/* Encodes one chunk p[0..len), through the cache when p stays valid for the whole call. */
static void encode_cached_(struct enc_ctx *c, const unsigned char *p, size_t len, int stable) {
    const struct bpe *t = c->t;
    struct enc_cache *cache = &c->cache;
    struct out_buf *o = &c->o;
    if (!stable || len == 1 || len > CACHE_MAX_CHUNK || t->n_merges == 0) {
        encode_chunk_(t, &c->sc, p, len, o);
        return;
    }
    if ((cache->n + 1) * 2 > cache->cap) {
        if (cache->n >= CACHE_MAX_ENTRIES) {
            encode_chunk_(t, &c->sc, p, len, o);
            return;
        }
        cache_grow_(cache);
    }
    uint64_t h = bpe_impl_hash(p, len);
    size_t mask = cache->cap - 1, k = h & mask;
    for (; cache->slot[k].p; k = (k + 1) & mask)
        if (cache->slot[k].hash == h && cache->slot[k].len == len &&
            memcmp(cache->slot[k].p, p, len) == 0)
            break;
    if (cache->slot[k].p) {
        uint32_t m = cache->slot[k].n_ids;
        out_reserve_(o, m);
        memcpy(o->ids + o->n, o->ids + cache->slot[k].out_off, m * sizeof(*o->ids));
        o->n += m;
        return;
    }
    size_t start = o->n;
    encode_chunk_(t, &c->sc, p, len, o);
    cache->slot[k].p = p;
    cache->slot[k].len = (uint32_t)len;
    cache->slot[k].n_ids = (uint32_t)(o->n - start);
    cache->slot[k].out_off = start;
    cache->slot[k].hash = h;
    cache->n++;
}

static void chunk_cb_(void *ctx, const unsigned char *p, size_t n, int stable) {
    encode_cached_(ctx, p, n, stable);
}

/* Pre-tokenises and encodes a piece of text that holds no special token. */
static void encode_piece_(struct enc_ctx *c, const unsigned char *s, size_t n) {
    if (c->t->hf) {
        bpe_hf_pretokenize(c->t->hf, s, n, chunk_cb_, c);
        return;
    }
    for (size_t i = 0; i < n;) {
        size_t e = next_chunk_(s, n, i);
        encode_cached_(c, s + i, e - i, 1);
        i = e;
    }
}

/* Leftmost special occurrence at or after from; returns its position (n if none), *id, *mlen.
 * At each position the trie is walked as far as the text allows, keeping the longest special
 * passed on the way. */
static size_t find_special_(const struct bpe *t, const unsigned char *s, size_t n, size_t from,
                            int32_t *id, size_t *mlen) {
    for (size_t i = from; i < n; i++) {
        if (!(t->special_first[s[i] >> 3] & (1u << (s[i] & 7))))
            continue;
        size_t best_len = 0;
        int32_t node = 0;
        for (size_t j = i; j < n; j++) {
            node = sp_child_(t, node, s[j]);
            if (node < 0)
                break;
            if (t->sp_term[node] >= 0) {
                best_len = j + 1 - i;
                *id = t->special_id[t->sp_term[node]];
            }
        }
        if (best_len) {
            *mlen = best_len;
            return i;
        }
    }
    return n;
}

struct pieces_ctx {
    void (*fn)(void *ctx, const char *p, size_t n);
    void *ctx;
};

static void piece_cb_(void *ctx, const unsigned char *p, size_t n, int stable) {
    struct pieces_ctx *c = ctx;
    c->fn(c->ctx, (const char *)p, n);
}

void bpe_pieces(const struct bpe *t, const char *text, size_t len,
                void (*fn)(void *ctx, const char *p, size_t n), void *ctx) {
    const unsigned char *s = (const unsigned char *)text;
    unsigned char *fixed = t->hf ? bpe_hf_fix_utf8(s, len, &len) : NULL;
    struct pieces_ctx c = {fn, ctx};
    if (t->hf)
        bpe_hf_pretokenize(t->hf, fixed ? fixed : s, len, piece_cb_, &c);
    for (size_t i = 0; !t->hf && i < len;) {
        size_t e = next_chunk_(s, len, i);
        fn(ctx, text + i, e - i);
        i = e;
    }
    free(fixed);
}

int64_t bpe_encode(const struct bpe *t, const char *text, size_t len, int allow_special,
                   int32_t **out) {
    const unsigned char *s = (const unsigned char *)text;
    unsigned char *fixed = t->hf ? bpe_hf_fix_utf8(s, len, &len) : NULL;
    if (fixed)
        s = fixed;
    struct enc_ctx c = {.t = t};
    out_reserve_(&c.o, len / 3 + 16);
    if (allow_special && t->n_special) {
        for (size_t i = 0; i < len;) {
            int32_t id = -1;
            size_t mlen = 0;
            size_t at = find_special_(t, s, len, i, &id, &mlen);
            encode_piece_(&c, s + i, at - i);
            if (at == len)
                break;
            out_reserve_(&c.o, 1);
            c.o.ids[c.o.n++] = id;
            i = at + mlen;
        }
    } else {
        encode_piece_(&c, s, len);
    }
    free(c.sc.sym);
    free(c.sc.prev);
    free(c.sc.next);
    free(c.sc.heap);
    free(c.cache.slot);
    free(fixed);
    *out = c.o.ids;
    return (int64_t)c.o.n;
}

// ------------------------------------------------------------------------------------------------
// decoding

int64_t bpe_decode(const struct bpe *t, const int32_t *ids, int64_t n, char **out) {
    int32_t v = bpe_vocab_size(t);
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= v || !t->tok_len) {
            *out = NULL;
            return -1;
        }
        total += t->tok_len[ids[i]];
    }
    char *buf = HW_MALLOC(total + 1);
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        memcpy(buf + k, t->bytes + t->tok_off[ids[i]], t->tok_len[ids[i]]);
        k += t->tok_len[ids[i]];
    }
    buf[k] = '\0';
    *out = buf;
    return (int64_t)k;
}

// ------------------------------------------------------------------------------------------------
// JSON

struct sbuf {
    char *p;
    size_t n, cap;
};

static void sb_put_(struct sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->p = HW_REALLOC(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_printf_(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf_(struct sbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    HW_ASSERT(n >= 0 && (size_t)n < sizeof(tmp));
    sb_put_(b, tmp, (size_t)n);
}

char *bpe_to_json(const struct bpe *t) {
    if (t->hf)
        return bpe_hf_to_json(t);
    struct sbuf b = {0};
    sb_printf_(&b, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n  \"pretokenizer\": \"%s\",\n",
               BPE_FORMAT, BPE_VERSION, BPE_PRETOKENIZER);
    sb_printf_(&b, "  \"special\": [");
    for (int32_t i = 0; i < t->n_special; i++) {
        json_t *js = json_string(t->special[i]);
        HW_ASSERT(js);
        char *q = json_dumps(js, JSON_ENCODE_ANY);
        HW_ASSERT(q);
        if (i)
            sb_put_(&b, ", ", 2);
        sb_put_(&b, q, strlen(q));
        free(q);
        json_decref(js);
    }
    sb_printf_(&b, "],\n  \"merges\": [");
    for (int32_t i = 0; i < t->n_merges; i++)
        sb_printf_(&b, "%s\n    [%d, %d]", i ? "," : "", t->merges[i][0], t->merges[i][1]);
    sb_printf_(&b, "%s]\n}\n", t->n_merges ? "\n  " : "");
    return b.p;
}

const char *bpe_impl_json_type(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

static int check_string_key_(const json_t *root, const char *key, const char *want,
                             const char *name, char *err) {
    const json_t *v = json_object_get(root, key);
    if (!v)
        return hw_errf(err, HW_EFORMAT, "%s: missing key '%s'", name, key);
    if (!json_is_string(v))
        return hw_errf(err, HW_EFORMAT, "%s: %s: expected \"%s\", got %s", name, key, want,
                       bpe_impl_json_type(v));
    if (strcmp(json_string_value(v), want) != 0)
        return hw_errf(err, HW_EFORMAT, "%s: %s: expected \"%s\", got \"%.64s\"", name, key, want,
                       json_string_value(v));
    return 0;
}

static int from_json_(struct bpe *t, const json_t *root, const char *name, char *err) {
    if (!json_is_object(root))
        return hw_errf(err, HW_EFORMAT, "%s: expected a JSON object at top level, got %s", name,
                       bpe_impl_json_type(root));
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)root, key, val) {
        if (strcmp(key, "format") && strcmp(key, "version") && strcmp(key, "pretokenizer") &&
            strcmp(key, "merges") && strcmp(key, "special"))
            return hw_errf(err, HW_EFORMAT, "%s: unknown key '%.64s'", name, key);
    }
    int rc = check_string_key_(root, "format", BPE_FORMAT, name, err);
    if (rc)
        return rc;
    const json_t *ver = json_object_get(root, "version");
    if (!ver)
        return hw_errf(err, HW_EFORMAT, "%s: missing key 'version'", name);
    if (!json_is_integer(ver))
        return hw_errf(err, HW_EFORMAT, "%s: version: expected an integer, got %s", name,
                       bpe_impl_json_type(ver));
    if (json_integer_value(ver) != BPE_VERSION)
        return hw_errf(err, HW_EFORMAT, "%s: version: unsupported version %lld (expected %d)", name,
                       (long long)json_integer_value(ver), BPE_VERSION);
    rc = check_string_key_(root, "pretokenizer", BPE_PRETOKENIZER, name, err);
    if (rc)
        return rc;

    const json_t *merges = json_object_get(root, "merges");
    if (!merges)
        return hw_errf(err, HW_EFORMAT, "%s: missing key 'merges'", name);
    if (!json_is_array(merges))
        return hw_errf(err, HW_EFORMAT, "%s: merges: expected an array, got %s", name,
                       bpe_impl_json_type(merges));
    size_t nm = json_array_size(merges);
    if (nm > (size_t)(BPE_MAX_VOCAB - BPE_N_BYTES))
        return hw_errf(err, HW_EFORMAT, "%s: merges: too many merges (%zu)", name, nm);
    for (size_t i = 0; i < nm; i++) {
        const json_t *m = json_array_get(merges, i);
        if (!json_is_array(m) || json_array_size(m) != 2 ||
            !json_is_integer(json_array_get(m, 0)) || !json_is_integer(json_array_get(m, 1)))
            return hw_errf(err, HW_EFORMAT,
                           "%s: merges[%zu]: expected a [left, right] pair of integer ids", name,
                           i);
        int32_t ab[2];
        for (int k = 0; k < 2; k++) {
            json_int_t id = json_integer_value(json_array_get(m, (size_t)k));
            if (id < 0 || id >= (json_int_t)(BPE_N_BYTES + i))
                return hw_errf(err, HW_EFORMAT,
                               "%s: merges[%zu]: id %lld is out of range "
                               "(must be in [0, %zu))",
                               name, i, (long long)id, BPE_N_BYTES + i);
            ab[k] = (int32_t)id;
        }
        int32_t dup = rank_lookup_(t, ab[0], ab[1]);
        if (dup >= 0)
            return hw_errf(err, HW_EFORMAT, "%s: merges[%zu]: [%d, %d] duplicates merges[%d]", name,
                           i, ab[0], ab[1], dup);
        size_t len = (size_t)t->tok_len[ab[0]] + t->tok_len[ab[1]];
        if (len > BPE_MAX_TOKEN_BYTES - t->bytes_len)
            return hw_errf(err, HW_EFORMAT,
                           "%s: merges[%zu]: the tokens' bytes would exceed %zu MiB in total", name,
                           i, BPE_MAX_TOKEN_BYTES >> 20);
        add_merge_(t, ab[0], ab[1]);
    }

    const json_t *special = json_object_get(root, "special");
    if (!special)
        return hw_errf(err, HW_EFORMAT, "%s: missing key 'special'", name);
    if (!json_is_array(special))
        return hw_errf(err, HW_EFORMAT, "%s: special: expected an array, got %s", name,
                       bpe_impl_json_type(special));
    for (size_t i = 0; i < json_array_size(special); i++) {
        const json_t *sj = json_array_get(special, i);
        if (!json_is_string(sj))
            return hw_errf(err, HW_EFORMAT, "%s: special[%zu]: expected a string, got %s", name, i,
                           bpe_impl_json_type(sj));
        const char *sv = json_string_value(sj);
        if (strlen(sv) != json_string_length(sj) || !*sv)
            return hw_errf(err, HW_EFORMAT, "%s: special[%zu]: empty or contains NUL", name, i);
        if (bpe_special_id(t, sv) >= 0)
            return hw_errf(err, HW_EFORMAT, "%s: special[%zu]: duplicate \"%.64s\"", name, i, sv);
        if (bpe_vocab_size(t) >= BPE_MAX_VOCAB)
            return hw_errf(err, HW_EFORMAT, "%s: special[%zu]: vocabulary too large", name, i);
        HW_ASSERT(bpe_add_special(t, sv) >= 0);
    }
    return 0;
}

int bpe_from_json(struct bpe *t, const char *json, size_t len, const char *name, char *err) {
    bpe_init(t);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return hw_errf(err, HW_EFORMAT, "%s:%d:%d: error: %s", name, jerr.line, jerr.column,
                       jerr.text);
    int rc = json_is_object(root) && json_object_get(root, "model")
                 ? bpe_hf_from_json(t, root, json, len, name, err)
                 : from_json_(t, root, name, err);
    json_decref(root);
    if (rc) {
        bpe_free(t);
        bpe_init(t);
    }
    return rc;
}

// ------------------------------------------------------------------------------------------------
// files

int bpe_save(const struct bpe *t, const char *path, char *err) {
    char *json = bpe_to_json(t);
    int rc = fs_write_atomic(path, json, strlen(json), err);
    free(json);
    return rc;
}

int bpe_load(struct bpe *t, const char *path, char *err) {
    bpe_init(t);
    size_t n = 0;
    char *json = fs_read_all(path, &n, err); /* a FIFO or directory is refused, not waited on */
    if (!json)
        return HW_EIO;
    bpe_free(t);
    int rc = bpe_from_json(t, json, n, path, err);
    free(json);
    return rc;
}

/* datasets/bpe_impl.h -- what bpe.c (the encoder and headwise's own format) and bpe_hf.c (Hugging
 * Face tokenizer.json) share of struct bpe's insides. Not for other modules: use bpe.h. */
#ifndef HW_BPE_IMPL_H
#define HW_BPE_IMPL_H

#include "bpe.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* bpe.c: the token table. Points id at the next n bytes of the pool (the caller fills them);
 * ids need not come in order. */
char *bpe_impl_new_token(struct bpe *t, int32_t id, size_t n);
/* bpe.c: appends merge (a, b) -> out as the next rank. A pair that is already a merge now maps
 * to the new rank (the later one wins, as in the `tokenizers` library). Requires merge_id. */
void bpe_impl_add_merge(struct bpe *t, int32_t a, int32_t b, int32_t out);
/* bpe.c: registers special string s[0..n) with the given id (not yet a special). */
void bpe_impl_add_special(struct bpe *t, const char *s, size_t n, int32_t id);
uint64_t bpe_impl_hash(const unsigned char *p, size_t n);
const char *bpe_impl_json_type(const json_t *j);

/* bpe_hf.c: initialises t (fresh from bpe_init) from the parsed tokenizer.json root; text is
 * the file's bytes, kept for bpe_to_json. 0 or HW_EFORMAT. */
int bpe_hf_from_json(struct bpe *t, const json_t *root, const char *text, size_t len,
                     const char *name, char *err);
/* bpe_hf.c: the tokenizer.json text of t (malloc'd, NUL-terminated). */
char *bpe_hf_to_json(const struct bpe *t);
void bpe_hf_free(struct bpe_hf *h);

/* bpe_hf.c: pre-tokenises s[0..n) (valid UTF-8) into chunks, calling fn for each in order.
 * stable: the chunk points into s (else into a temporary buffer, valid during the call). */
typedef void (*bpe_chunk_fn)(void *ctx, const unsigned char *p, size_t n, int stable);
void bpe_hf_pretokenize(const struct bpe_hf *h, const unsigned char *s, size_t n, bpe_chunk_fn fn,
                        void *ctx);
/* bpe_hf.c: with ignore_merges, the id of a chunk that is a whole vocabulary token; else -1. */
int32_t bpe_hf_whole_token(const struct bpe *t, const unsigned char *p, size_t n);
/* bpe_hf.c: s[0..n) with each maximal invalid UTF-8 subpart replaced by U+FFFD (malloc'd, length
 * in *out_n), or NULL when s is valid UTF-8 already. */
unsigned char *bpe_hf_fix_utf8(const unsigned char *s, size_t n, size_t *out_n);

#endif /* HW_BPE_IMPL_H */

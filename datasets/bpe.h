/* datasets/bpe.h -- GPT-2-style byte-level BPE tokenizer: pre-tokenisation, training,
 * encoding/decoding, special tokens, and the JSON file format (tokenizer.json, also stored
 * as a byte dataset inside HDF5 checkpoints). Owns struct bpe and everything it points to.
 *
 * Ids: 0..255 are the raw bytes (id = byte value); merge i creates id 256+i from two earlier
 * ids; special tokens follow the merges, in the order they were added:
 *     bytes [0,256) | merges [256, 256+n_merges) | specials [256+n_merges, bpe_vocab_size())
 * Training replaces the merges, so add special tokens after training (or after loading).
 *
 * Pre-tokenisation ("headwise-v1"; a hand-written approximation of GPT-2's regex). Byte
 * classes: LETTER = ASCII A-Z a-z and every byte >= 0x80 (so UTF-8 sequences stay together);
 * DIGIT = 0-9; NEWLINE = \n \r; SPACE = ' ' \t \v \f; PUNCT = every other byte (incl. NUL).
 * The text is cut left to right into chunks; a chunk starting at position i is the first of:
 *   1. an optional single ' ' followed by a maximal run of LETTER        (" hello", "héllo")
 *   2. an optional single ' ' followed by 1-3 DIGIT (longer numbers split every 3 digits,
 *      only the first piece takes the space)                            (" 123", "45")
 *   3. an optional single ' ' followed by a maximal run of PUNCT         (" ...", "!?")
 *   4. a maximal run of NEWLINE                                          ("\n\n", "\r\n")
 *   5. a maximal run of SPACE, minus its last byte when that byte is ' ' and the run is
 *      followed by LETTER/DIGIT/PUNCT and is longer than 1, so the final space goes to the
 *      next chunk, as in GPT-2's \s+(?!\S)                               ("a   b" -> "a","  "," b")
 * There are no contraction rules ("don't" -> "don", "'", "t"). Merges never cross chunks.
 *
 * Hugging Face tokenizer.json (bpe_hf.c). bpe_from_json/bpe_load also read the byte-level BPE
 * kind of the `tokenizers` library (GPT-2, LLaMA-3, Qwen style): the model's vocab, merges and
 * ignore_merges, the added tokens with their own ids, and a pre-tokenizer made of ByteLevel and
 * regex Split (Isolated) steps run by PCRE2 (UTF + Unicode properties, JIT). Ids are then the
 * file's ids, not the layout above: byte b is the id of its byte-level character, merge i makes
 * the id the vocabulary gives its concatenation, specials keep their ids and later ones follow
 * the largest id. Text that is not valid UTF-8 is first decoded as Python's
 * bytes.decode("utf-8", "replace") does (each maximal invalid subpart -> U+FFFD), since the
 * library only ever sees Python strings; so decode(encode(x)) == x for valid UTF-8 only.
 * bpe_to_json gives back the file's own text (with any specials added since appended to
 * added_tokens), so a checkpoint stores it as it stores headwise's own format.
 *
 * Thread safety: bpe_encode, bpe_decode and the getters only read *t and may run concurrently;
 * bpe_add_special and the initialisers must not run concurrently with anything on the same t. */
#ifndef HW_BPE_H
#define HW_BPE_H

#include <stddef.h>
#include <stdint.h>

#define BPE_N_BYTES 256

struct bpe_hf; /* bpe_hf.c: pre-tokenizer and file text of a tokenizer.json */

struct bpe {
    int32_t n_merges, merges_cap;
    int32_t (*merges)[2]; /* (n_merges, 2): id 256+i = merges[i][0] followed by merges[i][1] */
    int32_t n_special, special_cap;
    char **special; /* (n_special) NUL-terminated UTF-8; id = 256 + n_merges + i */
    /* bytes of token id are bytes[tok_off[id] .. tok_off[id] + tok_len[id]) */
    char *bytes;
    size_t bytes_len, bytes_cap;
    size_t *tok_off;   /* (tok_cap) */
    uint32_t *tok_len; /* (tok_cap) */
    int32_t tok_cap;
    /* (left, right) -> merge index, open addressing; key UINT64_MAX marks an empty slot */
    uint64_t *rank_key; /* (rank_cap) */
    int32_t *rank_val;  /* (rank_cap) */
    size_t rank_cap;
    uint8_t special_first[32]; /* bitmap of the first bytes of the special strings */
    /* the special strings as a byte trie (node 0 is the root): edge (node, byte) -> child in
     * open addressing, key (node << 8 | byte), UINT64_MAX empty; sp_term[node] is the index
     * of the special that ends at node, or -1. Lookups and encoding's longest match cost the
     * length of the string, not the number of specials. */
    uint64_t *sp_key;  /* (sp_cap) */
    int32_t *sp_child; /* (sp_cap) */
    size_t sp_cap, sp_edges;
    int32_t *sp_term; /* (sp_nodes_cap) */
    int32_t sp_nodes, sp_nodes_cap;
    int32_t *special_id;          /* (special_cap) the id of special i */
    int32_t *merge_id;            /* (merges_cap) the id merge i makes; NULL: BPE_N_BYTES + i */
    int32_t byte_id[BPE_N_BYTES]; /* the id of each byte; -1: the vocabulary lacks it */
    int32_t n_vocab;              /* ids are [0, n_vocab) */
    struct bpe_hf *hf;            /* NULL: headwise's own format; else a tokenizer.json */
};

/* All initialisers (bpe_init, bpe_train, bpe_from_json, bpe_load) overwrite *t without freeing
 * what it held: call bpe_free before reusing a struct. Whether they succeed or fail, *t is a
 * valid tokenizer afterwards (on failure: the 256-byte tokenizer of bpe_init) and must be
 * released with bpe_free exactly once. */

/* Byte-level tokenizer: 256 tokens, no merges, no specials. Ready for encode/decode. */
void bpe_init(struct bpe *t);
/* Releases everything; accepts a zeroed or half-built struct and leaves it zeroed. */
void bpe_free(struct bpe *t);

/* Trains merges on text[0..len) (plain bytes: special strings are not recognised). vocab_size
 * counts the 256 byte tokens plus the merges and NOT the special tokens, which are added later
 * with bpe_add_special: for a model vocabulary V with k specials, pass V - k. Merges the most
 * frequent adjacent pair (ties: smallest (left, right) ids) until vocab_size is reached or no
 * pair occurs at least twice (then fewer merges; check bpe_vocab_size). Deterministic.
 * Returns 0, or HW_ECONFIG (vocab_size < 256 or too large) with err filled. */
int bpe_train(struct bpe *t, const char *text, size_t len, int vocab_size, char *err);

/* Encodes text[0..len) (arbitrary bytes, NUL allowed). *out is set to a malloc'd array of the
 * ids (never NULL, even for len 0; caller frees with free()); returns the number of ids.
 * allow_special: exact occurrences of special strings become their ids (leftmost match, the
 * longest special at that position wins) and cut the text into separately pre-tokenised
 * pieces; otherwise special strings are encoded as ordinary bytes. Merges are applied by rank
 * (lowest merge index first) within each chunk. decode(encode(x)) == x always. */
int64_t bpe_encode(const struct bpe *t, const char *text, size_t len, int allow_special,
                   int32_t **out);

/* Concatenates the bytes of ids[0..n). *out is a malloc'd, NUL-terminated buffer (caller frees);
 * returns its length without the NUL. An id outside [0, bpe_vocab_size) returns -1 and sets
 * *out = NULL. */
int64_t bpe_decode(const struct bpe *t, const int32_t *ids, int64_t n, char **out);

/* The bytes of one token (not NUL-terminated), length in *len; NULL (and *len = 0) for an
 * unknown id. The pointer is valid until the next bpe_add_special or bpe_free on t. */
const char *bpe_token_bytes(const struct bpe *t, int32_t id, int *len);

/* 256 + n_merges + n_special for headwise's own format; for a tokenizer.json, one more than
 * the largest id. */
int bpe_vocab_size(const struct bpe *t);
/* The special token that separates documents: the first of <|endoftext|> (GPT-2, Qwen,
 * headwise), <|end_of_text|> (LLaMA-3), </s> that the tokenizer has; -1 if none. */
int32_t bpe_eot_id(const struct bpe *t);
/* Its text, or NULL. */
const char *bpe_eot_string(const struct bpe *t);
/* 1 for a Hugging Face tokenizer.json, 0 for headwise's own format. */
int bpe_is_hf(const struct bpe *t);
/* Id of special string s, or -1 if s is not a special token. */
int32_t bpe_special_id(const struct bpe *t, const char *s);
/* Adds special token s (non-empty, valid UTF-8) with the next free id and returns the id; if s
 * is already a special token returns its existing id. Returns -1 for NULL, "" or invalid
 * UTF-8. Existing ids never change, so model embedding rows can be appended. */
int32_t bpe_add_special(struct bpe *t, const char *s);

/* End of the pre-tokenisation chunk that starts at text[pos] (pos < len), see the rule above.
 * Exposed for tests and for tools that want the chunking. */
size_t bpe_next_chunk(const char *text, size_t len, size_t pos);

/* Calls fn for each pre-tokenisation chunk of text[0..len) in order (special strings are not
 * recognised; for a tokenizer.json, after the invalid-UTF-8 replacement): the pieces that merges
 * stay within. For tools and tests (`headwise data tokenize --pieces`). */
void bpe_pieces(const struct bpe *t, const char *text, size_t len,
                void (*fn)(void *ctx, const char *p, size_t n), void *ctx);

/* Serialises t as JSON text (malloc'd, NUL-terminated, caller frees), one merge per line:
 *   {"format": "headwise-bpe", "version": 1, "pretokenizer": "headwise-v1",
 *    "special": ["<|endoftext|>", ...], "merges": [[a, b], ...]}
 * Ids are implied by order. Deterministic: equal tokenizers give identical bytes. */
char *bpe_to_json(const struct bpe *t);
/* Initialises t from JSON text json[0..len) (need not be NUL-terminated): headwise's own format,
 * or a Hugging Face tokenizer.json (recognised by its "model" key; see above, and bpe_hf.c for
 * what it accepts). name labels error messages (a file name). Validates strictly; returns 0 or
 * HW_EFORMAT with err like
 *   "tok.json:3:14: error: <jansson message>"           (not valid JSON)
 *   "tok.json: merges[12]: id 9999 is out of range (must be in [0, 268))"
 *   "tok.json: format: expected \"headwise-bpe\", got \"x\""   "tok.json: unknown key 'foo'" */
int bpe_from_json(struct bpe *t, const char *json, size_t len, const char *name, char *err);

/* Writes bpe_to_json(t) to path atomically (fs_write_atomic: a new unique temporary file,
 * fsync, rename; a link at path is replaced, never followed). 0 or HW_EIO. */
int bpe_save(const struct bpe *t, const char *path, char *err);
/* Initialises t from a file written by bpe_save. HW_EIO ("path: cannot open: No such file or
 * directory", "path: not a regular file (a FIFO)") or HW_EFORMAT (see bpe_from_json, with
 * name = path). */
int bpe_load(struct bpe *t, const char *path, char *err);

#endif /* HW_BPE_H */

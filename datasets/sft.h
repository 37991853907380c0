/* datasets/sft.h -- conversation data for supervised fine-tuning (SFT) and conditional SFT
 * (ALGORITHMS.md §4): the JSONL reader (ShareGPT `conversations` and the RoleMRC `question` +
 * `reference` schemas), tokenisation through a chat template with a role and a kind for every
 * token (the generic role-span masks: no hard-coded token ids), the indicator tagging rule, and
 * the packing/padding of encoded conversations into training rows with segment ids and
 * ignore-index targets. Owns struct sft_data, struct sft_tokens and struct sft_set. */
#ifndef HW_SFT_H
#define HW_SFT_H

#include "bpe.h"
#include "chat.h"
#include "data_cfg.h"

#include <jansson.h>
#include <stdint.h>

/* ---- conversations ------------------------------------------------------------------------ */

enum sft_schema {
    SFT_SCHEMA_SHAREGPT, /* "conversations": [{"from"|"role": .., "value"|"content": ..}, ..] */
    SFT_SCHEMA_QUESTION, /* RoleMRC: "question": [{"role", "content"}, ..] + "reference" */
};

struct sft_conv {
    struct chat_msg *msgs; /* (n_msgs); content points into root (or into a tagged copy) */
    int n_msgs;
    int line; /* 1-based line in the file */
    enum sft_schema schema;
    json_t *root;     /* the decoded line, kept so a tagged copy can be written back */
    json_t **holder;  /* (n_msgs) the JSON object holding message i's text */
    const char **key; /* (n_msgs) its key there ("value", "content" or "reference") */
};

struct sft_data {
    struct sft_conv *conv; /* (n) in file order */
    int n;
};

/* Reads one JSON object per line. Accepted shapes:
 *   ShareGPT: "conversations" (or "messages"): non-empty array of objects with a role in "from"
 *     or "role" (human/user, gpt/assistant/chatgpt/bard/bing/model, system; any case) and the
 *     text in "value" or "content";
 *   RoleMRC: "question" (system/user/assistant messages) and "reference" (the gold reply,
 *     read as a final assistant turn).
 * Other keys are kept in root (csft-score writes them back). Blank lines are skipped, a UTF-8
 * BOM and CRLF accepted. On failure *d is zeroed and HW_EIO or HW_EFORMAT is returned with err
 * "path:line[:col]: error: ..." naming the key and what was expected. */
int sft_load(struct sft_data *d, const char *path, char *err);
void sft_free(struct sft_data *d);

/* The indicator rule (process_dataset.py::modify_prompt): "." is appended when the text ends
 * with an ASCII letter or digit, then " " and the indicator. "Summarize this" -> "Summarize
 * this. [IND]"; "What?" -> "What? [IND]". Malloc'd. */
char *sft_tag_text(const char *text, const char *indicator);

/* Sets message i of c to text (in c->root too, so a dump of root carries it). */
void sft_set_content(struct sft_conv *c, int i, const char *text);

/* The chat template of the sft.tpl_* keys. */
void sft_template_from_cfg(struct chat_template *t, const struct cfg_sft *s);

/* Adds sft.indicator (when not "") and sft.add_tokens to tok as special tokens (existing ones
 * keep their ids). Returns the number of new ids, or -1 with err set for an invalid string. */
int sft_extend_tokenizer(struct bpe *tok, const struct cfg_sft *s, char *err);

/* ---- tokens with roles ------------------------------------------------------------------- */

enum sft_kind {
    SFT_KIND_TEMPLATE = 0, /* BOS, role tags, the generation prompt */
    SFT_KIND_CONTENT = 1,  /* every byte inside a message's content span */
    SFT_KIND_END = 2,      /* end-of-turn text, or a token straddling a content boundary */
};

struct sft_tokens {
    int32_t *ids;  /* (n) */
    uint8_t *kind; /* (n) enum sft_kind */
    uint8_t *role; /* (n) 's', 'u', 'a' of message msg[i], or 0 (BOS, generation prompt) */
    int32_t *msg;  /* (n) message whose [tag start, next tag start) holds the first byte; -1 */
    int n;
};

/* Renders msgs with t (chat_render), encodes the whole text at once (special tokens allowed,
 * so an added "[IND]" is one token; the same ids eval and sample get for the same text) and
 * labels each token from the byte spans: a token is CONTENT only when all its bytes lie in
 * one message's content. Returns 0 or HW_EFORMAT (a bad message) with err set. */
int sft_encode(const struct bpe *tok, const struct chat_template *t, const struct chat_msg *msgs,
               int n, int add_generation_prompt, struct sft_tokens *out, char *err);
void sft_tokens_free(struct sft_tokens *s);

/* Token i is user content that counts for the indicator metric: CONTENT of a user message and
 * not made only of newline bytes (the reference drops every newline token). */
int sft_is_user_content(const struct bpe *tok, const struct sft_tokens *s, int i);

/* ---- training rows ----------------------------------------------------------------------- */

/* Encoded conversations, one example each, with the loss flag of every token. */
struct sft_set {
    int n;              /* examples */
    int64_t *off;       /* (n + 1) token offsets */
    int32_t *ids;       /* (off[n]) */
    uint8_t *loss;      /* (off[n]) 1: predicting this token is supervised */
    int T;              /* row length; longer examples are cut to their first T tokens */
    int n_truncated;    /* examples longer than T */
    int64_t n_loss;     /* supervised tokens (before truncation) */
    uint64_t seed;      /* data order: a seeded permutation per epoch */
    int *perm;          /* (n) the permutation of epoch perm_epoch */
    int64_t perm_epoch; /* -1: none yet */
};

/* Encodes every conversation of d. loss_all = 1 supervises every token (the reference repo's
 * configuration); 0 supervises only assistant turns: their content and the end-of-turn text
 * after it. Returns 0 or HW_EFORMAT. */
int sft_set_build(struct sft_set *s, const struct sft_data *d, const struct bpe *tok,
                  const struct chat_template *t, int loss_all, int T, uint64_t seed, char *err);
void sft_set_free(struct sft_set *s);

/* Fills one row of T tokens from the example stream, starting at global example counter
 * *cursor (example k of the stream is perm_epoch(k / n)[k % n], or k % n when shuffle is 0)
 * and advancing it. pack = 0: one example, then padding. pack = 1: whole examples while they
 * fit (always at least one), then padding. tok gets the ids (padding: pad_id), tgt the next
 * token where that prediction is supervised and inside the same example, else -1, seg the
 * example's index in the row (padding: one more). Returns the supervised targets in the row. */
int sft_fill_row(struct sft_set *s, int64_t *cursor, int pack, int shuffle, int32_t pad_id,
                 int32_t *tok, int32_t *tgt, int32_t *seg);

#endif /* HW_SFT_H */

/* datasets/rolemrc.h -- RoleMRC test set (Lu et al. 2025, arXiv 2502.11387): reads the official
 * roleMRC_test.jsonl schema into chat messages + reference + task tag, and maps each task tag to
 * the LLM-judge aspects the authors score it on (LuJunru/RoleMRC evaluation/llm_judge.py,
 * summarised in shared/datasets/rolemrc/SOURCE.md). Owns struct rolemrc. */
#ifndef HW_ROLEMRC_H
#define HW_ROLEMRC_H

#include "chat.h"

#include <stddef.h>

enum {
    ROLEMRC_ASPECT_KNOWLEDGE = 1, /* knowledge range (within / outside the role's knowledge) */
    ROLEMRC_ASPECT_STYLE = 2,     /* style compliance (narration or not) */
    ROLEMRC_ASPECT_NESTED = 4,    /* nested instruction (-special-*) */
    ROLEMRC_ASPECT_MULTITURN = 8, /* multi-turn instruction (-2nd*) */
    ROLEMRC_ASPECT_PRIORITY = 16  /* instruction priority (-refused) */
};

struct rolemrc_example {
    /* (n_msgs) the `question` list in order; role is "system"/"user"/"assistant" (static
     * strings, see chat_role_name); contents share one allocation with msgs. */
    struct chat_msg *msgs;
    int n_msgs;
    char *reference;      /* the gold assistant reply */
    char *task;           /* the task tag, e.g. "role_related_mrc_answer_no_narration-refused" */
    int line;             /* 1-based line in the file */
    unsigned aspects;     /* ROLEMRC_ASPECT_* bits, rolemrc_task_aspects(task) */
    int knowledge_within; /* 1 within, 0 outside, -1 when KNOWLEDGE is not judged */
};

struct rolemrc {
    struct rolemrc_example *ex; /* (n) in file order */
    int n;
};

/* Reads one JSON object per line: "question" (non-empty array of {"role": System|User|
 * Assistant (any case), "content": string}), "reference" (string), "task" (string); other keys
 * are ignored, blank lines skipped, a UTF-8 BOM and CRLF accepted. An unknown task tag is not
 * an error (aspects 0). On failure *r is left zeroed and the first problem is returned:
 * HW_EIO (cannot read) or HW_EFORMAT, with err one of
 *   "path:line:col: error: invalid JSON: <jansson's text>"
 *   "path:line: error: expected a JSON object, got <array|string|number|true|false|null>"
 *   "path:line: error: missing key '<question|reference|task>'"
 *   "path:line: error: key '<k>' must be a <string|non-empty array>, got <type>"
 *   "path:line: error: question[i] must be an object, got <type>"
 *   "path:line: error: question[i]: missing key '<role|content>'"
 *   "path:line: error: question[i]: key '<role|content>' must be a string, got <type>"
 *   "path:line: error: question[i]: unknown role 'Robot' (expected System, User or Assistant)"
 * Returns 0 on success. */
int rolemrc_load(struct rolemrc *r, const char *path, char *err);
/* Releases everything; accepts a zeroed struct and leaves it zeroed. */
void rolemrc_free(struct rolemrc *r);

/* Judge aspects of a task tag, as in the authors' evaluation_config: a tag with a suffix is
 * judged ONLY on the suffix's aspect (-special-* nested, -2nd* multi-turn, -refused priority);
 * a base tag role_{related,unrelated}_mrc_{answer,refused}_{with,no}_narration by the map
 *   related   answer  with: knowledge(within) + style | related   answer  no: knowledge(within)
 *   related   refused with: knowledge(within)         | related   refused no: style
 *   unrelated refused with: knowledge(outside)        | unrelated refused no: knowledge(outside)
 *   unrelated answer  with: knowledge(outside)        |                        + style
 *   unrelated answer  no:   style
 * Unknown tags: 0. *knowledge_within (may be NULL) gets 1/0 with KNOWLEDGE, else -1. Over the
 * 1,400 official test rows this gives 600 knowledge, 400 style, 158 nested, 400 multi-turn and
 * 42 priority judgements (NeMo Gym's counts; the upstream script queries priority twice). */
unsigned rolemrc_task_aspects(const char *task, int *knowledge_within);

/* "knowledge", "style", "nested", "multiturn", "priority" for one ROLEMRC_ASPECT_* bit;
 * "unknown" for anything else. */
const char *rolemrc_aspect_name(unsigned aspect_bit);

/* The base tag of a task (a -refused suffix, or anything from "-special-" or "-2nd" on,
 * removed), e.g. "role_related_mrc_answer_no_narration-special-format" ->
 * "role_related_mrc_answer_no_narration"; 8 possible values on the official test set. Written
 * into out, truncated to cap - 1 bytes and always NUL-terminated when cap > 0. */
void rolemrc_task_group(const char *task, char *out, size_t cap);

#endif /* HW_ROLEMRC_H */

/* datasets/synth.h -- a built-in synthetic corpus (no download) for the demo and the tests.
 * Each line is one task a small model can visibly learn:
 *   copy:    "copy kqzva > kqzva"                 (repeat a random string)
 *   recall:  "recall d=4 x=9 m=2 ? x > 9"          (associative recall of a key)
 *   add:     "add 47+38 > 85"                      (two-digit addition)
 *   reverse: "reverse abcd > dcba"
 * The text is a pure function of (seed, line index). */
#ifndef HW_SYNTH_H
#define HW_SYNTH_H

#include <stddef.h>
#include <stdint.h>

/* Generate about `bytes` bytes of text (whole lines). Caller frees. *len gets the length. */
char *synth_corpus(uint64_t seed, size_t bytes, size_t *len);

enum synth_kind { SYNTH_COPY, SYNTH_REVERSE, SYNTH_ADD, SYNTH_RECALL, SYNTH_KINDS };
extern const char *const synth_kind_names[SYNTH_KINDS]; /* "copy", "reverse", "add", "recall" */

/* Line `index` of the corpus of `seed`, split inside its " > ": the prompt ("add 47+38 >") and
 * the answer (" 85", no newline; the space starts the answer, so the prompt ends on a token
 * boundary of the training text). Returns the task kind. */
int synth_example(uint64_t seed, uint64_t index, char *prompt, size_t pcap, char *answer,
                  size_t acap);

#endif /* HW_SYNTH_H */

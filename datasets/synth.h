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

#endif /* HW_SYNTH_H */

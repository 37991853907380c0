/* datasets/multifc_cls.h -- MultiFC as a classification set for the classifier head
 * (train.task: classify) and its evaluation (task multifc_classify). The label space is every
 * distinct label string of the file, sorted; each claim may only take its domain's labels
 * (allowed mask). The seeded stratified split (multifc_split) gives train / val / test parts;
 * training and evaluation recompute the same split from (file, fractions, seed); both pass
 * MULTIFC_SPLIT_SEED, the seed of the one split every MultiFC method scores. Each claim is
 * encoded as "Claim: <claim>\nVerdict:", cut from the left to T tokens; the classifier reads the
 * last token. */
#ifndef HW_MULTIFC_CLS_H
#define HW_MULTIFC_CLS_H

#include "bpe.h"
#include "multifc.h"

#include <stdint.h>

struct multifc_cls {
    struct multifc m;
    int T;                  /* tokens per example */
    int n_cls;              /* distinct label strings */
    char **names;           /* (n_cls) sorted; point into m */
    int *label;             /* (n) class of each example */
    unsigned char *allowed; /* (n, n_cls) the example's domain labels */
    int32_t *tok;           /* (n, T) right-padded with 0 */
    int32_t *last;          /* (n) position of the last real token */
    unsigned char *cut;     /* (n) 1: the text was longer than T tokens and cut from the left */
    int *split;             /* (n) 0 train, 1 val, 2 test */
    int *idx[3], n_idx[3];  /* example indices of each part, in file order */
    int *major;             /* (n_dom) majority class of each domain in the train part */
};

int multifc_cls_load(struct multifc_cls *c, const char *path, double val_frac, double test_frac,
                     uint64_t seed, const struct bpe *tok, int T, char *err);
void multifc_cls_free(struct multifc_cls *c);

#endif /* HW_MULTIFC_CLS_H */

/* datasets/rec_data.h -- behaviour sequences for the rec model (docs/rec.md): the
 * MovieLens-100k loader (u.data + u.item genres as categories), the Taobao UserBehavior CSV
 * loader (pv rows), and a synthetic generator whose planted structure makes attention
 * relevance (category) and representation (a per-item sign) different jobs. Each user's
 * interactions sorted by time (ties: file order) form the sequence; the DARE recipe makes the
 * samples: training targets at positions -3, -8, ... from the end, validation the second-last,
 * test the last; each positive gets `negatives` items sampled by frequency outside the user's
 * sequence. Owns struct rec_data. Ids are re-indexed from 1; 0 is the empty history slot. */
#ifndef HW_REC_DATA_H
#define HW_REC_DATA_H

#include "data_cfg.h"

#include <stdint.h>

enum { REC_TRAIN, REC_VAL, REC_TEST, REC_SPLITS };

struct rec_split {
    int n;
    int32_t *user, *pos; /* the target's user and its position in the user's sequence */
    int32_t *item;       /* the positive (seq[pos]) or a sampled negative */
    float *label;
};

struct rec_data {
    int n_users;
    int n_item, n_cat; /* table rows, id 0 included */
    int32_t *item_cat; /* (n_item) */
    int64_t *off;      /* (n_users + 1) */
    int32_t *seq;      /* items of user u: seq[off[u] .. off[u+1]) oldest first */
    struct rec_split split[REC_SPLITS];
    /* what was read and left out (docs/rec.md) */
    long rows;          /* data rows read */
    long skipped_rows;  /* taobao: non-pv behaviours */
    long cat_conflicts; /* taobao: an item seen with a second category (first kept) */
    long users_dropped; /* fewer than 3 interactions */
    long targets_short; /* training targets with fewer than min_hist behaviours before them */
};

/* Load (rec.data, rec.path) and build the splits. seed drives the negatives and synth.
 * Errors: one line "file:line: error: ..." (HW_EFORMAT) or "path: cannot open" (HW_EIO). */
int rec_data_load(struct rec_data *d, const struct cfg_rec *c, uint64_t seed, char *err);
int rec_data_movielens(struct rec_data *d, const char *dir, char *err);
int rec_data_taobao(struct rec_data *d, const char *csv, char *err);
void rec_data_synth(struct rec_data *d, const struct cfg_rec *c, uint64_t seed);
/* The samples of the DARE recipe from the loaded sequences (HW_EFORMAT when a split is
 * empty or negatives cannot be drawn). */
int rec_data_make_splits(struct rec_data *d, const struct cfg_rec *c, uint64_t seed, char *err);
void rec_data_free(struct rec_data *d);

/* Samples idx[0..B) of split s as a batch with L history slots (left-padded). Arrays are
 * (B), (B, L), (B, L), (B). */
void rec_data_fill(const struct rec_data *d, int s, const int *idx, int B, int L, int32_t *item,
                   int32_t *cat, int32_t *hitem, int32_t *hcat, float *label);

#endif /* HW_REC_DATA_H */

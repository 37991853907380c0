/* ckpt/ckpt_model.h -- rebuild a model from a checkpoint alone: its stored config, tokenizer
 * and weights (used by `sample` and `eval`, which need no side files). */
#ifndef HW_CKPT_MODEL_H
#define HW_CKPT_MODEL_H

#include "../config/config.h"
#include "../datasets/bpe.h"
#include "../dist/dist.h"
#include "../model/gpt.h"
#include "../ops/ops.h"

#include <stdint.h>

/* path is a checkpoint file or a run directory (its latest checkpoint). Fills cfg, tok and a
 * ready model on backend be (weights loaded). resolved (CKPT_PATH_LEN bytes, may be NULL) gets
 * the file. A backend that lacks an op group the stored model needs is refused with
 * HW_ECONFIG and one line naming the group. */
int ckpt_load_model(const struct dist *d, const char *path, const struct ops *be,
                    struct hw_config *cfg, struct bpe *tok, struct gpt *m, int64_t *step,
                    char *resolved, char *err);

#endif /* HW_CKPT_MODEL_H */

/* train/trainer.h -- the training job: run directory, tokenizer and data, model, AdamW,
 * resume from the latest checkpoint, the step loop with validation, metrics.jsonl, progress
 * line, periodic and signal-triggered checkpoints, and the end-of-run summary. */
#ifndef HW_TRAINER_H
#define HW_TRAINER_H

#include "../config/config.h"
#include "../dist/dist.h"

/* Runs the job described by c; returns a process exit code (enum hw_exit). */
int train_run(const struct hw_config *c, struct dist *d);

/* Load the tokenizer a config names (data.tokenizer, else tokenizer.json beside data.train). */
struct bpe;
int train_load_tokenizer(const struct hw_config *c, struct bpe *tok, char *path_out, char *err);

#endif /* HW_TRAINER_H */

/* train/task_rec.h -- the rec model (model.family rec): its training task (task_rec in task.h:
 * data, the sharded model, validation AUC with the best-validation parameters kept, the
 * BatchNorm statistics in the checkpoints, the final validation/test scores in
 * <run.dir>/eval/results_rec.json; docs/rec.md) runs in the loop of trainer.c, and its
 * evaluation job below. */
#ifndef HW_REC_TRAINER_H
#define HW_REC_TRAINER_H

#include "../config/config.h"
#include "../dist/dist.h"

/* `headwise eval` with eval.tasks [rec]: each of eval.checkpoints (a file, or a run directory's
 * latest checkpoint) is rebuilt from its stored config, its data reloaded, and scored on
 * validation and test; results_<checkpoint>.json goes to eval.output or <run dir>/eval. Any
 * rank count (tables are read as row slabs). */
int rec_eval_run(const struct hw_config *c, struct dist *d);

#endif /* HW_REC_TRAINER_H */

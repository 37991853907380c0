/* eval/rec_metrics.h -- click-prediction metrics of the rec model: AUC, category-averaged
 * AUC (GAUC) and log-loss. AUC counts a tied (positive, negative) pair as one half, which is
 * sklearn's roc_auc_score; rec_auc_calc reproduces thuml/DARE utils.calc_auc bit for bit
 * (stable descending sort, trapezoids only where the false-positive rate moves, the previous
 * point updated only there), reported beside it because it differs (docs/rec.md). */
#ifndef HW_REC_METRICS_H
#define HW_REC_METRICS_H

/* NAN when one class is absent. */
double rec_auc(const double *score, const float *label, int n);
double rec_auc_calc(const double *score, const float *label, int n);
/* sum_c n_c AUC_c / sum_c n_c over the groups (categories) whose AUC is defined. */
double rec_gauc(const double *score, const float *label, const int *group, int n);
/* mean -[y log p + (1-y) log(1-p)], p clipped to [1e-15, 1-1e-15] (sklearn log_loss). */
double rec_logloss(const double *score, const float *label, int n);

#endif /* HW_REC_METRICS_H */

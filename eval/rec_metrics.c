/* eval/rec_metrics.c -- AUC, GAUC, log-loss for the rec model (see rec_metrics.h). */
#include "rec_metrics.h"

#include "../core/check.h"

#include <math.h>
#include <stdlib.h>

struct sl {
    double s;
    float y;
    int i;
};

static int by_score_desc_stable(const void *a, const void *b) {
    const struct sl *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static struct sl *sorted(const double *score, const float *label, int n) {
    struct sl *v = HW_MALLOC(sizeof(*v) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        v[i].s = score[i];
        v[i].y = label[i];
        v[i].i = i;
    }
    qsort(v, (size_t)n, sizeof(*v), by_score_desc_stable);
    return v;
}

double rec_auc(const double *score, const float *label, int n) {
    struct sl *v = sorted(score, label, n);
    double pos = 0, neg = 0, area = 0;
    /* walk groups of tied scores: pairs inside a group count one half */
    for (int i = 0; i < n;) {
        int j = i;
        double gp = 0, gn = 0;
        while (j < n && v[j].s == v[i].s) {
            if (v[j].y > 0.5f)
                gp++;
            else
                gn++;
            j++;
        }
        area += gn * pos + 0.5 * gn * gp; /* negatives below every earlier positive */
        pos += gp;
        neg += gn;
        i = j;
    }
    free(v);
    if (pos == 0 || neg == 0)
        return NAN;
    return area / (pos * neg);
}

double rec_auc_calc(const double *score, const float *label, int n) {
    struct sl *v = sorted(score, label, n);
    double pos = 0, neg = 0;
    for (int i = 0; i < n; i++) {
        if (v[i].y == 1.0f)
            pos++;
        else
            neg++;
    }
    double fp = 0, tp = 0, auc = 0, px = 0, py = 0;
    for (int i = 0; i < n; i++) {
        if (v[i].y == 1.0f)
            tp++;
        else
            fp++;
        double x = fp / neg, y = tp / pos;
        if (x != px) {
            auc += (x - px) * (y + py) / 2.0;
            px = x;
            py = y;
        }
    }
    free(v);
    if (pos == 0 || neg == 0)
        return NAN;
    return auc;
}

struct gi {
    int g, i;
};

static int by_group(const void *a, const void *b) {
    const struct gi *x = a, *y = b;
    if (x->g != y->g)
        return (x->g > y->g) - (x->g < y->g);
    return (x->i > y->i) - (x->i < y->i);
}

double rec_gauc(const double *score, const float *label, const int *group, int n) {
    struct gi *o = HW_MALLOC(sizeof(*o) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) {
        o[i].g = group[i];
        o[i].i = i;
    }
    qsort(o, (size_t)n, sizeof(*o), by_group);
    double *s = HW_MALLOC(sizeof(double) * (size_t)(n ? n : 1));
    float *y = HW_MALLOC(sizeof(float) * (size_t)(n ? n : 1));
    double num = 0, den = 0;
    for (int a = 0; a < n;) {
        int b = a;
        while (b < n && o[b].g == o[a].g) {
            s[b - a] = score[o[b].i];
            y[b - a] = label[o[b].i];
            b++;
        }
        double auc = rec_auc(s, y, b - a);
        if (!isnan(auc)) {
            num += (b - a) * auc;
            den += b - a;
        }
        a = b;
    }
    free(o);
    free(s);
    free(y);
    return den > 0 ? num / den : NAN;
}

double rec_logloss(const double *score, const float *label, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) {
        double p = score[i] < 1e-15 ? 1e-15 : score[i] > 1 - 1e-15 ? 1 - 1e-15 : score[i];
        s -= label[i] > 0.5f ? log(p) : log(1 - p);
    }
    return n ? s / n : NAN;
}

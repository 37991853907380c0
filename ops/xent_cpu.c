/* ops/xent_cpu.c -- fused softmax cross-entropy (see xent.h). */
#include "xent.h"

#include "vexp.h"

#include <math.h>
#include <stddef.h>

/* Loss of one row; with write_grad, the row becomes (softmax - onehot) * dscale. One exp pass:
 * the exponentials are kept in the row and normalised afterwards. */
static double row_loss(float *row, int V, int32_t tgt, int write_grad, float dscale) {
    float mx = row[0];
#pragma omp simd reduction(max : mx)
    for (int v = 1; v < V; v++)
        mx = row[v] > mx ? row[v] : mx;
    const float x_tgt = row[tgt];
    double sum = 0.0;
    if (write_grad) {
        float part = 0.0f;
        for (int v = 0; v < V; v++)
            row[v] = vexpf(row[v] - mx);
#pragma omp simd reduction(+ : part)
        for (int v = 0; v < V; v++)
            part += row[v];
        sum = part;
        const float scale = (float)(dscale / sum);
        for (int v = 0; v < V; v++)
            row[v] *= scale;
        row[tgt] -= dscale;
    } else {
#pragma omp simd reduction(+ : sum)
        for (int v = 0; v < V; v++)
            sum += vexpf(row[v] - mx);
    }
    return (double)mx + log(sum) - (double)x_tgt;
}

double xent_forward_backward_cpu(float *logits, float *losses, const int32_t *targets, int N, int V,
                                 float dscale, int ignore_index) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *row = logits + (size_t)n * V;
        if (targets[n] == ignore_index) {
            for (int v = 0; v < V; v++)
                row[v] = 0.0f;
            losses[n] = 0.0f;
        } else {
            losses[n] = (float)row_loss(row, V, targets[n], 1, dscale);
        }
    }
    double total = 0.0;
    for (int n = 0; n < N; n++)
        total += losses[n];
    return total;
}

double xent_forward_cpu(float *losses, const float *logits, const int32_t *targets, int N, int V,
                        int ignore_index) {
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        double l = 0.0;
        if (targets[n] != ignore_index)
            l = row_loss((float *)(logits + (size_t)n * V), V, targets[n], 0, 0.0f);
        if (losses)
            losses[n] = (float)l;
        total += l;
    }
    return total;
}

/* cli/cmd_ckpt.c -- `headwise ckpt info|verify FILE`, `ckpt logits` (the model's logits on given
 * token ids, for comparisons with other implementations) and the dispatch to import-hf and
 * export-hf (cmd_hf.c). */
#include "../ckpt/ckpt.h"
#include "../ckpt/ckpt_model.h"
#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/log.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* lines of space-separated ids: *n rows, row r is ids[off[r] .. off[r + 1]) (off malloc'd) */
static int32_t *read_id_rows(const char *path, int *n, int64_t **off_out, char *err) {
    size_t len;
    char *text = fs_read_all(path, &len, err);
    if (!text)
        return NULL;
    int32_t *ids = NULL;
    size_t cap = 0, count = 0;
    int rows = 0, line = 0;
    int64_t *off = HW_MALLOC(sizeof(int64_t));
    off[0] = 0;
    for (char *p = text, *next; p && *p; p = next) {
        line++;
        char *nl = strchr(p, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = 0;
        int w = 0;
        for (char *q = p, *end;; q = end) {
            long v = strtol(q, &end, 10);
            if (end == q)
                break;
            if (v < 0 || v > INT32_MAX) {
                hw_errf(err, HW_EFORMAT, "%s:%d: id %ld is out of range", path, line, v);
                free(text);
                free(ids);
                free(off);
                return NULL;
            }
            if (count == cap)
                ids = HW_REALLOC(ids, sizeof(int32_t) * (cap = cap ? 2 * cap : 1024));
            ids[count++] = (int32_t)v;
            w++;
        }
        if (w == 0)
            continue;
        rows++;
        off = HW_REALLOC(off, sizeof(int64_t) * (size_t)(rows + 1));
        off[rows] = (int64_t)count;
    }
    free(text);
    if (!rows)
        hw_errf(err, HW_EFORMAT, "%s: no ids", path);
    *n = rows;
    *off_out = off;
    return ids;
}

/* `ckpt logits CKPT --ids FILE --out FILE`: for each row of ids (one forward pass a row, at its
 * own length), its (length, vocab) logits; raw little-endian float32, the rows one after the
 * other */
static int ckpt_logits(int argc, char **argv, struct dist *d) {
    static const char *const valued[] = {"--ids", "--out", NULL};
    char *pos[3], err[HW_ERR_LEN];
    const char *ids_path = cli_opt(argc, argv, "--ids", NULL),
               *out = cli_opt(argc, argv, "--out", NULL);
    if (cli_positional(argc, argv, valued, pos, 3) != 2 || !ids_path || !out) {
        log_error("usage: headwise ckpt logits CKPT|RUN_DIR --ids FILE --out FILE");
        return HW_EXIT_CONFIG;
    }
    int n = 0;
    int64_t *off = NULL;
    int32_t *ids = read_id_rows(ids_path, &n, &off, err);
    if (!ids || !n) {
        log_error("%s", err);
        free(ids);
        free(off);
        return HW_EXIT_FAIL;
    }
    struct hw_config *cfg = HW_MALLOC(sizeof(*cfg));
    struct bpe tok;
    struct gpt m;
    memset(&m, 0, sizeof(m));
    const char *why = NULL;
    int rc = ckpt_load_model(d, pos[1], ops_by_name("cpu", &why), cfg, &tok, &m, NULL, NULL, err);
    int max_T = 0;
    for (int r = 0; !rc && r < n; r++) {
        const int T = (int)(off[r + 1] - off[r]);
        max_T = T > max_T ? T : max_T;
        if (T > m.c.max_T)
            rc = hw_errf(err, HW_EFORMAT, "%s: row %d has %d ids, more than model.max_seq %d",
                         ids_path, r + 1, T, m.c.max_T);
        for (int64_t i = off[r]; !rc && i < off[r + 1]; i++)
            if (ids[i] >= m.c.V)
                rc = hw_errf(err, HW_EFORMAT, "%s: id %d is not below the vocabulary %d", ids_path,
                             ids[i], m.c.V);
    }
    float *all = rc ? NULL : HW_MALLOC(sizeof(float) * (size_t)off[n] * (size_t)m.c.V);
    if (!rc) {
        ops_set_threads(cfg->train.threads);
        gpt_alloc_acts(&m, 1, max_T);
        for (int r = 0; r < n; r++) {
            const int T = (int)(off[r + 1] - off[r]);
            gpt_forward(&m, ids + off[r], NULL, 1, T, 1.0f, 0);
            memcpy(all + (size_t)off[r] * (size_t)m.c.V, gpt_logits(&m),
                   sizeof(float) * (size_t)T * (size_t)m.c.V);
        }
        rc = fs_write_atomic(out, (const char *)all, sizeof(float) * (size_t)off[n] * (size_t)m.c.V,
                             err);
    }
    if (!rc)
        log_info("logits: %d rows, %lld x %d float32 -> %s", n, (long long)off[n], m.c.V, out);
    else
        log_error("%s", err);
    free(all);
    gpt_free(&m);
    bpe_free(&tok);
    free(cfg);
    free(ids);
    free(off);
    return rc ? HW_EXIT_FAIL : 0;
}

int cmd_ckpt(int argc, char **argv, struct dist *d) {
    char err[HW_ERR_LEN];
    if (argc >= 2 && (!strcmp(argv[1], "import-hf") || !strcmp(argv[1], "export-hf")))
        return cmd_ckpt_hf(argc, argv, d);
    if (argc >= 2 && !strcmp(argv[1], "logits"))
        return ckpt_logits(argc, argv, d);
    if (argc != 3 || (strcmp(argv[1], "info") && strcmp(argv[1], "verify"))) {
        log_error("usage: headwise ckpt info|verify FILE | logits | import-hf | export-hf");
        return HW_EXIT_CONFIG;
    }
    int rc = !strcmp(argv[1], "info") ? ckpt_info(d, argv[2], stdout, err)
                                      : ckpt_verify(d, argv[2], stdout, err);
    if (rc) {
        log_error("%s", err);
        return HW_EXIT_FAIL;
    }
    return 0;
}

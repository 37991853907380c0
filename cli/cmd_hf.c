/* cli/cmd_hf.c -- `headwise ckpt import-hf DIR --out RUN_DIR [--max-seq N]` and
 * `headwise ckpt export-hf CKPT|RUN_DIR --out DIR [--dtype f32|bf16|f16]`: LLaMA-family Hugging
 * Face model directories in and out (ckpt/hf_llama.h). */
#include "../ckpt/ckpt.h"
#include "../ckpt/hf_llama.h"
#include "../core/check.h"
#include "../core/log.h"
#include "cli.h"

#include <string.h>

static int exit_code_(int rc) {
    return rc == HW_ECONFIG || rc == HW_EMISMATCH ? HW_EXIT_CONFIG : HW_EXIT_FAIL;
}

int cmd_ckpt_hf(int argc, char **argv, struct dist *d) {
    static const char *const valued[] = {"--out", "--max-seq", "--dtype", NULL};
    char *pos[3], err[HW_ERR_LEN];
    const int import = !strcmp(argv[1], "import-hf");
    const char *out = cli_opt(argc, argv, "--out", NULL);
    if (cli_positional(argc, argv, valued, pos, 3) != 2 || !out) {
        log_error(import ? "usage: headwise ckpt import-hf HF_DIR --out RUN_DIR [--max-seq N]"
                         : "usage: headwise ckpt export-hf CKPT|RUN_DIR --out HF_DIR "
                           "[--dtype f32|bf16|f16]");
        return HW_EXIT_CONFIG;
    }
    int rc;
    if (import) {
        long long max_seq;
        if (cli_opt_int(argc, argv, "--max-seq", 0, 0, 1 << 20, &max_seq))
            return HW_EXIT_CONFIG;
        char file[CKPT_PATH_LEN];
        rc = hf_import(d, pos[1], out, (int)max_seq, file, err);
        if (!rc && d->rank == 0)
            log_info("import-hf: %s -> %s (config %s/config.yaml)", pos[1], file, out);
    } else {
        const char *dt = cli_opt(argc, argv, "--dtype", "f32");
        enum st_dtype dtype = ST_F32;
        if (!strcmp(dt, "bf16"))
            dtype = ST_BF16;
        else if (!strcmp(dt, "f16"))
            dtype = ST_F16;
        else if (strcmp(dt, "f32")) {
            log_error("export-hf: --dtype %s: expected f32, bf16 or f16", dt);
            return HW_EXIT_CONFIG;
        }
        rc = hf_export(d, pos[1], out, dtype, err);
        if (!rc && d->rank == 0)
            log_info("export-hf: %s -> %s (config.json, model.safetensors %s)", pos[1], out,
                     st_dtype_name(dtype));
    }
    if (rc) {
        log_error("%s", err);
        return exit_code_(rc);
    }
    return 0;
}

/* cli/main.c -- the headwise binary: subcommand dispatch, MPI setup and teardown. */
#include "../core/check.h"
#include "../core/log.h"
#include "../train/signals.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

#define HW_VERSION "0.1.0"

static void usage(FILE *f) {
    fprintf(
        f,
        "headwise %s -- train and evaluate transformers from one laptop to many Slurm nodes\n"
        "\n"
        "usage: headwise <command> [args]\n"
        "  train CONFIG [key.path=value ...]   train (resumes from the run dir's latest "
        "checkpoint)\n"
        "  sample CKPT|RUN_DIR [--prompt S] [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
        "         [--chat] [--system S] [--indicator] [--pasta ALPHA] [--backend cpu|cuda]\n"
        "  data prepare (--input FILE [--format text|jsonl] [--field F] | --synthetic [--bytes "
        "N])\n"
        "               --out DIR [--vocab N | --tokenizer tokenizer.json] [--val-frac F] [--seed "
        "S]\n"
        "  data tokenize --tokenizer FILE (--text FILE | --ids FILE) --out FILE [--repeat N] "
        "[--pieces]\n"
        "  data synth --out FILE [--bytes N] [--seed S]\n"
        "  data csft-score --ckpt CKPT|RUN_DIR --input IN.jsonl --out OUT.jsonl [--layer L]\n"
        "               [--beta B] [--indicator S]   score and tag conversations (docs/sft.md)\n"
        "  ckpt info|verify FILE\n"
        "  ckpt import-hf HF_DIR --out RUN_DIR [--max-seq N]   a LLaMA-family model (safetensors)\n"
        "  ckpt export-hf CKPT|RUN_DIR --out HF_DIR [--dtype f32|bf16|f16]   dense/GQA models\n"
        "  ckpt logits CKPT|RUN_DIR --ids FILE --out FILE   float32 logits of rows of token ids\n"
        "  config show CONFIG [key.path=value ...] | config docs\n"
        "  report RUN_DIR [--out DIR]          plots, index.html and summary.md of a run\n"
        "  report RUN_DIR... | SWEEP_DIR [--out DIR]   one table and loss plot over a sweep\n"
        "  version\n"
        "\n"
        "docs: README.md, docs/config.md, docs/checkpoint.md, docs/data.md\n",
        HW_VERSION);
}

int main(int argc, char **argv) {
    struct dist d;
    memset(&d, 0, sizeof(d));
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? HW_EXIT_CONFIG : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("headwise %s\n", HW_VERSION);
        return 0;
    }
    int (*cmd)(int, char **, struct dist *) = NULL;
    if (!strcmp(argv[1], "train"))
        cmd = cmd_train;
    else if (!strcmp(argv[1], "sample"))
        cmd = cmd_sample;
    else if (!strcmp(argv[1], "data")) /* csft-score lives in cmd_csft.c */
        cmd = argc >= 3 && !strcmp(argv[2], "csft-score") ? cmd_csft_score : cmd_data;
    else if (!strcmp(argv[1], "eval"))
        cmd = cmd_eval;
    else if (!strcmp(argv[1], "report"))
        cmd = cmd_report;
    else if (!strcmp(argv[1], "ckpt"))
        cmd = cmd_ckpt;
    else if (!strcmp(argv[1], "config"))
        cmd = cmd_config;
    if (!cmd) {
        fprintf(stderr, "headwise: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return HW_EXIT_CONFIG;
    }
    /* before MPI starts: a preemption signal at start-up must not kill */
    if (cmd == cmd_train || cmd == cmd_eval)
        signals_install();
    /* commands that only parse, print or convert one file locally: no MPI start (about 0.5 s
     * per job) */
    const int local =
        cmd == cmd_config || (cmd == cmd_data && argc >= 3 &&
                              (!strcmp(argv[2], "tokenize") || !strcmp(argv[2], "synth")));
    if (local)
        dist_init_local(&d);
    else
        dist_init(&d, &argc, &argv);
    int rc = cmd(argc - 1, argv + 1, &d);
    /* A failing rank takes the job down rather than leaving others in a collective. Config
     * errors are found identically by every rank before any collective, so those ranks all
     * exit cleanly with code 2 instead. */
    if (rc != 0 && rc != HW_EXIT_REQUEUE && rc != HW_EXIT_CONFIG && d.world > 1)
        hw_exit(rc);
    dist_finalize(&d);
    return rc;
}

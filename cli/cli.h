/* cli/cli.h -- the headwise subcommands; each returns a process exit code (enum hw_exit). */
#ifndef HW_CLI_H
#define HW_CLI_H

#include "../dist/dist.h"

int cmd_train(int argc, char **argv, struct dist *d);
int cmd_sample(int argc, char **argv, struct dist *d);
int cmd_data(int argc, char **argv, struct dist *d);
int cmd_ckpt(int argc, char **argv, struct dist *d);
int cmd_eval(int argc, char **argv, struct dist *d);
int cmd_config(int argc, char **argv, struct dist *d);
int cmd_report(int argc, char **argv, struct dist *d);
/* `headwise data csft-score` (cmd_csft.c) */
int cmd_csft_score(int argc, char **argv, struct dist *d);
/* `headwise data prepare` on many files or into bounded shards (cmd_prepare.c) */
int data_prepare_sharded(int argc, char **argv, struct dist *d, char *const *paths, int n);
/* `headwise ckpt import-hf|export-hf` (cmd_hf.c) */
int cmd_ckpt_hf(int argc, char **argv, struct dist *d);

/* Option parsing shared by the subcommands: "--name value" pairs. */
const char *cli_opt(int argc, char **argv, const char *name, const char *def);
int cli_flag(int argc, char **argv, const char *name);
/* "--name value" parsed in full: an integer in [lo, hi], or a finite number in [lo, hi] (lo_open
 * / hi_open exclude the ends), def when the flag is absent. A bad value logs one line naming the
 * flag, what was expected and what was given, and returns HW_EXIT_CONFIG; 0 otherwise. */
int cli_opt_int(int argc, char **argv, const char *name, long long def, long long lo, long long hi,
                long long *out);
int cli_opt_num(int argc, char **argv, const char *name, double def, double lo, int lo_open,
                double hi, int hi_open, double *out);
/* argv entries that are not options or option values, in order. */
int cli_positional(int argc, char **argv, const char *const *valued, char **out, int cap);

#endif /* HW_CLI_H */

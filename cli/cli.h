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

/* Option parsing shared by the subcommands: "--name value" pairs. */
const char *cli_opt(int argc, char **argv, const char *name, const char *def);
int cli_flag(int argc, char **argv, const char *name);
/* argv entries that are not options or option values, in order. */
int cli_positional(int argc, char **argv, const char *const *valued, char **out, int cap);

#endif /* HW_CLI_H */

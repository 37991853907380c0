/* eval/judge.h -- an external LLM judge: a command (argv, run without a shell) that gets one
 * judge prompt on stdin and answers 0 or 1 on stdout, as RoleMRC's llm_judge.py parses the
 * judge's reply. Users plug in a real judge (a script calling their model server) this way. */
#ifndef HW_JUDGE_H
#define HW_JUDGE_H

#include "../config/config.h"

/* Run the judge on prompt; returns 0 or 1, or a negative hw_err with err set (the command
 * could not run, exited non-zero, or answered something else). */
int judge_run(const struct cfg_list *argv, const char *prompt, char *err);

#endif /* HW_JUDGE_H */

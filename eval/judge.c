/* eval/judge.c -- run the judge command with the prompt on stdin (see judge.h). */
#define _POSIX_C_SOURCE 200809L
#include "judge.h"

#include "../core/check.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int judge_run(const struct cfg_list *cmd, const char *prompt, char *err) {
    int in[2], out[2];
    if (cmd->n < 1)
        return hw_errf(err, HW_ECONFIG, "eval.judge_command is empty");
    if (pipe(in) || pipe(out))
        return hw_errf(err, HW_EIO, "judge: pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        return hw_errf(err, HW_EIO, "judge: fork: %s", strerror(errno));
    if (pid == 0) {
        char *argv[CFG_LIST_MAX + 1];
        for (int i = 0; i < cmd->n; i++)
            argv[i] = (char *)cmd->item[i];
        argv[cmd->n] = NULL;
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    /* the judge may answer before reading everything: ignore EPIPE */
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    size_t len = strlen(prompt), off = 0;
    while (off < len) {
        ssize_t w = write(in[1], prompt + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(in[1]);
    char buf[256];
    size_t got = 0;
    ssize_t r;
    while ((r = read(out[0], buf + got, sizeof(buf) - 1 - got)) > 0 && got < sizeof(buf) - 1)
        got += (size_t)r;
    while (r > 0) /* drain */
        r = read(out[0], (char[256]){0}, 256);
    close(out[0]);
    signal(SIGPIPE, old);
    int status = 0;
    waitpid(pid, &status, 0);
    buf[got] = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return hw_errf(err, HW_EIO, "judge: '%s' failed (exit status %d)", cmd->item[0],
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    const char *p = buf;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    if ((*p == '0' || *p == '1') && (p[1] == 0 || strchr(" \t\r\n.", p[1])))
        return *p - '0';
    return hw_errf(err, HW_EFORMAT, "judge: expected 0 or 1, got '%.40s'", buf);
}

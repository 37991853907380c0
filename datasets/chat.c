/* datasets/chat.c -- chat template rendering with role/content byte spans (see chat.h). */
#define _POSIX_C_SOURCE 200809L
#include "chat.h"

#include "../core/check.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void chat_template_default(struct chat_template *t) {
    memset(t, 0, sizeof(*t));
    snprintf(t->system, sizeof(t->system), "<|system|>\n");
    snprintf(t->user, sizeof(t->user), "<|user|>\n");
    snprintf(t->assistant, sizeof(t->assistant), "<|assistant|>\n");
    snprintf(t->end_turn, sizeof(t->end_turn), "<|end|>\n");
}

const char *chat_role_name(const char *role) {
    static const char *const names[] = {"system", "user", "assistant"};
    if (!role)
        return NULL;
    for (int i = 0; i < 3; i++)
        if (strcasecmp(role, names[i]) == 0)
            return names[i];
    return NULL;
}

static const char *role_tag_(const struct chat_template *t, const char *name) {
    return name[0] == 's' ? t->system : name[0] == 'u' ? t->user : t->assistant;
}

int chat_render(const struct chat_template *t, const struct chat_msg *msgs, int n,
                int add_generation_prompt, char **out, struct chat_span **spans, char *err) {
    *out = NULL;
    *spans = NULL;
    size_t total = strlen(t->bos), end_len = strlen(t->end_turn);
    for (int i = 0; i < n; i++) {
        const char *name = chat_role_name(msgs[i].role);
        if (!msgs[i].role || !msgs[i].content)
            return hw_errf(err, HW_EFORMAT, "message %d: NULL %s", i,
                           msgs[i].role ? "content" : "role");
        if (!name)
            return hw_errf(err, HW_EFORMAT,
                           "message %d: unknown role '%.40s' (expected system, user or assistant)",
                           i, msgs[i].role);
        total += strlen(role_tag_(t, name)) + strlen(msgs[i].content) + end_len;
    }
    if (add_generation_prompt)
        total += strlen(t->assistant);
    if (total > (size_t)INT_MAX)
        return hw_errf(err, HW_ECONFIG, "chat_render: output of %zu bytes is over INT_MAX", total);

    char *s = HW_MALLOC(total + 1);
    struct chat_span *sp = HW_MALLOC((size_t)(n > 0 ? n : 1) * sizeof(*sp));
    size_t pos = 0;
#define PUT_(str)                                                                                  \
    do {                                                                                           \
        size_t l_ = strlen(str);                                                                   \
        memcpy(s + pos, (str), l_);                                                                \
        pos += l_;                                                                                 \
    } while (0)
    PUT_(t->bos);
    for (int i = 0; i < n; i++) {
        sp[i].msg = i;
        sp[i].role_start = (int)pos;
        PUT_(role_tag_(t, chat_role_name(msgs[i].role)));
        sp[i].role_end = sp[i].content_start = (int)pos;
        PUT_(msgs[i].content);
        sp[i].content_end = (int)pos;
        PUT_(t->end_turn);
    }
    if (add_generation_prompt)
        PUT_(t->assistant);
#undef PUT_
    HW_ASSERT(pos == total);
    s[pos] = '\0';
    *out = s;
    *spans = sp;
    return (int)pos;
}

/* datasets/chat.h -- a configurable chat template: renders a list of {role, content} messages
 * into one string and reports where each message's role tag and content landed, so SFT can
 * mask by role and eval can prompt the same way. Plain strings in, plain bytes out: no
 * tokenisation here (special strings in the tags become tokens only if the tokenizer has them
 * as specials, see bpe.h). */
#ifndef HW_CHAT_H
#define HW_CHAT_H

struct chat_msg {
    const char *role;    /* "system", "user" or "assistant" (any case on input) */
    const char *content; /* NUL-terminated UTF-8, used as it is */
};

/* All fields are NUL-terminated strings, any of them may be empty. */
struct chat_template {
    char system[64], user[64], assistant[64]; /* role tags, written before the content */
    char end_turn[32];                        /* written after each message's content */
    char bos[32];                             /* written once at the very start */
};

/* The default template:
 *     system = "<|system|>\n", user = "<|user|>\n", assistant = "<|assistant|>\n",
 *     end_turn = "<|end|>\n", bos = ""
 * so [system "S", user "U"] with a generation prompt renders as
 *     "<|system|>\nS<|end|>\n<|user|>\nU<|end|>\n<|assistant|>\n" */
void chat_template_default(struct chat_template *t);

/* The canonical lower-case name ("system", "user", "assistant", static strings) of a role
 * given in any case, or NULL for anything else. */
const char *chat_role_name(const char *role);

/* Byte offsets into the rendered string, [start, end). */
struct chat_span {
    int msg; /* index of the message in msgs */
    int role_start, role_end;
    int content_start, content_end;
};

/* Renders bos, then for each message: its role tag, its content, end_turn; with
 * add_generation_prompt, the assistant tag at the end (not covered by any span: it is the last
 * strlen(t->assistant) bytes). *out (NUL-terminated) and *spans (n entries, spans[i].msg == i)
 * are malloc'd and never NULL on success; the caller frees both with free(). The end_turn
 * after a message lies between its content_end and the next message's role_start.
 * Returns the length of *out (>= 0), or HW_EFORMAT (a NULL role or content, an unknown role:
 * "message 2: unknown role 'robot' (expected system, user or assistant)") or HW_ECONFIG
 * (output over INT_MAX bytes), with err filled and *out, *spans set to NULL. */
int chat_render(const struct chat_template *t, const struct chat_msg *msgs, int n,
                int add_generation_prompt, char **out, struct chat_span **spans, char *err);

#endif /* HW_CHAT_H */

/*
 * chat_template.c — chat messages to prompt text.
 *
 * Hugging Face ships chat templates as Jinja programs in
 * tokenizer_config.json. Strata runs no Jinja interpreter: it recognizes the
 * two template families the server supports by their markers (ChatML's
 * "<|im_start|>", Llama-2's "[INST]") and renders them in C. A model with no
 * template gets the family of its architecture (llama: Llama-2; gpt2:
 * ChatML), which is what such models were most likely tuned on.
 *
 * ChatML:   <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
 * Llama-2:  [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...
 * plain:    SYSTEM:\n{content}\n\nUSER:\n{content}\n\nASSISTANT:\n — a script's layout, for
 *           character-level models (a Shakespeare model answers with a speech,
 *           ended by the blank line that is its stop string)
 *           (BOS comes from the tokenizer; contents are stripped of outer
 *           whitespace as the reference template does)
 *
 * Used by the server (src/serve) and by strata chat (L8).
 */
#include "strata/infer.h"

#include <jansson.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

st_chat_template st_chat_template_detect(const char *text, bool llama) {
    if (text && strstr(text, "<|im_start|>")) return ST_CHAT_CHATML;
    if (text && strstr(text, "[INST]")) return ST_CHAT_LLAMA2;
    return llama ? ST_CHAT_LLAMA2 : ST_CHAT_CHATML;
}

st_chat_template st_chat_template_for(const st_lm *lm, const st_tokenizer *tok,
                                      const char *text) {
    if (tok && st_tokenizer_get_kind(tok) == ST_TOK_CHAR) return ST_CHAT_PLAIN;
    return st_chat_template_detect(text, lm && lm->cfg.arch == ST_ARCH_LLAMA);
}

char *st_chat_template_read(const char *model_dir) {
    if (!model_dir) return NULL;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir) >= sizeof path)
        return NULL;
    json_t *j = json_load_file(path, 0, NULL);
    if (!j) return NULL;
    json_t *t = json_object_get(j, "chat_template");
    char *out = json_is_string(t) ? st_strdup(json_string_value(t)) : NULL;
    json_decref(j);
    return out;
}

const char *st_chat_template_name(st_chat_template t) {
    return t == ST_CHAT_LLAMA2 ? "llama-2" : t == ST_CHAT_PLAIN ? "plain" : "chatml";
}

const char *st_chat_template_stop(st_chat_template t) {
    return t == ST_CHAT_CHATML ? "<|im_end|>" : t == ST_CHAT_PLAIN ? "\n\n" : NULL;
}

/* The prompt is built in an st_strbuf; its sticky failure is checked once. */
static void add(st_strbuf *b, const char *s, size_t n) { (void)st_strbuf_put(b, s, n); }

static void adds(st_strbuf *b, const char *s) { add(b, s, strlen(s)); }

/* s without leading and trailing whitespace. */
static void add_stripped(st_strbuf *b, const char *s) {
    size_t n = strlen(s), i = 0;
    while (i < n && isspace((unsigned char)s[i])) i++;
    while (n > i && isspace((unsigned char)s[n - 1])) n--;
    add(b, s + i, n - i);
}

static bool is_system(const char *role) {
    return strcmp(role, "system") == 0 || strcmp(role, "developer") == 0;
}

st_status st_chat_template_render(st_chat_template t, const st_chat_message *msgs, int n,
                                  char **out) {
    st_strbuf b = {0};
    adds(&b, "");
    if (t == ST_CHAT_CHATML) {
        for (int i = 0; i < n; i++) {
            adds(&b, "<|im_start|>");
            adds(&b, is_system(msgs[i].role) ? "system" : msgs[i].role);
            adds(&b, "\n");
            adds(&b, msgs[i].content);
            adds(&b, "<|im_end|>\n");
        }
        adds(&b, "<|im_start|>assistant\n");
    } else if (t == ST_CHAT_PLAIN) {
        for (int i = 0; i < n; i++) {
            const char *r = is_system(msgs[i].role) ? "SYSTEM" : msgs[i].role;
            for (const char *c = r; *c; c++) {
                char u = (char)toupper((unsigned char)*c);
                add(&b, &u, 1);
            }
            adds(&b, ":\n");
            add_stripped(&b, msgs[i].content);
            adds(&b, "\n\n");
        }
        adds(&b, "ASSISTANT:\n");
    } else {
        /* System messages fold into the next user turn, as in Llama-2's template. */
        const char *sys = NULL;
        bool first = true;
        for (int i = 0; i < n; i++) {
            const char *r = msgs[i].role;
            if (is_system(r)) {
                sys = msgs[i].content;
            } else if (strcmp(r, "assistant") == 0) {
                adds(&b, " ");
                add_stripped(&b, msgs[i].content);
                adds(&b, " </s>");
            } else { /* user, tool */
                adds(&b, first ? "[INST] " : "<s>[INST] ");
                first = false;
                if (sys) {
                    adds(&b, "<<SYS>>\n");
                    add_stripped(&b, sys);
                    adds(&b, "\n<</SYS>>\n\n");
                    sys = NULL;
                }
                add_stripped(&b, msgs[i].content);
                adds(&b, " [/INST]");
            }
        }
        if (sys) { /* a trailing system message with no user turn after it */
            adds(&b, first ? "[INST] <<SYS>>\n" : "<s>[INST] <<SYS>>\n");
            add_stripped(&b, sys);
            adds(&b, "\n<</SYS>>\n\n [/INST]");
        }
    }
    if (b.failed) {
        st_strbuf_free(&b);
        return ST_ERR_NOMEM;
    }
    *out = b.p;
    return ST_OK;
}

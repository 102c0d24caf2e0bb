/*
 * filter.c — the run filter language, compiled to SQL with bound values.
 *
 *   filter  := or
 *   or      := and ("or" and)*
 *   and     := unary ("and" unary)*
 *   unary   := "not" unary | "(" or ")" | cmp
 *   cmp     := ident op value | ident "is" ["not"] "null"
 *   op      := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | "like"
 *   ident   := ("metrics" | "params" | "tags") "." key | attribute
 *   key     := [A-Za-z0-9_-/:]+ (dots allowed) | `any text` (`` for `)
 *   value   := number | 'text' ('' for ') | "text"
 *   attribute := id name experiment status host git_commit command
 *                parent_id start_time end_time seed
 * Keywords are case-insensitive. metrics.K is the value at the run's last
 * step; params.K compares numerically against a number and as text
 * against a string; tags and text attributes compare as text.
 *
 * Why hand-written: it is a tiny DSL (a dozen tokens, four precedence
 * levels) and the point is control over what reaches SQL: every key and
 * every value becomes a $N parameter and the SQL text is assembled only
 * from constant fragments chosen here, so no input can change the
 * statement's shape. A parser generator would add a build step for ~300
 * lines. Errors name the 1-based column and what was expected.
 *
 * Output: a boolean SQL expression over the runs table aliased r, with
 * placeholders numbered from the caller's first free index. Pure
 * functions; no shared state.
 */
#include "track_impl.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_DEPTH 64
#define MAX_FILTER_BYTES 8192

typedef enum { T_END, T_IDENT, T_NUM, T_STR, T_OP, T_LP, T_RP } tok_kind;

typedef struct tok {
    tok_kind kind;
    int col;          /* 1-based column of the first byte */
    char *text;       /* ident (key unquoted), string contents, or op */
    double num;
} tok;

typedef struct parser {
    const char *src;
    size_t pos;
    tok cur;
    int depth;
    int next_param;
    st__sqlfrag *out;
    size_t len, cap; /* of out->sql */
} parser;

static const struct {
    const char *name, *column;
    bool numeric;
} k_attrs[] = {
    {"id", "r.id", false},
    {"name", "r.name", false},
    {"experiment", "r.experiment", false},
    {"status", "r.status", false},
    {"host", "r.host", false},
    {"git_commit", "r.git_commit", false},
    {"command", "r.command", false},
    {"parent_id", "r.parent_id", false},
    {"start_time", "r.start_time", true},
    {"end_time", "r.end_time", true},
    {"seed", "r.seed", true},
};

static st_status perr(parser *p, int col, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static st_status perr(parser *p, int col, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    (void)p;
    return st__fail(ST_ERR_INVALID_ARG, "filter: column %d: %s", col, msg);
}

static st_status emit(parser *p, const char *s) {
    size_t n = strlen(s);
    if (p->len + n + 1 > p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 256;
        while (nc < p->len + n + 1) nc *= 2;
        char *b = st_realloc(p->out->sql, nc);
        if (!b) return st__fail(ST_ERR_NOMEM, "filter: no memory");
        p->out->sql = b;
        p->cap = nc;
    }
    memcpy(p->out->sql + p->len, s, n + 1);
    p->len += n;
    return ST_OK;
}

/* Appends a placeholder bound to v (strings are copied). */
static st_status emit_param(parser *p, st__dbval v, int col) {
    if (p->out->n_params >= ST__FILTER_MAX_PARAMS)
        return perr(p, col, "too many values (at most %d)", ST__FILTER_MAX_PARAMS);
    if (v.type == ST__DB_TEXT) {
        v.s = st_strdup(v.s);
        if (!v.s) return st__fail(ST_ERR_NOMEM, "filter: no memory");
    }
    p->out->params[p->out->n_params++] = v;
    char ph[16];
    snprintf(ph, sizeof ph, "$%d", p->next_param++);
    return emit(p, ph);
}

static char *st_strndup_(const char *s, size_t n) {
    char *d = st_malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static bool is_key_char(int c) {
    return isalnum(c) || c == '_' || c == '-' || c == '/' || c == ':' || c == '.';
}

static void tok_clear(tok *t) {
    st_free(t->text);
    t->text = NULL;
}

/* Reads a quoted run ending in q ('q' doubled inside means one q). */
static st_status read_quoted(parser *p, char q, int col, char **out) {
    const char *s = p->src;
    size_t i = p->pos + 1, cap = 16, n = 0;
    char *b = st_malloc(cap);
    if (!b) return st__fail(ST_ERR_NOMEM, "filter: no memory");
    for (;;) {
        if (!s[i]) {
            st_free(b);
            return perr(p, col, "unterminated %s starting here", q == '`' ? "quoted key" : "string");
        }
        if (s[i] == q) {
            if (s[i + 1] == q) i++;
            else break;
        }
        if (n + 2 > cap) {
            cap *= 2;
            char *nb = st_realloc(b, cap);
            if (!nb) {
                st_free(b);
                return st__fail(ST_ERR_NOMEM, "filter: no memory");
            }
            b = nb;
        }
        b[n++] = s[i++];
    }
    b[n] = '\0';
    p->pos = i + 1;
    *out = b;
    return ST_OK;
}

static st_status next(parser *p) {
    tok_clear(&p->cur);
    const char *s = p->src;
    while (s[p->pos] && isspace((unsigned char)s[p->pos])) p->pos++;
    tok *t = &p->cur;
    t->col = (int)p->pos + 1;
    char c = s[p->pos];
    if (!c) {
        t->kind = T_END;
        return ST_OK;
    }
    if (c == '(' || c == ')') {
        t->kind = c == '(' ? T_LP : T_RP;
        p->pos++;
        return ST_OK;
    }
    if (c == '\'' || c == '"') {
        t->kind = T_STR;
        return read_quoted(p, c, t->col, &t->text);
    }
    if (strchr("=!<>", c)) {
        char op[3] = {c, 0, 0};
        char d = s[p->pos + 1];
        if ((c == '=' && d == '=') || (c != '=' && d == '=') || (c == '<' && d == '>')) op[1] = d;
        if (c == '!' && !op[1]) return perr(p, t->col, "'!' must be followed by '='");
        p->pos += op[1] ? 2 : 1;
        t->kind = T_OP;
        t->text = st_strdup(op);
        return t->text ? ST_OK : st__fail(ST_ERR_NOMEM, "filter: no memory");
    }
    if (isdigit((unsigned char)c) || ((c == '-' || c == '+' || c == '.') &&
                                      (isdigit((unsigned char)s[p->pos + 1]) ||
                                       (s[p->pos + 1] == '.' && isdigit((unsigned char)s[p->pos + 2]))))) {
        char *end;
        errno = 0;
        double v = strtod(s + p->pos, &end);
        if (end == s + p->pos || errno == ERANGE || !isfinite(v))
            return perr(p, t->col, "bad number");
        if (*end && (isalpha((unsigned char)*end) || *end == '_'))
            return perr(p, (int)(end - s) + 1, "unexpected '%c' after a number", *end);
        t->kind = T_NUM;
        t->num = v;
        t->text = st_strndup_(s + p->pos, (size_t)(end - (s + p->pos)));
        p->pos = (size_t)(end - s);
        return t->text ? ST_OK : st__fail(ST_ERR_NOMEM, "filter: no memory");
    }
    if (isalpha((unsigned char)c) || c == '_') {
        /* An identifier: a word, or prefix "." key with an optional quoted key. */
        size_t b = p->pos;
        while (isalnum((unsigned char)s[p->pos]) || s[p->pos] == '_') p->pos++;
        size_t wlen = p->pos - b;
        if (s[p->pos] == '.') {
            p->pos++;
            char *key = NULL;
            if (s[p->pos] == '`') {
                ST_TRY(read_quoted(p, '`', (int)p->pos + 1, &key));
            } else {
                size_t kb = p->pos;
                while (s[p->pos] && is_key_char((unsigned char)s[p->pos])) p->pos++;
                if (p->pos == kb) return perr(p, (int)kb + 1, "expected a key after '.'");
                key = st_strndup_(s + kb, p->pos - kb);
                if (!key) return st__fail(ST_ERR_NOMEM, "filter: no memory");
            }
            size_t kl = strlen(key);
            char *full = st_malloc(wlen + 1 + kl + 1);
            if (!full) {
                st_free(key);
                return st__fail(ST_ERR_NOMEM, "filter: no memory");
            }
            memcpy(full, s + b, wlen);
            full[wlen] = '.';
            memcpy(full + wlen + 1, key, kl + 1);
            st_free(key);
            t->kind = T_IDENT;
            t->text = full;
            return ST_OK;
        }
        t->kind = T_IDENT;
        t->text = st_strndup_(s + b, wlen);
        return t->text ? ST_OK : st__fail(ST_ERR_NOMEM, "filter: no memory");
    }
    if (c == '`') return perr(p, t->col, "a quoted key needs a prefix (metrics., params. or tags.)");
    if (c == ';') return perr(p, t->col, "unexpected ';' (one filter expression only)");
    return perr(p, t->col, "unexpected character '%c'", isprint((unsigned char)c) ? c : '?');
}

static bool is_kw(const tok *t, const char *kw) {
    return t->kind == T_IDENT && strcasecmp(t->text, kw) == 0;
}

static const char *tok_desc(const tok *t, char *buf, size_t n) {
    switch (t->kind) {
    case T_END: return "end of filter";
    case T_LP: return "'('";
    case T_RP: return "')'";
    default: snprintf(buf, n, "'%.40s'", t->text ? t->text : ""); return buf;
    }
}

/* The SQL for one identifier. kind: 0 metric, 1 param, 2 tag, 3 attribute. */
typedef struct ident {
    int kind;
    const char *key;    /* after the prefix */
    int attr;           /* index into k_attrs */
    int col;
} ident;

static st_status parse_ident(parser *p, ident *id) {
    char d[64];
    if (p->cur.kind != T_IDENT)
        return perr(p, p->cur.col, "expected a name (metrics.K, params.K, tags.K, status, ...), found %s",
                    tok_desc(&p->cur, d, sizeof d));
    const char *t = p->cur.text;
    id->col = p->cur.col;
    static const char *const pre[3] = {"metrics.", "params.", "tags."};
    for (int k = 0; k < 3; k++) {
        size_t n = strlen(pre[k]);
        if (strncasecmp(t, pre[k], n) == 0) {
            id->kind = k;
            id->key = t + n;
            if (!*id->key) return perr(p, id->col, "empty key");
            if (strlen(id->key) > ST_TRACK_MAX_KEY) return perr(p, id->col, "key longer than %d bytes", ST_TRACK_MAX_KEY);
            return ST_OK;
        }
    }
    for (size_t a = 0; a < sizeof k_attrs / sizeof k_attrs[0]; a++)
        if (strcasecmp(t, k_attrs[a].name) == 0) {
            id->kind = 3;
            id->attr = (int)a;
            return ST_OK;
        }
    if (strchr(t, '.'))
        return perr(p, id->col, "unknown prefix in '%.60s' (want metrics., params. or tags.)", t);
    return perr(p, id->col,
                "unknown name '%.60s' (attributes: id name experiment status host git_commit "
                "command parent_id start_time end_time seed)", t);
}

/* The key's placeholder: a new one, or $reuse when reuse > 0. */
static st_status emit_key(parser *p, const ident *id, int reuse) {
    if (reuse <= 0) return emit_param(p, st__db_text(id->key), id->col);
    char ph[16];
    snprintf(ph, sizeof ph, "$%d", reuse);
    return emit(p, ph);
}

/* Emits the SQL value of an identifier; numeric: compare with a number.
 * reuse > 0: bind the key to the existing placeholder $reuse. */
static st_status emit_ident_r(parser *p, const ident *id, bool numeric, int reuse) {
    switch (id->kind) {
    case 0:
        ST_TRY(emit(p, "(SELECT m.value FROM metrics m WHERE m.run_id = r.id AND m.key = "));
        ST_TRY(emit_key(p, id, reuse));
        return emit(p, " ORDER BY m.step DESC, m.wall_time DESC LIMIT 1)");
    case 1:
        ST_TRY(emit(p, numeric ? "(SELECT p.value_num FROM params p WHERE p.run_id = r.id AND p.key = "
                               : "(SELECT p.value FROM params p WHERE p.run_id = r.id AND p.key = "));
        ST_TRY(emit_key(p, id, reuse));
        return emit(p, ")");
    case 2:
        ST_TRY(emit(p, "(SELECT g.value FROM tags g WHERE g.run_id = r.id AND g.key = "));
        ST_TRY(emit_key(p, id, reuse));
        return emit(p, ")");
    default: return emit(p, k_attrs[id->attr].column);
    }
}

static st_status emit_ident(parser *p, const ident *id, bool numeric) {
    return emit_ident_r(p, id, numeric, 0);
}

static st_status parse_or(parser *p);

static st_status parse_cmp(parser *p) {
    ident id;
    ST_TRY(parse_ident(p, &id));
    /* The identifier's text stays alive in this copy while we advance. */
    char *keep = p->cur.text;
    p->cur.text = NULL;
    id.key = id.kind < 3 ? strchr(keep, '.') + 1 : NULL;
    st_status s = next(p);
    char d[64];
    if (s == ST_OK && is_kw(&p->cur, "is")) {
        s = next(p);
        bool neg = false;
        if (s == ST_OK && is_kw(&p->cur, "not")) neg = true, s = next(p);
        if (s == ST_OK && !is_kw(&p->cur, "null"))
            s = perr(p, p->cur.col, "expected 'null' after 'is', found %s", tok_desc(&p->cur, d, sizeof d));
        if (s == ST_OK) s = emit(p, "(");
        if (s == ST_OK) s = emit_ident(p, &id, id.kind == 0 || (id.kind == 3 && k_attrs[id.attr].numeric));
        if (s == ST_OK) s = emit(p, neg ? " IS NOT NULL)" : " IS NULL)");
        if (s == ST_OK) s = next(p);
        st_free(keep);
        return s;
    }
    const char *sqlop = NULL;
    int opcol = p->cur.col;
    if (s == ST_OK) {
        if (p->cur.kind == T_OP) {
            const char *o = p->cur.text;
            sqlop = !strcmp(o, "=") || !strcmp(o, "==") ? " = "
                    : !strcmp(o, "!=") || !strcmp(o, "<>") ? " <> "
                    : !strcmp(o, "<")  ? " < "
                    : !strcmp(o, "<=") ? " <= "
                    : !strcmp(o, ">")  ? " > "
                    : !strcmp(o, ">=") ? " >= "
                                       : NULL;
        } else if (is_kw(&p->cur, "like")) {
            sqlop = " LIKE ";
        }
        if (!sqlop)
            s = perr(p, p->cur.col, "expected an operator (= != < <= > >= like) after '%.60s', found %s",
                     keep, tok_desc(&p->cur, d, sizeof d));
    }
    if (s == ST_OK) s = next(p);
    if (s == ST_OK && p->cur.kind != T_NUM && p->cur.kind != T_STR)
        s = perr(p, p->cur.col, "expected a number or a quoted string, found %s",
                 tok_desc(&p->cur, d, sizeof d));
    if (s == ST_OK) {
        bool num = p->cur.kind == T_NUM;
        bool like = sqlop[1] == 'L';
        if (like && num) s = perr(p, opcol, "'like' needs a quoted pattern");
        else if (id.kind == 0 && !num)
            s = perr(p, p->cur.col, "metrics are numbers; compare metrics.%.60s with a number", id.key);
        else if (id.kind == 3 && k_attrs[id.attr].numeric && !num)
            s = perr(p, p->cur.col, "%s is a number", k_attrs[id.attr].name);
        if (s == ST_OK) {
            /* Numbers compare numerically with metrics, params and numeric
             * attributes; with tags and text attributes as their text. */
            bool numeric = num && (id.kind <= 1 || (id.kind == 3 && k_attrs[id.attr].numeric));
            s = emit(p, "(");
            if (s == ST_OK) s = emit_ident(p, &id, numeric);
            if (s == ST_OK) s = emit(p, sqlop);
            if (s == ST_OK)
                s = emit_param(p, numeric ? st__db_real(p->cur.num) : st__db_text(p->cur.text),
                               p->cur.col);
            if (s == ST_OK) s = emit(p, ")");
        }
    }
    if (s == ST_OK) s = next(p);
    st_free(keep);
    return s;
}

static st_status parse_unary(parser *p) {
    if (++p->depth > MAX_DEPTH) return perr(p, p->cur.col, "nested deeper than %d", MAX_DEPTH);
    st_status s;
    if (is_kw(&p->cur, "not")) {
        ST_TRY(next(p));
        ST_TRY(emit(p, "(NOT "));
        s = parse_unary(p);
        if (s == ST_OK) s = emit(p, ")");
    } else if (p->cur.kind == T_LP) {
        int col = p->cur.col;
        ST_TRY(next(p));
        ST_TRY(emit(p, "("));
        s = parse_or(p);
        if (s == ST_OK && p->cur.kind != T_RP) {
            char d[64];
            s = perr(p, p->cur.col, "expected ')' to close the '(' at column %d, found %s", col,
                     tok_desc(&p->cur, d, sizeof d));
        }
        if (s == ST_OK) s = emit(p, ")");
        if (s == ST_OK) s = next(p);
    } else {
        s = parse_cmp(p);
    }
    p->depth--;
    return s;
}

static st_status parse_and(parser *p) {
    ST_TRY(parse_unary(p));
    while (is_kw(&p->cur, "and")) {
        ST_TRY(next(p));
        ST_TRY(emit(p, " AND "));
        ST_TRY(parse_unary(p));
    }
    return ST_OK;
}

static st_status parse_or(parser *p) {
    ST_TRY(parse_and(p));
    while (is_kw(&p->cur, "or")) {
        ST_TRY(next(p));
        ST_TRY(emit(p, " OR "));
        ST_TRY(parse_and(p));
    }
    return ST_OK;
}

void st__sqlfrag_free(st__sqlfrag *f) {
    if (!f) return;
    st_free(f->sql);
    for (int i = 0; i < f->n_params; i++)
        if (f->params[i].type == ST__DB_TEXT) st_free((char *)f->params[i].s);
    f->sql = NULL;
    f->n_params = 0;
}

static st_status begin(parser *p, const char *src, int first_param, st__sqlfrag *out) {
    memset(p, 0, sizeof *p);
    memset(out, 0, sizeof *out);
    p->src = src ? src : "";
    p->next_param = first_param;
    p->out = out;
    if (strlen(p->src) > MAX_FILTER_BYTES)
        return st__fail(ST_ERR_INVALID_ARG, "filter: longer than %d bytes", MAX_FILTER_BYTES);
    return emit(p, "");
}

st_status st__filter_compile(const char *filter, int first_param, st__sqlfrag *out) {
    parser p;
    st_status s = begin(&p, filter, first_param, out);
    if (s == ST_OK) s = next(&p);
    if (s == ST_OK && p.cur.kind == T_END) {
        s = emit(&p, "1=1");
    } else if (s == ST_OK) {
        s = parse_or(&p);
        if (s == ST_OK && p.cur.kind != T_END) {
            char d[64];
            s = perr(&p, p.cur.col, "expected 'and', 'or' or the end, found %s",
                     tok_desc(&p.cur, d, sizeof d));
        }
    }
    tok_clear(&p.cur);
    if (s != ST_OK) st__sqlfrag_free(out);
    return s;
}

st_status st__sort_compile(const char *sort, int first_param, st__sqlfrag *out) {
    parser p;
    if (!sort || !*sort) sort = "-start_time";
    bool desc = false;
    const char *src = sort;
    if (*src == '-' || *src == '+') desc = *src == '-', src++;
    st_status s = begin(&p, src, first_param, out);
    if (s == ST_OK) s = next(&p);
    ident id;
    if (s == ST_OK) s = parse_ident(&p, &id);
    if (s == ST_OK) {
        char *keep = p.cur.text;
        p.cur.text = NULL;
        id.key = id.kind < 3 ? strchr(keep, '.') + 1 : NULL;
        s = next(&p);
        if (s == ST_OK && p.cur.kind != T_END)
            s = perr(&p, p.cur.col, "a sort key is one name with an optional '-' before it");
        /* NULLs last on both backends; params by number, then by text. The
         * key is bound once and its placeholder reused. */
        bool num = id.kind == 0 || id.kind == 1 || (id.kind == 3 && k_attrs[id.attr].numeric);
        const char *dir = desc ? " DESC" : " ASC";
        int ph = p.next_param;
        if (s == ST_OK) s = emit_ident_r(&p, &id, num, 0);
        if (s == ST_OK) s = emit(&p, " IS NULL, ");
        if (s == ST_OK) s = emit_ident_r(&p, &id, num, id.kind < 3 ? ph : 0);
        if (s == ST_OK) s = emit(&p, dir);
        if (s == ST_OK && id.kind == 1) {
            s = emit(&p, ", ");
            if (s == ST_OK) s = emit_ident_r(&p, &id, false, ph);
            if (s == ST_OK) s = emit(&p, dir);
        }
        if (s == ST_OK) s = emit(&p, desc ? ", r.start_time DESC" : ", r.start_time ASC");
        st_free(keep);
    }
    tok_clear(&p.cur);
    if (s != ST_OK) st__sqlfrag_free(out);
    return s;
}

st_status st_track_filter_check(const char *filter) {
    st__sqlfrag f;
    ST_TRY(st__filter_compile(filter, 1, &f));
    st__sqlfrag_free(&f);
    return ST_OK;
}

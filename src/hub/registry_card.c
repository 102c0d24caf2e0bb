/*
 * registry_card.c — the model card's YAML front matter (strata/registry.h).
 *
 * Why by hand: a model card's front matter (Hugging Face's convention) is a
 * handful of flat keys — license, base_model, datasets, tags, metrics — and
 * no YAML library is in the project's dependency list. This reader takes
 * only that subset: top-level "key: scalar", "key:" followed by "  - item"
 * lines (a list) or "  name: value" lines (a one-level map, used for
 * metrics), and inline "[a, b]" lists; quotes are stripped. Anything else
 * (anchors, block scalars, deeper nesting) is skipped line by line, never
 * interpreted. It is bounded: the front matter is at most
 * ST_REGISTRY_MAX_CARD_BYTES, each list at most ST_CARD_MAX_ITEMS, each
 * value at most 1 KiB. Pure function of its input; no shared state.
 */
#include <string.h>

#include "registry_impl.h"

#define MAX_VALUE 1024

void st_registry_card_free(st_registry_card *c) {
    if (!c) return;
    st_free(c->license);
    st_free(c->base_model);
    for (int i = 0; i < c->n_datasets; i++) st_free(c->datasets[i]);
    for (int i = 0; i < c->n_tags; i++) st_free(c->tags[i]);
    for (int i = 0; i < c->n_metrics; i++) {
        st_free(c->metric_names[i]);
        st_free(c->metric_values[i]);
    }
    st_free(c->body);
    memset(c, 0, sizeof *c);
}

/* A trimmed, unquoted copy of [b, e) (at most MAX_VALUE bytes). */
static char *scalar(const char *b, const char *e) {
    while (b < e && (*b == ' ' || *b == '\t')) b++;
    while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
    if (e - b >= 2 && ((*b == '"' && e[-1] == '"') || (*b == '\'' && e[-1] == '\''))) b++, e--;
    size_t n = (size_t)(e - b);
    if (n > MAX_VALUE) n = MAX_VALUE;
    char *s = st_malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, b, n);
    s[n] = '\0';
    return s;
}

static st_status push_item(char **arr, int *n, const char *b, const char *e, const char *src) {
    if (*n >= ST_CARD_MAX_ITEMS) return ST_OK; /* bounded: extra items dropped */
    char *s = scalar(b, e);
    if (!s) return st__fail(ST_ERR_NOMEM, "%s: no memory", src);
    if (!*s) {
        st_free(s);
        return ST_OK;
    }
    arr[(*n)++] = s;
    return ST_OK;
}

/* "[a, b, c]" into arr. */
static st_status inline_list(char **arr, int *n, const char *b, const char *e, const char *src) {
    while (b < e && *b != '[') b++;
    if (b == e) return ST_OK;
    b++;
    while (e > b && e[-1] != ']') e--;
    if (e > b) e--;
    const char *p = b;
    for (const char *q = b; q <= e; q++) {
        if (q == e || *q == ',') {
            ST_TRY(push_item(arr, n, p, q, src));
            p = q + 1;
        }
    }
    return ST_OK;
}

st_status st_registry_card_parse(const char *text, size_t n, const char *source, st_registry_card *c) {
    memset(c, 0, sizeof *c);
    const char *src = source ? source : "README.md";
    const char *end = text + n, *body = text;
    st_status s = ST_OK;
    if (n >= 3 && !strncmp(text, "---", 3) && (n == 3 || text[3] == '\n' || text[3] == '\r')) {
        const char *p = memchr(text, '\n', n);
        p = p ? p + 1 : end;
        const char *fm = p, *close = NULL;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *le = nl ? nl : end;
            if (le - p >= 3 && !strncmp(p, "---", 3)) {
                const char *q = p + 3;
                while (q < le && (*q == ' ' || *q == '\r')) q++;
                if (q == le) {
                    close = p;
                    body = nl ? nl + 1 : end;
                    break;
                }
            }
            p = nl ? nl + 1 : end;
        }
        if (!close) return st__fail(ST_ERR_FORMAT, "%s: front matter opened with --- is never closed", src);
        if ((size_t)(close - fm) > ST_REGISTRY_MAX_CARD_BYTES)
            return st__fail(ST_ERR_FORMAT, "%s: front matter of %zu bytes is over the limit (%u)", src,
                            (size_t)(close - fm), ST_REGISTRY_MAX_CARD_BYTES);
        /* line by line; `cur` is the top-level key an indented line belongs to */
        enum { K_NONE, K_DATASETS, K_TAGS, K_METRICS, K_OTHER } cur = K_NONE;
        for (p = fm; s == ST_OK && p < close;) {
            const char *nl = memchr(p, '\n', (size_t)(close - p));
            const char *le = nl ? nl : close;
            const char *q = p;
            while (q < le && *q == ' ') q++;
            bool indented = q > p;
            if (q == le || *q == '#') {
                /* blank or comment */
            } else if (!indented) {
                const char *colon = memchr(q, ':', (size_t)(le - q));
                cur = K_OTHER;
                if (colon) {
                    size_t kl = (size_t)(colon - q);
                    const char *v = colon + 1;
                    const char *vb = v;
                    while (vb < le && (*vb == ' ' || *vb == '\t' || *vb == '\r')) vb++;
                    bool has_value = vb < le;
                    if (kl == 7 && !strncmp(q, "license", 7) && has_value) {
                        st_free(c->license);
                        if (!(c->license = scalar(v, le))) s = st__fail(ST_ERR_NOMEM, "%s: no memory", src);
                    } else if (kl == 10 && !strncmp(q, "base_model", 10) && has_value) {
                        st_free(c->base_model);
                        if (!(c->base_model = scalar(v, le))) s = st__fail(ST_ERR_NOMEM, "%s: no memory", src);
                    } else if (kl == 8 && !strncmp(q, "datasets", 8)) {
                        cur = K_DATASETS;
                        if (has_value) s = *vb == '[' ? inline_list(c->datasets, &c->n_datasets, vb, le, src)
                                                      : push_item(c->datasets, &c->n_datasets, vb, le, src);
                    } else if (kl == 4 && !strncmp(q, "tags", 4)) {
                        cur = K_TAGS;
                        if (has_value) s = *vb == '[' ? inline_list(c->tags, &c->n_tags, vb, le, src)
                                                      : push_item(c->tags, &c->n_tags, vb, le, src);
                    } else if (kl == 7 && !strncmp(q, "metrics", 7)) {
                        cur = K_METRICS;
                    }
                }
            } else if (cur == K_DATASETS || cur == K_TAGS) {
                if (*q == '-') {
                    if (cur == K_DATASETS) s = push_item(c->datasets, &c->n_datasets, q + 1, le, src);
                    else s = push_item(c->tags, &c->n_tags, q + 1, le, src);
                }
            } else if (cur == K_METRICS) {
                const char *b = q;
                if (*b == '-') b++;
                while (b < le && *b == ' ') b++;
                const char *colon = memchr(b, ':', (size_t)(le - b));
                if (colon && c->n_metrics < ST_CARD_MAX_ITEMS && colon > b) {
                    char *k = scalar(b, colon), *v = scalar(colon + 1, le);
                    if (!k || !v) {
                        st_free(k);
                        st_free(v);
                        s = st__fail(ST_ERR_NOMEM, "%s: no memory", src);
                    } else if (!*v) { /* a nested map below: skipped */
                        st_free(k);
                        st_free(v);
                    } else {
                        c->metric_names[c->n_metrics] = k;
                        c->metric_values[c->n_metrics++] = v;
                    }
                }
            }
            p = nl ? nl + 1 : close;
        }
    }
    if (s == ST_OK) {
        size_t bn = (size_t)(end - body);
        c->body = st_malloc(bn + 1);
        if (!c->body) s = st__fail(ST_ERR_NOMEM, "%s: no memory", src);
        else {
            memcpy(c->body, body, bn);
            c->body[bn] = '\0';
        }
    }
    if (s != ST_OK) st_registry_card_free(c);
    return s;
}

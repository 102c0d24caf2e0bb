/*
 * strbuf.c — st_strbuf, the one growable string of the library (strata/base.h):
 * doubling growth, a sticky failure flag so builders check once at the end,
 * and an optional length bound for text built from outside data.
 */
#include "strata/base.h"

#include <stdio.h>
#include <string.h>

st_status st_strbuf_put(st_strbuf *b, const void *s, size_t n) {
    if (b->failed) return ST_ERR_NOMEM;
    if (b->max_bytes && b->len + n > b->max_bytes) {
        b->failed = true;
        return st__fail(ST_ERR_BOUNDS, "text of more than %zu bytes", b->max_bytes);
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = st_realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return st__fail(ST_ERR_NOMEM, "out of memory for %zu bytes of text", cap);
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return ST_OK;
}

st_status st_strbuf_puts(st_strbuf *b, const char *s) { return st_strbuf_put(b, s, strlen(s)); }

st_status st_strbuf_printf(st_strbuf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return st__fail(ST_ERR_INTERNAL, "st_strbuf_printf: bad format");
    }
    if ((size_t)n < sizeof small) return st_strbuf_put(b, small, (size_t)n);
    char *big = st_malloc((size_t)n + 1);
    if (!big) {
        b->failed = true;
        return ST_ERR_NOMEM;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    st_status s = st_strbuf_put(b, big, (size_t)n);
    st_free(big);
    return s;
}

void st_strbuf_free(st_strbuf *b) {
    if (!b) return;
    st_free(b->p);
    memset(b, 0, sizeof *b);
}

/*
 * rag_extract.c — text extraction for the RAG index: the bytes of a file
 * become one UTF-8 text (paragraphs separated by blank lines) plus a map
 * from each extracted line to the source lines it came from (rag_impl.h).
 *
 * Formats: plain text and Markdown as they are (the map is the identity);
 * HTML through libxml2's HTML parser (script, style, noscript and template
 * dropped; block elements end paragraphs; inline whitespace collapsed as a
 * browser would; <pre> kept verbatim; line numbers from the parser's
 * nodes); JSON Lines through jansson (a record's "text" string, else all of
 * its top-level strings; one paragraph per record; a malformed line is
 * skipped and counted as a warning); Parquet through strata/parquet.h (the
 * flat string columns of each row joined, one paragraph per row, rows
 * numbered as lines); PDF through poppler-glib (each page's text, the page
 * number as its line).
 *
 * Every input is checked before it is used: text formats must hold no NUL
 * byte (binary) and be valid UTF-8 (a file that is not is refused naming
 * the byte offset: we do not guess encodings); extracted text is bounded.
 * Everything allocated is owned by the st__rag_text or freed before return.
 * Thread-safe: no shared state (libxml2 and poppler are used per call).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <jansson.h>
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>
#include <poppler.h>
#include <string.h>
#include <strings.h>

#include "data/tokenizer_impl.h"
#include "rag_impl.h"
#include "strata/parquet.h"

#define DEFAULT_MAX_TEXT ((size_t)256 << 20)

/* ---- formats --------------------------------------------------------------------- */

st__rag_format st__rag_format_of(const char *path) {
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) return ST__RAG_TEXT;
    dot++;
    if (!strcasecmp(dot, "md") || !strcasecmp(dot, "markdown")) return ST__RAG_MARKDOWN;
    if (!strcasecmp(dot, "html") || !strcasecmp(dot, "htm") || !strcasecmp(dot, "xhtml"))
        return ST__RAG_HTML;
    if (!strcasecmp(dot, "jsonl") || !strcasecmp(dot, "ndjson")) return ST__RAG_JSONL;
    if (!strcasecmp(dot, "parquet")) return ST__RAG_PARQUET;
    if (!strcasecmp(dot, "pdf")) return ST__RAG_PDF;
    return ST__RAG_TEXT;
}

const char *st__rag_format_name(st__rag_format f) {
    switch (f) {
    case ST__RAG_MARKDOWN: return "markdown";
    case ST__RAG_HTML: return "html";
    case ST__RAG_JSONL: return "jsonl";
    case ST__RAG_PARQUET: return "parquet";
    case ST__RAG_PDF: return "pdf";
    default: return "text";
    }
}

/* ---- the text builder ------------------------------------------------------------ */

void st__rag_text_free(st__rag_text *t) {
    if (!t) return;
    st_strbuf_free(&t->buf);
    st_free(t->line_off);
    st_free(t->src_first);
    st_free(t->src_last);
    memset(t, 0, sizeof *t);
}

static st_status new_line(st__rag_text *t, int32_t line) {
    if (t->n_lines == t->cap_lines) {
        int64_t cap = t->cap_lines ? t->cap_lines * 2 : 256;
        int64_t *o = st_realloc(t->line_off, (size_t)cap * sizeof *o);
        if (!o) return st__fail(ST_ERR_NOMEM, "rag: no memory for the line map");
        t->line_off = o;
        int32_t *a = st_realloc(t->src_first, (size_t)cap * sizeof *a);
        if (!a) return st__fail(ST_ERR_NOMEM, "rag: no memory for the line map");
        t->src_first = a;
        int32_t *b = st_realloc(t->src_last, (size_t)cap * sizeof *b);
        if (!b) return st__fail(ST_ERR_NOMEM, "rag: no memory for the line map");
        t->src_last = b;
        t->cap_lines = cap;
    }
    t->line_off[t->n_lines] = (int64_t)t->buf.len;
    t->src_first[t->n_lines] = line;
    t->src_last[t->n_lines] = line;
    t->n_lines++;
    return ST_OK;
}

static bool at_line_start(const st__rag_text *t) {
    return t->buf.len == 0 || t->buf.p[t->buf.len - 1] == '\n';
}

/* Appends one run of bytes without '\n' on source line `line`. */
static st_status put_run(st__rag_text *t, const char *s, size_t n, int32_t line) {
    if (!n) return ST_OK;
    if (at_line_start(t)) ST_TRY(new_line(t, line));
    if (line > t->src_last[t->n_lines - 1]) t->src_last[t->n_lines - 1] = line;
    return st_strbuf_put(&t->buf, s, n);
}

static st_status put_newline(st__rag_text *t, int32_t line) {
    if (at_line_start(t)) ST_TRY(new_line(t, line)); /* an empty line has a record too */
    return st_strbuf_put(&t->buf, "\n", 1);
}

st_status st__rag_text_put(st__rag_text *t, const char *s, size_t n, int32_t line, bool advance) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '\n') j++;
        size_t e = j;
        if (j < n && e > i && s[e - 1] == '\r') e--; /* CRLF */
        ST_TRY(put_run(t, s + i, e - i, line));
        if (j < n) {
            ST_TRY(put_newline(t, line));
            if (advance) line++;
        }
        i = j + 1;
    }
    return ST_OK;
}

st_status st__rag_text_para(st__rag_text *t) {
    t->pending_space = false;
    if (t->buf.len == 0) return ST_OK;
    int32_t line = t->src_last[t->n_lines - 1];
    if (t->buf.p[t->buf.len - 1] != '\n') ST_TRY(st_strbuf_put(&t->buf, "\n", 1));
    if (t->buf.len >= 2 && t->buf.p[t->buf.len - 2] == '\n') return ST_OK;
    return put_newline(t, line);
}

/* Collapsing append (HTML inline text): whitespace runs become one space,
 * none at a line start; '\n' still advances the source line. */
static st_status put_collapsed(st__rag_text *t, const char *s, size_t n, int32_t line) {
    size_t i = 0;
    while (i < n) {
        if (isspace((unsigned char)s[i])) {
            if (s[i] == '\n') line++;
            t->pending_space = true;
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && !isspace((unsigned char)s[j])) j++;
        if (t->pending_space && !at_line_start(t) && t->buf.p[t->buf.len - 1] != ' ')
            ST_TRY(put_run(t, " ", 1, line));
        t->pending_space = false;
        ST_TRY(put_run(t, s + i, j - i, line));
        i = j;
    }
    return ST_OK;
}

static void add_warning(st__rag_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_warning(st__rag_text *t, const char *fmt, ...) {
    if (t->n_warnings++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->warning, sizeof t->warning, fmt, ap);
        va_end(ap);
    }
}

/* ---- checks ----------------------------------------------------------------------- */

static st_status check_text(const uint8_t *p, size_t n, const char *name) {
    const void *nul = memchr(p, 0, n);
    if (nul)
        return st__fail(ST_ERR_FORMAT, "%s: binary (a NUL byte at offset %zu)", name,
                        (size_t)((const uint8_t *)nul - p));
    size_t v = st__utf8_valid_prefix(p, n);
    if (v < n) return st__fail(ST_ERR_FORMAT, "%s: not UTF-8 (invalid byte at offset %zu)", name, v);
    return ST_OK;
}

static bool has_text(const st__rag_text *t) {
    for (size_t i = 0; i < t->buf.len; i++)
        if (!isspace((unsigned char)t->buf.p[i])) return true;
    return false;
}

/* ---- plain text, Markdown ------------------------------------------------------- */

static st_status extract_plain(const char *s, size_t n, st__rag_text *t) {
    if (n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) s += 3, n -= 3; /* BOM */
    return st__rag_text_put(t, s, n, 1, true);
}

/* ---- HTML ------------------------------------------------------------------------- */

static bool name_in(const xmlChar *name, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (!strcasecmp((const char *)name, list[i])) return true;
    return false;
}

static const char *const k_skip[] = {"script", "style", "noscript", "template", NULL};
static const char *const k_block[] = {
    "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol", "dl", "dt", "dd",
    "table", "thead", "tbody", "tfoot", "tr", "pre", "blockquote", "section", "article",
    "header", "footer", "nav", "aside", "main", "title", "hr", "figure", "figcaption",
    "address", "form", "fieldset", "details", "summary", "caption", "body", "html", NULL};
static const char *const k_cell[] = {"td", "th", NULL};

static int32_t node_line(xmlNode *n) {
    long l = xmlGetLineNo(n);
    return l > 0 && l < INT32_MAX ? (int32_t)l : 1;
}

static st_status extract_html(const char *s, size_t n, const char *name, st__rag_text *t) {
    if (n > INT32_MAX) return st__fail(ST_ERR_BOUNDS, "%s: HTML over 2 GiB", name);
    htmlDocPtr doc = htmlReadMemory(s, (int)n, name, "UTF-8",
                                    HTML_PARSE_RECOVER | HTML_PARSE_NOERROR |
                                        HTML_PARSE_NOWARNING | HTML_PARSE_NONET);
    if (!doc) return st__fail(ST_ERR_FORMAT, "%s: libxml2 could not parse the HTML", name);
    st_status s_ = ST_OK;
    int pre_depth = 0;
    xmlNode *root = xmlDocGetRootElement(doc);
    xmlNode *cur = root;
    /* iterative depth-first walk (no recursion: deep documents cannot
     * exhaust the stack); on the way down and up block elements end
     * paragraphs */
    while (cur && s_ == ST_OK) {
        bool descend = false;
        if (cur->type == XML_ELEMENT_NODE) {
            if (!name_in(cur->name, k_skip)) {
                if (name_in(cur->name, k_block)) s_ = st__rag_text_para(t);
                else if (!strcasecmp((const char *)cur->name, "br"))
                    s_ = put_newline(t, node_line(cur)), t->pending_space = false;
                else if (name_in(cur->name, k_cell)) t->pending_space = true;
                if (!strcasecmp((const char *)cur->name, "pre")) pre_depth++;
                descend = cur->children != NULL;
                if (!descend && !strcasecmp((const char *)cur->name, "pre")) pre_depth--;
            }
        } else if ((cur->type == XML_TEXT_NODE || cur->type == XML_CDATA_SECTION_NODE) &&
                   cur->content) {
            const char *c = (const char *)cur->content;
            /* libxml2 stamps a text node with the line where its text ends */
            int32_t line = node_line(cur);
            for (const char *q = strchr(c, '\n'); q; q = strchr(q + 1, '\n')) line--;
            if (line < 1) line = 1;
            if (pre_depth > 0) {
                if (t->pending_space && !at_line_start(t)) s_ = put_run(t, " ", 1, line);
                t->pending_space = false;
                if (s_ == ST_OK) s_ = st__rag_text_put(t, c, strlen(c), line, true);
            } else {
                s_ = put_collapsed(t, c, strlen(c), line);
            }
        }
        if (s_ != ST_OK) break;
        if (descend) {
            cur = cur->children;
            continue;
        }
        /* next: a sibling, else climb closing blocks */
        while (cur && cur != root && !cur->next) {
            cur = cur->parent;
            if (cur && cur->type == XML_ELEMENT_NODE) {
                if (!strcasecmp((const char *)cur->name, "pre")) pre_depth--;
                if (name_in(cur->name, k_block)) s_ = st__rag_text_para(t);
            }
            if (s_ != ST_OK) break;
        }
        if (!cur || cur == root) break;
        cur = cur->next;
    }
    xmlFreeDoc(doc);
    return s_;
}

/* ---- JSON Lines -------------------------------------------------------------------- */

static st_status put_record_string(st__rag_text *t, const char *v, size_t n, int32_t line,
                                   bool *first) {
    if (!n) return ST_OK;
    if (!*first) ST_TRY(st__rag_text_put(t, "\n", 1, line, false));
    *first = false;
    return st__rag_text_put(t, v, n, line, false);
}

static st_status extract_jsonl(const char *s, size_t n, const char *name, st__rag_text *t) {
    int32_t line = 0;
    int64_t n_records = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '\n') j++;
        line++;
        size_t e = j;
        while (e > i && isspace((unsigned char)s[e - 1])) e--;
        size_t b = i;
        while (b < e && isspace((unsigned char)s[b])) b++;
        i = j + 1;
        if (b == e) continue;
        json_error_t err;
        json_t *rec = json_loadb(s + b, e - b, JSON_DECODE_ANY, &err);
        if (!rec) {
            add_warning(t, "%s:%d: not JSON (%s); line skipped", name, (int)line, err.text);
            continue;
        }
        bool first = true;
        st_status st = ST_OK;
        json_t *text = json_is_object(rec) ? json_object_get(rec, "text") : NULL;
        if (json_is_string(rec)) {
            st = put_record_string(t, json_string_value(rec), json_string_length(rec), line, &first);
        } else if (json_is_string(text)) {
            st = put_record_string(t, json_string_value(text), json_string_length(text), line, &first);
        } else if (json_is_object(rec)) {
            const char *k;
            json_t *v;
            json_object_foreach(rec, k, v) {
                if (json_is_string(v) && st == ST_OK)
                    st = put_record_string(t, json_string_value(v), json_string_length(v), line,
                                           &first);
            }
        }
        json_decref(rec);
        ST_TRY(st);
        if (first) {
            add_warning(t, "%s:%d: a record with no string field; skipped", name, (int)line);
            continue;
        }
        n_records++;
        ST_TRY(st__rag_text_para(t));
    }
    if (n_records == 0 && t->n_warnings > 0)
        return st__fail(ST_ERR_FORMAT, "%s: no JSON Lines record with text (%s)", name, t->warning);
    return ST_OK;
}

/* ---- Parquet ----------------------------------------------------------------------- */

static bool is_string_column(const st_parquet_file *f, int c) {
    const st_pq_node *nd = st_parquet_node(f, st_parquet_column_node(f, c));
    if (!nd || nd->physical != ST_PQ_BYTE_ARRAY || nd->max_rep != 0) return false;
    return nd->logical == ST_PQ_LT_STRING || nd->logical == ST_PQ_LT_JSON ||
           nd->logical == ST_PQ_LT_ENUM;
}

static st_status extract_parquet(const void *data, size_t n, const char *name, st__rag_text *t) {
    st_parquet_file *f = NULL;
    ST_TRY(st_parquet_open_memory(data, n, name, NULL, &f));
    int nc = st_parquet_n_columns(f), n_str = 0;
    int *cols = st_malloc((size_t)(nc > 0 ? nc : 1) * sizeof *cols);
    st_pq_column **cc = st_calloc((size_t)(nc > 0 ? nc : 1), sizeof *cc);
    st_status s = ST_OK;
    if (!cols || !cc) s = st__fail(ST_ERR_NOMEM, "%s: no memory", name);
    for (int c = 0; s == ST_OK && c < nc; c++)
        if (is_string_column(f, c)) cols[n_str++] = c;
    if (s == ST_OK && n_str == 0)
        s = st__fail(ST_ERR_FORMAT, "%s: no flat string column to index", name);
    int64_t row0 = 0;
    for (int rg = 0; s == ST_OK && rg < st_parquet_n_row_groups(f); rg++) {
        for (int k = 0; s == ST_OK && k < n_str; k++)
            s = st_parquet_read_column(f, rg, cols[k], &cc[k]);
        int64_t rows = st_parquet_row_group_rows(f, rg);
        for (int64_t r = 0; s == ST_OK && r < rows; r++) {
            int64_t row = row0 + r + 1;
            int32_t line = row < INT32_MAX ? (int32_t)row : INT32_MAX;
            bool first = true;
            for (int k = 0; s == ST_OK && k < n_str; k++) {
                const uint8_t *p;
                size_t len;
                if (!cc[k] || !st_pq_column_string(cc[k], r, &p, &len)) continue;
                if (st__utf8_valid_prefix(p, len) < len || memchr(p, 0, len)) {
                    add_warning(t, "%s: row %lld column %s: not UTF-8 text; value skipped", name,
                                (long long)row, st_parquet_column_path(f, cols[k]));
                    continue;
                }
                s = put_record_string(t, (const char *)p, len, line, &first);
            }
            if (s == ST_OK && !first) s = st__rag_text_para(t);
        }
        for (int k = 0; k < n_str; k++) {
            st_pq_column_free(cc[k]);
            cc[k] = NULL;
        }
        row0 += rows;
    }
    st_free(cc);
    st_free(cols);
    st_parquet_close(f);
    return s;
}

/* ---- PDF -------------------------------------------------------------------------- */

static st_status extract_pdf(const void *data, size_t n, const char *name, st__rag_text *t) {
    if (n < 5 || memcmp(data, "%PDF-", 5) != 0)
        return st__fail(ST_ERR_FORMAT, "%s: not a PDF (no %%PDF- header)", name);
    GBytes *bytes = g_bytes_new(data, n);
    GError *err = NULL;
    PopplerDocument *doc = poppler_document_new_from_bytes(bytes, NULL, &err);
    if (!doc) {
        st_status s = st__fail(ST_ERR_FORMAT, "%s: poppler could not open the PDF: %s", name,
                               err && err->message ? err->message : "unknown error");
        if (err) g_error_free(err);
        g_bytes_unref(bytes);
        return s;
    }
    st_status s = ST_OK;
    int np = poppler_document_get_n_pages(doc);
    for (int i = 0; s == ST_OK && i < np; i++) {
        PopplerPage *page = poppler_document_get_page(doc, i);
        if (!page) continue;
        char *txt = poppler_page_get_text(page);
        if (txt) {
            size_t len = strlen(txt);
            if (st__utf8_valid_prefix((const uint8_t *)txt, len) == len) {
                s = st__rag_text_put(t, txt, len, i + 1, false);
                if (s == ST_OK) s = st__rag_text_para(t);
            } else {
                add_warning(t, "%s: page %d: text not UTF-8; page skipped", name, i + 1);
            }
            g_free(txt);
        }
        g_object_unref(page);
    }
    g_object_unref(doc);
    g_bytes_unref(bytes);
    return s;
}

/* ---- dispatch ----------------------------------------------------------------------- */

st_status st__rag_extract(st__rag_format f, const void *data, size_t n, const char *name,
                          size_t max_text_bytes, st__rag_text *out) {
    if (!data && n) return st__fail(ST_ERR_INVALID_ARG, "st__rag_extract: NULL data");
    out->buf.max_bytes = max_text_bytes ? max_text_bytes : DEFAULT_MAX_TEXT;
    if (n == 0) return st__fail(ST_ERR_FORMAT, "%s: empty file", name);
    st_status s;
    switch (f) {
    case ST__RAG_PARQUET: s = extract_parquet(data, n, name, out); break;
    case ST__RAG_PDF: s = extract_pdf(data, n, name, out); break;
    default:
        ST_TRY(check_text(data, n, name));
        if (f == ST__RAG_HTML) s = extract_html(data, n, name, out);
        else if (f == ST__RAG_JSONL) s = extract_jsonl(data, n, name, out);
        else s = extract_plain(data, n, out);
    }
    if (s != ST_OK) {
        if (s == ST_ERR_BOUNDS)
            return st__fail(ST_ERR_BOUNDS, "%s: extracted text over the limit of %zu bytes", name,
                            out->buf.max_bytes);
        return s;
    }
    if (!has_text(out)) return st__fail(ST_ERR_FORMAT, "%s: no text", name);
    return ST_OK;
}

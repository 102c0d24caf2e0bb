/*
 * test_rag.c — the RAG layer (src/app/rag*.c, strata/app.h).
 *
 * References: the fixtures of tests/data/rag (README.md there says how each
 * was made) with their text and source lines known by construction; the
 * Parquet reader's expected values (tests/data/parquet/types.expected.jsonl,
 * read back by two independent writers' readers); reciprocal rank fusion
 * computed by hand; the chunker checked against the source file it came
 * from (every chunk's text lies on its recorded lines). Retrieval quality:
 * 38 questions over a frozen snapshot of the project's own docs
 * (tests/data/rag/docs; questions in tests/data/rag/questions.jsonl,
 * each with its doc and a phrase of its answer chunk); recall@5 of hybrid,
 * BM25 and vectors is printed and hybrid must match or beat both. Bad
 * files (binary, empty, not UTF-8, oversized, no text) must be skipped with
 * their reason; incremental runs must skip, replace and drop as app.h says.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "app/rag_impl.h"
#include "strata/app.h"
#include "strata/data.h"

#define FIX STRATA_SOURCE_DIR "/tests/data/rag"

static char g_dir[256];
static st_ctx *g_ctx;

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/strata_test_rag_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = 2;
    return st_ctx_new(&cp, &g_ctx) == ST_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    st_ctx_free(g_ctx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers ---------------------------------------------------------------------- */

static char *slurp(const char *path, size_t *n) {
    char *t = NULL;
    size_t m = 0;
    if (st_text_read_file(path, 0, &t, &m) != ST_OK) fail_msg("read %s: %s", path, st_last_error());
    if (n) *n = m;
    return t;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void extract_file(const char *path, st__rag_text *t) {
    size_t n;
    char *d = slurp(path, &n);
    memset(t, 0, sizeof *t);
    st_status s = st__rag_extract(st__rag_format_of(path), d, n, path, 0, t);
    if (s != ST_OK) fail_msg("extract %s: %s", path, st_last_error());
    st_free(d);
}

/* whitespace runs collapsed to one space, ends trimmed (malloc'd) */
static char *norm_ws(const char *s, size_t n) {
    char *o = malloc(n + 1);
    size_t k = 0;
    bool sp = false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
            sp = k > 0;
            continue;
        }
        if (sp) o[k++] = ' ';
        sp = false;
        o[k++] = s[i];
    }
    o[k] = 0;
    return o;
}

/* the extracted line holding needle: its index, -1 when absent */
static int64_t line_with(const st__rag_text *t, const char *needle) {
    const char *p = strstr(t->buf.p, needle);
    if (!p) return -1;
    int64_t off = p - t->buf.p, k = 0;
    while (k + 1 < t->n_lines && t->line_off[k + 1] <= off) k++;
    return k;
}

/* ---- extraction ------------------------------------------------------------------- */

static void test_extract_markdown(void **state) {
    (void)state;
    st__rag_text t;
    extract_file(FIX "/sample.md", &t);
    size_t n;
    char *src = slurp(FIX "/sample.md", &n);
    assert_int_equal(t.buf.len, n); /* text as it is */
    assert_memory_equal(t.buf.p, src, n);
    for (int64_t k = 0; k < t.n_lines; k++) { /* identity map */
        assert_int_equal(t.src_first[k], k + 1);
        assert_int_equal(t.src_last[k], k + 1);
    }
    st_free(src);
    st__rag_text_free(&t);
}

static void test_extract_html(void **state) {
    (void)state;
    st__rag_text t;
    extract_file(FIX "/page.html", &t);
    const char *s = t.buf.p;
    assert_non_null(strstr(s, "The keeper trims the wick every evening & polishes the lens."));
    assert_non_null(strstr(s, "Fog signals sound when visibility\ndrops below two miles."));
    assert_non_null(strstr(s, "Café crème for the keeper."));
    assert_non_null(strstr(s, "line one of pre\n  indented line two"));
    assert_null(strstr(s, "script text"));
    assert_null(strstr(s, "color: red"));
    assert_null(strstr(s, "noscript"));
    assert_non_null(strstr(s, "Log the weather\n\nWind the clockwork")); /* li: paragraphs */
    /* source lines (page.html: <p> on 15-16, <li> 20, <pre> text 23-24, Café 27) */
    int64_t k = line_with(&t, "polishes");
    assert_true(k >= 0);
    assert_int_equal(t.src_first[k], 15);
    assert_int_equal(t.src_last[k], 16);
    k = line_with(&t, "Wind the clockwork");
    assert_int_equal(t.src_first[k], 20);
    k = line_with(&t, "indented line two");
    assert_int_equal(t.src_first[k], 24);
    k = line_with(&t, "Café");
    assert_int_equal(t.src_first[k], 27);
    st__rag_text_free(&t);
}

static void test_extract_jsonl(void **state) {
    (void)state;
    st__rag_text t;
    extract_file(FIX "/records.jsonl", &t);
    const char *s = t.buf.p;
    assert_non_null(strstr(s, "Otters use stones to crack open shellfish."));
    assert_non_null(strstr(s, "Beavers build dams from branches and mud."));
    assert_non_null(strstr(s, "A bare JSON string is a record too."));
    assert_non_null(strstr(s, "Line one of a record.\nLine two of the same record."));
    assert_null(strstr(s, "broken record"));
    assert_int_equal(t.n_warnings, 2); /* line 4: not JSON; line 6: no string */
    assert_non_null(strstr(t.warning, ":4:"));
    assert_int_equal(t.src_first[line_with(&t, "Otters")], 1);
    assert_int_equal(t.src_first[line_with(&t, "Beavers build")], 3);
    assert_int_equal(t.src_first[line_with(&t, "bare JSON")], 5);
    assert_int_equal(t.src_first[line_with(&t, "Line two of the same")], 7);
    st__rag_text_free(&t);
}

static void test_extract_parquet(void **state) {
    (void)state;
    /* tests/data/parquet/types.duckdb.parquet: 1000 rows, string columns
     * name (nullable, some empty) and category; each row becomes its
     * non-empty strings joined by '\n', mapped to its 1-based row */
    st__rag_text t;
    extract_file(STRATA_SOURCE_DIR "/tests/data/parquet/types.duckdb.parquet", &t);
    FILE *f = fopen(STRATA_SOURCE_DIR "/tests/data/parquet/types.expected.jsonl", "r");
    assert_non_null(f);
    char line[65536];
    int row = 0, checked = 0;
    int64_t k = 0;
    while (fgets(line, sizeof line, f)) {
        row++;
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        assert_non_null(j);
        char expect[4096] = "";
        const char *cols[2] = {"name", "category"};
        for (int c = 0; c < 2; c++) {
            json_t *v = json_object_get(j, cols[c]);
            if (json_is_string(v) && json_string_length(v)) {
                if (expect[0]) strcat(expect, "\n");
                strncat(expect, json_string_value(v), sizeof expect - strlen(expect) - 2);
            }
        }
        json_decref(j);
        if (!expect[0]) continue;
        /* the lines of this row, from extracted line k on */
        while (k < t.n_lines && t.src_first[k] < row) k++;
        assert_true(k < t.n_lines);
        int64_t b = t.line_off[k], e = b;
        int64_t k2 = k;
        while (k2 < t.n_lines && t.src_first[k2] == row) k2++;
        e = k2 < t.n_lines ? t.line_off[k2] : (int64_t)t.buf.len;
        while (e > b && t.buf.p[e - 1] == '\n') e--;
        if ((size_t)(e - b) != strlen(expect) || memcmp(t.buf.p + b, expect, (size_t)(e - b)))
            fail_msg("row %d: got '%.*s', expected '%s'", row, (int)(e - b), t.buf.p + b, expect);
        checked++;
        k = k2;
    }
    fclose(f);
    assert_int_equal(row, 1000);
    assert_true(checked > 900);
    st__rag_text_free(&t);
}

static void test_extract_pdf(void **state) {
    (void)state;
    st__rag_text t;
    extract_file(FIX "/sample.pdf", &t);
    assert_non_null(strstr(t.buf.p, "Page one talks about glaciers."));
    assert_non_null(strstr(t.buf.p, "Deserts receive little rain."));
    assert_int_equal(t.src_first[line_with(&t, "glaciers.")], 1); /* pages as lines */
    assert_int_equal(t.src_first[line_with(&t, "Deserts receive")], 2);
    st__rag_text_free(&t);
    /* not a PDF, a truncated one: ST_ERR_FORMAT naming the file */
    st__rag_text u = {0};
    assert_int_equal(st__rag_extract(ST__RAG_PDF, "hello", 5, "x.pdf", 0, &u), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "x.pdf"));
    st__rag_text_free(&u);
    size_t n;
    char *d = slurp(FIX "/sample.pdf", &n);
    memset(&u, 0, sizeof u);
    st_status s = st__rag_extract(ST__RAG_PDF, d, n / 3, "cut.pdf", 0, &u);
    assert_true(s == ST_ERR_FORMAT || s == ST_OK); /* poppler may recover text or refuse */
    st__rag_text_free(&u);
    st_free(d);
}

static void test_extract_refuses(void **state) {
    (void)state;
    struct {
        st__rag_format f;
        const char *data;
        size_t n;
        const char *why;
    } cases[] = {
        {ST__RAG_TEXT, "ab\0cd", 5, "binary"},
        {ST__RAG_TEXT, "caf\xe9 au lait", 12, "not UTF-8"},
        {ST__RAG_TEXT, "", 0, "empty"},
        {ST__RAG_TEXT, " \n\n \t", 5, "no text"},
        {ST__RAG_HTML, "<script>x()</script>", 20, "no text"},
        {ST__RAG_JSONL, "{bad\n[1,2\n", 10, "no JSON Lines record"},
        {ST__RAG_PARQUET, "PAR1xxxxPAR1", 12, "f.bin"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        st__rag_text t = {0};
        st_status s = st__rag_extract(cases[i].f, cases[i].data, cases[i].n, "f.bin", 0, &t);
        if (s == ST_OK || !strstr(st_last_error(), cases[i].why) || !strstr(st_last_error(), "f.bin"))
            fail_msg("case %zu: status %d, message '%s' (want '%s')", i, s, st_last_error(),
                     cases[i].why);
        st__rag_text_free(&t);
    }
    /* the extracted text is bounded */
    char big[4096];
    memset(big, 'a', sizeof big);
    for (size_t i = 50; i < sizeof big; i += 50) big[i] = ' ';
    st__rag_text t = {0};
    assert_int_equal(st__rag_extract(ST__RAG_TEXT, big, sizeof big, "big.txt", 1000, &t), ST_ERR_BOUNDS);
    st__rag_text_free(&t);
}

/* ---- chunking ----------------------------------------------------------------------- */

/* Every chunk's text lies on its recorded source lines: the normalised text
 * of lines line_start..line_end contains the normalised chunk, its first
 * line holds the chunk's first word and its last line the last word. */
static void check_chunks_against_source(const char *path, int chunk, int overlap) {
    st__rag_text t;
    extract_file(path, &t);
    size_t n;
    char *src = slurp(path, &n);
    /* source lines */
    const char *lines[4096];
    size_t lens[4096];
    int nl = 0;
    for (const char *p = src; p < src + n && nl < 4096;) {
        const char *e = memchr(p, '\n', (size_t)(src + n - p));
        if (!e) e = src + n;
        lines[nl] = p;
        lens[nl++] = (size_t)(e - p);
        p = e + 1;
    }
    st__rag_chunk *c;
    int64_t nc;
    assert_int_equal(st__rag_chunk_text(&t, chunk, overlap, NULL, NULL, &c, &nc), ST_OK);
    assert_true(nc > 1);
    for (int64_t i = 0; i < nc; i++) {
        assert_true(c[i].line_start >= 1 && c[i].line_start <= c[i].line_end && c[i].line_end <= nl);
        assert_true(c[i].n_tokens <= chunk);
        size_t tot = 0;
        for (int l = c[i].line_start; l <= c[i].line_end; l++) tot += lens[l - 1] + 1;
        char *joined = malloc(tot + 1), *q = joined;
        for (int l = c[i].line_start; l <= c[i].line_end; l++) {
            memcpy(q, lines[l - 1], lens[l - 1]);
            q += lens[l - 1];
            *q++ = '\n';
        }
        *q = 0;
        char *a = norm_ws(joined, tot), *b = norm_ws(t.buf.p + c[i].off, (size_t)c[i].len);
        if (!strstr(a, b)) fail_msg("%s chunk %lld (L%d-L%d) not on its lines", path, (long long)i,
                                    c[i].line_start, c[i].line_end);
        /* first and last words on the first and last lines */
        char first[64] = "", last[64] = "";
        sscanf(b, "%63s", first);
        const char *ls = strrchr(b, ' ');
        snprintf(last, sizeof last, "%s", ls ? ls + 1 : b);
        char *l0 = norm_ws(lines[c[i].line_start - 1], lens[c[i].line_start - 1]);
        char *l1 = norm_ws(lines[c[i].line_end - 1], lens[c[i].line_end - 1]);
        assert_non_null(strstr(l0, first));
        assert_non_null(strstr(l1, last));
        free(l0), free(l1), free(a), free(b), free(joined);
        if (i + 1 < nc) { /* overlap: the next chunk starts inside this one, or right after */
            assert_true(c[i + 1].off > c[i].off);
            if (overlap > 0) assert_true(c[i + 1].off < c[i].off + c[i].len);
        }
    }
    /* the chunks cover every word of the text */
    assert_int_equal(c[0].off, strspn(t.buf.p, " \n\t"));
    int64_t end = c[nc - 1].off + c[nc - 1].len;
    for (int64_t i = end; i < (int64_t)t.buf.len; i++) assert_true(strchr(" \n\t", t.buf.p[i]) != NULL);
    st_free(c);
    st_free(src);
    st__rag_text_free(&t);
}

static void test_chunk_lines(void **state) {
    (void)state;
    check_chunks_against_source(FIX "/sample.md", 30, 8);
    check_chunks_against_source(STRATA_SOURCE_DIR "/tests/data/rag/docs/L6-inference.md", 120, 25);
    check_chunks_against_source(STRATA_SOURCE_DIR "/tests/data/rag/docs/L5-tokenizers.md", 60, 0);
}

static void test_chunk_boundaries(void **state) {
    (void)state;
    /* sample.md, 30 tokens: chunks end where paragraphs (or sentences) end */
    st__rag_text t;
    extract_file(FIX "/sample.md", &t);
    st__rag_chunk *c;
    int64_t nc;
    assert_int_equal(st__rag_chunk_text(&t, 30, 8, NULL, NULL, &c, &nc), ST_OK);
    for (int64_t i = 0; i + 1 < nc; i++) {
        const char *e = t.buf.p + c[i].off + c[i].len;
        char last = e[-1];
        bool para = e[0] == '\n' && e[1] == '\n';
        if (!para && !strchr(".!?:", last))
            fail_msg("chunk %lld ends mid-sentence: '...%.20s'", (long long)i, e - 20);
        /* the overlap starts a sentence: after ". " or a line start */
        const char *s = t.buf.p + c[i + 1].off;
        assert_true(s == t.buf.p || s[-1] == '\n' || strchr(".!?:", s[-2]));
    }
    st_free(c);
    st__rag_text_free(&t);

    /* no punctuation at all: cut between words, overlap of exactly 10 words */
    st__rag_text u = {0};
    char w[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(w, sizeof w, "w%d ", i);
        assert_int_equal(st__rag_text_put(&u, w, strlen(w), 1, true), ST_OK);
    }
    assert_int_equal(st__rag_chunk_text(&u, 50, 10, NULL, NULL, &c, &nc), ST_OK);
    assert_int_equal(nc, 25); /* 50, then 40 new words each: 1 + ceil(950 / 40) */
    for (int64_t i = 0; i < nc; i++) {
        if (i + 1 < nc) assert_int_equal(c[i].n_tokens, 50);
        int first;
        assert_int_equal(sscanf(u.buf.p + c[i].off, "w%d", &first), 1);
        assert_int_equal(first, 40 * i);
    }
    st_free(c);
    /* bad parameters */
    assert_int_equal(st__rag_chunk_text(&u, 10, 10, NULL, NULL, &c, &nc), ST_ERR_INVALID_ARG);
    assert_int_equal(st__rag_chunk_text(&u, 0, 0, NULL, NULL, &c, &nc), ST_ERR_INVALID_ARG);
    st__rag_text_free(&u);
}

/* ---- embedding, fusion, citations ----------------------------------------------- */

static double dot(const float *a, const float *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static void test_hash_embed(void **state) {
    (void)state;
    enum { D = 256 };
    float a[D], b[D], c[D], z[D];
    const char *ta = "The heron waits in shallow water for fish.";
    st__rag_hash_embed(ta, strlen(ta), D, a);
    st__rag_hash_embed(ta, strlen(ta), D, b);
    assert_memory_equal(a, b, sizeof a); /* deterministic */
    assert_true(fabs(dot(a, a, D) - 1.0) < 1e-5);
    const char *tb = "Herons wait for FISH in the shallow water";
    const char *tc = "Quantized matrix kernels use AVX2 instructions.";
    st__rag_hash_embed(tb, strlen(tb), D, b);
    st__rag_hash_embed(tc, strlen(tc), D, c);
    assert_true(dot(a, b, D) > dot(a, c, D) + 0.3);
    st__rag_hash_embed("the of and", 10, D, z); /* stop words only: zero */
    for (int i = 0; i < D; i++) assert_true(z[i] == 0.0f);
}

static void test_rrf(void **state) {
    (void)state;
    const int64_t A[] = {1, 2, 3}, B[] = {3, 1, 4};
    const int64_t *lists[2] = {A, B};
    const int64_t lens[2] = {3, 3};
    int64_t ids[4];
    double sc[4];
    assert_int_equal(st__rag_rrf(lists, lens, 2, 60.0, 4, ids, sc), 4);
    const int64_t want[4] = {1, 3, 2, 4};
    const double wsc[4] = {1.0 / 61 + 1.0 / 62, 1.0 / 63 + 1.0 / 61, 1.0 / 62, 1.0 / 63};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ids[i], want[i]);
        assert_true(fabs(sc[i] - wsc[i]) < 1e-15);
    }
    /* ties: equal score, the better best rank first, then the smaller id */
    const int64_t C[] = {7, 5}, D[] = {5, 7};
    const int64_t *l2[2] = {C, D};
    const int64_t two[2] = {2, 2};
    assert_int_equal(st__rag_rrf(l2, two, 2, 60.0, 1, ids, sc), 1);
    assert_int_equal(ids[0], 5);
    const int64_t E[] = {9}, F[] = {8};
    const int64_t *l3[2] = {E, F};
    const int64_t one[2] = {1, 1};
    assert_int_equal(st__rag_rrf(l3, one, 2, 60.0, 2, ids, sc), 2);
    assert_int_equal(ids[0], 8);
    assert_int_equal(ids[1], 9);
}

static void test_citations(void **state) {
    (void)state;
    int c[8];
    int n = st__rag_parse_citations("See [1] and [3, 2]. Also [1][4]. [x] [0] [9] [2", 4, c);
    assert_int_equal(n, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(c[i], i + 1);
    assert_int_equal(st__rag_parse_citations("no citations here", 4, c), 0);
    assert_int_equal(st__rag_parse_citations("[2]", 1, c), 0);
}

/* ---- the index ------------------------------------------------------------------- */

typedef struct events {
    char log[8192];
} events;

static void on_event(void *user, const char *event, const char *path, const char *detail,
                     int64_t n_chunks) {
    events *e = user;
    const char *base = strrchr(path, '/');
    size_t k = strlen(e->log);
    snprintf(e->log + k, sizeof e->log - k, "%s %s %s|", event, base ? base + 1 : path,
             detail ? detail : "");
    (void)n_chunks;
}

static st_rag *open_index(const char *name, events *ev, int chunk, int overlap, bool create) {
    st_rag_params p = st_rag_default_params();
    p.home = g_dir;
    p.name = name;
    p.chunk_tokens = chunk;
    p.overlap_tokens = overlap;
    p.progress = ev ? on_event : NULL;
    p.progress_user = ev;
    p.max_file_bytes = 4096;
    st_rag *r = NULL;
    if (st_rag_open(g_ctx, &p, create, &r) != ST_OK) fail_msg("open %s: %s", name, st_last_error());
    return r;
}

static int count_hits(st_rag *r, const char *q, const char *file) {
    st_rag_hit *h;
    int n, found = 0;
    assert_int_equal(st_rag_search(r, q, 5, ST_RAG_BM25, &h, &n), ST_OK);
    for (int i = 0; i < n; i++)
        if (strstr(h[i].path, file)) found++;
    st_rag_hits_free(h, n);
    return found;
}

static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

static void test_bad_files(void **state) {
    (void)state;
    char dir[300], p[400];
    snprintf(dir, sizeof dir, "%s/bad", g_dir);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/binary.dat", dir);
    write_file(p, "\x7f" "ELF\0\0\1\2", 8);
    snprintf(p, sizeof p, "%s/empty.txt", dir);
    write_file(p, "", 0);
    snprintf(p, sizeof p, "%s/latin1.txt", dir);
    write_file(p, "caf\xe9 cr\xe8me", 10);
    char big[5000];
    memset(big, 'x', sizeof big);
    snprintf(p, sizeof p, "%s/huge.txt", dir);
    write_file(p, big, sizeof big); /* over max_file_bytes (4096) */
    snprintf(p, sizeof p, "%s/scripts.html", dir);
    write_file(p, "<script>only()</script>", 23);
    snprintf(p, sizeof p, "%s/good.md", dir);
    write_file(p, "Kingfishers dive for fish.\n", 27);
    events ev = {{0}};
    st_rag *r = open_index("bad", &ev, 50, 10, true);
    const char *paths[1] = {dir};
    st_rag_index_stats s;
    assert_int_equal(st_rag_index_paths(r, paths, 1, &s), ST_OK);
    assert_int_equal(s.files_seen, 6);
    assert_int_equal(s.files_indexed, 1);
    assert_int_equal(s.files_skipped, 5);
    const char *want[] = {"skipped binary.dat ", "binary", "skipped empty.txt empty file",
                          "skipped latin1.txt ", "not UTF-8 (invalid byte at offset 3)",
                          "skipped huge.txt over the size limit", "skipped scripts.html ",
                          "no text", "indexed good.md"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(ev.log, want[i])) fail_msg("no '%s' in %s", want[i], ev.log);
    assert_int_equal(count_hits(r, "kingfishers", "good.md"), 1);
    /* a file that becomes binary loses its chunks */
    snprintf(p, sizeof p, "%s/good.md", dir);
    write_file(p, "Kingfishers\0", 12);
    assert_int_equal(st_rag_index_paths(r, paths, 1, &s), ST_OK);
    assert_int_equal(s.files_skipped, 6);
    assert_int_equal(count_hits(r, "kingfishers", "good.md"), 0);
    /* a path that does not exist is an error naming it, and changes nothing */
    const char *missing[1] = {"/nonexistent/strata-rag"};
    assert_int_equal(st_rag_index_paths(r, missing, 1, &s), ST_ERR_IO);
    assert_non_null(strstr(st_last_error(), "/nonexistent/strata-rag"));
    st_rag_free(r);
}

static void test_incremental(void **state) {
    (void)state;
    char dir[300], a[400], b[400], c[400];
    snprintf(dir, sizeof dir, "%s/docs", g_dir);
    mkdir(dir, 0755);
    snprintf(a, sizeof a, "%s/a.md", dir);
    snprintf(b, sizeof b, "%s/b.txt", dir);
    snprintf(c, sizeof c, "%s/c.md", dir);
    write_file(a, "# Albatross\n\nAlbatrosses glide for hours over the ocean.\n", 57);
    const char *bt = "Badgers dig setts under the woodland floor.\n";
    write_file(b, bt, strlen(bt));
    write_file(c, "Cormorants dry their wings on rocks.\n", 37);
    events ev = {{0}};
    st_rag *r = open_index("inc", &ev, 50, 10, true);
    const char *paths[1] = {dir};
    st_rag_index_stats s;
    assert_int_equal(st_rag_index_paths(r, paths, 1, &s), ST_OK);
    assert_int_equal(s.files_indexed, 3);
    assert_int_equal(s.chunks_total, 3);
    char idx_dir[400];
    snprintf(idx_dir, sizeof idx_dir, "%s/rag/inc", g_dir);
    assert_int_equal(count_files(idx_dir, "vectors."), 1);
    /* unchanged: nothing happens, no new vector file */
    assert_int_equal(st_rag_index_paths(r, paths, 1, &s), ST_OK);
    assert_int_equal(s.files_unchanged, 3);
    assert_int_equal(s.files_indexed, 0);
    assert_int_equal(s.chunks_added, 0);
    /* changed and removed */
    const char *bt2 = "Bitterns boom in the reed beds at dawn.\n";
    write_file(b, bt2, strlen(bt2));
    unlink(c);
    assert_int_equal(st_rag_index_paths(r, paths, 1, &s), ST_OK);
    assert_int_equal(s.files_indexed, 1);
    assert_int_equal(s.files_unchanged, 1);
    assert_int_equal(s.files_removed, 1);
    assert_int_equal(s.chunks_total, 2);
    assert_int_equal(count_files(idx_dir, "vectors."), 1);
    assert_int_equal(count_hits(r, "badgers setts", "b.txt"), 0);
    assert_int_equal(count_hits(r, "bitterns", "b.txt"), 1);
    assert_int_equal(count_hits(r, "cormorants", "c.md"), 0);
    /* the vector side agrees: the old chunks are gone from it too */
    st_rag_hit *h;
    int n;
    assert_int_equal(st_rag_search(r, "badgers dig setts woodland", 5, ST_RAG_VECTOR, &h, &n), ST_OK);
    assert_int_equal(n, 2);
    for (int i = 0; i < n; i++) assert_null(strstr(h[i].text, "Badgers"));
    st_rag_hits_free(h, n);
    st_rag_free(r);

    /* reopened: the same documents, their text, the lines of a hit */
    r = open_index("inc", NULL, 1, 0, false);
    /* a second handle sees the first one's later runs (generation reload) */
    st_rag *r2 = open_index("inc", NULL, 1, 0, false);
    char e[400];
    snprintf(e, sizeof e, "%s/e.md", dir);
    write_file(e, "Egrets wade through marshes.\n", 29);
    const char *ep[1] = {e};
    assert_int_equal(st_rag_index_paths(r2, ep, 1, &s), ST_OK);
    assert_int_equal(st_rag_search(r, "egrets wade marshes", 1, ST_RAG_VECTOR, &h, &n), ST_OK);
    assert_int_equal(n, 1);
    assert_non_null(strstr(h[0].path, "e.md"));
    st_rag_hits_free(h, n);
    unlink(e);
    assert_int_equal(st_rag_index_paths(r2, paths, 1, &s), ST_OK);
    assert_int_equal(s.files_removed, 1);
    st_rag_free(r2);
    st_rag_doc *d;
    int nd;
    assert_int_equal(st_rag_list_docs(r, &d, &nd), ST_OK);
    assert_int_equal(nd, 2);
    assert_non_null(strstr(d[0].path, "a.md"));
    assert_int_equal(d[0].n_chunks, 1);
    assert_int_equal(d[1].bytes, (int64_t)strlen(bt2));
    char *txt;
    size_t tn;
    assert_int_equal(st_rag_doc_text(r, d[1].path, &txt, &tn), ST_OK);
    assert_string_equal(txt, bt2);
    st_free(txt);
    assert_int_equal(st_rag_doc_text(r, "/not/indexed", &txt, &tn), ST_ERR_INVALID_ARG);
    st_rag_docs_free(d, nd);
    assert_int_equal(st_rag_search(r, "albatrosses glide", 1, ST_RAG_HYBRID, &h, &n), ST_OK);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].line_start, 1);
    assert_int_equal(h[0].line_end, 3);
    assert_int_equal(h[0].bm25_rank, 1);
    assert_int_equal(h[0].vec_rank, 1);
    st_rag_hits_free(h, n);
    /* a vector file left by a crashed run is removed by the next run */
    char orphan[500];
    snprintf(orphan, sizeof orphan, "%s/vectors.99.idx", idx_dir);
    write_file(orphan, "junk", 4);
    assert_int_equal(st_rag_index_paths(r, paths, 1, &s), ST_OK);
    assert_int_equal(count_files(idx_dir, "vectors."), 1);
    st_rag_free(r);

    char **names;
    int nn;
    assert_int_equal(st_rag_list_indexes(g_dir, &names, &nn), ST_OK);
    bool seen = false;
    for (int i = 0; i < nn; i++) {
        seen |= !strcmp(names[i], "inc");
        st_free(names[i]);
    }
    st_free(names);
    assert_true(seen);
}

static off_t vec_file_bytes(const char *idx_dir) {
    DIR *d = opendir(idx_dir);
    struct dirent *e;
    off_t sz = -1;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, "vectors.", 8)) {
            char p[1024];
            struct stat sb;
            snprintf(p, sizeof p, "%s/%s", idx_dir, e->d_name);
            if (stat(p, &sb) == 0) sz = sb.st_size;
        }
    closedir(d);
    return sz;
}

static void test_compaction(void **state) {
    (void)state;
    char dir[300], f[400], idx_dir[400];
    snprintf(dir, sizeof dir, "%s/compact", g_dir);
    mkdir(dir, 0755);
    snprintf(f, sizeof f, "%s/words.txt", dir);
    snprintf(idx_dir, sizeof idx_dir, "%s/rag/compact", g_dir);
    events ev = {{0}};
    st_rag_params p = st_rag_default_params();
    p.home = g_dir;
    p.name = "compact";
    p.chunk_tokens = 5;
    p.overlap_tokens = 0;
    p.progress = on_event;
    p.progress_user = &ev;
    st_rag *r = NULL;
    assert_int_equal(st_rag_open(g_ctx, &p, true, &r), ST_OK);
    const char *paths[1] = {dir};
    off_t sizes[3];
    for (int v = 0; v < 3; v++) { /* 60 chunks per version; every version replaces all */
        char text[2048] = "";
        for (int i = 0; i < 300; i++) {
            char w[16];
            snprintf(w, sizeof w, "v%dw%d ", v, i);
            strcat(text, w);
        }
        write_file(f, text, strlen(text));
        st_rag_index_stats s;
        assert_int_equal(st_rag_index_paths(r, paths, 1, &s), ST_OK);
        assert_int_equal(s.chunks_total, 60);
        sizes[v] = vec_file_bytes(idx_dir);
    }
    /* version 2: 120 tombstones > 60 live: compacted back to 60 vectors */
    assert_non_null(strstr(ev.log, "compacted"));
    assert_true(sizes[2] < sizes[1]);
    assert_true(sizes[2] <= sizes[0] + 4096);
    /* ids are consistent on both sides after the renumbering */
    st_rag_hit *h;
    int n;
    assert_int_equal(st_rag_search(r, "v2w123", 1, ST_RAG_HYBRID, &h, &n), ST_OK);
    assert_int_equal(n, 1);
    assert_non_null(strstr(h[0].text, "v2w123"));
    assert_int_equal(h[0].bm25_rank, 1);
    assert_int_equal(h[0].vec_rank, 1);
    st_rag_hits_free(h, n);
    assert_int_equal(st_rag_search(r, "v1w5", 1, ST_RAG_BM25, &h, &n), ST_OK);
    assert_int_equal(n, 0);
    st_rag_hits_free(h, n);
    assert_int_equal(st_rag_search(r, "anything v2w7", 100, ST_RAG_VECTOR, &h, &n), ST_OK);
    assert_int_equal(n, 60);
    for (int i = 0; i < n; i++) assert_true(h[i].chunk_id >= 0 && h[i].chunk_id < 60);
    st_rag_hits_free(h, n);
    st_rag_free(r);
    /* and the reopened index agrees */
    r = open_index("compact", NULL, 5, 0, false);
    assert_int_equal(st_rag_search(r, "v2w299", 1, ST_RAG_VECTOR, &h, &n), ST_OK);
    assert_int_equal(n, 1);
    assert_non_null(strstr(h[0].text, "v2w299"));
    st_rag_hits_free(h, n);
    st_rag_free(r);
}

static void test_open_errors(void **state) {
    (void)state;
    st_rag_params p = st_rag_default_params();
    p.home = g_dir;
    st_rag *r = NULL;
    const char *bad[] = {"../x", "", "a/b", "sp ace", ".."};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p.name = bad[i];
        assert_int_equal(st_rag_open(g_ctx, &p, true, &r), ST_ERR_INVALID_ARG);
        assert_null(r);
    }
    p.name = "missing";
    assert_int_equal(st_rag_open(g_ctx, &p, false, &r), ST_ERR_IO);
    assert_non_null(strstr(st_last_error(), "missing"));
    p.name = "badparams";
    p.overlap_tokens = p.chunk_tokens;
    assert_int_equal(st_rag_open(g_ctx, &p, true, &r), ST_ERR_INVALID_ARG);
    /* a damaged meta.json, a damaged vector file */
    p = st_rag_default_params();
    p.home = g_dir;
    p.name = "damaged";
    assert_int_equal(st_rag_open(g_ctx, &p, true, &r), ST_OK);
    const char *paths[1] = {FIX "/sample.md"};
    assert_int_equal(st_rag_index_paths(r, paths, 1, NULL), ST_OK);
    st_rag_free(r);
    char path[500];
    snprintf(path, sizeof path, "%s/rag/damaged/vectors.1.idx", g_dir);
    write_file(path, "STVECIDX but truncated", 22);
    assert_int_equal(st_rag_open(g_ctx, &p, false, &r), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "vectors.1.idx"));
    snprintf(path, sizeof path, "%s/rag/damaged/meta.json", g_dir);
    write_file(path, "{\"version\": 99}", 15);
    assert_int_equal(st_rag_open(g_ctx, &p, false, &r), ST_ERR_FORMAT);
    assert_non_null(strstr(st_last_error(), "meta.json"));
}

/* ---- retrieval quality over the project's docs ------------------------------------- */

static void test_retrieval_quality(void **state) {
    (void)state;
    st_rag_params p = st_rag_default_params();
    p.home = g_dir;
    p.name = "docs";
    st_rag *r = NULL;
    assert_int_equal(st_rag_open(g_ctx, &p, true, &r), ST_OK);
    const char *paths[1] = {STRATA_SOURCE_DIR "/tests/data/rag/docs"};
    st_rag_index_stats s;
    assert_int_equal(st_rag_index_paths(r, paths, 1, &s), ST_OK);
    assert_true(s.files_indexed >= 15);
    FILE *f = fopen(FIX "/questions.jsonl", "r");
    assert_non_null(f);
    char line[4096];
    int n_q = 0, n_stale = 0, found[3] = {0};
    const st_rag_mode modes[3] = {ST_RAG_HYBRID, ST_RAG_BM25, ST_RAG_VECTOR};
    while (fgets(line, sizeof line, f)) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        assert_non_null(j);
        const char *q = json_string_value(json_object_get(j, "question"));
        const char *doc = json_string_value(json_object_get(j, "doc"));
        const char *phrase = json_string_value(json_object_get(j, "phrase"));
        assert_true(q && doc && phrase);
        char *np = norm_ws(phrase, strlen(phrase));
        /* a question whose phrase left its doc (docs evolve) is stale: counted, not scored */
        char dp[512];
        snprintf(dp, sizeof dp, "%s/tests/data/rag/docs/%s", STRATA_SOURCE_DIR, doc);
        size_t dn;
        char *dt = slurp(dp, &dn), *ndt = norm_ws(dt, dn);
        bool stale = !strstr(ndt, np);
        free(ndt);
        st_free(dt);
        if (stale) {
            n_stale++;
            print_message("stale question (phrase not in %s): %s\n", doc, q);
        } else {
            n_q++;
            for (int m = 0; m < 3; m++) {
                st_rag_hit *h;
                int n;
                assert_int_equal(st_rag_search(r, q, 5, modes[m], &h, &n), ST_OK);
                bool hit = false;
                for (int i = 0; i < n && !hit; i++) {
                    const char *base = strrchr(h[i].path, '/');
                    char *nt = norm_ws(h[i].text, strlen(h[i].text));
                    hit = base && !strcmp(base + 1, doc) && strstr(nt, np);
                    free(nt);
                }
                found[m] += hit;
                if (getenv("RAG_DEBUG")) {
                    print_message("%s %d %s\n", m == 0 ? "hyb" : m == 1 ? "bm25" : "vec", hit, q);
                    for (int i = 0; i < n; i++)
                        print_message("   %d %s L%d b%d v%d\n", i, strrchr(h[i].path, '/'), h[i].line_start, h[i].bm25_rank, h[i].vec_rank);
                }
                st_rag_hits_free(h, n);
            }
        }
        free(np);
        json_decref(j);
    }
    fclose(f);
    double rec[3];
    for (int m = 0; m < 3; m++) rec[m] = n_q ? (double)found[m] / n_q : 0;
    print_message("rag recall@5 over %d questions (%d stale): hybrid %.3f  bm25 %.3f  vector %.3f\n",
                  n_q, n_stale, rec[0], rec[1], rec[2]);
    assert_true(n_q >= 25);
    assert_true(found[0] >= found[1]);
    assert_true(found[0] >= found[2]);
    assert_true(rec[0] >= 0.7);
    st_rag_free(r);
}

/* ---- ask with a tiny model ----------------------------------------------------------- */

static int count_tokens(void *user, int32_t id, const char *text, size_t n,
                        const st_token_logprob *c, const st_token_logprob *top, int n_top) {
    (void)id, (void)text, (void)n, (void)c, (void)top, (void)n_top;
    (*(int *)user)++;
    return 0;
}

static void test_ask(void **state) {
    (void)state;
    st_lm *lm = NULL;
    assert_int_equal(st_lm_load(g_ctx, STRATA_SOURCE_DIR "/tests/data/stories260K/stories260K.bin",
                                STRATA_SOURCE_DIR "/data/stories260K/tok512.bin", &lm), ST_OK);
    st_engine_params ep = st_engine_default_params();
    st_engine *e = NULL;
    assert_int_equal(st_engine_new(g_ctx, lm, &ep, &e), ST_OK);
    st_rag_params p = st_rag_default_params();
    p.home = g_dir;
    p.name = "ask";
    p.chunk_tokens = 60;
    p.overlap_tokens = 10;
    st_rag *r = NULL;
    assert_int_equal(st_rag_open(g_ctx, &p, true, &r), ST_OK);
    const char *paths[2] = {FIX "/sample.md", FIX "/page.html"};
    assert_int_equal(st_rag_index_paths(r, paths, 2, NULL), ST_OK);
    st_rag_ask_params ap = st_rag_default_ask_params();
    ap.gen.sampler.temperature = 0;
    ap.gen.max_tokens = 24;
    ap.k = 4;
    st_rag_answer a;
    int streamed = 0;
    assert_int_equal(st_rag_ask(r, e, NULL, "Where do herons nest?", &ap, count_tokens, &streamed, &a),
                     ST_OK);
    assert_non_null(a.text);
    assert_true(a.n_sources >= 1 && a.n_sources <= 4);
    assert_true(a.stats.n_generated >= 1 && a.stats.n_generated <= 24);
    assert_int_equal(streamed, a.stats.n_generated);
    /* the prompt fit the 512-token context with room for the answer */
    assert_true(a.stats.n_prompt + 24 <= 512);
    assert_non_null(strstr(a.sources[0].path, "sample.md"));
    for (int i = 0; i < a.n_cited; i++) assert_true(a.cited[i] >= 1 && a.cited[i] <= a.n_sources);
    /* greedy: the same answer again */
    st_rag_answer b;
    assert_int_equal(st_rag_ask(r, e, NULL, "Where do herons nest?", &ap, NULL, NULL, &b), ST_OK);
    assert_string_equal(a.text, b.text);
    st_rag_answer_free(&a);
    st_rag_answer_free(&b);
    st_rag_free(r);
    /* one source alone over the context: ST_ERR_BOUNDS */
    p.name = "ask-big";
    p.chunk_tokens = 2000;
    p.overlap_tokens = 0;
    assert_int_equal(st_rag_open(g_ctx, &p, true, &r), ST_OK);
    const char *docs[1] = {STRATA_SOURCE_DIR "/tests/data/rag/docs/L6-inference.md"};
    assert_int_equal(st_rag_index_paths(r, docs, 1, NULL), ST_OK);
    assert_int_equal(st_rag_ask(r, e, NULL, "paged KV cache", &ap, NULL, NULL, &a), ST_ERR_BOUNDS);
    st_rag_free(r);
    st_engine_free(e);
    st_lm_free(lm);
}

/* ---- the model embedder ------------------------------------------------------------ */

/* mean-pooled final hidden states of text (BOS first), L2-normalised: the
 * reference, computed here with the engine directly */
static void ref_embed(st_engine *e, const st_lm *lm, const char *text, float *out) {
    int32_t *ids;
    size_t n;
    st_encode_opts eo = {.allow_special = false, .add_bos = true};
    assert_int_equal(st_tokenizer_encode(lm->tok, text, strlen(text), &eo, &ids, &n), ST_OK);
    st_kv_seq seq = {0};
    st_engine_seq es = {.seq = &seq, .tokens = ids, .n_tokens = (int)n, .hidden_sum = out};
    assert_int_equal(st_engine_forward(e, &es, 1), ST_OK);
    st_kv_seq_release(st_engine_kv(e), &seq);
    double norm = 0;
    for (int i = 0; i < lm->cfg.n_embd; i++) norm += (double)out[i] * out[i];
    for (int i = 0; i < lm->cfg.n_embd; i++) out[i] = (float)(out[i] / sqrt(norm)); /* mean's direction */
    st_free(ids);
}

static void test_model_embedder(void **state) {
    (void)state;
    const char *model = STRATA_SOURCE_DIR "/tests/data/stories260K/stories260K.bin";
    const char *tokp = STRATA_SOURCE_DIR "/data/stories260K/tok512.bin";
    st_rag_params p = st_rag_default_params();
    p.home = g_dir;
    p.name = "emb";
    p.embed_model = model;
    p.embed_tokenizer = tokp;
    p.chunk_tokens = 40; /* tok512 tokens */
    p.overlap_tokens = 8;
    st_rag *r = NULL;
    assert_int_equal(st_rag_open(g_ctx, &p, true, &r), ST_OK);
    const char *paths[1] = {FIX "/sample.md"};
    st_rag_index_stats s;
    assert_int_equal(st_rag_index_paths(r, paths, 1, &s), ST_OK);
    assert_true(s.chunks_total >= 3); /* 40 model tokens: more chunks than 40 words would give */
    st_rag_free(r);
    /* reopened without naming the model: meta.json brings it back */
    st_rag_params q = st_rag_default_params();
    q.home = g_dir;
    q.name = "emb";
    assert_int_equal(st_rag_open(g_ctx, &q, false, &r), ST_OK);
    st_rag_hit *h;
    int n;
    assert_int_equal(st_rag_search(r, "heron", 20, ST_RAG_VECTOR, &h, &n), ST_OK);
    assert_int_equal(n, s.chunks_total);
    int first = -1;
    for (int i = 0; i < n; i++)
        if (h[i].line_start == 1) first = i;
    assert_true(first >= 0);
    /* the score is the inner product of the reference embeddings: the
     * chunk embedded after its title line (contextual header), the query */
    st_lm *lm;
    assert_int_equal(st_lm_load(g_ctx, model, tokp, &lm), ST_OK);
    st_engine_params ep = st_engine_default_params();
    st_engine *e;
    assert_int_equal(st_engine_new(g_ctx, lm, &ep, &e), ST_OK);
    const int E = lm->cfg.n_embd;
    float *a = malloc((size_t)E * 4), *b = malloc((size_t)E * 4);
    char *ctxt = malloc(strlen(h[first].text) + 64);
    sprintf(ctxt, "# Heron field guide\n%s", h[first].text);
    ref_embed(e, lm, ctxt, a);
    ref_embed(e, lm, "heron", b);
    double ip = dot(a, b, E);
    if (fabs(ip - h[first].score) > 1e-4)
        fail_msg("vector score %.6f, reference inner product %.6f", h[first].score, ip);
    free(a), free(b), free(ctxt);
    st_rag_hits_free(h, n);
    st_engine_free(e);
    st_lm_free(lm);
    st_rag_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extract_markdown),
        cmocka_unit_test(test_extract_html),
        cmocka_unit_test(test_extract_jsonl),
        cmocka_unit_test(test_extract_parquet),
        cmocka_unit_test(test_extract_pdf),
        cmocka_unit_test(test_extract_refuses),
        cmocka_unit_test(test_chunk_lines),
        cmocka_unit_test(test_chunk_boundaries),
        cmocka_unit_test(test_hash_embed),
        cmocka_unit_test(test_rrf),
        cmocka_unit_test(test_citations),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_compaction),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_retrieval_quality),
        cmocka_unit_test(test_ask),
        cmocka_unit_test(test_model_embedder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

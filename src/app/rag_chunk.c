/*
 * rag_chunk.c — the pure functions of the RAG layer: the word tokenizer,
 * the chunker (token-bounded chunks with overlap that end on paragraph or
 * sentence boundaries when they can, each with its source line range), the
 * hashed bag-of-words embedding, reciprocal rank fusion and the citation
 * parser. See rag_impl.h for the contracts and docs/L8-rag.md for why.
 *
 * The embedding hashes tokens with zlib's CRC-32 (a library function whose
 * values never change, so an index built today is queried the same way
 * tomorrow). No state; every function is thread-safe; memory is the
 * caller's or freed before return.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "rag_impl.h"

/* ---- the word tokenizer ------------------------------------------------------------ */

static bool word_byte(unsigned char c) { return isalnum(c) || c >= 0x80; }

int64_t st__rag_words(const char *s, size_t n, st__rag_word_fn fn, void *user) {
    int64_t count = 0;
    size_t i = 0;
    char tok[64];
    while (i < n) {
        while (i < n && !word_byte((unsigned char)s[i])) i++;
        if (i >= n) break;
        size_t j = i, k = 0;
        while (j < n && word_byte((unsigned char)s[j])) {
            if (k < sizeof tok - 1) tok[k++] = (char)tolower((unsigned char)s[j]);
            j++;
        }
        if (j - i > k) { /* cut: never inside a UTF-8 character (drop the last one) */
            while (k > 0 && ((unsigned char)tok[k - 1] & 0xC0) == 0x80) k--;
            if (k > 0 && ((unsigned char)tok[k - 1] & 0xC0) == 0xC0) k--;
        }
        tok[k] = 0;
        if (fn) fn(user, tok, k);
        count++;
        i = j;
    }
    return count;
}

/* ---- the chunker -------------------------------------------------------------------- */

typedef struct word {
    int64_t off, len;
    bool para, sent; /* starts a paragraph / a sentence */
} word;

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static bool ends_sentence(const char *w, int64_t n) {
    while (n > 0 && strchr("\"')]*_`", w[n - 1])) n--; /* closing quotes, brackets, emphasis */
    return n > 0 && (w[n - 1] == '.' || w[n - 1] == '!' || w[n - 1] == '?' || w[n - 1] == ':');
}

static int64_t line_of(const st__rag_text *t, int64_t off) {
    int64_t lo = 0, hi = t->n_lines - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (t->line_off[mid] <= off) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static int word_tokens(void *user, const char *s, size_t n) {
    (void)user;
    return (int)st__rag_words(s, n, NULL, NULL);
}

st_status st__rag_chunk_text(const st__rag_text *t, int chunk_tokens, int overlap_tokens,
                             st__rag_count_fn count, void *count_user, st__rag_chunk **chunks,
                             int64_t *n_chunks) {
    *chunks = NULL;
    *n_chunks = 0;
    if (chunk_tokens < 1 || overlap_tokens < 0 || overlap_tokens >= chunk_tokens)
        return st__fail(ST_ERR_INVALID_ARG,
                        "rag: chunk of %d tokens with an overlap of %d (need chunk >= 1 and "
                        "0 <= overlap < chunk)", chunk_tokens, overlap_tokens);
    if (!count) count = word_tokens;
    const char *s = t->buf.p;
    const int64_t n = (int64_t)t->buf.len;
    if (!s || n == 0 || t->n_lines == 0) return ST_OK;

    /* words and their flags */
    int64_t nw = 0, cap = 0;
    word *w = NULL;
    int64_t *P = NULL; /* prefix sums of token counts */
    st__rag_chunk *out = NULL;
    int64_t n_out = 0, cap_out = 0;
    st_status st = ST_OK;
    int newlines = 2; /* the text start counts as a paragraph start */
    for (int64_t i = 0; i < n;) {
        if (is_ws(s[i])) {
            if (s[i] == '\n') newlines++;
            i++;
            continue;
        }
        int64_t j = i;
        while (j < n && !is_ws(s[j])) j++;
        if (nw == cap) {
            cap = cap ? cap * 2 : 1024;
            word *nw_ = st_realloc(w, (size_t)cap * sizeof *w);
            if (!nw_) {
                st = st__fail(ST_ERR_NOMEM, "rag: no memory for the chunker's words");
                goto done;
            }
            w = nw_;
        }
        bool prev_end = nw == 0 || ends_sentence(s + w[nw - 1].off, w[nw - 1].len);
        w[nw] = (word){.off = i, .len = j - i, .para = newlines >= 2,
                       .sent = newlines >= 1 || prev_end};
        nw++;
        newlines = 0;
        i = j;
    }
    if (nw == 0) goto done;
    P = st_malloc((size_t)(nw + 1) * sizeof *P);
    if (!P) {
        st = st__fail(ST_ERR_NOMEM, "rag: no memory for the chunker");
        goto done;
    }
    P[0] = 0;
    for (int64_t i = 0; i < nw; i++) {
        int c = count(count_user, s + w[i].off, (size_t)w[i].len);
        P[i + 1] = P[i] + (c < 1 ? 1 : c); /* punctuation-only words count as one */
    }
#define TOK(a, b) (P[b] - P[a])
    int64_t start = 0, prev_cut = 0;
    while (start < nw) {
        int64_t end = start + 1;
        while (end < nw && TOK(start, end + 1) <= chunk_tokens) end++;
        if (end <= prev_cut && prev_cut < nw) end = prev_cut + 1; /* always move forward */
        int64_t cut = end;
        if (end < nw) {
            bool found = false;
            for (int64_t p = end; p > start; p--)
                if (w[p].para && TOK(start, p) * 2 >= chunk_tokens) {
                    cut = p, found = true;
                    break;
                }
            if (!found)
                for (int64_t p = end; p > start; p--)
                    if (w[p].sent && TOK(start, p) * 4 >= chunk_tokens) {
                        cut = p;
                        break;
                    }
        }
        if (n_out == cap_out) {
            cap_out = cap_out ? cap_out * 2 : 64;
            st__rag_chunk *no = st_realloc(out, (size_t)cap_out * sizeof *out);
            if (!no) {
                st = st__fail(ST_ERR_NOMEM, "rag: no memory for chunks");
                goto done;
            }
            out = no;
        }
        int64_t b = w[start].off, e = w[cut - 1].off + w[cut - 1].len;
        int64_t tk = TOK(start, cut);
        /* the source range of every extracted line the chunk touches (HTML
         * that libxml2 had to repair can map later text to earlier lines) */
        int64_t k0 = line_of(t, b), k1 = line_of(t, e - 1);
        int32_t ls = t->src_first[k0], le = t->src_last[k0];
        for (int64_t k = k0 + 1; k <= k1; k++) {
            if (t->src_first[k] < ls) ls = t->src_first[k];
            if (t->src_last[k] > le) le = t->src_last[k];
        }
        out[n_out++] = (st__rag_chunk){
            .off = b, .len = e - b, .line_start = ls, .line_end = le,
            .n_tokens = tk > INT32_MAX ? INT32_MAX : (int32_t)tk};
        if (cut >= nw) break;
        prev_cut = cut;
        int64_t next = cut;
        if (overlap_tokens > 0) {
            int64_t sp = cut;
            while (sp - 1 > start && TOK(sp - 1, cut) <= overlap_tokens) sp--;
            int64_t ns = cut;
            for (int64_t q = sp; q < cut; q++)
                if (w[q].sent) {
                    ns = q;
                    break;
                }
            next = ns < cut ? ns : sp;
            /* no overlap when it would not leave room for the next word */
            if (next < cut && TOK(next, cut + 1) > chunk_tokens) next = cut;
        }
        start = next > start ? next : cut;
    }
#undef TOK
done:
    st_free(w);
    st_free(P);
    if (st != ST_OK) {
        st_free(out);
        return st;
    }
    *chunks = out;
    *n_chunks = n_out;
    return ST_OK;
}

/* ---- the hashed embedding ------------------------------------------------------------ */

static const char *const k_stop[] = {
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for",
    "from", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "not", "of",
    "on", "or", "so", "that", "the", "their", "then", "there", "these", "this", "to", "was",
    "what", "when", "where", "which", "who", "why", "will", "with", "you", "your", NULL};

static bool is_stop(const char *tok) {
    for (int i = 0; k_stop[i]; i++)
        if (!strcmp(tok, k_stop[i])) return true;
    return false;
}

typedef struct embed_state {
    float *acc;
    int dim;
    char prev[64];
    size_t n_prev;
    float w_tri;
} embed_state;

static void add_feature(embed_state *e, const char *s, size_t n, float w) {
    uLong h = crc32(0L, (const Bytef *)s, (uInt)n);
    uint32_t v = (uint32_t)h;
    e->acc[v % (uint32_t)e->dim] += (v & 0x80000000u) ? -w : w;
}

/* A light suffix stripper (plural s, -es, -ing, -ed) so that "herons",
 * "heron" and "nesting", "nest" share a feature; tok is rewritten. */
static size_t stem(char *tok, size_t n) {
    if (n > 5 && !strcmp(tok + n - 3, "ing")) n -= 3;
    else if (n > 4 && !strcmp(tok + n - 2, "ed")) n -= 2;
    else if (n > 4 && !strcmp(tok + n - 3, "ies")) n -= 2, tok[n - 1] = 'y';
    else if (n > 4 && (!strcmp(tok + n - 4, "sses") || !strcmp(tok + n - 4, "ches") ||
                       !strcmp(tok + n - 4, "shes") || !strcmp(tok + n - 3, "xes")))
        n -= 2;
    else if (n > 3 && tok[n - 1] == 's' && tok[n - 2] != 's' && tok[n - 2] != 'u' && tok[n - 2] != 'i')
        n -= 1;
    tok[n] = 0;
    return n;
}

static void embed_word(void *user, const char *tok_in, size_t n) {
    embed_state *e = user;
    if (is_stop(tok_in)) return;
    char tok[64];
    memcpy(tok, tok_in, n + 1);
    n = stem(tok, n);
    add_feature(e, tok, n, 1.0f);
    if (e->w_tri > 0 && n >= 4) { /* character trigrams of the word, with boundaries */
        char w[66];
        w[0] = '<';
        memcpy(w + 1, tok, n);
        w[n + 1] = '>';
        for (size_t i = 0; i + 3 <= n + 2; i++) add_feature(e, w + i, 3, e->w_tri);
    }
    if (e->n_prev) {
        char bi[128];
        memcpy(bi, e->prev, e->n_prev);
        bi[e->n_prev] = ' ';
        memcpy(bi + e->n_prev + 1, tok, n);
        add_feature(e, bi, e->n_prev + 1 + n, 0.25f);
    }
    memcpy(e->prev, tok, n + 1);
    e->n_prev = n;
}

void st__rag_hash_embed(const char *s, size_t n, int dim, float *out) {
    memset(out, 0, (size_t)dim * sizeof *out);
    embed_state e = {.acc = out, .dim = dim, .w_tri = 0.1f};
    st__rag_words(s, n, embed_word, &e);
    double norm = 0;
    for (int i = 0; i < dim; i++) {
        float v = out[i];
        out[i] = v >= 0 ? log1pf(v) : -log1pf(-v);
        norm += (double)out[i] * out[i];
    }
    if (norm > 0) {
        float inv = (float)(1.0 / sqrt(norm));
        for (int i = 0; i < dim; i++) out[i] *= inv;
    }
}

/* ---- reciprocal rank fusion -------------------------------------------------------- */

typedef struct fused {
    int64_t id;
    double score;
    int64_t best;
} fused;

static int cmp_id_rank(const void *a, const void *b) {
    const fused *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->best < y->best ? -1 : x->best > y->best;
}

static int cmp_score(const void *a, const void *b) {
    const fused *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->best != y->best) return x->best < y->best ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int64_t st__rag_rrf(const int64_t *const *lists, const int64_t *lens, int n_lists, double rrf_k,
                    int64_t max_out, int64_t *ids, double *scores) {
    int64_t total = 0;
    for (int l = 0; l < n_lists; l++) total += lens[l];
    fused *f = st_malloc((size_t)(total > 0 ? total : 1) * sizeof *f);
    if (!f) return -1;
    int64_t m = 0;
    for (int l = 0; l < n_lists; l++)
        for (int64_t r = 0; r < lens[l]; r++)
            f[m++] = (fused){.id = lists[l][r], .score = 1.0 / (rrf_k + (double)(r + 1)), .best = r + 1};
    qsort(f, (size_t)m, sizeof *f, cmp_id_rank);
    int64_t u = 0;
    for (int64_t i = 0; i < m; i++) {
        if (u > 0 && f[u - 1].id == f[i].id) {
            f[u - 1].score += f[i].score; /* best stays the first (smallest) rank */
        } else {
            f[u++] = f[i];
        }
    }
    qsort(f, (size_t)u, sizeof *f, cmp_score);
    int64_t k = u < max_out ? u : max_out;
    for (int64_t i = 0; i < k; i++) {
        ids[i] = f[i].id;
        if (scores) scores[i] = f[i].score;
    }
    st_free(f);
    return k;
}

/* ---- citations ------------------------------------------------------------------- */

int st__rag_parse_citations(const char *text, int n_max, int *cited) {
    if (!text || n_max < 1) return 0;
    bool seen[1024] = {false};
    int lim = n_max < 1023 ? n_max : 1023;
    for (const char *p = strchr(text, '['); p; p = strchr(p + 1, '[')) {
        const char *q = p + 1;
        int nums[16], k = 0;
        bool ok = true;
        for (;;) {
            while (*q == ' ') q++;
            if (!isdigit((unsigned char)*q)) {
                ok = false;
                break;
            }
            long v = 0;
            while (isdigit((unsigned char)*q) && v < 100000) v = v * 10 + (*q++ - '0');
            if (k < 16) nums[k++] = (int)(v < 100000 ? v : 0);
            while (*q == ' ') q++;
            if (*q == ',') {
                q++;
                continue;
            }
            ok = *q == ']';
            break;
        }
        if (!ok) continue;
        for (int i = 0; i < k; i++)
            if (nums[i] >= 1 && nums[i] <= lim) seen[nums[i]] = true;
    }
    int n = 0;
    for (int i = 1; i <= lim; i++)
        if (seen[i]) cited[n++] = i;
    return n;
}

/*
 * vec.c — `strata vec build|search|info`: the vector index (layer 8,
 * strata/vecindex.h) from the command line.
 *
 * build reads vectors (.fvecs or .npy float32), adds them in chunks to an
 * HNSW or flat index on the context's pool (a progress line on stderr), and
 * saves the index crash-safe; search maps an index, reads queries, runs
 * them as one batch and writes the ids (.ivecs, or .npy int64 by the
 * extension) or prints them; info describes an index. Build time and
 * queries per second go to stderr; --json prints one JSON object (jansson)
 * on stdout for scripts. All memory is local to the call.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "strata/vecindex.h"

#define SUB "vec"

static void help_main(FILE *f) {
    fprintf(f,
            "usage: strata vec build  --input VECS --out INDEX [options]\n"
            "       strata vec search --index INDEX --queries VECS -k K [options]\n"
            "       strata vec info   --index INDEX [--json]\n\n"
            "Nearest-neighbour search over float vectors: an HNSW graph (approximate,\n"
            "fast) or a flat index (exact, BLAS). VECS is a SIFT .fvecs file or a NumPy\n"
            "2-D float32 .npy file. Run 'strata vec <build|search|info> --help' for the\n"
            "options of each.\n");
}

static void help_build(void) {
    printf("usage: strata vec build --input VECS --out INDEX [--metric l2|ip]\n"
           "                        [--kind hnsw|flat] [--storage f32|int8] [--m M]\n"
           "                        [--ef-construction E] [--seed S] [--threads N] [--json]\n\n"
           "Builds an index over the vectors of VECS (.fvecs or .npy float32, [n, dim]);\n"
           "vector i gets id i. The index file is written through a temporary file,\n"
           "fsync and rename. The build time and rate go to stderr.\n\n"
           "options (defaults):\n"
           "  --input VECS          the vectors (required)\n"
           "  --out INDEX           the index file to write (required)\n"
           "  --metric l2|ip        squared Euclidean distance, or inner product (l2)\n"
           "  --kind hnsw|flat      HNSW graph, or exact flat search (hnsw)\n"
           "  --storage f32|int8    int8: one scale per vector, 4x smaller; flat only (f32)\n"
           "  --m M                 HNSW links per node, 2..256; 2M on layer 0 (16)\n"
           "  --ef-construction E   HNSW candidates while inserting (200)\n"
           "  --seed S              HNSW level draws (42); with --threads 1 the index\n"
           "                        is a function of the input and the seed\n"
           "  --threads N           worker threads (STRATA_THREADS, else all CPUs)\n"
           "  --json                print {\"n\", \"dim\", \"build_s\", ...} on stdout\n");
}

static void help_search(void) {
    printf("usage: strata vec search --index INDEX --queries VECS -k K [--ef E] [--exact]\n"
           "                         [--out IDS] [--gt IDS] [--threads N] [--json]\n\n"
           "Searches every query of VECS (.fvecs or .npy float32 of the index's dim) as\n"
           "one batch. Writes the k best ids per query, best first, to IDS (.ivecs;\n"
           ".npy gives int64), or prints them one query per line (ids separated by\n"
           "spaces; -1 pads when fewer than k vectors qualify) when --out is absent and\n"
           "--json is not given. Queries per second go to stderr.\n\n"
           "options (defaults):\n"
           "  --index INDEX     the index file (required; mapped, not read)\n"
           "  --queries VECS    the queries (required)\n"
           "  -k K              results per query (10)\n"
           "  --ef E            HNSW candidate list, raised to k if smaller (64)\n"
           "  --exact           score every vector, even in an HNSW index\n"
           "  --out IDS         write the ids (.ivecs or .npy)\n"
           "  --gt IDS          ground truth (.ivecs or .npy, >= k ids per row): report\n"
           "                    recall@k\n"
           "  --threads N       worker threads (STRATA_THREADS, else all CPUs)\n"
           "  --json            print {\"queries\", \"k\", \"seconds\", \"qps\", \"recall\"?}\n");
}

static void help_info(void) {
    printf("usage: strata vec info --index INDEX [--json]\n\n"
           "Describes an index file: kind, metric, storage, dim, vectors (and deleted),\n"
           "HNSW M, M0, efConstruction, top layer and links, bytes.\n");
}

static const char *kind_name(st_vec_kind k) { return k == ST_VEC_HNSW ? "hnsw" : "flat"; }
static const char *metric_name(st_vec_metric m) { return m == ST_VEC_IP ? "ip" : "l2"; }
static const char *storage_name(st_vec_storage s) { return s == ST_VEC_STORE_I8 ? "int8" : "f32"; }

static st_ctx *make_ctx(long threads, st_status *s) {
    st_ctx_params cp = st_ctx_default_params();
    cp.cpu.n_threads = (int)threads;
    cp.arena_bytes = 1 << 16;
    st_ctx *ctx = NULL;
    *s = st_ctx_new(&cp, &ctx);
    return ctx;
}

/* Takes the value of option argv[*i] (advancing *i); NULL when missing. */
static const char *val(int argc, char **argv, int *i) {
    return *i + 1 < argc ? argv[++*i] : NULL;
}

static int vec_build(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    st_vecindex_params p = st_vecindex_default_params();
    long threads = 0, m = p.m, efc = p.ef_construction, seed = (long)p.seed;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--json")) {
            json = true;
            continue;
        }
        if (!(v = val(argc, argv, &i))) return cli_usage_error(SUB " build", "%s needs a value", a);
        if (!strcmp(a, "--input")) in = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--metric")) {
            if (!strcmp(v, "l2")) p.metric = ST_VEC_L2;
            else if (!strcmp(v, "ip")) p.metric = ST_VEC_IP;
            else return cli_usage_error(SUB " build", "--metric must be l2 or ip, not '%s'", v);
        } else if (!strcmp(a, "--kind")) {
            if (!strcmp(v, "hnsw")) p.kind = ST_VEC_HNSW;
            else if (!strcmp(v, "flat")) p.kind = ST_VEC_FLAT;
            else return cli_usage_error(SUB " build", "--kind must be hnsw or flat, not '%s'", v);
        } else if (!strcmp(a, "--storage")) {
            if (!strcmp(v, "f32")) p.storage = ST_VEC_STORE_F32;
            else if (!strcmp(v, "int8")) p.storage = ST_VEC_STORE_I8;
            else return cli_usage_error(SUB " build", "--storage must be f32 or int8, not '%s'", v);
        } else if (!strcmp(a, "--m")) {
            if (!cli_parse_long(v, &m) || m < 2 || m > 256)
                return cli_usage_error(SUB " build", "--m must be 2..256");
        } else if (!strcmp(a, "--ef-construction")) {
            if (!cli_parse_long(v, &efc) || efc < 1 || efc > 100000)
                return cli_usage_error(SUB " build", "--ef-construction must be 1..100000");
        } else if (!strcmp(a, "--seed")) {
            if (!cli_parse_long(v, &seed) || seed < 0)
                return cli_usage_error(SUB " build", "--seed must be a non-negative integer");
        } else if (!strcmp(a, "--threads")) {
            if (!cli_parse_long(v, &threads) || threads < 1 || threads > 4096)
                return cli_usage_error(SUB " build", "--threads must be 1..4096");
        } else
            return cli_usage_error(SUB " build", "unknown option '%s'", a);
    }
    if (!in || !out) return cli_usage_error(SUB " build", "--input and --out are required");
    if (p.storage == ST_VEC_STORE_I8 && p.kind == ST_VEC_HNSW)
        return cli_usage_error(SUB " build", "--storage int8 needs --kind flat");
    p.m = (int)m, p.ef_construction = (int)efc, p.seed = (uint64_t)seed;
    float *x = NULL;
    int64_t n = 0;
    int dim = 0;
    st_status s = st_vec_read(in, &x, &n, &dim);
    if (s) return cli_fail(SUB " build", s);
    p.dim = dim;
    st_ctx *ctx = make_ctx(threads, &s);
    st_vecindex *ix = NULL;
    int rc = 1;
    if (s || (s = st_vecindex_new(&p, &ix))) goto fail;
    bool tty = isatty(2) && !json;
    int64_t chunk = n / 50 > 2000 ? n / 50 : 2000;
    double t0 = st_time_s(), last = t0;
    for (int64_t b = 0; b < n; b += chunk) {
        int64_t c = n - b < chunk ? n - b : chunk;
        if ((s = st_vecindex_add(ix, ctx, c, x + b * dim, NULL))) goto fail;
        double now = st_time_s(), rate = (double)(b + c) / (now - t0);
        if (tty && (now - last > 0.1 || b + c == n)) {
            fprintf(stderr, "\rstrata vec build: %lld/%lld vectors, %.0f/s, ETA %.0f s   ",
                    (long long)(b + c), (long long)n, rate, (double)(n - b - c) / rate);
            last = now;
        }
    }
    if (tty && n) fputc('\n', stderr);
    double build_s = st_time_s() - t0;
    if ((s = st_vecindex_save(ix, out))) goto fail;
    st_vecindex_info info;
    st_vecindex_get_info(ix, &info);
    fprintf(stderr,
            "strata vec build: %lld vectors of dim %d, %s %s, built in %.3f s (%.0f vectors/s, "
            "%d threads) -> %s\n",
            (long long)n, dim, kind_name(p.kind), metric_name(p.metric), build_s,
            build_s > 0 ? (double)n / build_s : 0.0, st_ctx_n_threads(ctx), out);
    if (json) {
        json_t *o = json_pack("{s:s, s:I, s:i, s:s, s:s, s:s, s:i, s:i, s:f, s:f, s:i, s:I}",
                              "index", out, "n", (json_int_t)n, "dim", dim, "kind",
                              kind_name(p.kind), "metric", metric_name(p.metric), "storage",
                              storage_name(p.storage), "m", info.m, "ef_construction",
                              info.ef_construction, "build_s", build_s, "vectors_per_s",
                              build_s > 0 ? (double)n / build_s : 0.0, "threads",
                              st_ctx_n_threads(ctx), "bytes", (json_int_t)info.bytes);
        char *txt = json_dumps(o, JSON_COMPACT);
        printf("%s\n", txt);
        free(txt);
        json_decref(o);
    }
    rc = 0;
fail:
    if (rc) cli_fail(SUB " build", s);
    st_vecindex_free(ix);
    st_ctx_free(ctx);
    st_free(x);
    return rc;
}

static int vec_search(int argc, char **argv) {
    const char *index = NULL, *queries = NULL, *out = NULL, *gtp = NULL;
    long k = 10, ef = 64, threads = 0;
    bool json = false, exact = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--json")) {
            json = true;
            continue;
        }
        if (!strcmp(a, "--exact")) {
            exact = true;
            continue;
        }
        if (!(v = val(argc, argv, &i))) return cli_usage_error(SUB " search", "%s needs a value", a);
        if (!strcmp(a, "--index")) index = v;
        else if (!strcmp(a, "--queries")) queries = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--gt")) gtp = v;
        else if (!strcmp(a, "-k") || !strcmp(a, "--k")) {
            if (!cli_parse_long(v, &k) || k < 1 || k > 100000)
                return cli_usage_error(SUB " search", "-k must be 1..100000");
        } else if (!strcmp(a, "--ef")) {
            if (!cli_parse_long(v, &ef) || ef < 1 || ef > 100000)
                return cli_usage_error(SUB " search", "--ef must be 1..100000");
        } else if (!strcmp(a, "--threads")) {
            if (!cli_parse_long(v, &threads) || threads < 1 || threads > 4096)
                return cli_usage_error(SUB " search", "--threads must be 1..4096");
        } else
            return cli_usage_error(SUB " search", "unknown option '%s'", a);
    }
    if (!index || !queries)
        return cli_usage_error(SUB " search", "--index and --queries are required");
    st_vecindex *ix = NULL;
    float *q = NULL;
    int64_t nq = 0, *ids = NULL, *gt = NULL, ngt = 0;
    int dim = 0, dgt = 0, rc = 1;
    st_ctx *ctx = NULL;
    st_status s = st_vecindex_load(index, &ix);
    if (!s) s = st_vec_read(queries, &q, &nq, &dim);
    if (!s && dim != st_vecindex_dim(ix))
        s = st__fail(ST_ERR_FORMAT, "%s: queries of dim %d, the index %s holds dim %d", queries,
                     dim, index, st_vecindex_dim(ix));
    if (!s && gtp) {
        s = st_vec_read_ids(gtp, &gt, &ngt, &dgt);
        if (!s && (ngt != nq || dgt < k))
            s = st__fail(ST_ERR_FORMAT, "%s: %lld rows of %d ids; need %lld rows of >= %ld", gtp,
                         (long long)ngt, dgt, (long long)nq, k);
    }
    if (!s) ctx = make_ctx(threads, &s);
    if (s) goto fail;
    ids = malloc((size_t)(nq ? nq : 1) * (size_t)k * sizeof(int64_t));
    if (!ids) {
        s = st__fail(ST_ERR_NOMEM, "no memory for %lld x %ld ids", (long long)nq, k);
        goto fail;
    }
    st_vec_search_params sp = st_vec_search_default_params();
    sp.k = (int)k, sp.ef = (int)ef, sp.exact = exact;
    double t0 = st_time_s();
    if ((s = st_vecindex_search(ix, ctx, nq, q, &sp, ids, NULL))) goto fail;
    double sec = st_time_s() - t0, qps = sec > 0 ? (double)nq / sec : 0.0;
    double rec = -1;
    if (gt) {
        int64_t hit = 0;
        for (int64_t i = 0; i < nq; i++)
            for (long a = 0; a < k; a++)
                for (long b = 0; b < k; b++)
                    if (ids[i * k + b] == gt[i * dgt + a]) {
                        hit++;
                        break;
                    }
        rec = nq ? (double)hit / (double)(nq * k) : 1.0;
    }
    if (out && (s = st_vec_write_ids(out, ids, nq, (int)k))) goto fail;
    fprintf(stderr, "strata vec search: %lld queries, k %ld, %s in %.4f s: %.0f queries/s (%d threads)",
            (long long)nq, k, exact ? "exact" : "ef", sec, qps, st_ctx_n_threads(ctx));
    if (rec >= 0) fprintf(stderr, ", recall@%ld %.4f", k, rec);
    fputc('\n', stderr);
    if (json) {
        json_t *o = json_pack("{s:I, s:i, s:i, s:b, s:f, s:f, s:i}", "queries", (json_int_t)nq,
                              "k", (int)k, "ef", (int)ef, "exact", exact, "seconds", sec, "qps",
                              qps, "threads", st_ctx_n_threads(ctx));
        if (rec >= 0) json_object_set_new(o, "recall", json_real(rec));
        if (out) json_object_set_new(o, "out", json_string(out));
        char *txt = json_dumps(o, JSON_COMPACT);
        printf("%s\n", txt);
        free(txt);
        json_decref(o);
    } else if (!out) {
        for (int64_t i = 0; i < nq; i++)
            for (long j = 0; j < k; j++)
                printf("%lld%c", (long long)ids[i * k + j], j + 1 == k ? '\n' : ' ');
    }
    rc = 0;
fail:
    if (rc) cli_fail(SUB " search", s);
    free(ids);
    st_free(q);
    st_free(gt);
    st_vecindex_free(ix);
    st_ctx_free(ctx);
    return rc;
}

static int vec_info(int argc, char **argv) {
    const char *index = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--index") && i + 1 < argc) index = argv[++i];
        else if (argv[i][0] != '-' && !index) index = argv[i];
        else return cli_usage_error(SUB " info", "unknown option '%s'", argv[i]);
    }
    if (!index) return cli_usage_error(SUB " info", "--index is required");
    st_vecindex *ix = NULL;
    st_status s = st_vecindex_load(index, &ix);
    if (s) return cli_fail(SUB " info", s);
    st_vecindex_info f;
    st_vecindex_get_info(ix, &f);
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:i, s:i, s:i, s:i, s:I, s:I}",
                              "index", index, "kind", kind_name(f.kind), "metric",
                              metric_name(f.metric), "storage", storage_name(f.storage), "dim",
                              f.dim, "n", (json_int_t)f.n, "n_deleted", (json_int_t)f.n_deleted,
                              "m", f.m, "m0", f.m0, "ef_construction", f.ef_construction,
                              "max_level", f.max_level, "n_links", (json_int_t)f.n_links, "bytes",
                              (json_int_t)f.bytes);
        char *txt = json_dumps(o, JSON_COMPACT);
        printf("%s\n", txt);
        free(txt);
        json_decref(o);
    } else {
        printf("index        %s\n", index);
        printf("kind         %s\nmetric       %s\nstorage      %s\ndim          %d\n",
               kind_name(f.kind), metric_name(f.metric), storage_name(f.storage), f.dim);
        printf("vectors      %lld (%lld deleted)\n", (long long)f.n, (long long)f.n_deleted);
        if (f.kind == ST_VEC_HNSW)
            printf("hnsw         M %d, M0 %d, efConstruction %d, top layer %d, %lld links\n", f.m,
                   f.m0, f.ef_construction, f.max_level, (long long)f.n_links);
        printf("bytes        %zu\n", f.bytes);
    }
    st_vecindex_free(ix);
    return 0;
}

int cmd_vec(int argc, char **argv) {
    if (argc < 2) {
        help_main(stderr);
        return 2;
    }
    const char *sub = argv[1];
    bool help = cli_wants_help(argc - 1, argv + 1);
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        help_main(stdout);
        return 0;
    }
    if (!strcmp(sub, "build")) return help ? (help_build(), 0) : vec_build(argc - 1, argv + 1);
    if (!strcmp(sub, "search")) return help ? (help_search(), 0) : vec_search(argc - 1, argv + 1);
    if (!strcmp(sub, "info")) return help ? (help_info(), 0) : vec_info(argc - 1, argv + 1);
    return cli_usage_error(SUB, "unknown subcommand '%s' (build, search or info)", sub);
}

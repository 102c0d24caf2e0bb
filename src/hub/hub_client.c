/*
 * hub_client.c — `strata hub pull` and `push --to`: the registry's HTTP
 * client (libcurl, one easy handle per call, synchronous).
 *
 * Pull: tag → revision (JSON), revision → manifest bytes, whose SHA-256 must
 * be the revision and which is validated like any outside manifest. Each
 * missing blob downloads into hub/tmp/SHA.partial (flock'ed so two pulls do
 * not write one file): an existing partial is rehashed and continued with a
 * Range request; a server that answers 200 instead of 206 restarts it from
 * zero. Bytes are hashed as they arrive and never accepted past the declared
 * size; a finished file whose SHA-256 differs is deleted and the pull fails.
 * Only when every blob is verified does the commit run, under the
 * registry's exclusive lock: blobs moved into the store, the manifest
 * written, the tag written last — a killed pull leaves no visible revision,
 * only partial files the next pull continues from.
 *
 * Every response held in memory (JSON, manifests) is bounded
 * (ST_REGISTRY_MAX_MANIFEST_BYTES).
 *
 * Threads: each blob download runs on the caller's thread (curl) plus one
 * verifying thread it starts and joins (below); nothing outlives the call,
 * and two calls share nothing but the registry's lock and the flock'ed
 * partial files. It is a pipeline stage, not partitioned compute, so it is
 * a plain pthread (as the loader's prefetch thread) and not the compute pool.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry_impl.h"

st_hub_client_params st_hub_client_default_params(void) {
    st_hub_client_params p;
    memset(&p, 0, sizeof p);
    return p;
}

static void curl_init_once(void) {
    static int done = 0;
    if (!__atomic_exchange_n(&done, 1, __ATOMIC_SEQ_CST)) curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- small GETs into memory ---- */

typedef struct membuf {
    char *p;
    size_t n, cap, max;
    bool over;
} membuf;

static size_t mem_write(char *data, size_t sz, size_t nm, void *ud) {
    membuf *b = ud;
    size_t k = sz * nm;
    if (b->n + k > b->max) {
        b->over = true;
        return 0;
    }
    if (b->n + k + 1 > b->cap) {
        size_t cap = (b->n + k + 1) * 2;
        if (cap > b->max + 1) cap = b->max + 1;
        char *np = st_realloc(b->p, cap);
        if (!np) return 0;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, k);
    b->n += k;
    b->p[b->n] = '\0';
    return k;
}

static CURL *new_easy(const char *url) {
    curl_init_once();
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 120L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "strata-hub/" ST_VERSION_STRING);
    return c;
}

/* GET url into *out (NUL-terminated, st_free). *status gets the HTTP code. */
static st_status get_small(const char *url, char **out, size_t *n, long *status) {
    *out = NULL;
    membuf b = {NULL, 0, 0, ST_REGISTRY_MAX_MANIFEST_BYTES, false};
    CURL *c = new_easy(url);
    if (!c) return st__fail(ST_ERR_NOMEM, "%s: cannot create a curl handle", url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    if (b.over) {
        st_free(b.p);
        return st__fail(ST_ERR_FORMAT, "%s: response over %u bytes", url, ST_REGISTRY_MAX_MANIFEST_BYTES);
    }
    if (rc != CURLE_OK) {
        st_free(b.p);
        return st__fail(ST_ERR_IO, "%s: %s", url, curl_easy_strerror(rc));
    }
    if (!b.p && !(b.p = st_strdup(""))) return st__fail(ST_ERR_NOMEM, "%s: no memory", url);
    *out = b.p;
    *n = b.n;
    return ST_OK;
}

/* The "error" of a JSON error body, for messages. */
static void server_error(const char *body, char *msg, size_t mn) {
    json_t *o = body ? json_loads(body, 0, NULL) : NULL;
    const char *e = json_string_value(json_object_get(o, "error"));
    snprintf(msg, mn, "%.400s", e ? e : "");
    json_decref(o);
}

static char *url_fmt(const char *base, const char *fmt, const char *a, const char *b) {
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/') bl--;
    char *p = NULL;
    char tail[700];
    snprintf(tail, sizeof tail, fmt, a, b ? b : "");
    if (asprintf(&p, "%.*s%s", (int)bl, base, tail) < 0) return NULL;
    char *q = st_strdup(p);
    free(p);
    return q;
}

/* ---- blob download ----
 *
 * Two threads per blob. The receiving thread (the caller, inside curl's
 * write callback) bounds-checks each piece and write(2)s it straight from
 * curl's buffer to the partial file, then publishes how many bytes the file
 * holds. The verifying thread (verify_main) reads the file back from the
 * page cache behind it (pread into a small L2-sized buffer) and hashes, and
 * every writeback_every_bytes (16 MiB) asks the kernel to start writing the
 * hashed range to disk (sync_file_range(SYNC_FILE_RANGE_WRITE), async), so
 * the fsync before the commit waits only for the last few MiB instead of
 * the whole blob. Why (docs/L6-hub.md, `strata bench hubpull`): SHA-256
 * runs at about 1.6 GB/s here and recv + write cost about as much again, so
 * on one thread they add up; and the kernel's writeback of a 1 GiB blob took
 * 0.85-1.7 s that one fsync at the end used to wait for. With
 * hash_on_receiving_thread the callback hashes each piece itself (one
 * thread, the former design; kept for one-core machines and for the bench
 * to compare against).
 *
 * Hand-off: "written" and "done" under mu, the verifier waits on cv when it
 * has caught up; it owns its hash, buffer and counters until joined. It
 * starts at the first body byte of a 200/206 answer (after a 200 to a Range
 * request has truncated the file) and hashes from offset 0, so the bytes of
 * an earlier partial are rehashed while the rest arrives. */

#define VERIFY_CHUNK (256u << 10)       /* read-back piece: stays in L2 while it is hashed */
#define WRITEBACK_DEFAULT (16ull << 20) /* start writeback every 16 MiB */
#define RECV_BUFFER (2L << 20)          /* curl's receive buffer (CURLOPT_BUFFERSIZE) */

typedef struct verifier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t written; /* bytes in the file (mu) */
    bool done;        /* no more bytes will come (mu) */
    bool started;
    pthread_t th;
    /* the verifier's own until joined */
    int fd;
    st__sha256 *h;
    char *buf;
    uint64_t hashed, kicked, kick_every; /* kick_every 0: never */
    int read_errno;   /* a failed pread: errno, or -1 for a file shorter than written */
    double hash_s, read_s, cpu_s;
    int failed;       /* set (atomic) when the verifier stopped on an error */
} verifier;

/* Starts writeback of [kicked, hashed) once it is kick_every bytes or more.
 * Asynchronous; where the file system lacks sync_file_range only the
 * overlap is lost: the fsync before the commit still makes it durable. */
static void kick_writeback(verifier *v) {
    if (!v->kick_every || v->hashed - v->kicked < v->kick_every) return;
    (void)sync_file_range(v->fd, (off_t)v->kicked, (off_t)(v->hashed - v->kicked), SYNC_FILE_RANGE_WRITE);
    v->kicked = v->hashed;
}

static void verify_loop(verifier *v) {
    for (;;) {
        pthread_mutex_lock(&v->mu);
        while (v->hashed == v->written && !v->done) pthread_cond_wait(&v->cv, &v->mu);
        uint64_t avail = v->written - v->hashed;
        pthread_mutex_unlock(&v->mu);
        if (avail == 0) break; /* done and caught up */
        size_t n = avail < VERIFY_CHUNK ? (size_t)avail : VERIFY_CHUNK;
        double t0 = st_time_s();
        size_t got = 0;
        while (got < n) {
            ssize_t k = pread(v->fd, v->buf + got, n - got, (off_t)(v->hashed + got));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) {
                v->read_errno = k < 0 ? errno : -1;
                __atomic_store_n(&v->failed, 1, __ATOMIC_RELEASE);
                return;
            }
            got += (size_t)k;
        }
        double t1 = st_time_s();
        st__sha256_update(v->h, v->buf, n);
        v->hash_s += st_time_s() - t1;
        v->read_s += t1 - t0;
        v->hashed += n;
        kick_writeback(v);
    }
}

/* CPU seconds (user + system) of the calling thread. */
static double thread_cpu_s(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) != 0) return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

static void *verify_main(void *arg) {
    verifier *v = arg;
    double c0 = thread_cpu_s();
    verify_loop(v);
    v->cpu_s += thread_cpu_s() - c0;
    return NULL;
}

typedef struct dl {
    int fd;
    const char *url;
    verifier v;
    uint64_t have, expect, offset_requested;
    long status;
    bool checked, bad, io_error, inline_hash, no_thread;
    char err[256];
    CURL *c;
    const st_hub_client_params *p;
    uint64_t done_base, total;
    uint64_t got_now; /* bytes of this transfer, for the rate limit */
    double t0, write_s;
} dl;

static size_t dl_header(char *data, size_t sz, size_t nm, void *ud) {
    dl *d = ud;
    size_t k = sz * nm;
    if (k > 14 && !strncasecmp(data, "Content-Range:", 14)) {
        unsigned long long a = 0;
        const char *q = data + 14;
        while (*q == ' ') q++;
        if (sscanf(q, "bytes %llu-", &a) == 1 && a != d->offset_requested) {
            d->bad = true;
            snprintf(d->err, sizeof d->err, "Content-Range starts at %llu, asked for %llu", a,
                     (unsigned long long)d->offset_requested);
        }
    }
    return k;
}

static size_t dl_write(char *data, size_t sz, size_t nm, void *ud) {
    dl *d = ud;
    size_t k = sz * nm;
    if (!d->checked) {
        d->checked = true;
        curl_easy_getinfo(d->c, CURLINFO_RESPONSE_CODE, &d->status);
        if (d->status != 200 && d->status != 206) return k; /* an error body: ignored, the status is checked after */
        if (d->bad) return 0; /* a wrong Content-Range */
        if (d->status == 200 && d->have > 0) {
            /* the server ignored the Range: start over */
            if (ftruncate(d->fd, 0) != 0 || lseek(d->fd, 0, SEEK_SET) != 0) {
                d->io_error = true;
                return 0;
            }
            d->have = 0;
        }
        /* the verifier starts with what the file holds now */
        d->v.written = d->have;
        if (d->p->hash_on_receiving_thread) {
            /* one thread: the earlier bytes now, each new piece as it arrives */
            d->v.done = true;
            verify_main(&d->v);
            d->v.done = false;
            d->inline_hash = true;
        } else if (pthread_create(&d->v.th, NULL, verify_main, &d->v) != 0) {
            d->no_thread = true;
            return 0;
        } else {
            d->v.started = true;
        }
    }
    if (d->status != 200 && d->status != 206) return k;
    if (d->bad) return 0;
    if (__atomic_load_n(&d->v.failed, __ATOMIC_ACQUIRE)) return 0; /* reported after the transfer */
    if (d->have + k > d->expect) {
        d->bad = true;
        snprintf(d->err, sizeof d->err, "more bytes than the manifest's %llu", (unsigned long long)d->expect);
        return 0;
    }
    double t0 = st_time_s();
    for (size_t off = 0; off < k;) {
        ssize_t w = write(d->fd, data + off, k - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            d->io_error = true;
            return 0;
        }
        off += (size_t)w;
    }
    d->write_s += st_time_s() - t0;
    d->have += k;
    if (d->inline_hash) {
        double th = st_time_s();
        st__sha256_update(d->v.h, data, k);
        d->v.hash_s += st_time_s() - th;
        d->v.hashed = d->v.written = d->have;
        kick_writeback(&d->v);
    } else {
        pthread_mutex_lock(&d->v.mu);
        d->v.written = d->have;
        pthread_cond_signal(&d->v.cv);
        pthread_mutex_unlock(&d->v.mu);
    }
    d->got_now += k;
    if (d->p->bytes_fetched) *d->p->bytes_fetched += (int64_t)k;
    if (d->p->max_recv_bytes_per_s) {
        /* our own throttle: libcurl's limit lets a loopback burst through */
        double ahead = (double)d->got_now / (double)d->p->max_recv_bytes_per_s - (st_time_s() - d->t0);
        if (ahead > 0) usleep((useconds_t)(ahead * 1e6));
    }
    if (d->p->progress) d->p->progress(d->p->progress_user, d->done_base + d->have, d->total);
    return k;
}

/* Downloads blob f into tmp/SHA.partial (verified). */
static st_status fetch_blob(st_registry *r, const char *base, const st_registry_file *f, const st_hub_client_params *p,
                            uint64_t done_base, uint64_t total, char **partial_out) {
    *partial_out = NULL;
    char leaf[80];
    snprintf(leaf, sizeof leaf, "%s.partial", f->sha256);
    char *part = st__reg_tmp_path(r, leaf);
    char *url = url_fmt(base, "/v1/blobs/%s%s", f->sha256, NULL);
    if (!part || !url) {
        st_free(part);
        st_free(url);
        return st__fail(ST_ERR_NOMEM, "hub pull: no memory");
    }
    st_hub_pull_stats *ps = p->stats;
    st_status s = ST_OK;
    dl d;
    memset(&d, 0, sizeof d);
    pthread_mutex_init(&d.v.mu, NULL);
    pthread_cond_init(&d.v.cv, NULL);
    d.v.kick_every = p->writeback_every_bytes == UINT64_MAX ? 0
                     : p->writeback_every_bytes ? p->writeback_every_bytes : WRITEBACK_DEFAULT;
    d.fd = d.v.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    d.url = url;
    d.expect = f->size;
    d.p = p;
    d.done_base = done_base;
    d.total = total;
    if (d.fd < 0) s = st__fail(ST_ERR_IO, "%s: cannot create: %s", part, strerror(errno));
    else if (flock(d.fd, LOCK_EX | LOCK_NB) != 0)
        s = st__fail(ST_ERR_IO, "%s: another pull is downloading this blob", part);
    /* what an earlier pull left is kept (and rehashed by the verifier) */
    struct stat st;
    if (s == ST_OK && fstat(d.fd, &st) != 0) s = st__fail(ST_ERR_IO, "%s: stat failed", part);
    if (s == ST_OK && (uint64_t)st.st_size > f->size && ftruncate(d.fd, 0) != 0)
        s = st__fail(ST_ERR_IO, "%s: truncate failed", part);
    if (s == ST_OK) d.have = (uint64_t)st.st_size <= f->size ? (uint64_t)st.st_size : 0;
    if (s == ST_OK && lseek(d.fd, (off_t)d.have, SEEK_SET) < 0) s = st__fail(ST_ERR_IO, "%s: seek failed", part);
    if (s == ST_OK && (!(d.v.h = st__sha256_new()) || !(d.v.buf = st_malloc(VERIFY_CHUNK))))
        s = st__fail(ST_ERR_NOMEM, "hub pull: no memory");
    if (s == ST_OK && d.have < f->size) {
        d.c = new_easy(url);
        if (!d.c) s = st__fail(ST_ERR_NOMEM, "%s: cannot create a curl handle", url);
    }
    if (s == ST_OK && d.c) {
        char range[64];
        d.offset_requested = d.have;
        if (d.have) {
            snprintf(range, sizeof range, "%llu-", (unsigned long long)d.have);
            curl_easy_setopt(d.c, CURLOPT_RANGE, range);
        }
        curl_easy_setopt(d.c, CURLOPT_WRITEFUNCTION, dl_write);
        curl_easy_setopt(d.c, CURLOPT_WRITEDATA, &d);
        curl_easy_setopt(d.c, CURLOPT_HEADERFUNCTION, dl_header);
        curl_easy_setopt(d.c, CURLOPT_HEADERDATA, &d);
        curl_easy_setopt(d.c, CURLOPT_BUFFERSIZE, p->max_recv_bytes_per_s ? 16L * 1024L : RECV_BUFFER);
        uint64_t have0 = d.have;
        double c0 = thread_cpu_s();
        d.t0 = st_time_s();
        CURLcode rc = curl_easy_perform(d.c);
        double t1 = st_time_s(), c1 = thread_cpu_s();
        long status = 0;
        curl_easy_getinfo(d.c, CURLINFO_RESPONSE_CODE, &status);
        if (d.bad) s = st__fail(ST_ERR_FORMAT, "%s: refused: %s", url, d.err);
        else if (d.io_error) s = st__fail(ST_ERR_IO, "%s: cannot write: %s", part, strerror(errno));
        else if (d.no_thread) s = st__fail(ST_ERR_NOMEM, "%s: cannot start the hashing thread", part);
        else if (d.v.failed) s = ST_OK; /* reported below, after the join */
        else if (rc != CURLE_OK) s = st__fail(ST_ERR_IO, "%s: %s (after %llu of %llu bytes; pull again to resume)", url,
                                               curl_easy_strerror(rc), (unsigned long long)d.have, (unsigned long long)f->size);
        else if (status != 200 && status != 206) s = st__fail(ST_ERR_IO, "%s: HTTP %ld", url, status);
        else if (d.have != f->size)
            s = st__fail(ST_ERR_FORMAT, "%s: %llu bytes, the manifest says %llu", url, (unsigned long long)d.have,
                         (unsigned long long)f->size);
        curl_easy_cleanup(d.c);
        if (ps) {
            ps->transfer_s += t1 - d.t0;
            ps->write_s += d.write_s;
            ps->receive_s += (t1 - d.t0) - d.write_s;
            ps->receive_cpu_s += c1 - c0;
            ps->bytes += d.have >= have0 ? d.have - have0 : d.have;
        }
    }
    /* finish the hash: join the verifier, or hash a complete partial here */
    double th = st_time_s();
    if (d.v.started) {
        pthread_mutex_lock(&d.v.mu);
        d.v.done = true;
        pthread_cond_signal(&d.v.cv);
        pthread_mutex_unlock(&d.v.mu);
        pthread_join(d.v.th, NULL);
    } else if (s == ST_OK && !d.inline_hash) {
        d.v.written = d.have;
        d.v.done = true;
        verify_main(&d.v);
    }
    if (ps) {
        ps->hash_tail_s += st_time_s() - th;
        ps->hash_s += d.v.hash_s;
        ps->readback_s += d.v.read_s;
        ps->verify_cpu_s += d.v.cpu_s;
    }
    if (s == ST_OK && d.v.failed)
        s = st__fail(ST_ERR_IO, "%s: cannot read back for hashing: %s", part,
                     d.v.read_errno > 0 ? strerror(d.v.read_errno) : "the file is shorter than written");
    if (s == ST_OK) {
        char hex[65];
        st__sha256_final_hex(d.v.h, hex);
        d.v.h = NULL;
        double tf = st_time_s();
        if (strcmp(hex, f->sha256) != 0) {
            s = st__fail(ST_ERR_FORMAT, "%s: SHA-256 of the bytes is %s, not %s: refused (%s)", url, hex, f->sha256, f->path);
            unlink(part); /* never resume from bad bytes */
        } else if (fsync(d.fd) != 0) {
            s = st__fail(ST_ERR_IO, "%s: fsync failed: %s", part, strerror(errno));
        }
        if (ps) ps->fsync_s += st_time_s() - tf;
    } else if (s == ST_ERR_FORMAT) {
        unlink(part);
    }
    st__sha256_free(d.v.h);
    st_free(d.v.buf);
    pthread_cond_destroy(&d.v.cv);
    pthread_mutex_destroy(&d.v.mu);
    if (d.fd >= 0) close(d.fd);
    st_free(url);
    if (s == ST_OK) *partial_out = part;
    else st_free(part);
    return s;
}

st_status st_hub_pull(st_registry *r, const char *base, const char *ref, const st_hub_client_params *pp,
                      char rev_out[65]) {
    st_hub_client_params p = pp ? *pp : st_hub_client_default_params();
    double t_start = st_time_s();
    if (p.stats) memset(p.stats, 0, sizeof *p.stats);
    char name[ST_REGISTRY_MAX_NAME + 1], tag[ST_REGISTRY_MAX_NAME + 1], rev[65];
    ST_TRY(st_registry_parse_ref(ref, name, tag, rev));
    if (!tag[0] && strlen(rev) != 64)
        return st__fail(ST_ERR_INVALID_ARG, "hub pull %s: give the full 64-digit revision (or a tag)", ref);
    char *url = NULL, *body = NULL;
    size_t n = 0;
    long status = 0;
    st_status s = ST_OK;
    if (tag[0]) {
        url = url_fmt(base, "/v1/models/%s/tags/%s", name, tag);
        if (!url) return st__fail(ST_ERR_NOMEM, "hub pull: no memory");
        s = get_small(url, &body, &n, &status);
        if (s == ST_OK && status != 200) {
            char msg[420];
            server_error(body, msg, sizeof msg);
            s = st__fail(ST_ERR_IO, "%s: HTTP %ld %s", url, status, msg);
        }
        if (s == ST_OK) {
            json_t *o = json_loadb(body, n, 0, NULL);
            const char *v = json_string_value(json_object_get(o, "revision"));
            if (!st__reg_valid_hex(v)) s = st__fail(ST_ERR_FORMAT, "%s: the answer holds no revision id", url);
            else memcpy(rev, v, 65);
            json_decref(o);
        }
        st_free(url);
        st_free(body);
        url = body = NULL;
        if (s) return s;
    }
    url = url_fmt(base, "/v1/models/%s/revisions/%s", name, rev);
    if (!url) return st__fail(ST_ERR_NOMEM, "hub pull: no memory");
    s = get_small(url, &body, &n, &status);
    if (s == ST_OK && status != 200) {
        char msg[420];
        server_error(body, msg, sizeof msg);
        s = st__fail(ST_ERR_IO, "%s: HTTP %ld %s", url, status, msg);
    }
    st_registry_manifest *m = NULL;
    if (s == ST_OK) s = st_registry_manifest_parse(body, n, url, &m);
    if (s == ST_OK && strcmp(m->revision, rev) != 0)
        s = st__fail(ST_ERR_FORMAT, "%s: the manifest hashes to %s, not the revision asked for: refused", url, m->revision);
    if (s == ST_OK && strcmp(m->name, name) != 0)
        s = st__fail(ST_ERR_FORMAT, "%s: the manifest is of model \"%s\": refused", url, m->name);
    st_free(body);
    /* download what is missing */
    char **parts = NULL;
    if (s == ST_OK && !(parts = st_calloc((size_t)m->n_files + 1, sizeof *parts))) s = st__fail(ST_ERR_NOMEM, "hub pull: no memory");
    uint64_t done = 0;
    for (int i = 0; s == ST_OK && i < m->n_files; i++) {
        const st_registry_file *f = &m->files[i];
        bool dup = false;
        for (int j = 0; j < i && !dup; j++) dup = !strcmp(m->files[j].sha256, f->sha256);
        if (!dup && !st__reg_has_blob(r, f->sha256, (int64_t)f->size)) {
            s = fetch_blob(r, base, f, &p, done, m->total_bytes, &parts[i]);
            if (s == ST_OK && p.blobs_fetched) (*p.blobs_fetched)++;
        }
        done += f->size;
        if (p.progress) p.progress(p.progress_user, done, m->total_bytes);
    }
    /* commit: blobs, manifest, tag last */
    double t_commit = st_time_s();
    if (s == ST_OK && (s = st__reg_lock(r, LOCK_EX)) == ST_OK) {
        for (int i = 0; s == ST_OK && i < m->n_files; i++)
            if (parts[i]) s = st__reg_commit_blob(r, parts[i], m->files[i].sha256);
        char *js = NULL;
        size_t jn = 0;
        if (s == ST_OK) s = st_registry_manifest_json(m, &js, &jn);
        if (s == ST_OK) s = st__reg_commit_manifest(r, m, js, jn, tag[0] ? tag : NULL);
        st_free(js);
        st__reg_unlock(r);
    }
    if (p.stats) {
        p.stats->commit_s = st_time_s() - t_commit;
        p.stats->total_s = st_time_s() - t_start;
    }
    if (s == ST_OK && rev_out) memcpy(rev_out, m->revision, 65);
    for (int i = 0; parts && i < m->n_files; i++) st_free(parts[i]);
    st_free(parts);
    st_registry_manifest_free(m);
    st_free(url);
    return s;
}

/* ---- push --to ---- */

static st_status auth_headers(const st_hub_client_params *p, struct curl_slist **h) {
    char a[600];
    snprintf(a, sizeof a, "Authorization: Bearer %.500s", p->api_key);
    *h = curl_slist_append(NULL, a);
    return *h ? ST_OK : st__fail(ST_ERR_NOMEM, "hub push: no memory");
}

st_status st_hub_push_remote(st_registry *r, const char *ref, const char *base, const char *tag,
                             const st_hub_client_params *pp) {
    st_hub_client_params p = pp ? *pp : st_hub_client_default_params();
    if (!p.api_key) return st__fail(ST_ERR_INVALID_ARG, "hub push --to %s: an API key is required", base);
    if (tag && !st__reg_valid_name(tag)) return st__fail(ST_ERR_INVALID_ARG, "hub push: bad tag \"%.200s\"", tag);
    st_registry_manifest *m = NULL;
    ST_TRY(st_registry_get(r, ref, &m));
    struct curl_slist *hdr = NULL;
    st_status s = auth_headers(&p, &hdr);
    uint64_t done = 0;
    for (int i = 0; s == ST_OK && i < m->n_files; i++) {
        const st_registry_file *f = &m->files[i];
        char *url = url_fmt(base, "/v1/blobs/%s%s", f->sha256, NULL);
        if (!url) {
            s = st__fail(ST_ERR_NOMEM, "hub push: no memory");
            break;
        }
        CURL *c = new_easy(url);
        long status = 0;
        if (!c) s = st__fail(ST_ERR_NOMEM, "hub push: no curl handle");
        if (s == ST_OK) {
            curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
            CURLcode rc = curl_easy_perform(c);
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            if (rc != CURLE_OK) s = st__fail(ST_ERR_IO, "%s: %s", url, curl_easy_strerror(rc));
            curl_easy_cleanup(c);
        }
        if (s == ST_OK && status != 200) {
            char *bp = st__reg_blob_path(r, f->sha256);
            FILE *in = bp ? fopen(bp, "rbe") : NULL;
            membuf b = {NULL, 0, 0, 1 << 16, false};
            if (!in) s = st__fail(ST_ERR_IO, "%s: cannot open the blob", bp ? bp : "blob");
            if (s == ST_OK && !(c = new_easy(url))) s = st__fail(ST_ERR_NOMEM, "hub push: no curl handle");
            if (s == ST_OK) {
                curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(c, CURLOPT_READDATA, in);
                curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)f->size);
                curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
                curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
                CURLcode rc = curl_easy_perform(c);
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                if (rc != CURLE_OK) s = st__fail(ST_ERR_IO, "%s: %s", url, curl_easy_strerror(rc));
                else if (status != 201 && status != 200) {
                    char msg[420];
                    server_error(b.p, msg, sizeof msg);
                    s = st__fail(ST_ERR_IO, "PUT %s: HTTP %ld %s", url, status, msg);
                }
                curl_easy_cleanup(c);
            }
            if (in) fclose(in);
            st_free(b.p);
            st_free(bp);
        }
        done += f->size;
        if (s == ST_OK && p.progress) p.progress(p.progress_user, done, m->total_bytes);
        st_free(url);
    }
    char *js = NULL;
    size_t jn = 0;
    if (s == ST_OK) s = st_registry_manifest_json(m, &js, &jn);
    if (s == ST_OK) {
        char *url = tag ? url_fmt(base, "/v1/models/%s/revisions?tag=%s", m->name, tag)
                        : url_fmt(base, "/v1/models/%s/revisions%s", m->name, NULL);
        CURL *c = url ? new_easy(url) : NULL;
        membuf b = {NULL, 0, 0, 1 << 16, false};
        if (!c) s = st__fail(ST_ERR_NOMEM, "hub push: no memory");
        if (s == ST_OK) {
            struct curl_slist *h2 = curl_slist_append(hdr, "Content-Type: application/json");
            if (h2) hdr = h2;
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, js);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)jn);
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
            curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
            curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
            CURLcode rc = curl_easy_perform(c);
            long status = 0;
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            if (rc != CURLE_OK) s = st__fail(ST_ERR_IO, "%s: %s", url, curl_easy_strerror(rc));
            else if (status != 201 && status != 200) {
                char msg[420];
                server_error(b.p, msg, sizeof msg);
                s = st__fail(ST_ERR_IO, "POST %s: HTTP %ld %s", url, status, msg);
            }
        }
        if (c) curl_easy_cleanup(c);
        st_free(b.p);
        st_free(url);
    }
    st_free(js);
    curl_slist_free_all(hdr);
    st_registry_manifest_free(m);
    return s;
}

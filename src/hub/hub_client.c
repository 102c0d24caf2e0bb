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
 * (ST_REGISTRY_MAX_MANIFEST_BYTES). Single-threaded.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry_impl.h"

#define READ_CHUNK (1u << 20)

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

/* ---- blob download ---- */

typedef struct dl {
    int fd;
    const char *url;
    st__sha256 *h;
    uint64_t have, expect, offset_requested;
    long status;
    bool checked, restart, bad, io_error;
    char err[256];
    CURL *c;
    const st_hub_client_params *p;
    uint64_t done_base, total;
    uint64_t got_now; /* bytes of this transfer, for the rate limit */
    double t0;
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
        if (d->status == 200 && d->have > 0) {
            /* the server ignored the Range: start over */
            if (ftruncate(d->fd, 0) != 0 || lseek(d->fd, 0, SEEK_SET) != 0) {
                d->io_error = true;
                return 0;
            }
            st__sha256_free(d->h);
            d->h = st__sha256_new();
            d->have = 0;
            if (!d->h) return 0;
        } else if (d->status != 200 && d->status != 206) {
            return k; /* an error body: ignored, the status is checked after */
        }
    }
    if (d->status != 200 && d->status != 206) return k;
    if (d->bad) return 0;
    if (d->have + k > d->expect) {
        d->bad = true;
        snprintf(d->err, sizeof d->err, "more bytes than the manifest's %llu", (unsigned long long)d->expect);
        return 0;
    }
    for (size_t off = 0; off < k;) {
        ssize_t w = write(d->fd, data + off, k - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            d->io_error = true;
            return 0;
        }
        off += (size_t)w;
    }
    st__sha256_update(d->h, data, k);
    d->have += k;
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
    st_status s = ST_OK;
    dl d;
    memset(&d, 0, sizeof d);
    d.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    d.url = url;
    d.expect = f->size;
    d.p = p;
    d.done_base = done_base;
    d.total = total;
    if (d.fd < 0) s = st__fail(ST_ERR_IO, "%s: cannot create: %s", part, strerror(errno));
    else if (flock(d.fd, LOCK_EX | LOCK_NB) != 0)
        s = st__fail(ST_ERR_IO, "%s: another pull is downloading this blob", part);
    /* rehash what an earlier pull left */
    struct stat st;
    if (s == ST_OK && fstat(d.fd, &st) != 0) s = st__fail(ST_ERR_IO, "%s: stat failed", part);
    if (s == ST_OK && (uint64_t)st.st_size > f->size && ftruncate(d.fd, 0) != 0)
        s = st__fail(ST_ERR_IO, "%s: truncate failed", part);
    if (s == ST_OK && !(d.h = st__sha256_new())) s = st__fail(ST_ERR_NOMEM, "hub pull: no memory");
    if (s == ST_OK && (uint64_t)st.st_size <= f->size && st.st_size > 0) {
        char *buf = st_malloc(READ_CHUNK);
        if (!buf) s = st__fail(ST_ERR_NOMEM, "hub pull: no memory");
        while (s == ST_OK) {
            ssize_t k = read(d.fd, buf, READ_CHUNK);
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) s = st__fail(ST_ERR_IO, "%s: read failed", part);
            if (k <= 0) break;
            st__sha256_update(d.h, buf, (size_t)k);
            d.have += (uint64_t)k;
        }
        st_free(buf);
    }
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
        curl_easy_setopt(d.c, CURLOPT_BUFFERSIZE, p->max_recv_bytes_per_s ? 16L * 1024L : 512L * 1024L);
        d.t0 = st_time_s();
        CURLcode rc = curl_easy_perform(d.c);
        long status = 0;
        curl_easy_getinfo(d.c, CURLINFO_RESPONSE_CODE, &status);
        if (d.bad) s = st__fail(ST_ERR_FORMAT, "%s: refused: %s", url, d.err);
        else if (d.io_error) s = st__fail(ST_ERR_IO, "%s: cannot write: %s", part, strerror(errno));
        else if (rc != CURLE_OK) s = st__fail(ST_ERR_IO, "%s: %s (after %llu of %llu bytes; pull again to resume)", url,
                                               curl_easy_strerror(rc), (unsigned long long)d.have, (unsigned long long)f->size);
        else if (status != 200 && status != 206) s = st__fail(ST_ERR_IO, "%s: HTTP %ld", url, status);
        else if (d.have != f->size)
            s = st__fail(ST_ERR_FORMAT, "%s: %llu bytes, the manifest says %llu", url, (unsigned long long)d.have,
                         (unsigned long long)f->size);
        curl_easy_cleanup(d.c);
    }
    if (s == ST_OK) {
        char hex[65];
        st__sha256_final_hex(d.h, hex);
        d.h = NULL;
        if (strcmp(hex, f->sha256) != 0) {
            s = st__fail(ST_ERR_FORMAT, "%s: SHA-256 of the bytes is %s, not %s: refused (%s)", url, hex, f->sha256, f->path);
            unlink(part); /* never resume from bad bytes */
        } else if (fsync(d.fd) != 0) {
            s = st__fail(ST_ERR_IO, "%s: fsync failed: %s", part, strerror(errno));
        }
    } else if (s == ST_ERR_FORMAT) {
        unlink(part);
    }
    st__sha256_free(d.h);
    if (d.fd >= 0) close(d.fd);
    st_free(url);
    if (s == ST_OK) *partial_out = part;
    else st_free(part);
    return s;
}

st_status st_hub_pull(st_registry *r, const char *base, const char *ref, const st_hub_client_params *pp,
                      char rev_out[65]) {
    st_hub_client_params p = pp ? *pp : st_hub_client_default_params();
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

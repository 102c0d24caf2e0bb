/*
 * hub_server.c — `strata hub serve`: the registry over HTTP (libmicrohttpd).
 *
 * Read endpoints return JSON (jansson) or the stored bytes: manifests as
 * they are on disk (their SHA-256 is the revision, so a client verifies
 * them), blobs from an open descriptor (sendfile when MHD can), with ETag =
 * the SHA-256, Accept-Ranges and single-range requests (206 with
 * Content-Range; 416 with "bytes *\/SIZE" when unsatisfiable). HEAD is GET
 * without the body (MHD drops it).
 *
 * Uploads need "Authorization: Bearer KEY" (compared in constant time):
 * PUT /v1/blobs/SHA streams the body into hub/tmp/upload.PID.N while hashing
 * it and moves it into the store only when the hash matches the URL (400
 * otherwise); POST /v1/models/NAME/revisions takes a manifest (at most
 * ST_REGISTRY_MAX_MANIFEST_BYTES), validates it, requires every blob it
 * names to be present (409 listing the missing ones) and commits it,
 * moving "latest" and ?tag=T.
 *
 * Threads: MHD's internal thread pool calls the handler concurrently. The
 * registry handle (one lock descriptor) is used under the server's mutex;
 * blob bytes are streamed outside it (blobs are immutable; an unlinked blob
 * stays readable through its open descriptor). Per-connection upload state
 * lives in *con_cls and is freed by the completion callback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry_impl.h"

struct st_hub_server {
    struct MHD_Daemon *d;
    st_registry *r;
    pthread_mutex_t mu;   /* guards r, the request log and seq */
    char *api_key;
    bool log;
    int port;
    char **paths;         /* every request path, for st_hub_server_count */
    int64_t n_paths, cap_paths;
    int64_t seq;
};

typedef struct upload {
    int kind;             /* 1 blob, 2 manifest */
    int fd;               /* blob: the temporary file */
    char *tmp;
    st__sha256 *h;
    uint64_t bytes;
    char *buf;            /* manifest body */
    size_t n, cap;
    bool too_big, io_error;
} upload;

st_hub_server_params st_hub_server_default_params(void) {
    st_hub_server_params p = {NULL, "127.0.0.1", 8090, NULL, false, 4};
    return p;
}

/* ---- responses ---- */

static enum MHD_Result send_buf(struct MHD_Connection *c, unsigned status, const char *type,
                                const char *body, size_t n) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!s) return send_buf(c, 500, "application/json", "{\"error\":\"no memory\"}", 21);
    enum MHD_Result r = send_buf(c, status, "application/json", s, strlen(s));
    free(s);
    return r;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *msg) {
    return send_json(c, status, json_pack("{s:s}", "error", msg));
}

static void log_req(st_hub_server *s, const char *method, const char *url, unsigned status, const char *extra) {
    pthread_mutex_lock(&s->mu);
    if (s->n_paths < (1 << 20)) {
        if (s->n_paths == s->cap_paths) {
            int64_t cap = s->cap_paths ? 2 * s->cap_paths : 256;
            char **np = st_realloc(s->paths, (size_t)cap * sizeof *np);
            if (np) s->paths = np, s->cap_paths = cap;
        }
        if (s->n_paths < s->cap_paths) {
            char *p = st_strdup(url);
            if (p) s->paths[s->n_paths++] = p;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (s->log) fprintf(stderr, "hub serve: %s %s %u%s%s\n", method, url, status, extra ? " " : "", extra ? extra : "");
}

/* ---- GET handlers ---- */

static json_t *info_json(const st_registry_model_info *mi) {
    json_t *tags = json_object(), *revs = json_array();
    for (int i = 0; i < mi->n_tags; i++) json_object_set_new(tags, mi->tags[i].name, json_string(mi->tags[i].revision));
    for (int i = 0; i < mi->n_revisions; i++) json_array_append_new(revs, json_string(mi->revisions[i]));
    return json_pack("{s:s, s:o, s:o}", "name", mi->name, "tags", tags, "revisions", revs);
}

/* Parses "bytes=a-b", "bytes=a-", "bytes=-n" against size. 0: no/ignored
 * range; 1: [*off, *off + *len); -1: unsatisfiable. */
static int parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len) {
    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ',')) return 0; /* multi-range: whole body */
    const char *p = h + 6;
    char *e;
    if (*p == '-') {
        errno = 0;
        unsigned long long n = strtoull(p + 1, &e, 10);
        if (*e || errno || p[1] == '\0') return 0;
        if (n == 0 || size == 0) return -1;
        if (n > size) n = size;
        *off = size - n;
        *len = n;
        return 1;
    }
    if (*p < '0' || *p > '9') return 0;
    errno = 0;
    unsigned long long a = strtoull(p, &e, 10);
    if (errno || *e != '-') return 0;
    const char *q = e + 1;
    unsigned long long b = size ? size - 1 : 0;
    if (*q) {
        if (*q < '0' || *q > '9') return 0;
        b = strtoull(q, &e, 10);
        if (*e || errno) return 0;
        if (b < a) return 0;
        if (b >= size) b = size - 1;
    }
    if (a >= size) return -1;
    *off = a;
    *len = b - a + 1;
    return 1;
}

static enum MHD_Result get_blob(st_hub_server *s, struct MHD_Connection *c, const char *method,
                                const char *url, const char *hex) {
    if (!st__reg_valid_hex(hex)) return send_error(c, 400, "blob names are 64 lowercase hex digits");
    char *p = st__reg_blob_path(s->r, hex);
    int fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
    st_free(p);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0) close(fd);
        log_req(s, method, url, 404, NULL);
        return send_error(c, 404, "no such blob");
    }
    uint64_t size = (uint64_t)st.st_size, off = 0, len = size;
    const char *rh = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    int rr = parse_range(rh, size, &off, &len);
    char etag[70], cr[96];
    snprintf(etag, sizeof etag, "\"%s\"", hex);
    if (rr < 0) {
        close(fd);
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
        MHD_add_response_header(resp, "Content-Range", cr);
        MHD_add_response_header(resp, "ETag", etag);
        enum MHD_Result ret = MHD_queue_response(c, 416, resp);
        MHD_destroy_response(resp);
        log_req(s, method, url, 416, rh);
        return ret;
    }
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, (uint64_t)off);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Accept-Ranges", "bytes");
    MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
    unsigned status = 200;
    if (rr > 0) {
        snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)off,
                 (unsigned long long)(off + len - 1), (unsigned long long)size);
        MHD_add_response_header(resp, "Content-Range", cr);
        status = 206;
    }
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    log_req(s, method, url, status, rr > 0 ? cr : NULL);
    return ret;
}

/* Splits url ("/v1/a/b/c") into at most 6 segments (in buf). */
static int split(const char *url, char *buf, size_t bn, char **seg) {
    snprintf(buf, bn, "%s", url);
    char *q = strchr(buf, '?');
    if (q) *q = '\0';
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (n == 6) return -1;
        seg[n++] = t;
    }
    return n;
}

static enum MHD_Result handle_get(st_hub_server *s, struct MHD_Connection *c, const char *method, const char *url) {
    char buf[512];
    char *seg[6];
    if (strlen(url) >= sizeof buf) return send_error(c, 414, "URL too long");
    int n = split(url, buf, sizeof buf, seg);
    if (n < 2 || strcmp(seg[0], "v1") != 0) {
        log_req(s, method, url, 404, NULL);
        return send_error(c, 404, "not found: the API is under /v1/models and /v1/blobs");
    }
    if (!strcmp(seg[1], "blobs") && n == 3) return get_blob(s, c, method, url, seg[2]);
    if (strcmp(seg[1], "models") != 0) {
        log_req(s, method, url, 404, NULL);
        return send_error(c, 404, "not found");
    }
    json_t *out = NULL;
    unsigned status = 200;
    char *raw = NULL;
    size_t raw_n = 0;
    char etag[70] = "";
    pthread_mutex_lock(&s->mu);
    if (n == 2) {
        st_registry_model_info *mi;
        int nm;
        if (st_registry_list(s->r, &mi, &nm) == ST_OK) {
            out = json_array();
            for (int i = 0; i < nm; i++) json_array_append_new(out, info_json(&mi[i]));
            st_registry_models_free(mi, nm);
        } else {
            status = 500;
        }
    } else if (!st__reg_valid_name(seg[2])) {
        status = 400;
    } else if (n == 3) {
        st_registry_model_info *mi;
        if (st_registry_model(s->r, seg[2], &mi) == ST_OK) {
            out = info_json(mi);
            st_registry_models_free(mi, 1);
        } else {
            status = 404;
        }
    } else if (n == 5 && !strcmp(seg[3], "tags") && st__reg_valid_name(seg[4])) {
        char ref[300], name[ST_REGISTRY_MAX_NAME + 1], rev[65];
        snprintf(ref, sizeof ref, "%s:%s", seg[2], seg[4]);
        if (st__reg_lock(s->r, LOCK_SH) == ST_OK) {
            if (st__reg_resolve_ref(s->r, ref, name, rev) == ST_OK) out = json_pack("{s:s}", "revision", rev);
            else status = 404;
            st__reg_unlock(s->r);
        } else {
            status = 500;
        }
    } else if (n == 5 && !strcmp(seg[3], "revisions") && st__reg_valid_hex(seg[4])) {
        st_registry_manifest *m = NULL;
        if (st__reg_lock(s->r, LOCK_SH) == ST_OK) {
            if (st__reg_read_manifest(s->r, seg[2], seg[4], &m, &raw, &raw_n) != ST_OK) status = 404;
            st__reg_unlock(s->r);
        } else {
            status = 500;
        }
        st_registry_manifest_free(m);
        snprintf(etag, sizeof etag, "\"%s\"", seg[4]);
    } else {
        status = 404;
    }
    /* generic messages: st_last_error() would show the server's paths */
    const char *msg = status == 400 ? "bad model name" : status == 404 ? "no such model, tag or revision" : "server error";
    if (status == 500) st_log_msg(ST_LOG_WARN, "hub serve: %s: %s", url, st_last_error());
    pthread_mutex_unlock(&s->mu);
    log_req(s, method, url, status, NULL);
    if (status != 200) {
        json_decref(out);
        st_free(raw);
        return send_error(c, status, msg);
    }
    if (raw) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(raw_n, raw, MHD_RESPMEM_MUST_COPY);
        st_free(raw);
        if (!resp) return MHD_NO;
        MHD_add_response_header(resp, "Content-Type", "application/json");
        MHD_add_response_header(resp, "ETag", etag);
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    return send_json(c, 200, out);
}

/* ---- uploads ---- */

static bool authorized(st_hub_server *s, struct MHD_Connection *c) {
    if (!s->api_key) return false;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
    const char *k = h + 7;
    size_t a = strlen(k), b = strlen(s->api_key);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < b; i++) diff |= (unsigned)(unsigned char)s->api_key[i] ^ (unsigned char)(i < a ? k[i] : 0);
    return diff == 0;
}

static void upload_free(upload *u) {
    if (!u) return;
    if (u->fd >= 0) close(u->fd);
    if (u->tmp) unlink(u->tmp);
    st_free(u->tmp);
    st__sha256_free(u->h);
    st_free(u->buf);
    st_free(u);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    if (con_cls && *con_cls) upload_free(*con_cls);
    if (con_cls) *con_cls = NULL;
}

static enum MHD_Result finish_blob(st_hub_server *s, struct MHD_Connection *c, const char *url, upload *u,
                                   const char *hex) {
    char got[65];
    st__sha256_final_hex(u->h, got);
    u->h = NULL;
    if (u->io_error) {
        log_req(s, "PUT", url, 500, "write failed");
        return send_error(c, 500, "the server could not store the upload");
    }
    if (fsync(u->fd) != 0) u->io_error = true;
    close(u->fd);
    u->fd = -1;
    if (strcmp(got, hex) != 0) {
        log_req(s, "PUT", url, 400, "hash mismatch");
        char msg[200];
        snprintf(msg, sizeof msg, "SHA-256 of the body is %s, not %s", got, hex);
        return send_error(c, 400, msg);
    }
    pthread_mutex_lock(&s->mu);
    st_status st = st__reg_lock(s->r, LOCK_EX);
    if (st == ST_OK) {
        st = st__reg_commit_blob(s->r, u->tmp, hex);
        st__reg_unlock(s->r);
    }
    pthread_mutex_unlock(&s->mu);
    if (st != ST_OK) {
        log_req(s, "PUT", url, 500, NULL);
        return send_error(c, 500, "the server could not store the blob");
    }
    st_free(u->tmp);
    u->tmp = NULL;
    log_req(s, "PUT", url, 201, NULL);
    return send_json(c, 201, json_pack("{s:s, s:I}", "sha256", hex, "size", (json_int_t)u->bytes));
}

static enum MHD_Result finish_manifest(st_hub_server *s, struct MHD_Connection *c, const char *url, upload *u,
                                       const char *name) {
    if (u->too_big) {
        log_req(s, "POST", url, 413, NULL);
        return send_error(c, 413, "manifest over the size limit");
    }
    st_registry_manifest *m = NULL;
    char src[300];
    snprintf(src, sizeof src, "POST %s", url);
    if (st_registry_manifest_parse(u->buf ? u->buf : "", u->n, src, &m) != ST_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", st_last_error());
        log_req(s, "POST", url, 400, NULL);
        return send_error(c, 400, msg);
    }
    if (strcmp(m->name, name) != 0) {
        st_registry_manifest_free(m);
        log_req(s, "POST", url, 400, NULL);
        return send_error(c, 400, "the manifest's name is not the model in the URL");
    }
    const char *tag = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "tag");
    if (tag && !st__reg_valid_name(tag)) {
        st_registry_manifest_free(m);
        return send_error(c, 400, "bad tag name");
    }
    json_t *missing = json_array();
    for (int i = 0; i < m->n_files; i++)
        if (!st__reg_has_blob(s->r, m->files[i].sha256, (int64_t)m->files[i].size))
            json_array_append_new(missing, json_string(m->files[i].sha256));
    if (json_array_size(missing)) {
        st_registry_manifest_free(m);
        log_req(s, "POST", url, 409, "missing blobs");
        return send_json(c, 409, json_pack("{s:s, s:o}", "error", "blobs missing: upload them first", "missing", missing));
    }
    json_decref(missing);
    char *js = NULL;
    size_t jn = 0;
    st_status st = st_registry_manifest_json(m, &js, &jn);
    pthread_mutex_lock(&s->mu);
    if (st == ST_OK && (st = st__reg_lock(s->r, LOCK_EX)) == ST_OK) {
        st = st__reg_commit_manifest(s->r, m, js, jn, tag);
        st__reg_unlock(s->r);
    }
    pthread_mutex_unlock(&s->mu);
    st_free(js);
    char rev[65];
    memcpy(rev, m->revision, 65);
    st_registry_manifest_free(m);
    if (st != ST_OK) {
        log_req(s, "POST", url, 500, NULL);
        return send_error(c, 500, "the server could not store the manifest");
    }
    log_req(s, "POST", url, 201, rev);
    return send_json(c, 201, json_pack("{s:s}", "revision", rev));
}

static enum MHD_Result handle_upload(st_hub_server *s, struct MHD_Connection *c, const char *method,
                                     const char *url, const char *data, size_t *data_size, void **con_cls) {
    char buf[512];
    char *seg[6];
    int n = strlen(url) < sizeof buf ? split(url, buf, sizeof buf, seg) : -1;
    bool is_blob = !strcmp(method, "PUT") && n == 3 && !strcmp(seg[0], "v1") && !strcmp(seg[1], "blobs");
    bool is_man = !strcmp(method, "POST") && n == 4 && !strcmp(seg[0], "v1") && !strcmp(seg[1], "models") &&
                  !strcmp(seg[3], "revisions");
    upload *u = *con_cls;
    if (!u) {
        if (!is_blob && !is_man) {
            log_req(s, method, url, 404, NULL);
            return send_error(c, 404, "uploads: PUT /v1/blobs/SHA256 or POST /v1/models/NAME/revisions");
        }
        if (!authorized(s, c)) {
            log_req(s, method, url, s->api_key ? 401 : 403, NULL);
            return send_error(c, s->api_key ? 401 : 403,
                              s->api_key ? "a valid Authorization: Bearer API key is required"
                                         : "this hub was started without --api-key: uploads are off");
        }
        if (is_blob && !st__reg_valid_hex(seg[2])) return send_error(c, 400, "blob names are 64 lowercase hex digits");
        if (is_man && !st__reg_valid_name(seg[2])) return send_error(c, 400, "bad model name");
        u = st_calloc(1, sizeof *u);
        if (!u) return MHD_NO;
        u->fd = -1;
        u->kind = is_blob ? 1 : 2;
        if (is_blob) {
            char leaf[64];
            pthread_mutex_lock(&s->mu);
            snprintf(leaf, sizeof leaf, "upload.%ld.%lld", (long)getpid(), (long long)s->seq++);
            pthread_mutex_unlock(&s->mu);
            u->tmp = st__reg_tmp_path(s->r, leaf);
            u->h = st__sha256_new();
            if (u->tmp) u->fd = open(u->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (!u->h || u->fd < 0) {
                upload_free(u);
                return send_error(c, 500, "the server cannot create a temporary file");
            }
        }
        *con_cls = u;
        return MHD_YES;
    }
    if (*data_size) {
        size_t k = *data_size;
        if (u->kind == 1) {
            if (u->bytes + k > ST_REGISTRY_MAX_FILE_BYTES) u->io_error = true;
            st__sha256_update(u->h, data, k);
            for (size_t off = 0; off < k && !u->io_error;) {
                ssize_t w = write(u->fd, data + off, k - off);
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) u->io_error = true;
                else off += (size_t)w;
            }
            u->bytes += k;
        } else if (!u->too_big) {
            if (u->n + k > ST_REGISTRY_MAX_MANIFEST_BYTES) {
                u->too_big = true;
            } else {
                if (u->n + k + 1 > u->cap) {
                    size_t cap = (u->n + k + 1) * 2;
                    char *nb = st_realloc(u->buf, cap);
                    if (!nb) return MHD_NO;
                    u->buf = nb;
                    u->cap = cap;
                }
                memcpy(u->buf + u->n, data, k);
                u->n += k;
            }
        }
        *data_size = 0;
        return MHD_YES;
    }
    return u->kind == 1 ? finish_blob(s, c, url, u, seg[2]) : finish_manifest(s, c, url, u, seg[2]);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *data, size_t *data_size, void **con_cls) {
    (void)version;
    st_hub_server *s = cls;
    if (!strcmp(method, "GET") || !strcmp(method, "HEAD")) return handle_get(s, c, method, url);
    if (!strcmp(method, "PUT") || !strcmp(method, "POST")) return handle_upload(s, c, method, url, data, data_size, con_cls);
    log_req(s, method, url, 405, NULL);
    return send_error(c, 405, "method not allowed");
}

/* ---- lifecycle ---- */

st_status st_hub_server_start(const st_hub_server_params *pp, st_hub_server **out) {
    *out = NULL;
    st_hub_server_params p = pp ? *pp : st_hub_server_default_params();
    const char *host = p.host ? p.host : "127.0.0.1";
    if (!strcmp(host, "localhost")) host = "127.0.0.1";
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)p.port);
    if (p.port < 0 || p.port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return st__fail(ST_ERR_INVALID_ARG, "hub serve: bad address %s:%d (an IPv4 address and a port 0..65535)", host, p.port);
    st_hub_server *s = st_calloc(1, sizeof *s);
    if (!s) return st__fail(ST_ERR_NOMEM, "hub serve: no memory");
    pthread_mutex_init(&s->mu, NULL);
    s->log = p.log_requests;
    st_status st = st_registry_open(p.home, &s->r);
    if (st == ST_OK && p.api_key && !(s->api_key = st_strdup(p.api_key))) st = st__fail(ST_ERR_NOMEM, "hub serve: no memory");
    if (st == ST_OK) {
        int nt = p.n_threads > 0 ? p.n_threads : 4;
        s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)p.port, NULL, NULL,
                                handler, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                MHD_OPTION_THREAD_POOL_SIZE, (unsigned)nt, MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
        if (!s->d) st = st__fail(ST_ERR_IO, "hub serve: cannot listen on %s:%d (in use? not an address of this machine?)", host, p.port);
    }
    if (st == ST_OK) {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
        s->port = di ? di->port : p.port;
    }
    if (st != ST_OK) {
        st_hub_server_stop(s);
        return st;
    }
    *out = s;
    return ST_OK;
}

int st_hub_server_port(const st_hub_server *s) { return s->port; }

int64_t st_hub_server_count(const st_hub_server *s, const char *prefix) {
    st_hub_server *m = (st_hub_server *)s;
    pthread_mutex_lock(&m->mu);
    int64_t n = 0;
    size_t pl = prefix ? strlen(prefix) : 0;
    for (int64_t i = 0; i < m->n_paths; i++)
        if (!prefix || !strncmp(m->paths[i], prefix, pl)) n++;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void st_hub_server_stop(st_hub_server *s) {
    if (!s) return;
    if (s->d) MHD_stop_daemon(s->d);
    st_registry_close(s->r);
    for (int64_t i = 0; i < s->n_paths; i++) st_free(s->paths[i]);
    st_free(s->paths);
    st_free(s->api_key);
    pthread_mutex_destroy(&s->mu);
    st_free(s);
}

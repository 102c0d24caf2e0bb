/*
 * registry.c — the content-addressed model registry (strata/registry.h).
 *
 * Layout under STRATA_HOME/hub (docs/L6-hub.md): blobs named by SHA-256
 * (OpenSSL EVP; two-level fan-out blobs/sha256/ab/abcd…, read-only files),
 * per model a folder of manifests named by their own SHA-256, tag files of
 * one line each, and snapshots (a revision materialized with hard links).
 *
 * Durability: every file written here goes through a temporary file, fsync
 * and rename, then the directory is fsynced. A push copies and hashes the
 * files into tmp/ with no lock held; then, holding the lock exclusively, it
 * moves the blobs into the store, writes the manifest, and writes the tags
 * last — so a process killed anywhere leaves either the old tags or the new
 * ones, plus at worst orphan temporaries or an untagged (valid) revision.
 *
 * Concurrency: flock(2) on hub/lock, shared for readers and exclusive for
 * writers, taken by each public function around its critical part; the
 * handle holds one descriptor and is not itself thread-safe. Manifests are
 * JSON through jansson; the canonical form (sorted keys, compact) is what
 * is hashed, so the revision id does not depend on a writer's spacing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hub_impl.h"
#include "registry_impl.h"
#include "strata/data.h"

#define COPY_CHUNK (1u << 20)

/* ==== small helpers ====================================================== */

struct st__sha256 {
    EVP_MD_CTX *ctx;
};

st__sha256 *st__sha256_new(void) {
    st__sha256 *h = st_malloc(sizeof *h);
    if (!h) return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->ctx);
        st_free(h);
        return NULL;
    }
    return h;
}

void st__sha256_update(st__sha256 *h, const void *p, size_t n) {
    if (n) EVP_DigestUpdate(h->ctx, p, n);
}

static void to_hex(const unsigned char *d, size_t n, char *hex) {
    static const char k[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = k[d[i] >> 4];
        hex[2 * i + 1] = k[d[i] & 15];
    }
    hex[2 * n] = '\0';
}

void st__sha256_final_hex(st__sha256 *h, char hex[65]) {
    unsigned char d[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(h->ctx, d, &len);
    to_hex(d, 32, hex);
    st__sha256_free(h);
}

void st__sha256_free(st__sha256 *h) {
    if (!h) return;
    EVP_MD_CTX_free(h->ctx);
    st_free(h);
}

void st__sha256_hex(const void *p, size_t n, char hex[65]) {
    unsigned char d[32];
    unsigned int len = 0;
    EVP_Digest(p, n, d, &len, EVP_sha256(), NULL);
    to_hex(d, 32, hex);
}

bool st__reg_valid_name(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > ST_REGISTRY_MAX_NAME || s[0] == '.' || s[0] == '-') return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool st__reg_valid_hex(const char *s) {
    if (!s || strlen(s) != 64) return false;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

/* Relative, '/'-separated, no empty, "." or ".." part, no control bytes or
 * backslashes, not starting with '/', bounded length. */
bool st__reg_valid_path(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > ST_REGISTRY_MAX_PATH || s[0] == '/') return false;
    const char *part = s;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '/' || c == '\0') {
            size_t len = (size_t)(s + i - part);
            if (len == 0) return false;
            if (len == 1 && part[0] == '.') return false;
            if (len == 2 && part[0] == '.' && part[1] == '.') return false;
            part = s + i + 1;
        } else if (c < 0x20 || c == 0x7f || c == '\\') {
            return false;
        }
    }
    return true;
}

static char *path_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = st_malloc(n);
    if (!p) {
        st__fail(ST_ERR_NOMEM, "registry: no memory for a path");
        return NULL;
    }
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static char *path_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *path_fmt(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = NULL;
    if (vasprintf(&p, fmt, ap) < 0) p = NULL;
    va_end(ap);
    if (!p) {
        st__fail(ST_ERR_NOMEM, "registry: no memory for a path");
        return NULL;
    }
    char *q = st_strdup(p);
    free(p);
    if (!q) st__fail(ST_ERR_NOMEM, "registry: no memory for a path");
    return q;
}

char *st__reg_blob_path(const st_registry *r, const char *hex) {
    return path_fmt("%s/blobs/sha256/%.2s/%s", r->root, hex, hex);
}

char *st__reg_tmp_path(const st_registry *r, const char *leaf) {
    return path_fmt("%s/tmp/%s", r->root, leaf);
}

bool st__reg_has_blob(const st_registry *r, const char *hex, int64_t size) {
    char *p = st__reg_blob_path(r, hex);
    if (!p) return false;
    struct stat st;
    bool ok = stat(p, &st) == 0 && S_ISREG(st.st_mode) && (size < 0 || st.st_size == size);
    st_free(p);
    return ok;
}

st_status st__reg_mkdirs(const char *path) {
    char *p = st_strdup(path);
    if (!p) return st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    for (char *q = p + 1;; q++) {
        if (*q == '/' || *q == '\0') {
            char c = *q;
            *q = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                st_status s = st__fail(ST_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
                st_free(p);
                return s;
            }
            *q = c;
            if (!c) break;
        }
    }
    st_free(p);
    return ST_OK;
}


st_status st__reg_fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st__fail(ST_ERR_IO, "%s: cannot open to fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return st__fail(ST_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    return ST_OK;
}

void st__reg_test_pause(const char *phase) {
    const char *v = getenv("STRATA_REGISTRY_TEST_PAUSE");
    if (!v) return;
    size_t n = strlen(phase);
    if (strncmp(v, phase, n) != 0 || v[n] != ':') return;
    FILE *f = fopen(v + n + 1, "w");
    if (f) fclose(f);
    sleep(60);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *path) { nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in dir (skipping "." and ".."; and dot-files when skip_dot), sorted;
 * a missing directory is an empty list. */
static st_status list_dir(const char *dir, bool skip_dot, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return ST_OK;
        return st__fail(ST_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    }
    char **v = NULL;
    int cnt = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (skip_dot && e->d_name[0] == '.') continue;
        if (cnt == cap) {
            cap = cap ? 2 * cap : 16;
            char **nv = st_realloc(v, (size_t)cap * sizeof *v);
            if (!nv) goto nomem;
            v = nv;
        }
        if (!(v[cnt] = st_strdup(e->d_name))) goto nomem;
        cnt++;
    }
    closedir(d);
    if (cnt) qsort(v, (size_t)cnt, sizeof *v, cmp_str);
    *out = v;
    *n = cnt;
    return ST_OK;
nomem:
    closedir(d);
    for (int i = 0; i < cnt; i++) st_free(v[i]);
    st_free(v);
    return st__fail(ST_ERR_NOMEM, "%s: no memory listing", dir);
}

static void free_strs(char **v, int n) {
    for (int i = 0; i < n; i++) st_free(v[i]);
    st_free(v);
}

/* ==== open / lock ======================================================== */

st_status st_registry_home(char **out) {
    *out = NULL;
    const char *h = getenv("STRATA_HOME");
    char *p = NULL;
    if (h && *h) p = st_strdup(h);
    else if ((h = getenv("XDG_DATA_HOME")) && *h) p = path_fmt("%s/strata", h);
    else if ((h = getenv("HOME")) && *h) p = path_fmt("%s/.local/share/strata", h);
    else return st__fail(ST_ERR_INVALID_ARG, "registry: none of STRATA_HOME, XDG_DATA_HOME, HOME is set");
    if (!p) return st__fail(ST_ERR_NOMEM, "registry: no memory");
    *out = p;
    return ST_OK;
}

st_status st_registry_open(const char *home, st_registry **out) {
    *out = NULL;
    char *h = NULL;
    if (home) h = st_strdup(home);
    else ST_TRY(st_registry_home(&h));
    if (!h) return st__fail(ST_ERR_NOMEM, "registry: no memory");
    st_registry *r = st_calloc(1, sizeof *r);
    if (!r) {
        st_free(h);
        return st__fail(ST_ERR_NOMEM, "registry: no memory");
    }
    r->lock_fd = -1;
    r->root = path_join(h, "hub");
    st_free(h);
    st_status s = r->root ? ST_OK : ST_ERR_NOMEM;
    static const char *const k_dirs[] = {"blobs/sha256", "models", "tmp"};
    for (int i = 0; s == ST_OK && i < 3; i++) {
        char *d = path_join(r->root, k_dirs[i]);
        s = d ? st__reg_mkdirs(d) : ST_ERR_NOMEM;
        st_free(d);
    }
    if (s == ST_OK) {
        char *lp = path_join(r->root, "lock");
        if (!lp) s = ST_ERR_NOMEM;
        else if ((r->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
            s = st__fail(ST_ERR_IO, "%s: cannot open the lock file: %s", lp, strerror(errno));
        st_free(lp);
    }
    if (s != ST_OK) {
        st_registry_close(r);
        return s;
    }
    *out = r;
    return ST_OK;
}

void st_registry_close(st_registry *r) {
    if (!r) return;
    if (r->lock_fd >= 0) close(r->lock_fd);
    st_free(r->root);
    st_free(r);
}

const char *st_registry_root(const st_registry *r) { return r->root; }

st_status st__reg_lock(st_registry *r, int mode) {
    while (flock(r->lock_fd, mode) != 0) {
        if (errno == EINTR) continue;
        return st__fail(ST_ERR_IO, "%s/lock: flock failed: %s", r->root, strerror(errno));
    }
    r->lock_mode = mode;
    return ST_OK;
}

void st__reg_unlock(st_registry *r) {
    if (r->lock_mode) flock(r->lock_fd, LOCK_UN);
    r->lock_mode = 0;
}

/* ==== manifests ========================================================== */

void st_registry_manifest_free(st_registry_manifest *m) {
    if (!m) return;
    for (int i = 0; i < m->n_files; i++) st_free(m->files[i].path);
    st_free(m->files);
    st_free(m->name);
    st_free(m->author);
    st_free(m->message);
    st_free(m->time);
    st_free(m);
}

void st_registry_manifests_free(st_registry_manifest **m, int n) {
    if (!m) return;
    for (int i = 0; i < n; i++) st_registry_manifest_free(m[i]);
    st_free(m);
}

static int cmp_file(const void *a, const void *b) {
    return strcmp(((const st_registry_file *)a)->path, ((const st_registry_file *)b)->path);
}

st_status st_registry_manifest_json(const st_registry_manifest *m, char **json, size_t *n) {
    *json = NULL;
    json_t *files = json_array();
    json_t *o = json_object();
    if (!files || !o) goto nomem;
    for (int i = 0; i < m->n_files; i++) {
        json_t *f = json_pack("{s:s, s:s, s:I}", "path", m->files[i].path, "sha256",
                              m->files[i].sha256, "size", (json_int_t)m->files[i].size);
        if (!f || json_array_append_new(files, f) != 0) goto nomem;
    }
    if (json_object_set_new(o, "format", json_string("strata-manifest")) ||
        json_object_set_new(o, "version", json_integer(1)) ||
        json_object_set_new(o, "kind", json_string(m->single_file ? "file" : "directory")) ||
        json_object_set_new(o, "name", json_string(m->name ? m->name : "")) ||
        json_object_set_new(o, "parent", m->parent[0] ? json_string(m->parent) : json_null()) ||
        json_object_set_new(o, "author", json_string(m->author ? m->author : "")) ||
        json_object_set_new(o, "message", json_string(m->message ? m->message : "")) ||
        json_object_set_new(o, "time", json_string(m->time ? m->time : "")) ||
        json_object_set(o, "files", files))
        goto nomem;
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    json_decref(o);
    json_decref(files);
    if (!s) return st__fail(ST_ERR_NOMEM, "manifest: cannot serialize (bad UTF-8 in a string?)");
    *n = strlen(s);
    *json = st_strdup(s);
    free(s);
    if (!*json) return st__fail(ST_ERR_NOMEM, "manifest: no memory");
    return ST_OK;
nomem:
    json_decref(o);
    json_decref(files);
    return st__fail(ST_ERR_NOMEM, "manifest: no memory (or an invalid UTF-8 string)");
}

static const char *jstr(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

st_status st_registry_manifest_parse(const void *buf, size_t n, const char *source,
                                     st_registry_manifest **out) {
    *out = NULL;
    const char *src = source ? source : "<manifest>";
    if (n > ST_REGISTRY_MAX_MANIFEST_BYTES)
        return st__fail(ST_ERR_FORMAT, "%s: manifest of %zu bytes is over the limit (%u)", src, n,
                        ST_REGISTRY_MAX_MANIFEST_BYTES);
    json_error_t je;
    json_t *o = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
    if (!o) return st__fail(ST_ERR_FORMAT, "%s: manifest is not JSON: %s (line %d)", src, je.text, je.line);
    st_status s = ST_OK;
    st_registry_manifest *m = st_calloc(1, sizeof *m);
    if (!m) {
        json_decref(o);
        return st__fail(ST_ERR_NOMEM, "%s: no memory", src);
    }
#define BAD(...) do { s = st__fail(ST_ERR_FORMAT, __VA_ARGS__); goto done; } while (0)
    if (!json_is_object(o)) BAD("%s: manifest is not a JSON object", src);
    const char *fmt = jstr(o, "format"), *kind = jstr(o, "kind");
    if (!fmt || strcmp(fmt, "strata-manifest") != 0)
        BAD("%s: \"format\" is not \"strata-manifest\"", src);
    json_t *ver = json_object_get(o, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1)
        BAD("%s: manifest \"version\" is not 1 (written by a newer strata? upgrade)", src);
    if (!kind || (strcmp(kind, "file") && strcmp(kind, "directory")))
        BAD("%s: \"kind\" must be \"file\" or \"directory\"", src);
    m->single_file = strcmp(kind, "file") == 0;
    const char *name = jstr(o, "name");
    if (!st__reg_valid_name(name)) BAD("%s: invalid model name in manifest", src);
    json_t *par = json_object_get(o, "parent");
    if (json_is_string(par) && json_string_length(par) > 0) {
        if (!st__reg_valid_hex(json_string_value(par))) BAD("%s: \"parent\" is not a revision id", src);
        memcpy(m->parent, json_string_value(par), 65);
    } else if (!json_is_null(par) && !(json_is_string(par) && json_string_length(par) == 0) && par) {
        BAD("%s: \"parent\" must be a revision id or null", src);
    }
    const char *author = jstr(o, "author"), *msg = jstr(o, "message"), *tm = jstr(o, "time");
    if (!author || !msg || !tm) BAD("%s: \"author\", \"message\" and \"time\" must be strings", src);
    m->name = st_strdup(name);
    m->author = st_strdup(author);
    m->message = st_strdup(msg);
    m->time = st_strdup(tm);
    if (!m->name || !m->author || !m->message || !m->time) {
        s = st__fail(ST_ERR_NOMEM, "%s: no memory", src);
        goto done;
    }
    json_t *files = json_object_get(o, "files");
    if (!json_is_array(files)) BAD("%s: \"files\" is not an array", src);
    size_t nf = json_array_size(files);
    if (nf > ST_REGISTRY_MAX_FILES) BAD("%s: %zu files, over the limit of %d", src, nf, ST_REGISTRY_MAX_FILES);
    if (m->single_file && nf != 1) BAD("%s: a \"file\" manifest must list exactly one file", src);
    m->files = st_calloc(nf ? nf : 1, sizeof *m->files);
    if (!m->files) {
        s = st__fail(ST_ERR_NOMEM, "%s: no memory", src);
        goto done;
    }
    for (size_t i = 0; i < nf; i++) {
        json_t *f = json_array_get(files, i);
        const char *p = jstr(f, "path"), *h = jstr(f, "sha256");
        json_t *sz = json_object_get(f, "size");
        if (!json_is_object(f) || !p) BAD("%s: files[%zu] has no \"path\"", src, i);
        if (!st__reg_valid_path(p))
            BAD("%s: files[%zu]: unsafe path \"%.200s\" (absolute, \"..\", empty part or control byte)",
                src, i, p);
        if (!st__reg_valid_hex(h)) BAD("%s: files[%zu] (%s): \"sha256\" is not 64 lowercase hex digits", src, i, p);
        if (!json_is_integer(sz) || json_integer_value(sz) < 0 ||
            (uint64_t)json_integer_value(sz) > ST_REGISTRY_MAX_FILE_BYTES)
            BAD("%s: files[%zu] (%s): \"size\" missing, negative or over %llu bytes", src, i, p,
                (unsigned long long)ST_REGISTRY_MAX_FILE_BYTES);
        if (!(m->files[i].path = st_strdup(p))) {
            s = st__fail(ST_ERR_NOMEM, "%s: no memory", src);
            goto done;
        }
        m->n_files = (int)i + 1;
        memcpy(m->files[i].sha256, h, 65);
        m->files[i].size = (uint64_t)json_integer_value(sz);
        m->total_bytes += m->files[i].size;
    }
    qsort(m->files, (size_t)m->n_files, sizeof *m->files, cmp_file);
    for (int i = 1; i < m->n_files; i++) {
        if (!strcmp(m->files[i].path, m->files[i - 1].path))
            BAD("%s: file \"%.200s\" is listed twice", src, m->files[i].path);
        /* "a" and "a/b" cannot both be files */
        size_t la = strlen(m->files[i - 1].path);
        if (!strncmp(m->files[i].path, m->files[i - 1].path, la) && m->files[i].path[la] == '/')
            BAD("%s: \"%.200s\" is both a file and a directory", src, m->files[i - 1].path);
    }
    char *canon = NULL;
    size_t cn = 0;
    if ((s = st_registry_manifest_json(m, &canon, &cn)) != ST_OK) goto done;
    st__sha256_hex(canon, cn, m->revision);
    st_free(canon);
#undef BAD
done:
    json_decref(o);
    if (s != ST_OK) {
        st_registry_manifest_free(m);
        return s;
    }
    *out = m;
    return ST_OK;
}

/* ==== reading tags and manifests ========================================== */

static char *model_dir(const st_registry *r, const char *name) {
    return path_fmt("%s/models/%s", r->root, name);
}

/* rev of tag (lock held). ST_ERR_IO when absent. */
static st_status read_tag(st_registry *r, const char *name, const char *tag, char rev[65]) {
    char *p = path_fmt("%s/models/%s/tags/%s", r->root, name, tag);
    if (!p) return ST_ERR_NOMEM;
    char *b = NULL;
    size_t n = 0;
    st_status s = st_text_read_file(p, 256, &b, &n);
    if (s == ST_OK) {
        while (n && (b[n - 1] == '\n' || b[n - 1] == '\r' || b[n - 1] == ' ')) b[--n] = '\0';
        if (!st__reg_valid_hex(b)) s = st__fail(ST_ERR_FORMAT, "%s: tag file does not hold a revision id", p);
        else memcpy(rev, b, 65);
    } else if (s == ST_ERR_IO) {
        s = st__fail(ST_ERR_IO, "model %s has no tag \"%s\" (%s)", name, tag, p);
    }
    st_free(b);
    st_free(p);
    return s;
}

st_status st__reg_read_manifest(st_registry *r, const char *name, const char *rev,
                                st_registry_manifest **out, char **raw, size_t *raw_n) {
    *out = NULL;
    char *p = path_fmt("%s/models/%s/revisions/%s.json", r->root, name, rev);
    if (!p) return ST_ERR_NOMEM;
    char *b = NULL;
    size_t n = 0;
    st_status s = st_text_read_file(p, ST_REGISTRY_MAX_MANIFEST_BYTES, &b, &n);
    if (s == ST_OK) s = st_registry_manifest_parse(b, n, p, out);
    if (s == ST_OK && strcmp((*out)->revision, rev) != 0) {
        s = st__fail(ST_ERR_FORMAT, "%s: manifest hashes to %.12s…, not its name (corrupt)", p, (*out)->revision);
        st_registry_manifest_free(*out);
        *out = NULL;
    }
    if (s == ST_OK && strcmp((*out)->name, name) != 0) {
        s = st__fail(ST_ERR_FORMAT, "%s: manifest names model \"%s\"", p, (*out)->name);
        st_registry_manifest_free(*out);
        *out = NULL;
    }
    if (s == ST_OK && raw) {
        *raw = b;
        if (raw_n) *raw_n = n;
        b = NULL;
    }
    st_free(b);
    st_free(p);
    return s;
}

st_status st_registry_parse_ref(const char *ref, char name[ST_REGISTRY_MAX_NAME + 1],
                                char tag[ST_REGISTRY_MAX_NAME + 1], char rev[65]) {
    name[0] = tag[0] = rev[0] = '\0';
    if (!ref) return st__fail(ST_ERR_INVALID_ARG, "registry: NULL reference");
    const char *at = strchr(ref, '@'), *colon = strchr(ref, ':');
    const char *sep = at ? at : colon;
    if (at && colon) return st__fail(ST_ERR_INVALID_ARG, "reference \"%.200s\": use NAME:TAG or NAME@REV, not both", ref);
    size_t nl = sep ? (size_t)(sep - ref) : strlen(ref);
    if (nl == 0 || nl > ST_REGISTRY_MAX_NAME)
        return st__fail(ST_ERR_INVALID_ARG, "reference \"%.200s\": bad model name", ref);
    memcpy(name, ref, nl);
    name[nl] = '\0';
    if (!st__reg_valid_name(name))
        return st__fail(ST_ERR_INVALID_ARG,
                        "reference \"%.200s\": model names are [A-Za-z0-9._-], not starting with '.' or '-'", ref);
    if (at) {
        const char *v = at + 1;
        size_t n = strlen(v);
        if (n < 7 || n > 64) return st__fail(ST_ERR_INVALID_ARG, "reference \"%.200s\": a revision needs 7..64 hex digits", ref);
        for (size_t i = 0; i < n; i++)
            if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f')))
                return st__fail(ST_ERR_INVALID_ARG, "reference \"%.200s\": revision is not lowercase hex", ref);
        memcpy(rev, v, n + 1);
    } else if (colon) {
        if (!st__reg_valid_name(colon + 1))
            return st__fail(ST_ERR_INVALID_ARG, "reference \"%.200s\": bad tag name", ref);
        strcpy(tag, colon + 1);
    } else {
        strcpy(tag, "latest");
    }
    return ST_OK;
}

st_status st__reg_resolve_ref(st_registry *r, const char *ref, char name[ST_REGISTRY_MAX_NAME + 1],
                              char rev[65]) {
    char tag[ST_REGISTRY_MAX_NAME + 1], pre[65];
    ST_TRY(st_registry_parse_ref(ref, name, tag, pre));
    char *md = model_dir(r, name);
    if (!md) return ST_ERR_NOMEM;
    struct stat st;
    bool exists = stat(md, &st) == 0 && S_ISDIR(st.st_mode);
    st_free(md);
    if (!exists) return st__fail(ST_ERR_IO, "no model named \"%s\" in the registry %s", name, r->root);
    if (tag[0]) return read_tag(r, name, tag, rev);
    char *rd = path_fmt("%s/models/%s/revisions", r->root, name);
    if (!rd) return ST_ERR_NOMEM;
    char **v;
    int n;
    st_status s = list_dir(rd, true, &v, &n);
    st_free(rd);
    if (s) return s;
    int found = 0;
    size_t pl = strlen(pre);
    for (int i = 0; i < n; i++) {
        size_t l = strlen(v[i]);
        if (l == 69 && !strcmp(v[i] + 64, ".json") && !strncmp(v[i], pre, pl)) {
            if (found++ == 0) {
                memcpy(rev, v[i], 64);
                rev[64] = '\0';
            }
        }
    }
    free_strs(v, n);
    if (found == 0) return st__fail(ST_ERR_IO, "model %s has no revision %s", name, pre);
    if (found > 1) return st__fail(ST_ERR_IO, "model %s: revision prefix %s is ambiguous (%d matches)", name, pre, found);
    return ST_OK;
}

st_status st_registry_get(st_registry *r, const char *ref, st_registry_manifest **out) {
    *out = NULL;
    ST_TRY(st__reg_lock(r, LOCK_SH));
    char name[ST_REGISTRY_MAX_NAME + 1], rev[65];
    st_status s = st__reg_resolve_ref(r, ref, name, rev);
    if (s == ST_OK) s = st__reg_read_manifest(r, name, rev, out, NULL, NULL);
    st__reg_unlock(r);
    return s;
}

/* ==== writing ============================================================ */

/* Writes data atomically to dir/leaf (dir created). */
static st_status write_small(const char *dir, const char *leaf, const void *data, size_t n) {
    ST_TRY(st__reg_mkdirs(dir));
    char *p = path_join(dir, leaf);
    if (!p) return ST_ERR_NOMEM;
    st_status s = st_file_write_atomic(p, data, n);
    st_free(p);
    return s;
}

static st_status write_tag(st_registry *r, const char *name, const char *tag, const char *rev) {
    char *d = path_fmt("%s/models/%s/tags", r->root, name);
    if (!d) return ST_ERR_NOMEM;
    char line[66];
    snprintf(line, sizeof line, "%s\n", rev);
    st_status s = write_small(d, tag, line, 65);
    st_free(d);
    return s;
}

st_status st__reg_commit_blob(st_registry *r, const char *tmp, const char *hex) {
    char *dst = st__reg_blob_path(r, hex);
    if (!dst) return ST_ERR_NOMEM;
    st_status s = ST_OK;
    struct stat st;
    if (stat(dst, &st) == 0) {
        unlink(tmp); /* stored once */
    } else {
        char *d = path_fmt("%s/blobs/sha256/%.2s", r->root, hex);
        if (!d) s = ST_ERR_NOMEM;
        if (s == ST_OK) s = st__reg_mkdirs(d);
        if (s == ST_OK) chmod(tmp, 0444);
        if (s == ST_OK && rename(tmp, dst) != 0)
            s = st__fail(ST_ERR_IO, "%s: cannot move into the store as %s: %s", tmp, dst, strerror(errno));
        if (s == ST_OK) s = st__fsync_parent_dir(dst);
        st_free(d);
    }
    st_free(dst);
    return s;
}

st_status st__reg_commit_manifest(st_registry *r, const st_registry_manifest *m,
                                  const char *json, size_t n, const char *tag) {
    char *d = path_fmt("%s/models/%s/revisions", r->root, m->name);
    if (!d) return ST_ERR_NOMEM;
    char leaf[80];
    snprintf(leaf, sizeof leaf, "%s.json", m->revision);
    st_status s = write_small(d, leaf, json, n);
    st_free(d);
    if (s) return s;
    st__reg_test_pause("committing");
    ST_TRY(write_tag(r, m->name, "latest", m->revision));
    if (tag && strcmp(tag, "latest") != 0) ST_TRY(write_tag(r, m->name, tag, m->revision));
    return ST_OK;
}

/* Copies src into tmp file dst while hashing; fsyncs. */
static st_status copy_hash(const char *src, const char *dst, char hex[65], uint64_t *size) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return st__fail(ST_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return st__fail(ST_ERR_IO, "%s: cannot create: %s", dst, strerror(errno));
    }
    st_status s = ST_OK;
    char *buf = st_malloc(COPY_CHUNK);
    st__sha256 *h = st__sha256_new();
    uint64_t total = 0;
    if (!buf || !h) s = st__fail(ST_ERR_NOMEM, "%s: no memory", src);
    while (s == ST_OK) {
        ssize_t k = read(in, buf, COPY_CHUNK);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) s = st__fail(ST_ERR_IO, "%s: read failed: %s", src, strerror(errno));
        if (k <= 0) break;
        st__sha256_update(h, buf, (size_t)k);
        total += (uint64_t)k;
        for (ssize_t off = 0; off < k && s == ST_OK;) {
            ssize_t w = write(out, buf + off, (size_t)(k - off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) s = st__fail(ST_ERR_IO, "%s: write failed: %s", dst, strerror(errno));
            else off += w;
        }
    }
    if (s == ST_OK && fsync(out) != 0) s = st__fail(ST_ERR_IO, "%s: fsync failed: %s", dst, strerror(errno));
    close(in);
    close(out);
    if (s == ST_OK) {
        st__sha256_final_hex(h, hex);
        *size = total;
    } else {
        st__sha256_free(h);
        unlink(dst);
    }
    st_free(buf);
    return s;
}

st_status st_registry_hash_file(const char *path, char hex[65], uint64_t *size) {
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) return st__fail(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    st_status s = ST_OK;
    char *buf = st_malloc(COPY_CHUNK);
    st__sha256 *h = st__sha256_new();
    uint64_t total = 0;
    if (!buf || !h) s = st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    while (s == ST_OK) {
        ssize_t k = read(in, buf, COPY_CHUNK);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) s = st__fail(ST_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (k <= 0) break;
        st__sha256_update(h, buf, (size_t)k);
        total += (uint64_t)k;
    }
    close(in);
    st_free(buf);
    if (s != ST_OK) {
        st__sha256_free(h);
        return s;
    }
    st__sha256_final_hex(h, hex);
    if (size) *size = total;
    return ST_OK;
}

/* Regular files below root/rel, recursively (relative paths appended). */
static st_status walk(const char *root, const char *rel, char ***v, int *n, int *cap) {
    char *dir = rel[0] ? path_join(root, rel) : st_strdup(root);
    if (!dir) return st__fail(ST_ERR_NOMEM, "%s: no memory", root);
    char **names;
    int nn;
    st_status s = list_dir(dir, true, &names, &nn);
    for (int i = 0; s == ST_OK && i < nn; i++) {
        char *relp = rel[0] ? path_fmt("%s/%s", rel, names[i]) : st_strdup(names[i]);
        char *full = relp ? path_join(root, relp) : NULL;
        struct stat st;
        if (!relp || !full) s = st__fail(ST_ERR_NOMEM, "%s: no memory", root);
        else if (lstat(full, &st) != 0) s = st__fail(ST_ERR_IO, "%s: cannot stat: %s", full, strerror(errno));
        else if (S_ISDIR(st.st_mode)) s = walk(root, relp, v, n, cap);
        else if (S_ISREG(st.st_mode)) {
            if (!st__reg_valid_path(relp)) s = st__fail(ST_ERR_INVALID_ARG, "%s: file name not storable", full);
            else if (*n >= ST_REGISTRY_MAX_FILES) s = st__fail(ST_ERR_INVALID_ARG, "%s: more than %d files", root, ST_REGISTRY_MAX_FILES);
            else {
                if (*n == *cap) {
                    *cap = *cap ? 2 * *cap : 16;
                    char **nv = st_realloc(*v, (size_t)*cap * sizeof **v);
                    if (!nv) s = st__fail(ST_ERR_NOMEM, "%s: no memory", root);
                    else *v = nv;
                }
                if (s == ST_OK) {
                    (*v)[(*n)++] = relp;
                    relp = NULL;
                }
            }
        }
        st_free(relp);
        st_free(full);
    }
    free_strs(names, nn);
    st_free(dir);
    return s;
}

st_registry_push_params st_registry_push_default_params(void) {
    st_registry_push_params p = {NULL, NULL, NULL, NULL};
    return p;
}

static void now_iso(char buf[32]) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

st_status st_registry_push(st_registry *r, const char *path, const char *name,
                           const st_registry_push_params *pp, char rev_out[65]) {
    st_registry_push_params p = pp ? *pp : st_registry_push_default_params();
    if (!path || !name) return st__fail(ST_ERR_INVALID_ARG, "registry push: NULL path or name");
    if (!st__reg_valid_name(name))
        return st__fail(ST_ERR_INVALID_ARG, "registry push: bad model name \"%.200s\" ([A-Za-z0-9._-], 1..%d, not starting with '.' or '-')",
                        name, ST_REGISTRY_MAX_NAME);
    if (p.tag && !st__reg_valid_name(p.tag))
        return st__fail(ST_ERR_INVALID_ARG, "registry push: bad tag \"%.200s\"", p.tag);
    struct stat st;
    if (stat(path, &st) != 0) return st__fail(ST_ERR_IO, "%s: cannot push: %s", path, strerror(errno));
    bool is_dir = S_ISDIR(st.st_mode);
    if (!is_dir && !S_ISREG(st.st_mode)) return st__fail(ST_ERR_INVALID_ARG, "%s: not a file or directory", path);

    char **rel = NULL;
    int n = 0, cap = 0;
    st_status s = ST_OK;
    if (is_dir) {
        s = walk(path, "", &rel, &n, &cap);
        if (s == ST_OK) qsort(rel, (size_t)n, sizeof *rel, cmp_str);
    } else {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        rel = st_malloc(sizeof *rel);
        if (rel && (rel[0] = st_strdup(base))) n = 1;
        else s = st__fail(ST_ERR_NOMEM, "%s: no memory", path);
        if (s == ST_OK && !st__reg_valid_path(rel[0])) s = st__fail(ST_ERR_INVALID_ARG, "%s: file name not storable", path);
    }
    bool add_card = p.card_markdown != NULL;
    if (s == ST_OK && n == 0 && !add_card) s = st__fail(ST_ERR_INVALID_ARG, "%s: no files to push", path);

    st_registry_manifest m;
    memset(&m, 0, sizeof m);
    char **tmps = NULL;
    char(*tmp_hex)[65] = NULL;
    int n_total = n + (add_card ? 1 : 0);
    if (s == ST_OK) {
        m.files = st_calloc((size_t)n_total, sizeof *m.files);
        tmps = st_calloc((size_t)n_total, sizeof *tmps);
        tmp_hex = st_calloc((size_t)n_total, sizeof *tmp_hex);
        if (!m.files || !tmps || !tmp_hex) s = st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    }
    /* 1. hash each file; copy it into tmp/ only when the store lacks it */
    static int k_seq = 0;
    for (int i = 0; s == ST_OK && i < n; i++) {
        if (add_card && !strcmp(rel[i], "README.md")) continue;
        char *src = is_dir ? path_join(path, rel[i]) : st_strdup(path);
        if (!src) {
            s = ST_ERR_NOMEM;
            break;
        }
        st_registry_file *f = &m.files[m.n_files];
        s = st_registry_hash_file(src, f->sha256, &f->size);
        if (s == ST_OK && !st__reg_has_blob(r, f->sha256, (int64_t)f->size)) {
            char leaf[64], hex2[65];
            uint64_t size2 = 0;
            snprintf(leaf, sizeof leaf, "push.%ld.%d", (long)getpid(), __atomic_fetch_add(&k_seq, 1, __ATOMIC_RELAXED));
            tmps[m.n_files] = st__reg_tmp_path(r, leaf);
            if (!tmps[m.n_files]) s = ST_ERR_NOMEM;
            if (s == ST_OK) s = copy_hash(src, tmps[m.n_files], hex2, &size2);
            if (s == ST_OK && (strcmp(hex2, f->sha256) || size2 != f->size))
                s = st__fail(ST_ERR_IO, "%s: the file changed while it was pushed; push again", src);
            if (s == ST_OK) memcpy(tmp_hex[m.n_files], hex2, 65);
        }
        if (s == ST_OK) {
            f->path = rel[i];
            rel[i] = NULL;
            m.n_files++;
        }
        st_free(src);
    }
    if (s == ST_OK && add_card) {
        st_registry_file *f = &m.files[m.n_files];
        size_t cn = strlen(p.card_markdown);
        st__sha256_hex(p.card_markdown, cn, f->sha256);
        f->size = cn;
        if (!(f->path = st_strdup("README.md"))) s = ST_ERR_NOMEM;
        if (s == ST_OK && !st__reg_has_blob(r, f->sha256, (int64_t)cn)) {
            char leaf[64];
            snprintf(leaf, sizeof leaf, "push.%ld.%d", (long)getpid(), __atomic_fetch_add(&k_seq, 1, __ATOMIC_RELAXED));
            tmps[m.n_files] = st__reg_tmp_path(r, leaf);
            if (!tmps[m.n_files]) s = ST_ERR_NOMEM;
            else s = st_file_write_atomic(tmps[m.n_files], p.card_markdown, cn);
            memcpy(tmp_hex[m.n_files], f->sha256, 65);
        }
        if (f->path) m.n_files++;
    }
    if (s == ST_OK) qsort(m.files, (size_t)m.n_files, sizeof *m.files, cmp_file);
    /* (tmps[i] holds content tmp_hex[i]; sorting m.files does not touch them) */
    if (s == ST_OK) st__reg_test_pause("copied");

    /* 2. commit under the lock: blobs, manifest, tags */
    char tbuf[32];
    now_iso(tbuf);
    const char *user = getenv("USER");
    m.name = (char *)name;
    m.author = (char *)(p.author ? p.author : (user && *user ? user : "unknown"));
    m.message = (char *)(p.message ? p.message : "");
    m.time = tbuf;
    m.single_file = !is_dir && m.n_files == 1;
    bool locked = false;
    if (s == ST_OK && (s = st__reg_lock(r, LOCK_EX)) == ST_OK) locked = true;
    if (s == ST_OK) {
        char cur[65];
        if (read_tag(r, name, "latest", cur) == ST_OK) memcpy(m.parent, cur, 65);
        st_clear_error();
    }
    for (int i = 0; s == ST_OK && i < n_total; i++) {
        if (!tmps[i]) continue;
        s = st__reg_commit_blob(r, tmps[i], tmp_hex[i]);
        if (s == ST_OK) {
            st_free(tmps[i]);
            tmps[i] = NULL;
        }
    }
    for (int i = 0; s == ST_OK && i < m.n_files; i++)
        if (!st__reg_has_blob(r, m.files[i].sha256, (int64_t)m.files[i].size))
            s = st__fail(ST_ERR_IO, "%s: blob %s of %s vanished during the push", r->root, m.files[i].sha256, m.files[i].path);
    char *json = NULL;
    size_t jn = 0;
    if (s == ST_OK) s = st_registry_manifest_json(&m, &json, &jn);
    if (s == ST_OK) {
        st__sha256_hex(json, jn, m.revision);
        s = st__reg_commit_manifest(r, &m, json, jn, p.tag);
    }
    if (locked) st__reg_unlock(r);
    if (s == ST_OK && rev_out) memcpy(rev_out, m.revision, 65);
    st_free(json);
    for (int i = 0; tmps && i < n_total; i++) {
        if (tmps[i]) unlink(tmps[i]);
        st_free(tmps[i]);
    }
    st_free(tmps);
    st_free(tmp_hex);
    for (int i = 0; i < m.n_files; i++) st_free(m.files[i].path);
    st_free(m.files);
    free_strs(rel, n);
    return s;
}

/* ==== model card generation for train --register ========================== */

static char *gen_card(const char *name, const st_model_card *c) {
    char *b = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&b, &n);
    if (!f) return NULL;
    fprintf(f, "---\nlicense: other\nlibrary_name: strata\n");
    if (c->training_data) fprintf(f, "datasets:\n  - \"%s\"\n", c->training_data);
    bool tl = c->train_loss == c->train_loss, vl = c->val_loss == c->val_loss;
    if (tl || vl || c->step >= 0 || c->tokens_seen >= 0) {
        fprintf(f, "metrics:\n");
        if (tl) fprintf(f, "  train_loss: %.6g\n", c->train_loss);
        if (vl) fprintf(f, "  val_loss: %.6g\n", c->val_loss);
        if (c->step >= 0) fprintf(f, "  steps: %lld\n", (long long)c->step);
        if (c->tokens_seen >= 0) fprintf(f, "  tokens_seen: %lld\n", (long long)c->tokens_seen);
    }
    fprintf(f, "tags:\n  - strata\n---\n\n# %s\n\n", c->name ? c->name : name);
    if (c->description) fprintf(f, "%s\n\n", c->description);
    if (c->training_data) fprintf(f, "Trained with `strata train` on %s.\n", c->training_data);
    fclose(f);
    char *out = st_strdup(b);
    free(b);
    return out;
}

st_status st_registry_push_dir(const char *dir, const char *name, const char *tag,
                               const char *message, const st_model_card *card,
                               char rev_out[65]) {
    st_registry *r;
    ST_TRY(st_registry_open(NULL, &r));
    st_registry_push_params p = st_registry_push_default_params();
    p.tag = tag;
    p.message = message;
    char *md = NULL;
    if (card) {
        md = gen_card(name, card);
        if (!md) {
            st_registry_close(r);
            return st__fail(ST_ERR_NOMEM, "%s: no memory for the model card", dir);
        }
        p.card_markdown = md;
    }
    st_status s = st_registry_push(r, dir, name, &p, rev_out);
    st_free(md);
    st_registry_close(r);
    return s;
}

/* ==== resolve / materialize ============================================== */

static st_status link_or_copy(const char *src, const char *dst) {
    if (link(src, dst) == 0) return ST_OK;
    char hex[65];
    uint64_t sz;
    return copy_hash(src, dst, hex, &sz);
}

static st_status verify_file(const char *path, const st_registry_file *f) {
    struct stat st;
    if (stat(path, &st) != 0) return st__fail(ST_ERR_IO, "%s: missing from the snapshot", path);
    if ((uint64_t)st.st_size != f->size)
        return st__fail(ST_ERR_FORMAT, "%s: %lld bytes, the manifest says %llu (corrupt blob; run `strata hub verify`)",
                        path, (long long)st.st_size, (unsigned long long)f->size);
    char hex[65];
    ST_TRY(st_registry_hash_file(path, hex, NULL));
    if (strcmp(hex, f->sha256) != 0)
        return st__fail(ST_ERR_FORMAT, "%s: SHA-256 %.12s… does not match the manifest's %.12s… (corrupt blob; run `strata hub verify`)",
                        path, hex, f->sha256);
    return ST_OK;
}

st_status st_registry_materialize(st_registry *r, const char *ref, char **path_out) {
    *path_out = NULL;
    ST_TRY(st__reg_lock(r, LOCK_SH));
    char name[ST_REGISTRY_MAX_NAME + 1], rev[65];
    st_registry_manifest *m = NULL;
    char *snap = NULL, *tmp = NULL;
    st_status s = st__reg_resolve_ref(r, ref, name, rev);
    if (s == ST_OK) s = st__reg_read_manifest(r, name, rev, &m, NULL, NULL);
    if (s == ST_OK && !(snap = path_fmt("%s/models/%s/snapshots/%s", r->root, name, rev))) s = ST_ERR_NOMEM;
    struct stat st;
    if (s == ST_OK && stat(snap, &st) != 0) {
        /* build it beside, then rename: a racing resolver's copy wins harmlessly */
        if (!(tmp = path_fmt("%s/models/%s/snapshots/.tmp.%s.%ld", r->root, name, rev, (long)getpid())))
            s = ST_ERR_NOMEM;
        if (s == ST_OK) {
            rm_rf(tmp);
            s = st__reg_mkdirs(tmp);
        }
        for (int i = 0; s == ST_OK && i < m->n_files; i++) {
            char *dst = path_join(tmp, m->files[i].path), *blob = st__reg_blob_path(r, m->files[i].sha256);
            if (!dst || !blob) s = ST_ERR_NOMEM;
            char *slash = dst ? strrchr(dst, '/') : NULL;
            if (s == ST_OK && slash) {
                *slash = '\0';
                s = st__reg_mkdirs(dst);
                *slash = '/';
            }
            if (s == ST_OK && access(blob, F_OK) != 0)
                s = st__fail(ST_ERR_IO, "%s@%.12s: blob %s of %s is missing from %s (pull the model again)", name, rev,
                             m->files[i].sha256, m->files[i].path, r->root);
            if (s == ST_OK) s = link_or_copy(blob, dst);
            st_free(dst);
            st_free(blob);
        }
        if (s == ST_OK && rename(tmp, snap) != 0 && errno != EEXIST && errno != ENOTEMPTY)
            s = st__fail(ST_ERR_IO, "%s: cannot rename to %s: %s", tmp, snap, strerror(errno));
        if (tmp) rm_rf(tmp);
    }
    /* verify on every load */
    for (int i = 0; s == ST_OK && i < m->n_files; i++) {
        char *p = path_join(snap, m->files[i].path);
        s = p ? verify_file(p, &m->files[i]) : ST_ERR_NOMEM;
        st_free(p);
    }
    st__reg_unlock(r);
    if (s == ST_OK) {
        *path_out = m->single_file ? path_join(snap, m->files[0].path) : st_strdup(snap);
        if (!*path_out) s = st__fail(ST_ERR_NOMEM, "registry: no memory");
    }
    st_registry_manifest_free(m);
    st_free(snap);
    st_free(tmp);
    return s;
}

st_status st_registry_resolve(const char *ref, char **path_out) {
    if (!ref || !path_out) return st__fail(ST_ERR_INVALID_ARG, "st_registry_resolve: NULL argument");
    *path_out = NULL;
    struct stat st;
    if (stat(ref, &st) == 0) {
        *path_out = st_strdup(ref);
        return *path_out ? ST_OK : st__fail(ST_ERR_NOMEM, "registry: no memory");
    }
    char name[ST_REGISTRY_MAX_NAME + 1], tag[ST_REGISTRY_MAX_NAME + 1], rev[65];
    if (st_registry_parse_ref(ref, name, tag, rev) != ST_OK)
        return st__fail(ST_ERR_INVALID_ARG, "\"%.200s\" is neither an existing path nor a registry reference NAME[:TAG|@REV]", ref);
    st_registry *r;
    ST_TRY(st_registry_open(NULL, &r));
    st_status s = st_registry_materialize(r, ref, path_out);
    st_registry_close(r);
    return s;
}

/* ==== listing ============================================================ */

void st_registry_models_free(st_registry_model_info *m, int n) {
    if (!m) return;
    for (int i = 0; i < n; i++) {
        st_free(m[i].tags);
        free_strs(m[i].revisions, m[i].n_revisions);
    }
    st_free(m);
}

static st_status model_info(st_registry *r, const char *name, st_registry_model_info *mi) {
    memset(mi, 0, sizeof *mi);
    snprintf(mi->name, sizeof mi->name, "%s", name);
    char *rd = path_fmt("%s/models/%s/revisions", r->root, name);
    char *td = path_fmt("%s/models/%s/tags", r->root, name);
    st_status s = rd && td ? ST_OK : ST_ERR_NOMEM;
    char **v = NULL;
    int n = 0;
    if (s == ST_OK) s = list_dir(rd, true, &v, &n);
    if (s == ST_OK) {
        mi->revisions = st_calloc((size_t)n + 1, sizeof *mi->revisions);
        if (!mi->revisions) s = ST_ERR_NOMEM;
        for (int i = 0; s == ST_OK && i < n; i++) {
            if (strlen(v[i]) == 69 && !strcmp(v[i] + 64, ".json")) {
                v[i][64] = '\0';
                mi->revisions[mi->n_revisions++] = v[i];
                v[i] = NULL;
            }
        }
    }
    free_strs(v, n);
    if (s == ST_OK) s = list_dir(td, true, &v, &n);
    if (s == ST_OK) {
        mi->tags = st_calloc((size_t)n + 1, sizeof *mi->tags);
        if (!mi->tags) s = ST_ERR_NOMEM;
        for (int i = 0; s == ST_OK && i < n; i++) {
            if (!st__reg_valid_name(v[i])) continue; /* temporaries */
            st_registry_tag_info *t = &mi->tags[mi->n_tags];
            snprintf(t->name, sizeof t->name, "%s", v[i]);
            s = read_tag(r, name, v[i], t->revision);
            if (s == ST_OK) mi->n_tags++;
            if (s == ST_OK && !strcmp(v[i], "latest")) memcpy(mi->latest, t->revision, 65);
        }
        free_strs(v, n);
    }
    st_free(rd);
    st_free(td);
    if (s == ST_ERR_NOMEM) st__fail(s, "%s: no memory listing model %s", r->root, name);
    return s;
}

st_status st_registry_model(st_registry *r, const char *name, st_registry_model_info **out) {
    *out = NULL;
    if (!st__reg_valid_name(name)) return st__fail(ST_ERR_INVALID_ARG, "bad model name \"%.200s\"", name);
    ST_TRY(st__reg_lock(r, LOCK_SH));
    char *md = model_dir(r, name);
    struct stat st;
    st_status s = md ? ST_OK : ST_ERR_NOMEM;
    if (s == ST_OK && (stat(md, &st) != 0 || !S_ISDIR(st.st_mode)))
        s = st__fail(ST_ERR_IO, "no model named \"%s\" in the registry %s", name, r->root);
    st_registry_model_info *mi = NULL;
    if (s == ST_OK && !(mi = st_calloc(1, sizeof *mi))) s = st__fail(ST_ERR_NOMEM, "registry: no memory");
    if (s == ST_OK) s = model_info(r, name, mi);
    st__reg_unlock(r);
    st_free(md);
    if (s != ST_OK) {
        st_registry_models_free(mi, mi ? 1 : 0);
        return s;
    }
    *out = mi;
    return ST_OK;
}

st_status st_registry_list(st_registry *r, st_registry_model_info **out, int *n) {
    *out = NULL;
    *n = 0;
    ST_TRY(st__reg_lock(r, LOCK_SH));
    char *md = path_join(r->root, "models");
    char **v = NULL;
    int nv = 0;
    st_status s = md ? list_dir(md, true, &v, &nv) : ST_ERR_NOMEM;
    st_registry_model_info *mi = NULL;
    int cnt = 0;
    if (s == ST_OK && !(mi = st_calloc((size_t)nv + 1, sizeof *mi))) s = ST_ERR_NOMEM;
    for (int i = 0; s == ST_OK && i < nv; i++) {
        if (!st__reg_valid_name(v[i])) continue;
        s = model_info(r, v[i], &mi[cnt]);
        cnt++;
    }
    st__reg_unlock(r);
    free_strs(v, nv);
    st_free(md);
    if (s != ST_OK) {
        st_registry_models_free(mi, cnt);
        return s;
    }
    *out = mi;
    *n = cnt;
    return ST_OK;
}

st_status st_registry_log(st_registry *r, const char *ref, int max_n, st_registry_manifest ***out, int *n) {
    *out = NULL;
    *n = 0;
    if (max_n <= 0) max_n = 1000;
    ST_TRY(st__reg_lock(r, LOCK_SH));
    char name[ST_REGISTRY_MAX_NAME + 1], rev[65];
    st_status s = st__reg_resolve_ref(r, ref, name, rev);
    st_registry_manifest **v = NULL;
    int cnt = 0;
    if (s == ST_OK && !(v = st_calloc((size_t)max_n, sizeof *v))) s = st__fail(ST_ERR_NOMEM, "registry: no memory");
    while (s == ST_OK && cnt < max_n && rev[0]) {
        char p[80];
        snprintf(p, sizeof p, "%s.json", rev);
        char *f = path_fmt("%s/models/%s/revisions/%s", r->root, name, p);
        bool there = f && access(f, F_OK) == 0;
        st_free(f);
        if (!there && cnt > 0) break; /* a removed parent ends the chain */
        s = st__reg_read_manifest(r, name, rev, &v[cnt], NULL, NULL);
        if (s == ST_OK) memcpy(rev, v[cnt++]->parent, 65);
    }
    st__reg_unlock(r);
    if (s != ST_OK) {
        st_registry_manifests_free(v, cnt);
        return s;
    }
    *out = v;
    *n = cnt;
    return ST_OK;
}

/* ==== tag / rm ============================================================ */

st_status st_registry_tag(st_registry *r, const char *ref, const char *tag) {
    if (!st__reg_valid_name(tag)) return st__fail(ST_ERR_INVALID_ARG, "bad tag name \"%.200s\"", tag ? tag : "(null)");
    ST_TRY(st__reg_lock(r, LOCK_EX));
    char name[ST_REGISTRY_MAX_NAME + 1], rev[65];
    st_registry_manifest *m = NULL;
    st_status s = st__reg_resolve_ref(r, ref, name, rev);
    if (s == ST_OK) s = st__reg_read_manifest(r, name, rev, &m, NULL, NULL);
    if (s == ST_OK) s = write_tag(r, name, tag, rev);
    st__reg_unlock(r);
    st_registry_manifest_free(m);
    return s;
}

st_status st_registry_rm(st_registry *r, const char *ref) {
    char name[ST_REGISTRY_MAX_NAME + 1], tag[ST_REGISTRY_MAX_NAME + 1], pre[65];
    ST_TRY(st_registry_parse_ref(ref, name, tag, pre));
    bool whole = !strchr(ref, ':') && !strchr(ref, '@');
    ST_TRY(st__reg_lock(r, LOCK_EX));
    st_status s = ST_OK;
    char *md = model_dir(r, name);
    struct stat st;
    if (!md) s = ST_ERR_NOMEM;
    else if (stat(md, &st) != 0) s = st__fail(ST_ERR_IO, "no model named \"%s\" in the registry %s", name, r->root);
    if (s == ST_OK && whole) {
        /* rename away first so a crash never leaves half a model visible */
        char *gone = path_fmt("%s/models/.rm.%s.%ld", r->root, name, (long)getpid());
        if (!gone) s = ST_ERR_NOMEM;
        else if (rename(md, gone) != 0) s = st__fail(ST_ERR_IO, "%s: cannot remove: %s", md, strerror(errno));
        else {
            st__fsync_parent_dir(md);
            rm_rf(gone);
        }
        st_free(gone);
    } else if (s == ST_OK && tag[0]) {
        char *tp = path_fmt("%s/tags/%s", md, tag);
        if (!tp) s = ST_ERR_NOMEM;
        else if (unlink(tp) != 0) s = st__fail(ST_ERR_IO, "model %s has no tag \"%s\"", name, tag);
        else st__fsync_parent_dir(tp);
        st_free(tp);
    } else if (s == ST_OK) {
        char rev[65];
        s = st__reg_resolve_ref(r, ref, name, rev);
        st_registry_model_info mi;
        if (s == ST_OK && (s = model_info(r, name, &mi)) == ST_OK) {
            for (int i = 0; s == ST_OK && i < mi.n_tags; i++) {
                if (strcmp(mi.tags[i].revision, rev)) continue;
                char *tp = path_fmt("%s/tags/%s", md, mi.tags[i].name);
                if (tp) unlink(tp);
                st_free(tp);
            }
            st_free(mi.tags);
            free_strs(mi.revisions, mi.n_revisions);
            char *rp = path_fmt("%s/revisions/%s.json", md, rev);
            char *sp = path_fmt("%s/snapshots/%s", md, rev);
            if (!rp || !sp) s = ST_ERR_NOMEM;
            else if (unlink(rp) != 0) s = st__fail(ST_ERR_IO, "%s: cannot remove: %s", rp, strerror(errno));
            else {
                st__fsync_parent_dir(rp);
                rm_rf(sp);
            }
            st_free(rp);
            st_free(sp);
        }
    }
    st__reg_unlock(r);
    st_free(md);
    return s;
}

/* ==== gc / verify ========================================================= */

typedef struct hashset {
    char (*h)[65];
    int n, cap;
} hashset;

static int cmp_hash(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

/* Every blob any manifest references (lock held). */
static st_status referenced(st_registry *r, hashset *hs, st_registry_problem **probs, int *np) {
    st_registry_model_info *mi;
    int nm;
    char *md = path_join(r->root, "models");
    char **v = NULL;
    int nv = 0;
    st_status s = md ? list_dir(md, true, &v, &nv) : ST_ERR_NOMEM;
    (void)mi, (void)nm;
    for (int i = 0; s == ST_OK && i < nv; i++) {
        if (!st__reg_valid_name(v[i])) continue;
        st_registry_model_info info;
        if ((s = model_info(r, v[i], &info)) != ST_OK) {
            if (probs && s == ST_ERR_FORMAT) {
                /* a bad tag: report and continue */
                st_registry_problem *np2 = st_realloc(*probs, (size_t)(*np + 1) * sizeof **probs);
                if (np2) {
                    *probs = np2;
                    snprintf(np2[*np].what, sizeof np2[*np].what, "tag");
                    snprintf(np2[*np].detail, sizeof np2[*np].detail, "%s", st_last_error());
                    (*np)++;
                }
                s = ST_OK;
            }
            continue;
        }
        for (int j = 0; s == ST_OK && j < info.n_revisions; j++) {
            st_registry_manifest *m = NULL;
            st_status ms = st__reg_read_manifest(r, v[i], info.revisions[j], &m, NULL, NULL);
            if (ms != ST_OK) {
                if (!probs) {
                    s = ms;
                    break;
                }
                st_registry_problem *np2 = st_realloc(*probs, (size_t)(*np + 1) * sizeof **probs);
                if (np2) {
                    *probs = np2;
                    snprintf(np2[*np].what, sizeof np2[*np].what, "manifest");
                    snprintf(np2[*np].detail, sizeof np2[*np].detail, "%s", st_last_error());
                    (*np)++;
                }
                continue;
            }
            for (int k = 0; k < m->n_files; k++) {
                if (hs->n == hs->cap) {
                    hs->cap = hs->cap ? 2 * hs->cap : 64;
                    void *nh = st_realloc(hs->h, (size_t)hs->cap * sizeof *hs->h);
                    if (!nh) {
                        s = st__fail(ST_ERR_NOMEM, "registry: no memory");
                        break;
                    }
                    hs->h = nh;
                }
                memcpy(hs->h[hs->n++], m->files[k].sha256, 65);
                if (probs && !st__reg_has_blob(r, m->files[k].sha256, (int64_t)m->files[k].size)) {
                    st_registry_problem *np2 = st_realloc(*probs, (size_t)(*np + 1) * sizeof **probs);
                    if (np2) {
                        *probs = np2;
                        snprintf(np2[*np].what, sizeof np2[*np].what, "missing blob");
                        snprintf(np2[*np].detail, sizeof np2[*np].detail, "%s@%.12s: %s (%s, %llu bytes) is missing or has the wrong size",
                                 v[i], m->revision, m->files[k].path, m->files[k].sha256, (unsigned long long)m->files[k].size);
                        (*np)++;
                    }
                }
            }
            st_registry_manifest_free(m);
        }
        if (probs) {
            for (int j = 0; j < info.n_tags; j++) {
                bool ok = false;
                for (int k = 0; k < info.n_revisions; k++) ok |= !strcmp(info.revisions[k], info.tags[j].revision);
                if (ok) continue;
                st_registry_problem *np2 = st_realloc(*probs, (size_t)(*np + 1) * sizeof **probs);
                if (np2) {
                    *probs = np2;
                    snprintf(np2[*np].what, sizeof np2[*np].what, "tag");
                    snprintf(np2[*np].detail, sizeof np2[*np].detail, "%s:%s points at missing revision %s", v[i],
                             info.tags[j].name, info.tags[j].revision);
                    (*np)++;
                }
            }
        }
        st_free(info.tags);
        free_strs(info.revisions, info.n_revisions);
    }
    free_strs(v, nv);
    st_free(md);
    if (s == ST_OK && hs->n) qsort(hs->h, (size_t)hs->n, sizeof *hs->h, cmp_hash);
    return s;
}

static bool pid_alive(long pid) { return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM); }

st_status st_registry_gc(st_registry *r, st_registry_gc_stats *stats) {
    st_registry_gc_stats g;
    memset(&g, 0, sizeof g);
    ST_TRY(st__reg_lock(r, LOCK_EX));
    hashset hs = {NULL, 0, 0};
    st_status s = referenced(r, &hs, NULL, NULL);
    char *bd = path_join(r->root, "blobs/sha256");
    char **fan = NULL;
    int nf = 0;
    if (s == ST_OK) s = bd ? list_dir(bd, false, &fan, &nf) : ST_ERR_NOMEM;
    for (int i = 0; s == ST_OK && i < nf; i++) {
        char *d = path_join(bd, fan[i]);
        char **v = NULL;
        int nv = 0;
        s = d ? list_dir(d, false, &v, &nv) : ST_ERR_NOMEM;
        for (int j = 0; s == ST_OK && j < nv; j++) {
            char *p = path_join(d, v[j]);
            struct stat st;
            if (!p || lstat(p, &st) != 0) {
                st_free(p);
                continue;
            }
            bool keep = st__reg_valid_hex(v[j]) && hs.n && bsearch(v[j], hs.h, (size_t)hs.n, sizeof *hs.h, cmp_hash);
            if (keep) {
                g.blobs_kept++;
                g.bytes_kept += st.st_size;
            } else if (unlink(p) == 0) {
                g.blobs_removed++;
                g.bytes_removed += st.st_size;
            }
            st_free(p);
        }
        free_strs(v, nv);
        st_free(d);
    }
    free_strs(fan, nf);
    st_free(bd);
    /* stale temporaries: push./upload./snapshot temps of dead processes, old partials */
    char *td = path_join(r->root, "tmp");
    char **v = NULL;
    int nv = 0;
    if (s == ST_OK) s = td ? list_dir(td, false, &v, &nv) : ST_ERR_NOMEM;
    time_t now = time(NULL);
    for (int i = 0; s == ST_OK && i < nv; i++) {
        char *p = path_join(td, v[i]);
        struct stat st;
        if (!p || lstat(p, &st) != 0) {
            st_free(p);
            continue;
        }
        bool stale;
        long pid = 0;
        const char *dot = strchr(v[i], '.');
        if ((!strncmp(v[i], "push.", 5) || !strncmp(v[i], "upload.", 7)) && dot)
            pid = strtol(dot + 1, NULL, 10), stale = !pid_alive(pid);
        else
            stale = now - st.st_mtime > 24 * 3600;
        if (stale && remove(p) == 0) g.tmp_removed++;
        st_free(p);
    }
    free_strs(v, nv);
    st_free(td);
    /* snapshots of removed revisions, and half-built ones */
    char *md = path_join(r->root, "models");
    char **mv = NULL;
    int nm = 0;
    if (s == ST_OK) s = md ? list_dir(md, false, &mv, &nm) : ST_ERR_NOMEM;
    for (int i = 0; s == ST_OK && i < nm; i++) {
        if (!strncmp(mv[i], ".rm.", 4)) {
            char *p = path_join(md, mv[i]);
            if (p) rm_rf(p);
            st_free(p);
            continue;
        }
        char *sd = path_fmt("%s/%s/snapshots", md, mv[i]);
        char **sv = NULL;
        int ns = 0;
        if (sd && list_dir(sd, false, &sv, &ns) == ST_OK) {
            for (int j = 0; j < ns; j++) {
                char *rp = path_fmt("%s/%s/revisions/%s.json", md, mv[i], sv[j]);
                bool live = st__reg_valid_hex(sv[j]) && rp && access(rp, F_OK) == 0;
                if (!live) {
                    char *p = path_join(sd, sv[j]);
                    if (p) rm_rf(p), g.snapshots_removed++;
                    st_free(p);
                }
                st_free(rp);
            }
        }
        free_strs(sv, ns);
        st_free(sd);
    }
    free_strs(mv, nm);
    st_free(md);
    st__reg_unlock(r);
    st_free(hs.h);
    if (stats) *stats = g;
    return s;
}

st_status st_registry_verify(st_registry *r, st_registry_problem **problems, int *n_problems,
                             int64_t *n_blobs, int64_t *n_bytes) {
    *problems = NULL;
    *n_problems = 0;
    int64_t nb = 0, nby = 0;
    ST_TRY(st__reg_lock(r, LOCK_SH));
    hashset hs = {NULL, 0, 0};
    st_registry_problem *pr = NULL;
    int np = 0;
    st_status s = referenced(r, &hs, &pr, &np);
    char *bd = path_join(r->root, "blobs/sha256");
    char **fan = NULL;
    int nf = 0;
    if (s == ST_OK) s = bd ? list_dir(bd, false, &fan, &nf) : ST_ERR_NOMEM;
    for (int i = 0; s == ST_OK && i < nf; i++) {
        char *d = path_join(bd, fan[i]);
        char **v = NULL;
        int nv = 0;
        s = d ? list_dir(d, false, &v, &nv) : ST_ERR_NOMEM;
        for (int j = 0; s == ST_OK && j < nv; j++) {
            char *p = path_join(d, v[j]);
            char hex[65];
            uint64_t sz = 0;
            const char *fault = NULL;
            if (!p) {
                s = ST_ERR_NOMEM;
                break;
            }
            if (!st__reg_valid_hex(v[j]) || strncmp(v[j], fan[i], 2)) fault = "not a blob name";
            else if (st_registry_hash_file(p, hex, &sz) != ST_OK) fault = "unreadable";
            else if (strcmp(hex, v[j])) fault = "content does not match its SHA-256 name (corrupt)";
            nb++;
            nby += (int64_t)sz;
            if (fault) {
                st_registry_problem *n2 = st_realloc(pr, (size_t)(np + 1) * sizeof *pr);
                if (n2) {
                    pr = n2;
                    snprintf(pr[np].what, sizeof pr[np].what, "blob");
                    snprintf(pr[np].detail, sizeof pr[np].detail, "%s: %s", p, fault);
                    np++;
                }
            }
            st_free(p);
        }
        free_strs(v, nv);
        st_free(d);
    }
    free_strs(fan, nf);
    st_free(bd);
    st__reg_unlock(r);
    st_free(hs.h);
    if (s != ST_OK) {
        st_free(pr);
        return s;
    }
    *problems = pr;
    *n_problems = np;
    if (n_blobs) *n_blobs = nb;
    if (n_bytes) *n_bytes = nby;
    return ST_OK;
}

/*
 * fileio.c — crash-safe writes.
 *
 * Writers of the hub never write over a file in place: they create
 * "<path>.tmp.<pid>" in the same directory, write and fsync it, rename it
 * over <path> (atomic on POSIX within one file system) and fsync the
 * directory so the rename itself survives a crash. A crash therefore leaves
 * either the old file or the new one (and at worst a stray .tmp file).
 *
 * The st__atomic_file helpers (hub_impl.h) let a writer stream through a
 * FILE* (safetensors) instead of building the whole file in memory.
 * Nothing here is shared between threads; each call owns its descriptors.
 */
#include "hub_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

st_status st__fsync_parent_dir(const char *path) {
    char *copy = st_strdup(path);
    if (!copy) return st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    st_status s = ST_OK;
    if (fd < 0) {
        s = st__fail(ST_ERR_IO, "%s: cannot open directory to fsync: %s", dir, strerror(errno));
    } else {
        if (fsync(fd) != 0 && errno != EINVAL)
            s = st__fail(ST_ERR_IO, "%s: fsync of directory failed: %s", dir, strerror(errno));
        close(fd);
    }
    st_free(copy);
    return s;
}

st_status st__atomic_open(st__atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->path = st_strdup(path);
    af->tmp = st_malloc(n);
    if (!af->path || !af->tmp) {
        st_free(af->path);
        st_free(af->tmp);
        return st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    }
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wbe");
    if (!af->f) {
        st_status s = st__fail(ST_ERR_IO, "%s: cannot create: %s", af->tmp, strerror(errno));
        st_free(af->path);
        st_free(af->tmp);
        memset(af, 0, sizeof *af);
        return s;
    }
    return ST_OK;
}

st_status st__atomic_write(st__atomic_file *af, const void *data, size_t n) {
    if (af->failed) return ST_ERR_IO;
    if (n && fwrite(data, 1, n, af->f) != n) {
        af->failed = true;
        return st__fail(ST_ERR_IO, "%s: write failed: %s", af->tmp, strerror(errno));
    }
    return ST_OK;
}

void st__atomic_abort(st__atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    st_free(af->path);
    st_free(af->tmp);
    memset(af, 0, sizeof *af);
}

st_status st__atomic_commit(st__atomic_file *af) {
    st_status s = ST_OK;
    if (af->failed) {
        s = ST_ERR_IO; /* message already set */
    } else if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
        s = st__fail(ST_ERR_IO, "%s: flush/fsync failed: %s", af->tmp, strerror(errno));
    }
    if (fclose(af->f) != 0 && s == ST_OK)
        s = st__fail(ST_ERR_IO, "%s: close failed: %s", af->tmp, strerror(errno));
    af->f = NULL;
    if (s == ST_OK && rename(af->tmp, af->path) != 0)
        s = st__fail(ST_ERR_IO, "%s: rename to %s failed: %s", af->tmp, af->path,
                     strerror(errno));
    if (s == ST_OK) s = st__fsync_parent_dir(af->path);
    else unlink(af->tmp);
    st_free(af->path);
    st_free(af->tmp);
    memset(af, 0, sizeof *af);
    return s;
}

st_status st_file_write_atomic(const char *path, const void *data, size_t n) {
    if (!path || (!data && n)) return st__fail(ST_ERR_INVALID_ARG, "st_file_write_atomic: NULL argument");
    st__atomic_file af;
    ST_TRY(st__atomic_open(&af, path));
    st_status s = st__atomic_write(&af, data, n);
    if (s != ST_OK) {
        st__atomic_abort(&af);
        return s;
    }
    return st__atomic_commit(&af);
}

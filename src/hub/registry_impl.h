/*
 * registry_impl.h — private helpers shared by the registry (registry.c), its
 * HTTP server (hub_server.c) and client (hub_client.c).
 */
#ifndef STRATA_REGISTRY_IMPL_H
#define STRATA_REGISTRY_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strata/registry.h"

struct st_registry {
    char *root;    /* STRATA_HOME/hub */
    int lock_fd;   /* STRATA_HOME/hub/lock */
    int lock_mode; /* 0, LOCK_SH or LOCK_EX currently held */
};

/* flock on the registry's lock file (LOCK_SH or LOCK_EX); unlock releases. */
st_status st__reg_lock(st_registry *r, int mode);
void st__reg_unlock(st_registry *r);

/* Checks of outside strings. */
bool st__reg_valid_name(const char *s);
bool st__reg_valid_hex(const char *s);
bool st__reg_valid_path(const char *s);

/* root/blobs/sha256/ab/abcd... ; root/tmp/NAME. Return an st_malloc'd path
 * (NULL on no memory, with the error set). */
char *st__reg_blob_path(const st_registry *r, const char *hex);
char *st__reg_tmp_path(const st_registry *r, const char *leaf);
/* Whether blob hex is in the store (with that size when size >= 0). */
bool st__reg_has_blob(const st_registry *r, const char *hex, int64_t size);

/* With the lock held exclusively: moves the verified file tmp into the store
 * as blob hex (or removes tmp when the blob is already there), fsyncing. */
st_status st__reg_commit_blob(st_registry *r, const char *tmp, const char *hex);
/* With the lock held exclusively: writes m's manifest (canonical json, n
 * bytes) as models/NAME/revisions/REV.json, then moves "latest" and tag
 * (when not NULL) to it. The tag is written last. */
st_status st__reg_commit_manifest(st_registry *r, const st_registry_manifest *m,
                                  const char *json, size_t n, const char *tag);
/* Resolves ref to (name, revision) with the lock held by the caller. */
st_status st__reg_resolve_ref(st_registry *r, const char *ref, char name[ST_REGISTRY_MAX_NAME + 1],
                              char rev[65]);
/* Reads and validates models/name/revisions/rev.json (lock held by caller);
 * raw/raw_n may be NULL, else receive the file's bytes (st_free). */
st_status st__reg_read_manifest(st_registry *r, const char *name, const char *rev,
                                st_registry_manifest **out, char **raw, size_t *raw_n);

/* Incremental SHA-256 (OpenSSL EVP). */
typedef struct st__sha256 st__sha256;
st__sha256 *st__sha256_new(void);
void st__sha256_update(st__sha256 *h, const void *p, size_t n);
void st__sha256_final_hex(st__sha256 *h, char hex[65]); /* also frees h */
void st__sha256_free(st__sha256 *h);
void st__sha256_hex(const void *p, size_t n, char hex[65]);

/* mkdir -p (mode 0755). */
st_status st__reg_mkdirs(const char *path);
/* fsync a file by path. */
st_status st__reg_fsync_path(const char *path);

/* The test hook (STRATA_REGISTRY_TEST_PAUSE=PHASE:FILE). */
void st__reg_test_pause(const char *phase);

#endif

/*
 * fuzz_shard.c — libFuzzer target for the readers of a dataset directory
 * (layer 5, src/data/shards.c and loader.c): the input's first byte picks
 * the reader, the rest is its file:
 *   sel % 3 == 0  a token shard (st_shard_open_mem; bit 2 of sel: scan the
 *                 tokens against vocab_size), then every token is read back
 *                 through st_shard_read in a few windows;
 *   sel % 3 == 1  a manifest.json (st_manifest_read_mem), then its fields
 *                 are walked and it is written back and read again;
 *   sel % 3 == 2  a loader state (st_loader_state_from_json) and back.
 * Every failure must be a status, never a crash, a leak or an allocation
 * the input does not justify.
 *
 * Seeds (tests/fuzz/corpus/fuzz_shard/): a uint16 shard, a uint32 shard, a
 * manifest and a loader state, each with its selector byte first. Run:
 *   make fuzz   (or build-fuzz/fuzz/fuzz_shard tests/fuzz/corpus/fuzz_shard)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "strata/data.h"

static void shard(const uint8_t *p, size_t n, bool check) {
    st_shard *sh = NULL;
    if (st_shard_open_mem(p, n, "fuzz.bin", check, &sh) != ST_OK) return;
    const st_shard_info *in = st_shard_get_info(sh);
    int32_t buf[256];
    uint64_t total = in->n_tokens;
    for (uint64_t off = 0; off < total; off += 97) {
        size_t k = total - off < 256 ? (size_t)(total - off) : 256;
        if (st_shard_read(sh, off, k, buf) != ST_OK) __builtin_trap();
        if (check)
            for (size_t i = 0; i < k; i++)
                if (buf[i] < 0 || (uint32_t)buf[i] >= in->vocab_size) __builtin_trap();
    }
    (void)st_shard_read(sh, total, 1, buf); /* past the end: a status */
    st_shard_free(sh);
}

static void manifest(const uint8_t *p, size_t n) {
    st_manifest *m = NULL;
    if (st_manifest_read_mem((const char *)p, n, "fuzz/manifest.json", &m) != ST_OK) return;
    uint64_t sum[2] = {0, 0};
    for (int i = 0; i < m->n_shards; i++) {
        if (strchr(m->shards[i].file, '/')) __builtin_trap();
        sum[m->shards[i].split] += m->shards[i].n_tokens;
    }
    if (sum[0] != m->n_tokens[0] || sum[1] != m->n_tokens[1]) __builtin_trap();
    for (int i = 0; i < m->n_sources; i++)
        (void)strlen(m->sources[i].path);
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_shard_manifest.%d.json", (int)getpid());
    if (st_manifest_write(path, m) == ST_OK) {
        st_manifest *r = NULL;
        if (st_manifest_read(path, &r) != ST_OK) __builtin_trap(); /* what we write, we read */
        st_manifest_free(r);
        unlink(path);
    }
    st_manifest_free(m);
}

static void state(const uint8_t *p, size_t n) {
    st_loader_state st;
    if (st_loader_state_from_json((const char *)p, n, "fuzz/state.json", &st) != ST_OK) return;
    char *js = NULL;
    if (st_loader_state_to_json(&st, &js) != ST_OK) __builtin_trap();
    st_loader_state back;
    if (st_loader_state_from_json(js, strlen(js), "again", &back) != ST_OK) __builtin_trap();
    if (back.seed != st.seed || back.next_batch != st.next_batch || back.mode != st.mode)
        __builtin_trap();
    st_free(js);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t sel = data[0];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (sel % 3) {
    case 0:
        shard(p, n, (sel & 4) != 0);
        break;
    case 1:
        manifest(p, n);
        break;
    default:
        state(p, n);
        break;
    }
    return 0;
}

/*
 * ctx.c — the layer-3 context: one CPU backend, one step arena, reset
 * hooks, the autograd recorder slot and an extension slot.
 *
 * The context owns its backend and arena (freed by st_ctx_free). Step
 * tensors, views and layer 4's tape live in the arena and die together at
 * st_ctx_reset, after the reset hooks ran (layer 4 drops its tape there).
 * The extension slot holds one pointer of a higher layer's per-context
 * state (layer 4's tape bookkeeping) with the function that frees it; the
 * context frees it when it is replaced and, last of all, at st_ctx_free, so
 * the hooks and the recorder that point at it never outlive it. Persistent
 * tensors are counted so that st_ctx_free can report the ones the caller
 * forgot. One thread drives a context.
 */
#include "tensor/tensor_impl.h"

#include <string.h>

#define ST_CTX_DEFAULT_ARENA ((size_t)16 << 20)

st_ctx_params st_ctx_default_params(void) {
    st_ctx_params p;
    memset(&p, 0, sizeof p);
    p.cpu = st_backend_cpu_default_params();
    p.arena_bytes = 0;
    return p;
}

st_status st_ctx_new(const st_ctx_params *params, st_ctx **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "st_ctx_new: out is NULL");
    *out = NULL;
    st_ctx_params def = st_ctx_default_params();
    if (!params) params = &def;
    st_ctx *ctx = st_calloc(1, sizeof *ctx);
    if (!ctx) return st__fail(ST_ERR_NOMEM, "st_ctx_new: out of memory");
    st_status s = st_backend_cpu_new(&params->cpu, &ctx->be);
    if (s != ST_OK) {
        st_free(ctx);
        return s;
    }
    size_t ab = params->arena_bytes ? params->arena_bytes : ST_CTX_DEFAULT_ARENA;
    s = st_arena_new(ab, &ctx->arena);
    if (s != ST_OK) {
        st_backend_free(ctx->be);
        st_free(ctx);
        return st__fail(ST_ERR_NOMEM, "st_ctx_new: cannot allocate an arena of %zu bytes", ab);
    }
    ctx->grad_enabled = true;
    *out = ctx;
    return ST_OK;
}

void st_ctx_free(st_ctx *ctx) {
    if (!ctx) return;
    if (ctx->n_persistent > 0)
        st_log_msg(ST_LOG_DEBUG, "st_ctx_free: %lld persistent tensor(s) not freed",
                   (long long)ctx->n_persistent);
    st_arena_free(ctx->arena);
    st_backend_free(ctx->be);
    /* Last: the reset hooks and the recorder may point into the extension. */
    if (ctx->ext && ctx->ext_free) ctx->ext_free(ctx->ext);
    st_free(ctx);
}

void st_ctx_reset(st_ctx *ctx) {
    if (!ctx) return;
    for (int i = 0; i < ctx->n_hooks; i++) ctx->hooks[i](ctx, ctx->hook_user[i]);
    st_arena_reset(ctx->arena);
}

st_backend *st_ctx_backend(st_ctx *ctx) { return ctx ? ctx->be : NULL; }

st_arena *st_ctx_arena(st_ctx *ctx) { return ctx ? ctx->arena : NULL; }

int st_ctx_n_threads(const st_ctx *ctx) { return ctx ? st_backend_n_threads(ctx->be) : 0; }

st_status st_ctx_add_reset_hook(st_ctx *ctx, st_ctx_reset_fn fn, void *user) {
    if (!ctx || !fn)
        return st__fail(ST_ERR_INVALID_ARG, "st_ctx_add_reset_hook: %s is NULL",
                        !ctx ? "ctx" : "fn");
    if (ctx->n_hooks >= ST_CTX_MAX_HOOKS)
        return st__fail(ST_ERR_STATE, "st_ctx_add_reset_hook: all %d hook slots are taken",
                        ST_CTX_MAX_HOOKS);
    ctx->hooks[ctx->n_hooks] = fn;
    ctx->hook_user[ctx->n_hooks] = user;
    ctx->n_hooks++;
    return ST_OK;
}

void st_ctx_set_recorder(st_ctx *ctx, st_record_fn fn, void *user) {
    if (!ctx) return;
    ctx->rec = fn;
    ctx->rec_user = user;
}

st_record_fn st_ctx_get_recorder(const st_ctx *ctx, void **user) {
    if (user) *user = ctx ? ctx->rec_user : NULL;
    return ctx ? ctx->rec : NULL;
}

st_status st_ctx_set_ext(st_ctx *ctx, void *ext, void (*free_fn)(void *ext)) {
    if (!ctx) return st__fail(ST_ERR_INVALID_ARG, "st_ctx_set_ext: ctx is NULL");
    void *old = ctx->ext;
    void (*old_free)(void *) = ctx->ext_free;
    ctx->ext = ext;
    ctx->ext_free = ext ? free_fn : NULL;
    if (old && old != ext && old_free) old_free(old);
    return ST_OK;
}

void *st_ctx_get_ext(const st_ctx *ctx) { return ctx ? ctx->ext : NULL; }

void st_ctx_set_grad_enabled(st_ctx *ctx, bool on) {
    if (ctx) ctx->grad_enabled = on;
}

bool st_ctx_grad_enabled(const st_ctx *ctx) { return ctx && ctx->grad_enabled; }

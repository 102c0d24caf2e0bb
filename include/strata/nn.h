/*
 * strata/nn.h — layer 4: reverse-mode automatic differentiation.
 *
 * Define-by-run: once st_autograd_enable() has installed the recorder on a
 * context, every layer-3 op whose input requires grad appends a node to the
 * tape (in the context's arena). st_backward() walks the tape in reverse and
 * accumulates gradients into t->grad. The tape dies at st_ctx_reset(); a
 * parameter's grad (a persistent tensor) survives and keeps accumulating
 * across steps until st_zero_grad() (gradient accumulation).
 *
 * Grad mode: st_ctx_set_grad_enabled(ctx, false) (layer 3) stops recording
 * (inference, optimizer updates).
 *
 * Modules, losses and optimizers for GPT and Llama build on this header.
 */
#ifndef STRATA_NN_H
#define STRATA_NN_H

#include "strata/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Installs the recorder and a reset hook on ctx, and puts autograd's
 * per-context state in the context's extension slot (st_ctx_set_ext), where
 * the context owns it: it is freed by st_ctx_free. Idempotent: ST_OK at once
 * when the recorder is already installed. Replaces a recorder of anyone
 * else. The caller must leave the recorder and the extension slot alone
 * afterwards. Errors: ST_ERR_INVALID_ARG (ctx NULL), ST_ERR_NOMEM,
 * ST_ERR_STATE (the context's reset hooks are full, or its extension slot
 * already holds something while autograd's recorder is not installed). */
st_status st_autograd_enable(st_ctx *ctx);

/* Marks t as a leaf that needs a gradient (f32 only: ST_ERR_DTYPE otherwise). */
st_status st_requires_grad(st_tensor *t, bool on);

/* Backpropagates from a one-element tensor (seed 1). Gradients add into
 * ->grad of every tensor on the path that requires grad: a persistent
 * tensor's grad is persistent (allocated on first use), a step tensor's grad
 * lives in the arena. The tape's nodes are consumed: a second backward over
 * the same graph is ST_ERR_STATE. Intermediates (step tensors made by a
 * recorded op) give their grad back as soon as it has been propagated: after
 * the call their ->grad is NULL and the memory is reused (leaves and
 * persistent tensors keep theirs; see st_autograd_set_retain_grads).
 * Scratch memory of the backward is reused the same way, so its peak is the
 * saved activations plus a working set of a few layers' gradients.
 * Errors: ST_ERR_SHAPE (loss not one element), ST_ERR_STATE (no tape: loss
 * does not require grad, or already backpropagated), op errors. */
st_status st_backward(st_ctx *ctx, st_tensor *loss);
/* As st_backward from any tensor, with grad_out of the same shape as seed. */
st_status st_backward_with(st_ctx *ctx, st_tensor *out, const st_tensor *grad_out);

/* On: backward keeps every intermediate's ->grad until the context's reset
 * (for inspecting them; costs the memory of all of them at once). Off (the
 * default): intermediates' grads are released as backward goes. Errors:
 * ST_ERR_STATE (autograd not enabled on ctx). */
st_status st_autograd_set_retain_grads(st_ctx *ctx, bool on);

/* Gradient-ready hook (data-parallel training, strata/dist.h: a bucket of
 * gradients starts its all-reduce as soon as its last gradient is final).
 * When set, st_backward / st_backward_with call fn(user, t) once for every
 * persistent leaf t that requires grad (a parameter) and that the graph
 * reaches, right after the last tape node that adds into t->grad has run:
 * from that call until the backward returns, t->grad does not change. Leaves
 * are reported in backward order (ties in the order the tape first met
 * them), so every process of a data-parallel job sees the same sequence. A
 * parameter the graph does not reach is not reported. fn runs on the
 * backward's thread between nodes; it may read t->grad (and hand its memory
 * to another thread that only reads it until the backward returns) but must
 * not record ops, change grads or reset the context. A status other than
 * ST_OK from fn stops the backward and is returned by it. fn NULL removes the
 * hook. Without a hook backward does exactly what it did before (the results
 * are bit-identical). Errors: ST_ERR_STATE (autograd not enabled on ctx). */
typedef st_status (*st_grad_ready_fn)(void *user, st_tensor *param);
st_status st_autograd_set_grad_ready_hook(st_ctx *ctx, st_grad_ready_fn fn, void *user);

/* Bytes of the step tensors the tape recorded since the last reset keeps
 * alive (every recorded node's sources and output, each storage or arena
 * chunk counted once; persistent tensors excluded): the activation part of
 * a training step's memory budget. 0 when autograd is not enabled. */
size_t st_autograd_saved_bytes(st_ctx *ctx);

/* Sets the grads of params to zero (keeps their buffers). NULL grads are skipped. */
void st_zero_grad(st_tensor *const *params, int n);

/* Number of nodes recorded on ctx since its last reset (for tests and
 * debugging); 0 when autograd is not enabled on ctx or ctx is NULL. */
int st_autograd_tape_size(const st_ctx *ctx);

/* ---- gradient check ------------------------------------------------------------------
 * Compares st_backward's gradients with central differences
 * (f(x+h) - f(x-h)) / 2h of L = sum(out * w), w a fixed random projection, for
 * every element of every input that requires grad. An element passes when
 * |analytic - numeric| <= atol + rtol * |numeric|. */
typedef st_status (*st_gradcheck_fn)(st_ctx *ctx, st_tensor *const *inputs, int n_inputs,
                                     void *user, st_tensor **out);

typedef struct st_gradcheck_params {
    float h;        /* finite-difference step (default 1e-2 for f32) */
    float atol;     /* default 1e-2 */
    float rtol;     /* default 1e-2 */
    uint64_t seed;  /* for the projection w */
} st_gradcheck_params;

typedef struct st_gradcheck_result {
    int64_t n_checked;
    int64_t n_failed;
    double max_abs_err;
    double max_rel_err;
    int worst_input;      /* index of the input with the worst element */
    int64_t worst_index;  /* its flat index */
    double worst_analytic, worst_numeric;
} st_gradcheck_result;

st_gradcheck_params st_gradcheck_default_params(void);
/* inputs must be persistent f32 tensors; each that requires grad is checked.
 * Enables autograd on ctx when it is not (st_autograd_enable).
 * The function is evaluated in f32 (the library's precision). Returns ST_OK
 * whether or not elements failed (read res->n_failed); errors come from fn.
 * The context is reset before every evaluation and at the end (the caller's
 * step tensors die); the inputs' values and grads are left as they were.
 * params NULL: st_gradcheck_default_params(). */
st_status st_gradcheck(st_ctx *ctx, st_gradcheck_fn fn, void *user, st_tensor *const *inputs,
                       int n_inputs, const st_gradcheck_params *params,
                       st_gradcheck_result *res);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_NN_H */

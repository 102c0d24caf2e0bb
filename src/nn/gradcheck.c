/*
 * gradcheck.c — layer 4: st_backward's gradients against central differences.
 *
 * The scalar under test is L = sum(out * w) with w a fixed projection drawn
 * with st_randn from params.seed (so every output element matters, with
 * distinct weights). Analytic: one forward with grad mode on and one
 * st_backward_with(out, w) (the same as backpropagating L). Numeric: for each
 * element x_j of each input that requires grad, L is re-evaluated at
 * x_j + h and x_j - h (grad mode off) and (L+ - L-) / (x+ - x-) is formed in
 * double from the f32 outputs, dividing by the step the f32 input really took.
 *
 * Memory: inputs are persistent, so the context is reset before every
 * evaluation (every step tensor of the caller dies: documented in nn.h). The
 * host copies (w, the input's grad before and after) are heap buffers freed
 * before return; the inputs' values and grads are restored as they were
 * (a grad that did not exist before is freed again).
 *
 * Threading: as the context (one thread).
 */
#include "strata/nn.h"

#include <math.h>
#include <string.h>

st_gradcheck_params st_gradcheck_default_params(void) {
    return (st_gradcheck_params){.h = 1e-2f, .atol = 1e-2f, .rtol = 1e-2f, .seed = 1234};
}

/* One evaluation of fn; fails when fn succeeds without an output. */
static st_status evaluate(st_ctx *ctx, st_gradcheck_fn fn, void *user, st_tensor *const *inputs,
                          int n_inputs, st_tensor **out) {
    *out = NULL;
    ST_TRY(fn(ctx, inputs, n_inputs, user, out));
    if (!*out) return st__fail(ST_ERR_INVALID_ARG, "st_gradcheck: fn returned no output");
    return ST_OK;
}

/* L = sum(out * w) in double. */
static st_status project(const st_tensor *out, const float *w, int64_t n, float *tmp, double *L) {
    if (st_tensor_numel(out) != n)
        return st__fail(ST_ERR_SHAPE,
                        "st_gradcheck: fn's output changed size between "
                        "evaluations (%lld, then %lld elements)",
                        (long long)n, (long long)st_tensor_numel(out));
    ST_TRY(st_tensor_to_f32(out, tmp, n));
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)tmp[i] * (double)w[i];
    *L = s;
    return ST_OK;
}

static st_status numeric_grad(st_ctx *ctx, st_gradcheck_fn fn, void *user, st_tensor *const *inputs,
                              int n_inputs, st_tensor *x, int64_t j, float h, const float *w,
                              int64_t n_out, float *tmp, double *num) {
    float x0 = 0.0f;
    ST_TRY(st_tensor_get_f32(x, j, &x0));
    float xp = x0 + h, xm = x0 - h;
    double Lp = 0.0, Lm = 0.0;
    st_tensor *out = NULL;
    st_status s;

    st_ctx_reset(ctx);
    if ((s = st_tensor_set_f32(x, j, xp)) != ST_OK) goto restore;
    if ((s = evaluate(ctx, fn, user, inputs, n_inputs, &out)) != ST_OK) goto restore;
    if ((s = project(out, w, n_out, tmp, &Lp)) != ST_OK) goto restore;
    st_ctx_reset(ctx);
    if ((s = st_tensor_set_f32(x, j, xm)) != ST_OK) goto restore;
    if ((s = evaluate(ctx, fn, user, inputs, n_inputs, &out)) != ST_OK) goto restore;
    if ((s = project(out, w, n_out, tmp, &Lm)) != ST_OK) goto restore;
    *num = (Lp - Lm) / ((double)xp - (double)xm);
restore:
    (void)st_tensor_set_f32(x, j, x0);
    return s;
}

st_status st_gradcheck(st_ctx *ctx, st_gradcheck_fn fn, void *user, st_tensor *const *inputs,
                       int n_inputs, const st_gradcheck_params *params, st_gradcheck_result *res) {
    if (!ctx || !fn || !res || (n_inputs > 0 && !inputs) || n_inputs < 0)
        return st__fail(ST_ERR_INVALID_ARG, "st_gradcheck: ctx, fn, inputs or res is NULL");
    memset(res, 0, sizeof *res);
    res->worst_input = -1;
    res->worst_index = -1;
    st_gradcheck_params p = params ? *params : st_gradcheck_default_params();
    if (!(p.h > 0.0f) || !(p.atol >= 0.0f) || !(p.rtol >= 0.0f))
        return st__fail(ST_ERR_INVALID_ARG,
                        "st_gradcheck: h must be > 0 and tolerances >= 0 "
                        "(h=%g atol=%g rtol=%g)",
                        p.h, p.atol, p.rtol);
    for (int i = 0; i < n_inputs; i++) {
        const st_tensor *x = inputs[i];
        if (!x) return st__fail(ST_ERR_INVALID_ARG, "st_gradcheck: input %d is NULL", i);
        if (x->requires_grad && (!x->persistent || x->dtype != ST_F32))
            return st__fail(ST_ERR_INVALID_ARG,
                            "st_gradcheck: input %d must be a persistent "
                            "f32 tensor (it is %s%s)",
                            i, x->persistent ? "" : "a step tensor, ", st_dtype_name(x->dtype));
    }

    ST_TRY(st_autograd_enable(ctx)); /* idempotent */
    bool grad_was_on = st_ctx_grad_enabled(ctx);
    st_status s = ST_OK;
    st_tensor *out = NULL;
    float *w = NULL, *tmp = NULL, *before = NULL, *after = NULL;
    bool *had_grad = st_calloc((size_t)n_inputs + 1, sizeof *had_grad);
    int64_t n_out = 0, max_in = 0;
    if (!had_grad) {
        s = st__fail(ST_ERR_NOMEM, "st_gradcheck: out of memory");
        goto done;
    }
    for (int i = 0; i < n_inputs; i++) {
        if (st_tensor_numel(inputs[i]) > max_in) max_in = st_tensor_numel(inputs[i]);
        had_grad[i] = inputs[i]->grad != NULL;
    }

    /* Analytic pass: forward with grad on, backward seeded with w. */
    st_ctx_reset(ctx);
    st_ctx_set_grad_enabled(ctx, true);
    if ((s = evaluate(ctx, fn, user, inputs, n_inputs, &out)) != ST_OK) goto done;
    n_out = st_tensor_numel(out);
    w = st_malloc((size_t)(n_out + 1) * sizeof *w);
    tmp = st_malloc((size_t)(n_out + 1) * sizeof *tmp);
    before = st_calloc((size_t)max_in * (size_t)(n_inputs + 1) + 1, sizeof *before);
    after = st_malloc(((size_t)max_in * (size_t)(n_inputs + 1) + 1) * sizeof *after);
    if (!w || !tmp || !before || !after) {
        s = st__fail(ST_ERR_NOMEM, "st_gradcheck: out of memory for %lld outputs",
                     (long long)n_out);
        goto done;
    }
    {
        st_tensor *wt = NULL;
        if ((s = st_randn(ctx, out->ndim, out->ne, p.seed, 0.0f, 1.0f, &wt)) != ST_OK) goto done;
        if ((s = st_tensor_to_f32(wt, w, n_out)) != ST_OK) goto done;
    }
    for (int i = 0; i < n_inputs; i++) {
        st_tensor *x = inputs[i];
        if (x->requires_grad && x->grad &&
            (s = st_tensor_to_f32(x->grad, before + (size_t)i * (size_t)max_in,
                                  st_tensor_numel(x))) != ST_OK)
            goto done;
    }
    {
        st_tensor *seed = NULL;
        if ((s = st_from_data(ctx, ST_F32, out->ndim, out->ne, w, &seed)) != ST_OK) goto done;
        if ((s = st_backward_with(ctx, out, seed)) != ST_OK) goto done;
    }
    for (int i = 0; i < n_inputs; i++) {
        st_tensor *x = inputs[i];
        float *a = after + (size_t)i * (size_t)max_in;
        int64_t n = st_tensor_numel(x);
        if (!x->requires_grad) continue;
        if (!x->grad) { /* not on the path to out: its gradient is 0 */
            memset(a, 0, (size_t)n * sizeof *a);
            continue;
        }
        if ((s = st_tensor_to_f32(x->grad, a, n)) != ST_OK) goto done;
        const float *b = before + (size_t)i * (size_t)max_in;
        /* Put the grad back as it was. */
        if (!had_grad[i]) {
            st_tensor_free(x->grad);
            x->grad = NULL;
        } else {
            for (int64_t j = 0; j < n; j++)
                if ((s = st_tensor_set_f32(x->grad, j, b[j])) != ST_OK) goto done;
        }
        for (int64_t j = 0; j < n; j++)
            a[j] -= b[j];
    }

    /* Numeric pass. */
    st_ctx_set_grad_enabled(ctx, false);
    for (int i = 0; i < n_inputs; i++) {
        st_tensor *x = inputs[i];
        if (!x->requires_grad) continue;
        const float *a = after + (size_t)i * (size_t)max_in;
        for (int64_t j = 0; j < st_tensor_numel(x); j++) {
            double num = 0.0;
            s = numeric_grad(ctx, fn, user, inputs, n_inputs, x, j, p.h, w, n_out, tmp, &num);
            if (s != ST_OK) goto done;
            double ana = (double)a[j];
            double err = fabs(ana - num);
            double rel = err / fmax(fabs(num), 1e-12);
            bool bad = !(err <= (double)p.atol + (double)p.rtol * fabs(num));
            res->n_checked++;
            if (bad) res->n_failed++;
            if (rel > res->max_rel_err) res->max_rel_err = rel;
            if (err > res->max_abs_err || res->worst_input < 0) {
                if (err > res->max_abs_err) res->max_abs_err = err;
                res->worst_input = i;
                res->worst_index = j;
                res->worst_analytic = ana;
                res->worst_numeric = num;
            }
        }
    }

done:
    st_ctx_set_grad_enabled(ctx, grad_was_on);
    st_ctx_reset(ctx);
    st_free(had_grad);
    st_free(w);
    st_free(tmp);
    st_free(before);
    st_free(after);
    return s;
}

/*
 * autograd_fused.h — layer 4's backward rules for the fused transformer ops
 * (private to src/nn; autograd.c's node_backward dispatches here).
 */
#ifndef STRATA_NN_AUTOGRAD_FUSED_H
#define STRATA_NN_AUTOGRAD_FUSED_H

#include "strata/nn.h"

/* Whether op is one of the fused ops whose rule lives in autograd_fused.c. */
bool st__ag_fused_handles(st_op op);
/* Adds the input gradients of one recorded fused op into src[i]->grad of
 * every source that requires grad. src/n_src are the recorded sources (with
 * the saved log-sum-exp last for attention and cross-entropy), out the op's
 * result and dy its gradient. Runs with grad mode off. */
st_status st__ag_fused_backward(st_ctx *ctx, st_op op, const st_op_params *p,
                                st_tensor *const *src, int n_src, st_tensor *out,
                                st_tensor *dy);

/* t->grad += dx through autograd.c's buffer rules (adopt an owned dx when t
 * has no grad yet, borrow a contiguous one that is not owned, copy on write
 * a borrowed grad). dx has t's shape or element count. No-op when t does
 * not require grad. */
st_status st__ag_grad_add(st_ctx *ctx, st_tensor *t, const st_tensor *dx, bool owned);

#endif

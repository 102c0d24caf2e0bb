/*
 * backend.c — the public st_backend_* functions.
 *
 * Each call checks what every backend shares and dispatches through the
 * backend's table (backend_impl.h): the op number, the operand counts each op
 * needs (a table below, indexed by st_op) and supports_op; then the device's
 * compute() runs. Device-specific queries (st_backend_cpu_*) live with their
 * device (cpu/cpu_backend.c).
 *
 * No state of its own; the threading rule is the public header's (one thread
 * submits operations to a backend).
 */
#include "backend/backend_impl.h"

/* Fewest sources each op reads (optional operands that sit before a required
 * one, like LAYERNORM_BACKWARD's gamma, count: they are passed with data NULL). */
static int min_src(st_op op) {
    switch (op) {
    case ST_OP_FILL:
    case ST_OP_ARANGE:
    case ST_OP_RAND_NORMAL:
    case ST_OP_RAND_UNIFORM:
        return 0;
    case ST_OP_ADD:
    case ST_OP_SUB:
    case ST_OP_MUL:
    case ST_OP_DIV:
    case ST_OP_EMBEDDING:
    case ST_OP_MATMUL:
    case ST_OP_UNARY_BACKWARD:
    case ST_OP_SOFTMAX_BACKWARD:
    case ST_OP_LOG_SOFTMAX_BACKWARD:
    case ST_OP_EMBEDDING_BACKWARD:
        return 2;
    case ST_OP_MAX_BACKWARD:
    case ST_OP_LAYERNORM_BACKWARD:
    case ST_OP_RMSNORM_BACKWARD:
        return 3;
    default:
        return 1;
    }
}

void st_backend_free(st_backend *be) {
    if (!be) return;
    be->iface->free(be);
}

const char *st_backend_name(const st_backend *be) {
    return be ? be->iface->name : "?";
}

bool st_backend_supports_op(const st_backend *be, st_op op, st_dtype dtype) {
    if (!be || op <= ST_OP_NONE || op >= ST_OP_COUNT_) return false;
    if ((int)dtype < 0 || dtype >= ST_DTYPE_COUNT_) return false;
    return be->iface->supports_op(be, op, dtype);
}

st_status st_backend_compute(st_backend *be, const st_op_desc *desc) {
    if (!be || !desc)
        return st__fail(ST_ERR_INVALID_ARG, "backend compute: NULL %s",
                        be ? "op description" : "backend");
    if (desc->op <= ST_OP_NONE || desc->op >= ST_OP_COUNT_)
        return st__fail(ST_ERR_INVALID_ARG, "backend %s: op number %d is not an operation",
                        be->iface->name, (int)desc->op);
    const char *opn = st_op_name(desc->op);
    if (desc->n_src < min_src(desc->op) || desc->n_src > ST_OP_MAX_SRC)
        return st__fail(ST_ERR_INVALID_ARG, "backend %s: op %s got %d sources, needs %d..%d",
                        be->iface->name, opn, desc->n_src, min_src(desc->op), ST_OP_MAX_SRC);
    if (desc->n_dst < 1 || desc->n_dst > ST_OP_MAX_DST)
        return st__fail(ST_ERR_INVALID_ARG, "backend %s: op %s got %d destinations, needs 1..%d",
                        be->iface->name, opn, desc->n_dst, ST_OP_MAX_DST);
    st_dtype dt = desc->n_src > 0 ? desc->src[0].dtype : desc->dst[0].dtype;
    if (!st_backend_supports_op(be, desc->op, dt))
        return st__fail(ST_ERR_UNSUPPORTED, "backend %s: op %s on dtype %s is not supported",
                        be->iface->name, opn, st_dtype_name(dt));
    return be->iface->compute(be, desc);
}

void *st_backend_alloc(st_backend *be, size_t bytes) {
    if (!be) {
        st__fail(ST_ERR_INVALID_ARG, "backend alloc: NULL backend");
        return NULL;
    }
    return be->iface->alloc(be, bytes);
}

void st_backend_dealloc(st_backend *be, void *ptr) {
    if (!be || !ptr) return;
    be->iface->dealloc(be, ptr);
}

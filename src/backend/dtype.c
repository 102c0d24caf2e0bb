/*
 * dtype.c — dtypes, scalar float conversions, view helpers and op names.
 *
 * The public scalar conversions forward to the kernels' bit-exact spec
 * (cpu/kernels_math.h): f32 -> bf16/f16 round to nearest even, NaN stays a
 * quiet NaN, f16 overflow gives infinity and small values become f16
 * subnormals. The op-name table is indexed by st_op and checked for
 * completeness at compile time.
 *
 * No state; every function is thread-safe.
 */
#include "strata/backend.h"

#include "backend/cpu/kernels_math.h"

size_t st_dtype_size(st_dtype t) {
    switch (t) {
    case ST_F32:
        return 4;
    case ST_BF16:
        return 2;
    case ST_F16:
        return 2;
    case ST_I32:
        return 4;
    case ST_I8:
        return 1;
    default:
        return 0;
    }
}

const char *st_dtype_name(st_dtype t) {
    switch (t) {
    case ST_F32:
        return "f32";
    case ST_BF16:
        return "bf16";
    case ST_F16:
        return "f16";
    case ST_I32:
        return "i32";
    case ST_I8:
        return "i8";
    default:
        return "?";
    }
}

/* The conversions are the kernels' shared scalar spec (kernels_math.h), so a
 * strided copy through these and a contiguous one through a kernel table
 * agree bit for bit. */
float st_bf16_to_f32(uint16_t h) {
    return st__k_bf16_to_f32(h);
}
uint16_t st_f32_to_bf16(float f) {
    return st__k_f32_to_bf16(f);
}
float st_f16_to_f32(uint16_t h) {
    return st__k_f16_to_f32(h);
}
uint16_t st_f32_to_f16(float f) {
    return st__k_f32_to_f16(f);
}

int64_t st_view_numel(const st_view *v) {
    if (!v || v->ndim < 1 || v->ndim > ST_MAX_DIMS) return 0;
    int64_t n = 1;
    for (int d = 0; d < v->ndim; d++)
        n *= v->ne[d];
    return n;
}

bool st_view_is_contiguous(const st_view *v) {
    if (!v || v->ndim < 1 || v->ndim > ST_MAX_DIMS) return false;
    int64_t es = (int64_t)st_dtype_size(v->dtype);
    if (es == 0) return false;
    int64_t want = es;
    for (int d = v->ndim - 1; d >= 0; d--) {
        if (v->nb[d] != want) return false;
        want *= v->ne[d];
    }
    return true;
}

static const char *const g_op_names[ST_OP_COUNT_] = {
    [ST_OP_NONE] = "none",
    [ST_OP_NEG] = "neg",
    [ST_OP_EXP] = "exp",
    [ST_OP_LOG] = "log",
    [ST_OP_SQRT] = "sqrt",
    [ST_OP_TANH] = "tanh",
    [ST_OP_GELU_TANH] = "gelu_tanh",
    [ST_OP_GELU_ERF] = "gelu_erf",
    [ST_OP_SILU] = "silu",
    [ST_OP_RELU] = "relu",
    [ST_OP_SCALE] = "scale",
    [ST_OP_ADD] = "add",
    [ST_OP_SUB] = "sub",
    [ST_OP_MUL] = "mul",
    [ST_OP_DIV] = "div",
    [ST_OP_SUM] = "sum",
    [ST_OP_MEAN] = "mean",
    [ST_OP_MAX] = "max",
    [ST_OP_SOFTMAX] = "softmax",
    [ST_OP_LOG_SOFTMAX] = "log_softmax",
    [ST_OP_LAYERNORM] = "layernorm",
    [ST_OP_RMSNORM] = "rmsnorm",
    [ST_OP_EMBEDDING] = "embedding",
    [ST_OP_MATMUL] = "matmul",
    [ST_OP_COPY] = "copy",
    [ST_OP_FILL] = "fill",
    [ST_OP_ARANGE] = "arange",
    [ST_OP_RAND_NORMAL] = "rand_normal",
    [ST_OP_RAND_UNIFORM] = "rand_uniform",
    [ST_OP_AXPY] = "axpy",
    [ST_OP_UNARY_BACKWARD] = "unary_backward",
    [ST_OP_MAX_BACKWARD] = "max_backward",
    [ST_OP_SOFTMAX_BACKWARD] = "softmax_backward",
    [ST_OP_LOG_SOFTMAX_BACKWARD] = "log_softmax_backward",
    [ST_OP_LAYERNORM_BACKWARD] = "layernorm_backward",
    [ST_OP_RMSNORM_BACKWARD] = "rmsnorm_backward",
    [ST_OP_EMBEDDING_BACKWARD] = "embedding_backward",
    [ST_OP_RESHAPE] = "reshape",
    [ST_OP_PERMUTE] = "permute",
    [ST_OP_SLICE] = "slice",
    [ST_OP_EXPAND] = "expand",
    [ST_OP_CONTIGUOUS] = "contiguous",
    [ST_OP_CONCAT] = "concat",
    [ST_OP_TO_DTYPE] = "to_dtype",
    [ST_OP_ATTENTION] = "attention",
    [ST_OP_ATTENTION_BACKWARD] = "attention_backward",
    [ST_OP_CROSS_ENTROPY] = "cross_entropy",
    [ST_OP_CROSS_ENTROPY_BACKWARD] = "cross_entropy_backward",
    [ST_OP_ROPE] = "rope",
    [ST_OP_DROPOUT] = "dropout",
};
_Static_assert(ST_OP_DROPOUT + 1 == ST_OP_COUNT_, "st_op grew: add its name to g_op_names");

const char *st_op_name(st_op op) {
    if ((int)op < 0 || op >= ST_OP_COUNT_ || !g_op_names[op]) return "?";
    return g_op_names[op];
}

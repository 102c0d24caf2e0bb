/*
 * strata/quant.h — layer 3: weight matrices in f32, f16, bf16 and llama.cpp's
 * block-quantized types q8_0 and q4_0, and the matrix products that read them.
 *
 * A weight matrix W is [rows, cols] row-major with rows = outputs and cols =
 * inputs (nn.Linear's layout, GGUF's and llama2.c's), so y = W x reads one
 * row per output. Quantized rows are runs of 32-element blocks in exactly
 * llama.cpp's byte layout, so a GGUF tensor's bytes are used as they are:
 *
 *   q8_0: { f16 d; int8 qs[32]; }      34 bytes, x[j] = d * qs[j]
 *   q4_0: { f16 d; uint8 qs[16]; }     18 bytes, x[j] = d * ((qs[j] & 15) - 8),
 *                                      x[j+16] = d * ((qs[j] >> 4) - 8), j < 16
 *
 * Quantizers round as llama.cpp's reference quantize_row_*_ref does, so a
 * file quantized here and one quantized by llama.cpp hold the same bytes.
 *
 * Products with quantized weights quantize the activations to q8_0 per
 * row (as llama.cpp does) and use integer dot kernels chosen at run time by
 * the CPU backend (AVX-512 VNNI, AVX-512, AVX2, scalar). Products run over
 * the context's thread pool; a st_wmatrix is read-only and may be shared by
 * threads.
 */
#ifndef STRATA_QUANT_H
#define STRATA_QUANT_H

#include "strata/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Values are stable (GGUF conversion maps them). */
typedef enum st_wtype {
    ST_WT_F32 = 0,
    ST_WT_F16 = 1,
    ST_WT_BF16 = 2,
    ST_WT_Q8_0 = 3,
    ST_WT_Q4_0 = 4,
    ST_WT_COUNT_
} st_wtype;

#define ST_QK 32 /* elements per quantized block */

typedef struct st_block_q8_0 {
    uint16_t d;        /* IEEE half scale */
    int8_t qs[ST_QK];
} st_block_q8_0;

typedef struct st_block_q4_0 {
    uint16_t d;        /* IEEE half scale */
    uint8_t qs[ST_QK / 2];
} st_block_q4_0;

/* "f32", "f16", "bf16", "q8_0", "q4_0"; NULL outside the table. */
const char *st_wtype_name(st_wtype t);
/* Parses a name above; -1 when unknown. */
int st_wtype_from_name(const char *name);
/* Bytes of one row of cols elements; 0 when cols is not a whole number of
 * blocks for a quantized type, or t is unknown, or the size overflows. */
size_t st_wtype_row_bytes(st_wtype t, int64_t cols);

/* A weight matrix. data is borrowed: whoever fills the struct keeps the
 * bytes alive (a loader's buffers or a mapped file). row_bytes is
 * st_wtype_row_bytes(type, cols); rows are contiguous. packed is optional
 * (NULL: none): the same q8_0 weights in the CPU kernels' interleaved
 * layout (st_wmatrix_pack), also borrowed. */
typedef struct st_wmatrix {
    st_wtype type;
    int64_t rows, cols;
    const void *data;
    size_t row_bytes;
    const void *packed;
} st_wmatrix;

/* Quantizes (or converts) n floats into dst (st_wtype_row_bytes(t, n)
 * bytes). Errors: ST_ERR_INVALID_ARG (NULL, unknown type, n not a multiple
 * of ST_QK for quantized types). */
st_status st_quantize_row(st_wtype t, const float *x, int64_t n, void *dst);
/* The inverse: n values of type t at src into y. Errors as above. */
st_status st_dequantize_row(st_wtype t, const void *src, int64_t n, float *y);

/* Row `row` of w as f32 into out[cols] (embedding lookups).
 * Errors: ST_ERR_BOUNDS (row outside [0, rows)), ST_ERR_INVALID_ARG. */
st_status st_wmatrix_get_row(const st_wmatrix *w, int64_t row, float *out);

/* y[n, rows] = x[n, cols] . W^T over ctx's pool (and BLAS for large n:
 * never both multithreaded at once). x and y are contiguous f32 and must
 * not overlap. Below a crossover in n (64 for f32, q8_0 and q4_0; 32 for
 * f16/bf16) the pool threads split W's rows and run register-blocked
 * small-n kernels that read each weight row from memory once for all n
 * inputs (decode, n = 1, and the server's decode batches); quantized
 * weights meet x quantized to q8_0 per row (as llama.cpp does) in integer
 * dots. From the crossover on, f32 weights go to one cblas_sgemm and the
 * others are dequantized in tiles for single-threaded sgemm per pool thread.
 * Scratch (quantized x, tiles) lives in a buffer owned by the calling
 * thread, grown once to the largest product and reused: a steady decode
 * loop does not allocate. It is freed when the thread exits, or by
 * st_wmatrix_scratch_release. Calls from different threads (with different
 * contexts) may run at once.
 * Errors: ST_ERR_INVALID_ARG (NULL, n < 0, a malformed st_wmatrix),
 * ST_ERR_NOMEM (growing the scratch). */
st_status st_wmatrix_matmul(st_ctx *ctx, const st_wmatrix *w, const float *x, int64_t n,
                            float *y);

/* y[i] = x . w[i]^T for n_mats matrices against one x (Q, K and V of a
 * layer; its gate and up): the results of st_wmatrix_matmul on each, and
 * where the small-n kernels take them all (equal cols, n below the sgemm
 * regime, at most 4 matrices) x is quantized once and one pool run splits
 * the rows of all of them, so a decode step waits for the threads once,
 * not once per matrix. Otherwise the matrices go one by one.
 * next[0..n_next) (may be 0 / NULL) names the matrices of the product the
 * caller runs next, a hint: each thread that is done with its rows
 * prefetches the start of its rows of those, so the next product does not
 * begin from cold memory. It changes no result.
 * Errors: as st_wmatrix_matmul. */
st_status st_wmatrix_matmul_multi(st_ctx *ctx, int n_mats, const st_wmatrix *const *w,
                                  const float *x, int64_t n, float *const *y, int n_next,
                                  const st_wmatrix *const *next);

/* Packed q8_0 and q4_0 weights. A decode product of row-major quantized
 * weights spends more vector operations per byte than memory takes to
 * deliver it (two blocks of a row per 512-bit vector: assemble them,
 * convert and broadcast two scales, dot, reduce the row at its end). The
 * packed layouts interleave 16 rows so that one 64-byte load holds 4
 * consecutive weights of each of the 16 rows (q4_0: twice 4, in the two
 * nibbles), one vpdpbusd against 4 broadcast input bytes advances all 16
 * rows' sums, and the 16 lanes are the 16 outputs:
 *
 *   groups of 16 rows (the last padded with zero rows), each
 *   ceil(nb / 2) chunks for blocks 2c, 2c + 1 (nb = cols / 32 blocks):
 *     uint16 d[2][16]              the 16 rows' f16 scales of each block
 *     q8_0: uint8 qs[2][8][16][4]  qs[b][j][r][t] = w[r][32 b + 4 j + t] + 128
 *     q4_0: uint8 qs[2][4][16][4]  qs[b][j][r][t] = byte 4 j + t of row r's
 *                                  block b as stored (low nibble: weight
 *                                  4 j + t, high: 16 + 4 j + t; each + 8)
 *   q8_0 1088 bytes (a lone last block: 576), q4_0 576 (320), 64-byte
 *   aligned throughout.
 *
 * It takes as many bytes as the row-major form, plus the padding. The
 * products use it where the CPU kernels of the context's SIMD level read it
 * (st_wmatrix_packs: AVX-512 with VNNI, AVX2 with AVX-VNNI); every output is
 * then sum over blocks b, in order, of fmaf(integer dot, d_w * d_x, sum),
 * the same bits for every n below the sgemm regime and at both levels, and
 * the row-major data stays in use for everything else (other levels,
 * embedding rows). */

/* Bytes of w's packed form; 0 when w is not a q8_0 or q4_0 matrix (the
 * types packed) or malformed. */
size_t st_wmatrix_packed_bytes(const st_wmatrix *w);
/* Writes w's packed form to dst (st_wmatrix_packed_bytes(w) bytes, 64-byte
 * aligned); the caller then sets w->packed = dst on its copy of the
 * matrix. Errors: ST_ERR_INVALID_ARG (NULL, misaligned dst, a matrix
 * st_wmatrix_packed_bytes refuses). */
st_status st_wmatrix_pack(const st_wmatrix *w, void *dst);
/* Whether ctx's products read packed weights (so packing is worth its
 * memory): its backend's SIMD level has the packed kernels. */
bool st_wmatrix_packs(st_ctx *ctx);

/* Frees the calling thread's product scratch (st_wmatrix_matmul grows it
 * again when next needed). Optional: thread exit frees it too; useful for a
 * long-lived thread that is done with products, or a test that counts live
 * bytes. */
void st_wmatrix_scratch_release(void);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_QUANT_H */

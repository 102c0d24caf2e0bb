/*
 * kernels_gemv.h — the row walk of the one-input-row (decode) products,
 * shared by the SIMD kernel files (kernels_small_avx2.c,
 * kernels_small_avx512.c); each includes it after its own intrinsics.
 *
 * One DRAM stream per core leaves bandwidth unused (a 2-thread read of
 * 256 MiB on the Zen VM: 0.65-0.71 of the copy bandwidth with one stream a
 * thread, 0.85-0.89 with two and a software prefetch), so a call's rows are
 * read as two streams: its groups of 4 rows are split into a first half A
 * and a second half B, and row i of A's group g is dotted side by side with
 * row i of B's group g. Rows past the end of a group repeat its last row
 * (the tiles' convention), so every group is 4 rows.
 *
 * ST_GEMV_GROUPS(VT, T, w, rowlen, nr, DOT1, DOT2, FINISH):
 *   VT      the kernel's vector type (the accumulators)
 *   T       the weight element type; rows are rowlen T apart from w
 *   DOT2(row a, row b, &acc a, &acc b)   two rows side by side
 *   DOT1(row a) -> acc                   a lone A group's rows
 *   FINISH(acc[4], rows[4], nrow, first row)   reduce and store a group
 * Stateless; no allocation.
 */
#ifndef STRATA_BACKEND_CPU_KERNELS_GEMV_H
#define STRATA_BACKEND_CPU_KERNELS_GEMV_H

#define ST_GEMV_GROUPS(VT, T, w, rowlen, nr, DOT1, DOT2, FINISH)                                   \
    do {                                                                                           \
        const int64_t ng_ = ((nr) + 3) / 4, na_ = (ng_ + 1) / 2;                                   \
        for (int64_t g_ = 0; g_ < na_; g_++) {                                                     \
            const int64_t ra_ = g_ * 4, rb_ = (na_ + g_) * 4;                                      \
            const int nra_ = (nr)-ra_ < 4 ? (int)((nr)-ra_) : 4;                                   \
            const int nrb_ = na_ + g_ < ng_ ? ((nr)-rb_ < 4 ? (int)((nr)-rb_) : 4) : 0;            \
            VT a_[4], b_[4];                                                                       \
            const T *pa_[4], *pb_[4];                                                              \
            for (int i_ = 0; i_ < 4; i_++) {                                                       \
                pa_[i_] = (w) + (size_t)(ra_ + (i_ < nra_ ? i_ : nra_ - 1)) * (rowlen);            \
                pb_[i_] = pa_[i_];                                                                 \
                if (nrb_) {                                                                        \
                    pb_[i_] = (w) + (size_t)(rb_ + (i_ < nrb_ ? i_ : nrb_ - 1)) * (rowlen);        \
                    DOT2(pa_[i_], pb_[i_], &a_[i_], &b_[i_]);                                      \
                } else                                                                             \
                    a_[i_] = DOT1(pa_[i_]);                                                        \
            }                                                                                      \
            FINISH(a_, pa_, nra_, ra_);                                                            \
            if (nrb_) FINISH(b_, pb_, nrb_, rb_);                                                  \
        }                                                                                          \
    } while (0)

#endif

/*
 * strata/dist.h — layer 7: distributed data-parallel training over MPI.
 *
 * `mpirun -np N strata train ...` runs N copies of the training loop (ranks).
 * Each rank computes gradients on its own rows of every global batch; a
 * st_ddp averages them across ranks so that every rank takes the same
 * optimizer step (PyTorch DDP's design, llm.c's MPI path):
 *
 *  - st_dist is the communicator: MPI_COMM_WORLD (Open MPI) when the process
 *    was started by mpirun (OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK in
 *    the environment) or when asked (--dist mpi); otherwise a local
 *    communicator of size 1 that makes no MPI call at all. All MPI calls go
 *    through it: with ST_DIST_OVERLAP_THREAD one communication thread owns
 *    them (MPI_THREAD_SERIALIZED) and progresses them while backward runs;
 *    with ST_DIST_OVERLAP_POLL the training thread starts them and calls
 *    MPI_Test between backward nodes; ST_DIST_OVERLAP_NONE starts them all
 *    after backward (the baseline without overlap).
 *  - Every wait has a deadline (timeout_s): a collective that does not
 *    finish in time asks every rank for a sign of life on a separate
 *    communicator and fails with ST_ERR_IO and a message naming the ranks
 *    that did not answer; the caller then ends the job with st_dist_abort
 *    (MPI_Abort: a job with a dead rank cannot finalize). While every rank
 *    answers (one is only busy), the wait goes on for up to 20 deadlines.
 *  - st_ddp lays the model's gradients out in one flat buffer (each
 *    parameter's grad is a view into it), cut into buckets of about
 *    bucket_bytes in backward order (parameters last in the model first).
 *    Through autograd's gradient-ready hook (strata/nn.h) a bucket's
 *    in-place all-reduce (sum) starts as soon as its last gradient is final.
 *    Buckets start in index order on every rank, so collectives match.
 *  - ZeRO stage 1 (zero = 1): each rank owns a contiguous 1/N shard of the
 *    flattened parameters and keeps the AdamW moments of that shard only;
 *    buckets are reduce-scattered (each rank receives the sums of its shard),
 *    the rank updates its shard of the parameters and an all-gather gives
 *    every rank the whole model again. Gradient clipping uses the global
 *    norm (squares summed over the shards). Checkpoints gather the moments
 *    into the same full format as a single process writes, so a run resumes
 *    on any number of ranks, with or without ZeRO.
 *
 * Threads: a st_dist and a st_ddp are driven by one thread (the training
 * loop); the communication thread is internal. Memory: the flat gradient
 * buffer (4 bytes per parameter) replaces the per-parameter grads; ZeRO adds
 * a shard of gradients and a flat copy of the parameters for the all-gather.
 */
#ifndef STRATA_DIST_H
#define STRATA_DIST_H

#include "strata/hub.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum st_dist_overlap {
    ST_DIST_OVERLAP_THREAD = 0, /* a communication thread owns MPI */
    ST_DIST_OVERLAP_POLL = 1,   /* the training thread polls MPI_Test between nodes */
    ST_DIST_OVERLAP_NONE = 2,   /* all buckets after backward (baseline) */
    ST_DIST_OVERLAP_AUTO = 3    /* default: THREAD when the node has a core to spare for it
                                   (ranks on the node x STRATA_THREADS < online cores), else
                                   POLL -- on a full node the thread takes CPU from the
                                   compute threads (docs/L7-distributed.md) */
} st_dist_overlap;

typedef struct st_dist_params {
    bool force_mpi;   /* initialize MPI even without a launcher (--dist mpi) */
    double timeout_s; /* deadline of every collective (default 30) */
    st_dist_overlap overlap;
} st_dist_params;

st_dist_params st_dist_default_params(void);

/* True when the environment says mpirun (or another PMI launcher) started
 * this process: OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK is set. */
bool st_dist_launched(void);

typedef struct st_dist st_dist;

/* Initializes MPI (MPI_Init_thread) when launched or params->force_mpi, and
 * starts the communication thread; otherwise makes a local communicator of
 * size 1. One st_dist per process (MPI can be initialized once). params
 * NULL: defaults. Errors: ST_ERR_INVALID_ARG (out NULL, timeout <= 0),
 * ST_ERR_UNSUPPORTED (the MPI library lacks the thread level), ST_ERR_INTERNAL
 * (MPI failed; the message says how), ST_ERR_NOMEM. */
st_status st_dist_new(const st_dist_params *params, st_dist **out);
/* Stops the thread and finalizes MPI (a barrier with the other ranks: call
 * it on every rank, and only when no collective failed; after a failure call
 * st_dist_abort instead). NULL is a no-op. */
void st_dist_free(st_dist *d);
/* Prints msg (when not NULL) with the rank to stderr and ends every rank of
 * the job with exit code `code` (MPI_Abort); a local communicator exits the
 * process. Does not return. For main-level error handling only. */
_Noreturn void st_dist_abort(st_dist *d, int code, const char *msg);

int st_dist_rank(const st_dist *d);
int st_dist_size(const st_dist *d);
bool st_dist_is_mpi(const st_dist *d);
/* The overlap mode in use (AUTO resolved by st_dist_new). */
st_dist_overlap st_dist_get_overlap(const st_dist *d);
/* Name of the overlap mode ("thread", "poll", "none", "auto"); parse one (false: unknown). */
const char *st_dist_overlap_name(st_dist_overlap o);
bool st_dist_overlap_parse(const char *s, st_dist_overlap *out);

/* Sums n doubles over all ranks in place (every rank gets the sum), with
 * the deadline. Errors: ST_ERR_IO (timeout or MPI error; names the ranks
 * that did not answer), ST_ERR_INVALID_ARG. */
st_status st_dist_allreduce_sum_f64(st_dist *d, double *v, int n);
/* Every rank gets rank root's n bytes. Errors as above. */
st_status st_dist_broadcast(st_dist *d, void *buf, size_t n, int root);
/* Waits until every rank has arrived (with the deadline). */
st_status st_dist_barrier(st_dist *d);

/* ---- plans (pure arithmetic; also what tests check) ---------------------------------- */

/* Rank `rank`'s contiguous shard [*lo, *hi) of n elements over `size` ranks:
 * the first n % size ranks get one element more than the others. */
void st_dist_shard_range(int64_t n, int size, int rank, int64_t *lo, int64_t *hi);

/* Lays out n tensors of numel[i] f32 elements in one flat buffer in
 * backward order (tensor n-1 first) and cuts it into buckets: a bucket
 * takes tensors while its bytes stay <= bucket_bytes (a tensor larger than
 * that gets a bucket of its own). Writes offset[i] (flat offset of tensor
 * i), bucket[i] (its bucket) and bucket_lo[b] (the flat offset where bucket
 * b starts; bucket_lo[n_buckets] = total), each array of at least n (+1)
 * entries. Returns the number of buckets (0 when n == 0). */
int st_dist_plan_buckets(const int64_t *numel, int n, size_t bucket_bytes, int64_t *offset,
                         int *bucket, int64_t *bucket_lo);

/* ---- data-parallel training ------------------------------------------------------------ */

typedef struct st_ddp_params {
    size_t bucket_bytes;   /* gradient bucket size (default 25 MiB, PyTorch DDP's) */
    int zero;              /* 0: every rank keeps all AdamW state; 1: ZeRO stage 1 */
    st_optim_params optim; /* AdamW settings (ST_OPTIM_ADAMW; SGD without ZeRO only) */
} st_ddp_params;

st_ddp_params st_ddp_default_params(void);

typedef struct st_ddp st_ddp;

/* Sets up data-parallel training of m over d: the flat gradient buffer
 * (m's parameters' grads become views into it; existing grads are copied),
 * the buckets, the optimizer (all of it, or this rank's ZeRO shard), and
 * installs the gradient-ready hook on m's context. Parameters are taken to
 * be equal on every rank (same seed, or a loaded checkpoint). Borrows d and
 * m, which must outlive it; st_ddp_free removes the hook, and m must be
 * freed after it (the grads point into its buffer until then... freeing m
 * first is also fine: the views do not own their memory). Errors:
 * ST_ERR_INVALID_ARG (bad params, ZeRO with SGD), ST_ERR_NOMEM, those of
 * st_optim_new and st_autograd_set_grad_ready_hook. */
st_status st_ddp_new(st_dist *d, st_model *m, const st_ddp_params *p, st_ddp **out);
void st_ddp_free(st_ddp *dd);

/* Call before each micro-batch's backward. sync true: this backward's
 * gradients are the last of the step and are averaged as they become ready
 * (buckets start during backward); false: they only accumulate locally
 * (gradient accumulation; DDP's no_sync). */
void st_ddp_prepare(st_ddp *dd, bool sync);
/* After the last backward of a step: starts the buckets not started yet,
 * waits for all of them and multiplies the reduced sums by scale (1 / (ranks
 * x micro-batches) gives the mean; 1 leaves them). Errors: ST_ERR_IO (timeout
 * or MPI failure, naming the ranks), ST_ERR_STATE (no prepare(true) before). */
st_status st_ddp_finish(st_ddp *dd, float scale);
/* Clips the gradients to max_norm by their global norm (max_norm <= 0:
 * only measures; *norm optional) and takes the optimizer step at lr; with
 * ZeRO then all-gathers the parameters. Identical on every rank. Errors:
 * ST_ERR_IO (communication), those of st_optim_step. */
st_status st_ddp_step(st_ddp *dd, float lr, float max_norm, float *norm);
/* Zeroes all gradients (the flat buffer). */
void st_ddp_zero_grad(st_ddp *dd);

/* Optimizer state bytes this rank holds (AdamW moments: 8 bytes per
 * parameter, or per shard element with ZeRO). */
size_t st_ddp_optim_bytes(const st_ddp *dd);
/* Steps taken by the optimizer (restored by st_ddp_load). */
int64_t st_ddp_optim_step(const st_ddp *dd);

/* Collective: writes the training state (st_train_state_save's format,
 * the full optimizer state, gathered from the shards under ZeRO) into dir
 * from rank 0; the other ranks only contribute. Every rank returns the same
 * status. Errors: those of st_train_state_save, ST_ERR_IO. */
st_status st_ddp_save(st_ddp *dd, const char *dir, const st_train_state *ts);
/* Every rank reads dir's training state (any number of ranks, ZeRO or not,
 * wrote it) into *ts and its optimizer (its shard under ZeRO). Errors:
 * those of st_train_state_load. */
st_status st_ddp_load(st_ddp *dd, const char *dir, st_train_state *ts);

/* Communication figures since creation (or the last reset). */
typedef struct st_ddp_stats {
    int64_t syncs;      /* finished st_ddp_finish calls */
    double comm_s;      /* sum of bucket durations (start to completion) */
    double exposed_s;   /* time the training thread waited in st_ddp_finish: all-reduce
                           not hidden behind backward */
    double step_comm_s; /* time in st_ddp_step's collectives (norm, all-gather) */
    int n_buckets;
    int64_t bytes_per_sync;
} st_ddp_stats;
void st_ddp_get_stats(const st_ddp *dd, st_ddp_stats *s);
void st_ddp_reset_stats(st_ddp *dd);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_DIST_H */

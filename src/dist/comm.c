/*
 * comm.c — layer 7: the communicator (st_dist): MPI initialization, the
 * engine that runs non-blocking collectives with a deadline, the failure
 * detector and the small collectives of the training loop.
 *
 * Engine. Collectives are jobs (dist_impl.h). engine_round() starts the
 * queued jobs (MPI_I*), tests the running ones (MPI_Test: Open MPI has no
 * asynchronous progress thread, so data only moves inside MPI calls) and
 * checks the oldest running job's deadline. Who runs the engine depends on
 * the overlap mode: THREAD — a communication thread that owns every MPI call
 * after MPI_Init_thread(MPI_THREAD_SERIALIZED), sleeping on a condition
 * variable while idle and polling with short sleeps (so it leaves the core
 * to the compute threads) while jobs run; POLL — the training thread, from
 * st__dist_progress (called by the gradient-ready hook between backward
 * nodes) and while waiting; NONE — the training thread, only when it waits.
 * A mutex (mpi_mu) serializes MPI calls in every mode, so the main thread's
 * MPI_Abort never races the communication thread.
 *
 * Failure detection. A job that runs past timeout_s means a rank is dead,
 * hung or stopped. The engine then pings every other rank on a duplicate of
 * the world communicator (tag PING) and waits a few seconds for the answers
 * (PONG); every engine answers pings while it runs, idle or waiting, so the
 * ranks that stay silent are the culprits and the error names them. When
 * every rank answers (one is busy: rank 0 writing a large checkpoint while
 * the others wait), the wait goes on, deadline after deadline, up to
 * ALIVE_WAIT_FACTOR of them; in poll and none modes a busy rank runs no
 * engine and so cannot answer. The caller (strata train) ends the job with
 * st_dist_abort. When a rank is
 * killed outright, mpirun itself notices and kills the job, naming the rank
 * (docs/L7-distributed.md); the deadline covers hangs and lost hosts.
 *
 * Ownership: st_dist owns the thread, the duplicated communicators and MPI's
 * lifetime (init in st_dist_new, finalize in st_dist_free). Threads: one
 * training thread calls the public functions; jobs' memory belongs to the
 * submitter and must stay valid until the job is done.
 */
#include "dist/dist_impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* While every rank answers pings, a collective may wait this many
 * deadlines before it fails (a rank writing a large checkpoint is alive). */
#define ALIVE_WAIT_FACTOR 20.0
#define TAG_PING 7001
#define TAG_PONG 7002

struct st_dist {
    st_dist_params p;
    int rank, size;
    bool mpi;           /* MPI initialized by us */
    MPI_Comm comm, ctl; /* collectives; pings (duplicates of the world) */
    pthread_mutex_t mu; /* queue, outstanding, failure; with cv */
    pthread_cond_t cv;
    pthread_mutex_t mpi_mu;  /* one MPI call at a time */
    dist_job *qhead, *qtail; /* submitted, not started */
    dist_job *run_head;      /* started, not done (the engine's thread only) */
    int64_t outstanding;     /* submitted, not done */
    bool stop, failed;
    char err[768];
    pthread_t th;
    bool th_on;
    double last_ping;
    int pong_val;
};

st_dist_params st_dist_default_params(void) {
    st_dist_params p;
    memset(&p, 0, sizeof p);
    p.timeout_s = 30.0;
    p.overlap = ST_DIST_OVERLAP_AUTO;
    return p;
}

bool st_dist_launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

const char *st_dist_overlap_name(st_dist_overlap o) {
    switch (o) {
    case ST_DIST_OVERLAP_THREAD:
        return "thread";
    case ST_DIST_OVERLAP_POLL:
        return "poll";
    case ST_DIST_OVERLAP_NONE:
        return "none";
    case ST_DIST_OVERLAP_AUTO:
        return "auto";
    }
    return "?";
}

bool st_dist_overlap_parse(const char *s, st_dist_overlap *out) {
    if (!s || !out) return false;
    if (!strcmp(s, "thread"))
        *out = ST_DIST_OVERLAP_THREAD;
    else if (!strcmp(s, "poll"))
        *out = ST_DIST_OVERLAP_POLL;
    else if (!strcmp(s, "none"))
        *out = ST_DIST_OVERLAP_NONE;
    else if (!strcmp(s, "auto"))
        *out = ST_DIST_OVERLAP_AUTO;
    else
        return false;
    return true;
}

int st_dist_rank(const st_dist *d) {
    return d ? d->rank : 0;
}
int st_dist_size(const st_dist *d) {
    return d ? d->size : 1;
}
bool st_dist_is_mpi(const st_dist *d) {
    return d && d->mpi;
}

static void mpi_errstr(int rc, char *buf, size_t n) {
    int len = 0;
    char s[MPI_MAX_ERROR_STRING];
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
    snprintf(buf, n, "%s", s);
}

static void nap_us(long us) {
    struct timespec ts = {.tv_sec = 0, .tv_nsec = us * 1000L};
    nanosleep(&ts, NULL);
}

/* ---- failure: pings and pongs --------------------------------------------------------- */

/* Answers the pings that arrived (caller: the engine's thread). */
static void service_pings(st_dist *d) {
    if (!d->mpi) return;
    for (;;) {
        int flag = 0;
        MPI_Status stt;
        pthread_mutex_lock(&d->mpi_mu);
        int rc = MPI_Iprobe(MPI_ANY_SOURCE, TAG_PING, d->ctl, &flag, &stt);
        if (rc == MPI_SUCCESS && flag) {
            int x = 0;
            MPI_Request r;
            rc = MPI_Recv(&x, 1, MPI_INT, stt.MPI_SOURCE, TAG_PING, d->ctl, MPI_STATUS_IGNORE);
            if (rc == MPI_SUCCESS && MPI_Isend(&d->pong_val, 1, MPI_INT, stt.MPI_SOURCE, TAG_PONG,
                                               d->ctl, &r) == MPI_SUCCESS)
                MPI_Request_free(&r);
        }
        pthread_mutex_unlock(&d->mpi_mu);
        if (rc != MPI_SUCCESS || !flag) break;
    }
    d->last_ping = st_time_s();
}

/* After a timeout: which ranks do not answer? Writes the failure message;
 * returns the number of silent ranks. */
static int blame(st_dist *d, const dist_job *j, double waited) {
    int n = d->size;
    int *pong = calloc((size_t)n, sizeof *pong);
    char *got = calloc((size_t)n, 1);
    MPI_Request *rr = calloc((size_t)n, sizeof *rr), *sr = calloc((size_t)n, sizeof *sr);
    char who[512] = "";
    int n_silent = 0;
    if (pong && got && rr && sr) {
        for (int r = 0; r < n; r++) {
            rr[r] = sr[r] = MPI_REQUEST_NULL;
            if (r == d->rank) {
                got[r] = 1;
                continue;
            }
            pthread_mutex_lock(&d->mpi_mu);
            MPI_Isend(&d->pong_val, 1, MPI_INT, r, TAG_PING, d->ctl, &sr[r]);
            MPI_Irecv(&pong[r], 1, MPI_INT, r, TAG_PONG, d->ctl, &rr[r]);
            pthread_mutex_unlock(&d->mpi_mu);
        }
        double grace = d->p.timeout_s / 3 < 1.0   ? 1.0
                       : d->p.timeout_s / 3 > 5.0 ? 5.0
                                                  : d->p.timeout_s / 3;
        double t_end = st_time_s() + grace;
        for (;;) {
            int missing = 0;
            for (int r = 0; r < n; r++) {
                if (got[r]) continue;
                int f = 0;
                pthread_mutex_lock(&d->mpi_mu);
                MPI_Test(&rr[r], &f, MPI_STATUS_IGNORE);
                pthread_mutex_unlock(&d->mpi_mu);
                if (f)
                    got[r] = 1;
                else
                    missing++;
            }
            if (!missing || st_time_s() > t_end) break;
            service_pings(d);
            nap_us(1000);
        }
        size_t k = 0;
        for (int r = 0; r < n; r++)
            if (!got[r] && k + 16 < sizeof who) {
                k += (size_t)snprintf(who + k, sizeof who - k, "%s%d", n_silent ? ", " : "", r);
                n_silent++;
            }
        /* the requests are left to MPI_Abort (a dead peer never completes them) */
    }
    if (n_silent)
        snprintf(d->err, sizeof d->err,
                 "rank %d: %s did not finish within %.0f s: rank%s %s did not answer (dead, "
                 "hung or stopped)",
                 d->rank, j->what, waited, n_silent > 1 ? "s" : "", who);
    else
        snprintf(d->err, sizeof d->err,
                 "rank %d: %s did not finish within %.0f s although every rank answers (a rank "
                 "is too slow or in another collective)",
                 d->rank, j->what, waited);
    free(pong);
    free(got);
    free(rr);
    free(sr);
    return n_silent;
}

/* ---- the engine ----------------------------------------------------------------------- */

static void job_done(st_dist *d, dist_job *j) {
    j->t_end = st_time_s();
    atomic_store(&j->state, JOB_DONE);
    pthread_mutex_lock(&d->mu);
    d->outstanding--;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void fail_with(st_dist *d, const char *msg) {
    pthread_mutex_lock(&d->mu);
    if (!d->failed) {
        d->failed = true;
        if (msg) snprintf(d->err, sizeof d->err, "%s", msg);
    }
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* One round: start queued jobs, test running ones, check the deadline.
 * Returns true when some job completed or started. Runs on the engine's
 * thread only (the communication thread, or the training thread). */
static bool engine_round(st_dist *d) {
    pthread_mutex_lock(&d->mu);
    if (d->failed) {
        pthread_mutex_unlock(&d->mu);
        return false;
    }
    dist_job *q = d->qhead;
    d->qhead = d->qtail = NULL;
    pthread_mutex_unlock(&d->mu);
    bool moved = false;
    /* start in submission order; append to the running list in that order */
    dist_job **tail = &d->run_head;
    while (*tail)
        tail = &(*tail)->next;
    while (q) {
        dist_job *j = q;
        q = q->next;
        j->next = NULL;
        j->req = MPI_REQUEST_NULL;
        j->t_start = st_time_s();
        j->t_deadline = j->t_start + d->p.timeout_s;
        atomic_store(&j->state, JOB_RUNNING);
        pthread_mutex_lock(&d->mpi_mu);
        int rc = j->start(j, d->mpi ? d->comm : MPI_COMM_NULL, &j->req);
        pthread_mutex_unlock(&d->mpi_mu);
        moved = true;
        if (rc != MPI_SUCCESS) {
            char e[MPI_MAX_ERROR_STRING], m[768];
            mpi_errstr(rc, e, sizeof e);
            snprintf(m, sizeof m, "rank %d: %s: MPI failed: %s", d->rank, j->what, e);
            fail_with(d, m);
            return true;
        }
        if (j->req == MPI_REQUEST_NULL) {
            job_done(d, j);
        } else {
            *tail = j;
            tail = &j->next;
        }
    }
    for (dist_job **pp = &d->run_head; *pp;) {
        dist_job *j = *pp;
        int f = 0;
        pthread_mutex_lock(&d->mpi_mu);
        int rc = MPI_Test(&j->req, &f, MPI_STATUS_IGNORE);
        pthread_mutex_unlock(&d->mpi_mu);
        if (rc != MPI_SUCCESS) {
            char e[MPI_MAX_ERROR_STRING], m[768];
            mpi_errstr(rc, e, sizeof e);
            snprintf(m, sizeof m, "rank %d: %s: MPI failed: %s", d->rank, j->what, e);
            fail_with(d, m);
            return true;
        }
        if (f) {
            *pp = j->next;
            j->next = NULL;
            job_done(d, j);
            moved = true;
        } else {
            pp = &j->next;
        }
    }
    double now = st_time_s();
    if (d->run_head && now > d->run_head->t_deadline) {
        dist_job *j = d->run_head;
        double waited = now - j->t_start;
        int silent = blame(d, j, waited);
        /* every rank answers: one is busy (rank 0 writing a large checkpoint,
         * a slow evaluation) -- keep waiting, up to ALIVE_WAIT_FACTOR deadlines */
        if (silent == 0 && waited < ALIVE_WAIT_FACTOR * d->p.timeout_s) {
            fprintf(stderr,
                    "[rank %d] strata dist: %s has waited %.0f s; every rank answers, still "
                    "waiting (up to %.0f s)\n",
                    d->rank, j->what, waited, ALIVE_WAIT_FACTOR * d->p.timeout_s);
            j->t_deadline = st_time_s() + d->p.timeout_s;
            return true;
        }
        fail_with(d, NULL);
        return true;
    }
    if (d->mpi && now - d->last_ping > 0.02) service_pings(d);
    return moved;
}

static void *comm_thread(void *arg) {
    st_dist *d = arg;
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        if (!d->qhead && !d->run_head) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&d->cv, &d->mu, &ts);
            if (d->stop) break;
            if (!d->qhead && !d->run_head) {
                pthread_mutex_unlock(&d->mu);
                service_pings(d);
                pthread_mutex_lock(&d->mu);
                continue;
            }
        }
        bool failed = d->failed;
        pthread_mutex_unlock(&d->mu);
        if (failed) { /* keep answering pings until the process ends */
            service_pings(d);
            nap_us(10000);
        } else if (!engine_round(d) && d->run_head) {
            nap_us(20); /* leave the core to the compute threads between tests */
        }
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

st_status st__dist_submit(st_dist *d, dist_job *j) {
    if (!d || !j || !j->start) return st__fail(ST_ERR_INVALID_ARG, "dist: submit without a job");
    pthread_mutex_lock(&d->mu);
    if (d->failed) {
        pthread_mutex_unlock(&d->mu);
        return st__fail(ST_ERR_IO, "%s", d->err);
    }
    j->next = NULL;
    atomic_store(&j->state, JOB_QUEUED);
    if (d->qtail)
        d->qtail->next = j;
    else
        d->qhead = j;
    d->qtail = j;
    d->outstanding++;
    bool thread = d->th_on;
    if (thread) pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    if (!thread && (d->p.overlap == ST_DIST_OVERLAP_POLL || !d->mpi)) (void)engine_round(d);
    return ST_OK;
}

void st__dist_progress(st_dist *d) {
    if (d && !d->th_on && d->p.overlap == ST_DIST_OVERLAP_POLL && d->run_head)
        (void)engine_round(d);
}

st_status st__dist_wait_all(st_dist *d, double *waited_s) {
    double t0 = st_time_s();
    if (!d) return st__fail(ST_ERR_INVALID_ARG, "dist: wait without a communicator");
    if (d->th_on) {
        pthread_mutex_lock(&d->mu);
        while (d->outstanding > 0 && !d->failed)
            pthread_cond_wait(&d->cv, &d->mu);
        pthread_mutex_unlock(&d->mu);
    } else {
        for (;;) {
            pthread_mutex_lock(&d->mu);
            bool done = d->outstanding == 0 || d->failed;
            pthread_mutex_unlock(&d->mu);
            if (done) break;
            if (!engine_round(d)) nap_us(5);
        }
    }
    if (waited_s) *waited_s = st_time_s() - t0;
    if (d->failed) return st__fail(ST_ERR_IO, "%s", d->err);
    return ST_OK;
}

st_status st__dist_run(st_dist *d, dist_job *j) {
    ST_TRY(st__dist_submit(d, j));
    return st__dist_wait_all(d, NULL);
}

/* ---- lifetime ------------------------------------------------------------------------- */

/* AUTO: a communication thread only where the node has a core it would not
 * take from a compute thread. Measured on a 2-core VM with 2 single-thread
 * ranks (bench dist --overlap all): thread 1.74x, poll 1.86x, none 1.83x. */
static st_dist_overlap auto_overlap(void) {
    MPI_Comm node = MPI_COMM_NULL;
    int local = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_size(node, &local);
        MPI_Comm_free(&node);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    long threads = cores;
    const char *e = getenv("STRATA_THREADS");
    if (e && *e) {
        char *end = NULL;
        long v = strtol(e, &end, 10);
        if (end != e && *end == 0 && v >= 1) threads = v;
    }
    return (long)local * threads < cores ? ST_DIST_OVERLAP_THREAD : ST_DIST_OVERLAP_POLL;
}

st_dist_overlap st_dist_get_overlap(const st_dist *d) {
    return d ? d->p.overlap : ST_DIST_OVERLAP_AUTO;
}

st_status st_dist_new(const st_dist_params *params, st_dist **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "st_dist_new: out is NULL");
    *out = NULL;
    st_dist_params p = params ? *params : st_dist_default_params();
    if (!(p.timeout_s > 0))
        return st__fail(ST_ERR_INVALID_ARG, "st_dist_new: timeout %g s must be > 0", p.timeout_s);
    if (p.overlap < ST_DIST_OVERLAP_THREAD || p.overlap > ST_DIST_OVERLAP_AUTO)
        return st__fail(ST_ERR_INVALID_ARG, "st_dist_new: unknown overlap mode %d", (int)p.overlap);
    st_dist *d = st_calloc(1, sizeof *d);
    if (!d) return st__fail(ST_ERR_NOMEM, "st_dist_new: out of memory");
    d->p = p;
    d->size = 1;
    d->comm = d->ctl = MPI_COMM_NULL;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    pthread_mutex_init(&d->mpi_mu, NULL);
    if (!st_dist_launched() && !p.force_mpi) { /* local: size 1, no MPI */
        *out = d;
        return ST_OK;
    }
    int inited = 0;
    MPI_Initialized(&inited);
    if (inited) {
        st_dist_free(d);
        return st__fail(ST_ERR_STATE, "st_dist_new: MPI is already initialized in this process");
    }
    int want = p.overlap == ST_DIST_OVERLAP_THREAD || p.overlap == ST_DIST_OVERLAP_AUTO
                   ? MPI_THREAD_SERIALIZED
                   : MPI_THREAD_FUNNELED;
    int got = 0;
    int rc = MPI_Init_thread(NULL, NULL, want, &got);
    if (rc != MPI_SUCCESS) {
        char e[MPI_MAX_ERROR_STRING];
        mpi_errstr(rc, e, sizeof e);
        st_dist_free(d);
        return st__fail(ST_ERR_INTERNAL, "st_dist_new: MPI_Init_thread failed: %s", e);
    }
    d->mpi = true;
    if (got < want) {
        st_dist_free(d);
        return st__fail(ST_ERR_UNSUPPORTED,
                        "st_dist_new: the MPI library gives thread level %d, %d is needed "
                        "(try --dist-overlap poll)",
                        got, want);
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &d->comm);
    MPI_Comm_dup(MPI_COMM_WORLD, &d->ctl);
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(d->ctl, MPI_ERRORS_RETURN);
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    d->pong_val = d->rank;
    if (p.overlap == ST_DIST_OVERLAP_AUTO) d->p.overlap = p.overlap = auto_overlap();
    if (p.overlap == ST_DIST_OVERLAP_THREAD) {
        if (pthread_create(&d->th, NULL, comm_thread, d) != 0) {
            st_dist_free(d);
            return st__fail(ST_ERR_INTERNAL, "st_dist_new: cannot start the communication thread");
        }
        d->th_on = true;
    }
    *out = d;
    return ST_OK;
}

static void stop_thread(st_dist *d) {
    if (!d->th_on) return;
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->th, NULL);
    d->th_on = false;
}

void st_dist_free(st_dist *d) {
    if (!d) return;
    stop_thread(d);
    if (d->mpi) {
        if (d->comm != MPI_COMM_NULL) MPI_Comm_free(&d->comm);
        if (d->ctl != MPI_COMM_NULL) MPI_Comm_free(&d->ctl);
        MPI_Finalize();
    }
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    pthread_mutex_destroy(&d->mpi_mu);
    st_free(d);
}

_Noreturn void st_dist_abort(st_dist *d, int code, const char *msg) {
    if (msg) {
        fprintf(stderr, "[rank %d] %s\n", d ? d->rank : 0, msg);
        fflush(stderr);
    }
    if (d && d->mpi) {
        /* take the MPI lock if we can (the communication thread may be in a call) */
        for (int i = 0; i < 1000 && pthread_mutex_trylock(&d->mpi_mu) != 0; i++)
            nap_us(1000);
        MPI_Abort(MPI_COMM_WORLD, code);
    }
    _exit(code);
}

/* ---- small collectives ----------------------------------------------------------------- */

static int start_allreduce_f64(dist_job *j, MPI_Comm comm, MPI_Request *req) {
    if (comm == MPI_COMM_NULL) return MPI_SUCCESS;
    return MPI_Iallreduce(MPI_IN_PLACE, j->recv, j->count, MPI_DOUBLE, MPI_SUM, comm, req);
}

static int start_bcast(dist_job *j, MPI_Comm comm, MPI_Request *req) {
    if (comm == MPI_COMM_NULL) return MPI_SUCCESS;
    return MPI_Ibcast(j->recv, j->count, MPI_BYTE, j->root, comm, req);
}

static int start_barrier(dist_job *j, MPI_Comm comm, MPI_Request *req) {
    (void)j;
    if (comm == MPI_COMM_NULL) return MPI_SUCCESS;
    return MPI_Ibarrier(comm, req);
}

st_status st_dist_allreduce_sum_f64(st_dist *d, double *v, int n) {
    if (!d || (!v && n > 0) || n < 0)
        return st__fail(ST_ERR_INVALID_ARG, "st_dist_allreduce_sum_f64: bad arguments");
    dist_job j = {
        .start = start_allreduce_f64, .recv = v, .count = n, .what = "an all-reduce of metrics"};
    return st__dist_run(d, &j);
}

st_status st_dist_broadcast(st_dist *d, void *buf, size_t n, int root) {
    if (!d || (!buf && n > 0) || n > (size_t)0x7fffffff || root < 0 || root >= d->size)
        return st__fail(ST_ERR_INVALID_ARG, "st_dist_broadcast: bad arguments");
    dist_job j = {
        .start = start_bcast, .recv = buf, .count = (int)n, .root = root, .what = "a broadcast"};
    return st__dist_run(d, &j);
}

st_status st_dist_barrier(st_dist *d) {
    if (!d) return st__fail(ST_ERR_INVALID_ARG, "st_dist_barrier: d is NULL");
    dist_job j = {.start = start_barrier, .what = "a barrier"};
    return st__dist_run(d, &j);
}

/* ---- plans ----------------------------------------------------------------------------- */

void st_dist_shard_range(int64_t n, int size, int rank, int64_t *lo, int64_t *hi) {
    if (size < 1) size = 1;
    if (n < 0) n = 0;
    int64_t base = n / size, rem = n % size;
    int64_t r = rank < 0 ? 0 : rank > size ? size : rank;
    int64_t a = r * base + (r < rem ? r : rem);
    int64_t b = r >= size ? n : a + base + (r < rem ? 1 : 0);
    if (lo) *lo = r >= size ? n : a;
    if (hi) *hi = b;
}

int st_dist_plan_buckets(const int64_t *numel, int n, size_t bucket_bytes, int64_t *offset,
                         int *bucket, int64_t *bucket_lo) {
    if (n <= 0 || !numel || !offset || !bucket || !bucket_lo) {
        if (bucket_lo) bucket_lo[0] = 0;
        return 0;
    }
    int nb = 0;
    int64_t cur = 0, in_bucket = 0; /* bytes in the open bucket */
    for (int i = n - 1; i >= 0; i--) {
        int64_t bytes = numel[i] * 4;
        if (nb == 0 || (in_bucket > 0 && (size_t)(in_bucket + bytes) > bucket_bytes)) {
            bucket_lo[nb++] = cur;
            in_bucket = 0;
        }
        offset[i] = cur;
        bucket[i] = nb - 1;
        cur += numel[i];
        in_bucket += bytes;
    }
    bucket_lo[nb] = cur;
    return nb;
}

/*
 * dist_impl.h — private to src/dist/: the communicator's job queue, shared
 * by comm.c (who runs MPI calls) and ddp.c (who asks for them).
 *
 * A job is one non-blocking collective: a start function issues it
 * (MPI_I*) and yields a request; the engine tests it until done or until
 * the deadline. Jobs of one communicator complete in submission order of
 * their starts (MPI matches collectives by order), and every rank submits
 * the same sequence.
 */
#ifndef STRATA_DIST_IMPL_H
#define STRATA_DIST_IMPL_H

#include <mpi.h>
#include <stdatomic.h>

#include "strata/dist.h"

typedef struct dist_job dist_job;
/* Issues the collective on comm; returns an MPI error code. Local
 * communicators (size 1, no MPI) call it with comm MPI_COMM_NULL and expect
 * the result at once (*req stays MPI_REQUEST_NULL). */
typedef int (*dist_start_fn)(dist_job *j, MPI_Comm comm, MPI_Request *req);

struct dist_job {
    dist_start_fn start;
    /* arguments of the start function */
    void *send, *recv;
    int count;
    const int *counts, *displs;
    int root;
    const char *what; /* "gradient bucket 3 of 5": for messages */
    /* engine state */
    MPI_Request req;
    double t_start, t_end, t_deadline;
    _Atomic int state; /* JOB_* */
    dist_job *next;
};

enum { JOB_IDLE = 0, JOB_QUEUED = 1, JOB_RUNNING = 2, JOB_DONE = 3 };

/* Queues j (state must be JOB_IDLE or JOB_DONE). THREAD: the communication
 * thread starts it; POLL: started at once; NONE: started by the next wait. */
st_status st__dist_submit(st_dist *d, dist_job *j);
/* POLL mode: one round of MPI_Test over the running jobs (cheap; other modes: no-op). */
void st__dist_progress(st_dist *d);
/* Waits until every submitted job is done; on a timeout or MPI error the
 * status names the fault (ST_ERR_IO). *waited_s (optional) gets the seconds. */
st_status st__dist_wait_all(st_dist *d, double *waited_s);
/* Submits j and waits for it. */
st_status st__dist_run(st_dist *d, dist_job *j);

#endif

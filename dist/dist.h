/* dist/dist.h -- the process grid and every MPI call. This is the only module that talks
 * to MPI directly; others receive a struct dist. The foundation runs one rank per job
 * (data x heads x context = 1); the distributed issue grows the grid here.
 * Error policy: MPI_ERRORS_RETURN plus checked calls; any fatal error on any rank calls
 * MPI_Abort so that a job never hangs. */
#ifndef HW_DIST_H
#define HW_DIST_H

#include <stdint.h>

struct dist {
    int rank;        /* rank in MPI_COMM_WORLD */
    int world;       /* size of MPI_COMM_WORLD */
    int initialized; /* MPI_Init was called by dist_init */
};

/* MPI_Init (thread level FUNNELED), set MPI_ERRORS_RETURN, install the MPI_Abort exit hook. */
void dist_init(struct dist *d, int *argc, char ***argv);
void dist_finalize(struct dist *d);
void dist_barrier(const struct dist *d);
/* Max/sum over all ranks (used for stop flags and status codes before collectives). */
int dist_allreduce_max_int(const struct dist *d, int v);
double dist_allreduce_sum_double(const struct dist *d, double v);
/* Broadcast n bytes from rank 0. */
void dist_bcast_bytes(const struct dist *d, void *buf, int64_t n);

/* HDF5 property lists bound to this job's communicator (MPI-IO driver when world > 1,
 * the default POSIX driver on one rank). Caller closes them with H5Pclose. Returned as
 * int64_t so this header does not pull in hdf5.h. */
int64_t dist_h5_fapl(const struct dist *d);
int64_t dist_h5_dxpl(const struct dist *d);

#endif /* HW_DIST_H */

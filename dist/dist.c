/* dist/dist.c -- MPI setup, checked collectives and HDF5 property lists (see dist.h). */
#include "dist.h"

#include "../core/check.h"
#include "../core/log.h"

#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#define HW_CHECK_MPI(call)                                                                         \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != MPI_SUCCESS) {                                                                  \
            char s_[MPI_MAX_ERROR_STRING];                                                         \
            int n_ = 0;                                                                            \
            MPI_Error_string(rc_, s_, &n_);                                                        \
            HW_DIE("%s failed: %s", #call, s_);                                                    \
        }                                                                                          \
    } while (0)

static void abort_hook(int code) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) {
        int world = 1;
        MPI_Comm_size(MPI_COMM_WORLD, &world);
        if (world > 1)
            MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
        MPI_Finalize();
    }
    exit(code);
}

void dist_init(struct dist *d, int *argc, char ***argv) {
    int provided = 0, init = 0;
    MPI_Initialized(&init);
    if (!init) {
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            fprintf(stderr, "error: MPI_Init_thread failed\n");
            exit(HW_EXIT_FAIL);
        }
        d->initialized = 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    HW_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &d->rank));
    HW_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &d->world));
    log_set_rank(d->rank, d->world);
    hw_set_exit_hook(abort_hook);
}

void dist_finalize(struct dist *d) {
    if (d->initialized) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin)
            MPI_Finalize();
        d->initialized = 0;
    }
    hw_set_exit_hook(NULL);
}

void dist_barrier(const struct dist *d) {
    (void)d;
    HW_CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
}

int dist_allreduce_max_int(const struct dist *d, int v) {
    int out = v;
    if (d->world > 1)
        HW_CHECK_MPI(MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    return out;
}

double dist_allreduce_sum_double(const struct dist *d, double v) {
    double out = v;
    if (d->world > 1)
        HW_CHECK_MPI(MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
    return out;
}

void dist_bcast_bytes(const struct dist *d, void *buf, int64_t n) {
    if (d->world <= 1)
        return;
    char *p = buf;
    while (n > 0) {
        int chunk = n > (1 << 30) ? (1 << 30) : (int)n;
        HW_CHECK_MPI(MPI_Bcast(p, chunk, MPI_BYTE, 0, MPI_COMM_WORLD));
        p += chunk;
        n -= chunk;
    }
}

int64_t dist_h5_fapl(const struct dist *d) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    HW_ASSERT(fapl >= 0);
    /* v1.10 format: checksummed metadata, readable by h5py and h5dump. */
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    if (d && d->world > 1) {
        H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL);
        H5Pset_all_coll_metadata_ops(fapl, 1);
        H5Pset_coll_metadata_write(fapl, 1);
    }
    return fapl;
}

int64_t dist_h5_dxpl(const struct dist *d) {
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    HW_ASSERT(dxpl >= 0);
    if (d && d->world > 1)
        H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    return dxpl;
}

/* core/h5lock.c -- the HDF5 lock (see h5lock.h). */
#include "h5lock.h"

#include <pthread.h>

static pthread_mutex_t h5_mutex = PTHREAD_MUTEX_INITIALIZER;

void h5lock_enter(void) {
    pthread_mutex_lock(&h5_mutex);
}

void h5lock_leave(void) {
    pthread_mutex_unlock(&h5_mutex);
}

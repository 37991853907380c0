/* core/h5lock.h -- one lock around the HDF5 library. headwise's HDF5 build is not thread-safe;
 * the only time two threads could call it is a checkpoint written in the background
 * (run.async_save) while the training loop reads token shards. The writer holds the lock for
 * the whole save; shard reads that go to the file take it (reads from a shard cached in memory,
 * the usual case, need no HDF5 call and so never wait). */
#ifndef HW_H5LOCK_H
#define HW_H5LOCK_H

void h5lock_enter(void);
void h5lock_leave(void);

#endif /* HW_H5LOCK_H */

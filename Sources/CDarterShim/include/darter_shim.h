#ifndef DARTER_SHIM_H
#define DARTER_SHIM_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// O_DIRECT is GNU-only; Glibc's Swift module does not export it.
int darter_o_direct(void);

/// fallocate(2) (GNU-only in glibc headers). Returns 0 or -errno.
int darter_fallocate(int fd, int mode, int64_t offset, int64_t length);

/// SPLICE_F_MORE for io_uring splice (GNU-only in glibc headers).
unsigned darter_splice_f_more(void);

/// sendfile(2); returns bytes sent or -errno.
int64_t darter_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count);

/// eventfd(0, EFD_CLOEXEC); returns the fd or -errno.
int darter_eventfd(void);

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
long darter_raise_fd_limit(void);

/// Makes glibc serve allocations of `bytes` or more with mmap and return them on free
/// (M_MMAP_THRESHOLD, which also stops the threshold from drifting upwards).
void darter_malloc_mmap_threshold(int bytes);

#endif

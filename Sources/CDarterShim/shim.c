#define _GNU_SOURCE
#include "darter_shim.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/sendfile.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <malloc.h>

int darter_o_direct(void) { return O_DIRECT; }

int darter_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    int r;
    do { r = fallocate(fd, mode, (off_t)offset, (off_t)length); } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

unsigned darter_splice_f_more(void) { return SPLICE_F_MORE; }

int64_t darter_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count) {
    ssize_t r;
    do { r = sendfile(out_fd, in_fd, (off_t *)offset, count); } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : (int64_t)r;
}

int darter_eventfd(void) {
    int fd = eventfd(0, EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

long darter_raise_fd_limit(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0) return -errno;
    if (r.rlim_cur < r.rlim_max) { r.rlim_cur = r.rlim_max; setrlimit(RLIMIT_NOFILE, &r); getrlimit(RLIMIT_NOFILE, &r); }
    return (long)r.rlim_cur;
}

void darter_malloc_mmap_threshold(int bytes) { mallopt(M_MMAP_THRESHOLD, bytes); }

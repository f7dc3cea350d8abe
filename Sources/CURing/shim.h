// liburing.h defines _GNU_SOURCE before its libc includes; include the libc
// headers first so Glibc's Swift module and this one agree on their types.
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <signal.h>
#include <fcntl.h>
#include <sched.h>
#include <time.h>
#include <liburing.h>

// Flag macros Swift cannot import.
static inline unsigned darter_iosqe_io_link(void) { return IOSQE_IO_LINK; }

// struct statx is only forward-declared by liburing.h; these helpers keep its layout in C.
#include <linux/stat.h>
static inline unsigned long darter_statx_buffer_size(void) { return sizeof(struct statx); }
static inline void darter_prep_statx(struct io_uring_sqe *sqe, const char *path, void *out) {
    io_uring_prep_statx(sqe, AT_FDCWD, path, 0, STATX_SIZE | 0x2000u /* STATX_DIOALIGN */, (struct statx *)out);
}
static inline unsigned long long darter_statx_size(const void *out) { return ((const struct statx *)out)->stx_size; }
static inline unsigned darter_statx_dio_offset_align(const void *out) { return ((const struct statx *)out)->stx_dio_offset_align; }

// liburing 2.3 declares io_uring_enable_rings but its library does not export it.
#include <unistd.h>
#include <sys/syscall.h>
#include <errno.h>
static inline int darter_enable_rings(struct io_uring *ring) {
    int r = (int)syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, (void *)0, 0);
    return r < 0 ? -errno : r;
}

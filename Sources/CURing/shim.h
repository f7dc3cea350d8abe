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
static inline unsigned darter_iosqe_fixed_file(void) { return IOSQE_FIXED_FILE; }
static inline unsigned darter_iosqe_buffer_select(void) { return IOSQE_BUFFER_SELECT; }

#ifndef DARTER_CURL_H
#define DARTER_CURL_H
#include <stddef.h>
#include <stdint.h>

// Typed glue over libcurl's easy interface for Swift: curl_easy_setopt and curl_easy_getinfo
// are variadic, and the callbacks and error buffer need C-owned memory. Options and codes are
// libcurl's own numbers (CURLOPT_*, CURLE_*), which Swift reads from the CCurl module.

/// One easy handle with its error buffer, header list and callbacks. Not thread-safe except
/// `darter_curl_cancel`, which any thread may call while a transfer runs.
typedef struct darter_curl darter_curl;

/// Receives one piece of data (a header line, or body bytes). Return `len` to go on, anything
/// else to abort the transfer.
typedef size_t (*darter_curl_data_fn)(void *context, const char *data, size_t len);

/// Decides whether a connection to `address` (4 or 16 bytes, network order) may be opened for
/// the transfer now at a URL whose host (as libcurl parses it; IPv6 in brackets) is `host`.
/// Return nonzero to allow.
typedef int (*darter_curl_connect_fn)(void *context, const char *host, const unsigned char *address, size_t length);

/// A new handle (curl_global_init happens once, first). NULL when libcurl fails.
darter_curl *darter_curl_new(void);
void darter_curl_free(darter_curl *handle);
/// curl_easy_reset, keeping the connection cache; clears headers, callbacks and the cancel flag.
void darter_curl_reset(darter_curl *handle);

/// curl_easy_setopt with a long, or a string (copied by libcurl). Return a CURLcode.
int darter_curl_set_long(darter_curl *handle, int option, long value);
int darter_curl_set_string(darter_curl *handle, int option, const char *value);
/// Appends a request header line ("Name: value") to the handle's header list.
int darter_curl_add_header(darter_curl *handle, const char *line);
/// Sets the header and body callbacks and their context; also the progress callback that
/// aborts when `darter_curl_cancel` was called.
void darter_curl_set_callbacks(darter_curl *handle, darter_curl_data_fn header, darter_curl_data_fn body, void *context);

/// Checks every socket the transfer opens with `filter` (called with the callbacks' context; NULL:
/// no check). A refused connection fails like an unreachable one (CURLE_COULDNT_CONNECT when no
/// other address is left), and `darter_curl_refused_address` names it.
void darter_curl_set_connect_filter(darter_curl *handle, darter_curl_connect_fn filter);
/// The address the filter refused in this transfer, as text ("" if none, or if a later
/// connection passed the filter).
const char *darter_curl_refused_address(darter_curl *handle);

/// curl_easy_perform; returns its CURLcode.
int darter_curl_perform(darter_curl *handle);
/// Makes the running transfer stop soon (CURLE_ABORTED_BY_CALLBACK / CURLE_WRITE_ERROR).
void darter_curl_cancel(darter_curl *handle);
/// Whether `darter_curl_cancel` was called since the last reset.
int darter_curl_cancelled(darter_curl *handle);

/// The error text of the last transfer: the error buffer, else curl_easy_strerror(code).
const char *darter_curl_error_text(darter_curl *handle, int code);
/// CURLINFO_EFFECTIVE_URL ("" if none).
const char *darter_curl_effective_url(darter_curl *handle);
/// CURLINFO_HTTP_VERSION of the last response: 10, 11, 20 or 30 (0: unknown).
int darter_curl_http_version(darter_curl *handle);

/// A detached thread running fn(argument). Returns 0 or an errno.
int darter_thread_start(void (*fn)(void *), void *argument, size_t stack_size);

#endif

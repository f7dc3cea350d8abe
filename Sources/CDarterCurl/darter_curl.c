#include "darter_curl.h"
#include <curl/curl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct darter_curl {
    CURL *easy;
    struct curl_slist *headers;
    darter_curl_data_fn header_fn;
    darter_curl_data_fn body_fn;
    void *context;
    atomic_int cancelled;
    darter_curl_connect_fn connect_fn;
    char refused[INET6_ADDRSTRLEN];
    char error[CURL_ERROR_SIZE];
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static size_t header_trampoline(char *data, size_t size, size_t count, void *user) {
    darter_curl *h = user;
    size_t len = size * count;
    if (atomic_load(&h->cancelled)) return 0;
    return h->header_fn ? h->header_fn(h->context, data, len) : len;
}

static size_t body_trampoline(char *data, size_t size, size_t count, void *user) {
    darter_curl *h = user;
    size_t len = size * count;
    if (atomic_load(&h->cancelled)) return 0;
    return h->body_fn ? h->body_fn(h->context, data, len) : len;
}

static int progress_trampoline(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    (void)dltotal; (void)dlnow; (void)ultotal; (void)ulnow;
    darter_curl *h = user;
    return atomic_load(&h->cancelled) ? 1 : 0;
}

/* Every socket libcurl opens for a transfer (the first host, each redirect, another address of
   the same host) passes here with the address it will connect to: the one place an allowlist
   check cannot be bypassed by a redirect or by DNS answering differently the second time. */
static curl_socket_t open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *a) {
    (void)purpose;
    darter_curl *h = user;
    if (h->connect_fn) {
        const unsigned char *bytes = NULL;
        size_t len = 0;
        if (a->family == AF_INET) {
            bytes = (const unsigned char *)&((const struct sockaddr_in *)&a->addr)->sin_addr;
            len = 4;
        } else if (a->family == AF_INET6) {
            bytes = (const unsigned char *)&((const struct sockaddr_in6 *)&a->addr)->sin6_addr;
            len = 16;
        }
        /* The host as libcurl itself parses the URL it is at (after any redirect): no second
           parser to disagree with it. */
        char *url = NULL, *host = NULL;
        curl_easy_getinfo(h->easy, CURLINFO_EFFECTIVE_URL, &url);
        CURLU *parsed = curl_url();
        if (parsed && url && curl_url_set(parsed, CURLUPART_URL, url, 0) == CURLUE_OK)
            curl_url_get(parsed, CURLUPART_HOST, &host, 0);
        int allowed = bytes && host && h->connect_fn(h->context, host, bytes, len);
        curl_free(host);
        curl_url_cleanup(parsed);
        if (!allowed) {
            if (!bytes || !inet_ntop(a->family, bytes, h->refused, sizeof h->refused))
                snprintf(h->refused, sizeof h->refused, "address family %d", a->family);
            return CURL_SOCKET_BAD;
        }
        h->refused[0] = 0;  /* a later address passed: a failure now is not the filter's */
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static void apply_defaults(darter_curl *h) {
    h->error[0] = 0;
    curl_easy_setopt(h->easy, CURLOPT_ERRORBUFFER, h->error);
    curl_easy_setopt(h->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->easy, CURLOPT_HEADERFUNCTION, header_trampoline);
    curl_easy_setopt(h->easy, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, body_trampoline);
    curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(h->easy, CURLOPT_XFERINFOFUNCTION, progress_trampoline);
    curl_easy_setopt(h->easy, CURLOPT_XFERINFODATA, h);
    curl_easy_setopt(h->easy, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h->easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(h->easy, CURLOPT_OPENSOCKETDATA, h);
}

darter_curl *darter_curl_new(void) {
    pthread_once(&global_once, global_init);
    darter_curl *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->easy = curl_easy_init();
    if (!h->easy) { free(h); return NULL; }
    atomic_init(&h->cancelled, 0);
    apply_defaults(h);
    return h;
}

void darter_curl_free(darter_curl *h) {
    if (!h) return;
    curl_easy_cleanup(h->easy);
    curl_slist_free_all(h->headers);
    free(h);
}

void darter_curl_reset(darter_curl *h) {
    curl_easy_reset(h->easy);
    curl_slist_free_all(h->headers);
    h->headers = NULL;
    h->header_fn = NULL;
    h->body_fn = NULL;
    h->context = NULL;
    h->connect_fn = NULL;
    h->refused[0] = 0;
    atomic_store(&h->cancelled, 0);
    apply_defaults(h);
}

int darter_curl_set_long(darter_curl *h, int option, long value) {
    return (int)curl_easy_setopt(h->easy, (CURLoption)option, value);
}

int darter_curl_set_string(darter_curl *h, int option, const char *value) {
    return (int)curl_easy_setopt(h->easy, (CURLoption)option, value);
}

int darter_curl_add_header(darter_curl *h, const char *line) {
    struct curl_slist *next = curl_slist_append(h->headers, line);
    if (!next) return CURLE_OUT_OF_MEMORY;
    h->headers = next;
    return CURLE_OK;
}

void darter_curl_set_callbacks(darter_curl *h, darter_curl_data_fn header, darter_curl_data_fn body, void *context) {
    h->header_fn = header;
    h->body_fn = body;
    h->context = context;
}

void darter_curl_set_connect_filter(darter_curl *h, darter_curl_connect_fn filter) { h->connect_fn = filter; }

const char *darter_curl_refused_address(darter_curl *h) { return h->refused; }

int darter_curl_perform(darter_curl *h) {
    h->error[0] = 0;
    h->refused[0] = 0;
    curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, h->headers);
    return (int)curl_easy_perform(h->easy);
}

void darter_curl_cancel(darter_curl *h) { atomic_store(&h->cancelled, 1); }
int darter_curl_cancelled(darter_curl *h) { return atomic_load(&h->cancelled); }

const char *darter_curl_error_text(darter_curl *h, int code) {
    if (h->error[0]) {
        size_t n = strlen(h->error);
        while (n > 0 && (h->error[n - 1] == '\n' || h->error[n - 1] == '\r')) h->error[--n] = 0;
        return h->error;
    }
    return curl_easy_strerror((CURLcode)code);
}

const char *darter_curl_effective_url(darter_curl *h) {
    char *url = NULL;
    curl_easy_getinfo(h->easy, CURLINFO_EFFECTIVE_URL, &url);
    return url ? url : "";
}

int darter_curl_http_version(darter_curl *h) {
    long v = 0;
    curl_easy_getinfo(h->easy, CURLINFO_HTTP_VERSION, &v);
    switch (v) {
    case CURL_HTTP_VERSION_1_0: return 10;
    case CURL_HTTP_VERSION_1_1: return 11;
    case CURL_HTTP_VERSION_2_0: return 20;
    case CURL_HTTP_VERSION_3: return 30;
    default: return 0;
    }
}

struct thread_start { void (*fn)(void *); void *argument; };

static void *thread_main(void *p) {
    struct thread_start s = *(struct thread_start *)p;
    free(p);
    s.fn(s.argument);
    return NULL;
}

int darter_thread_start(void (*fn)(void *), void *argument, size_t stack_size) {
    struct thread_start *s = malloc(sizeof *s);
    if (!s) return 12; /* ENOMEM */
    s->fn = fn;
    s->argument = argument;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack_size) pthread_attr_setstacksize(&attr, stack_size);
    pthread_t thread;
    int r = pthread_create(&thread, &attr, thread_main, s);
    pthread_attr_destroy(&attr);
    if (r != 0) free(s);
    return r;
}

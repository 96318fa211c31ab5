/* A NumPy memory handler that keeps freed buffers of 32 KiB to 32 MiB for reuse.
 *
 * Why: a training step frees its activations and gradients and allocates the same sizes again
 * in the next step. glibc serves buffers above its mmap threshold (128 KiB at first) with fresh
 * mmap calls and returns them with munmap, so every step page-faults its activations in again:
 * a third of a small CNN's step. Here freed buffers wait in a bin of their exact size and the
 * next request of that size takes one back, already mapped.
 *
 * Safety: every block starts with a header holding its usable size (the size NumPy passes to
 * free is not trusted); a block is reused only for a request of exactly that size; calloc
 * zeroes a reused block; realloc moves the header with the block. The cache is bounded (at most
 * MG_CACHE_BYTES in total and MG_BIN_DEPTH blocks per size) and guarded by a mutex, as NumPy may
 * allocate from threads that do not hold the GIL. NumPy stores the handler in each array, so an
 * array made here is always freed here, and arrays made before install are freed by NumPy's own
 * handler.
 */
#ifndef MINIGRAD_ALLOC_H
#define MINIGRAD_ALLOC_H

#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <pthread.h>
#include <Python.h>
#include <numpy/ndarraytypes.h>

#define MG_MIN_CACHED ((size_t)32 << 10)
#define MG_MAX_CACHED ((size_t)32 << 20)
#define MG_CACHE_BYTES ((size_t)128 << 20)
#define MG_BINS 64
#define MG_BIN_DEPTH 8
#define MG_HEADER 64 /* keeps the 16-byte alignment of malloc, and a cache line apart */

typedef struct { size_t size; int count; void *blocks[MG_BIN_DEPTH]; } mg_bin;

static mg_bin mg_bins[MG_BINS];
static size_t mg_cached_bytes = 0;
static pthread_mutex_t mg_lock = PTHREAD_MUTEX_INITIALIZER;

static void *mg_user(void *base, size_t size) {
    *(size_t *)base = size;
    return (char *)base + MG_HEADER;
}

static void *mg_base(void *user) { return (char *)user - MG_HEADER; }

/* A cached block of exactly `size` usable bytes, or NULL. */
static void *mg_take(size_t size) {
    void *base = NULL;
    if (size < MG_MIN_CACHED || size > MG_MAX_CACHED) return NULL;
    pthread_mutex_lock(&mg_lock);
    for (int i = 0; i < MG_BINS; i++) {
        if (mg_bins[i].size == size && mg_bins[i].count > 0) {
            base = mg_bins[i].blocks[--mg_bins[i].count];
            mg_cached_bytes -= size;
            break;
        }
    }
    pthread_mutex_unlock(&mg_lock);
    return base;
}

/* Keep a block for reuse; 0 if the cache has no room (the caller frees it). */
static int mg_keep(void *base, size_t size) {
    int kept = 0, empty = -1;
    if (size < MG_MIN_CACHED || size > MG_MAX_CACHED) return 0;
    pthread_mutex_lock(&mg_lock);
    if (mg_cached_bytes + size <= MG_CACHE_BYTES) {
        for (int i = 0; i < MG_BINS && !kept; i++) {
            if (mg_bins[i].size == size) {
                if (mg_bins[i].count < MG_BIN_DEPTH) {
                    mg_bins[i].blocks[mg_bins[i].count++] = base;
                    kept = 1;
                } else {
                    empty = -2; /* this size's bin is full: no second bin for it */
                }
            } else if (empty == -1 && mg_bins[i].count == 0) {
                empty = i;
            }
        }
        if (!kept && empty >= 0) { /* an empty bin takes the new size */
            mg_bins[empty].size = size;
            mg_bins[empty].blocks[0] = base;
            mg_bins[empty].count = 1;
            kept = 1;
        }
        if (kept) mg_cached_bytes += size;
    }
    pthread_mutex_unlock(&mg_lock);
    return kept;
}

static void *mg_malloc(void *ctx, size_t size) {
    void *base = mg_take(size);
    if (base == NULL) {
        if (size > SIZE_MAX - MG_HEADER) return NULL;
        base = malloc(size + MG_HEADER);
        if (base == NULL) return NULL;
    }
    return mg_user(base, size);
}

static void *mg_calloc(void *ctx, size_t count, size_t elsize) {
    size_t size;
    void *base;
    if (elsize != 0 && count > (SIZE_MAX - MG_HEADER) / elsize) return NULL;
    size = count * elsize;
    base = mg_take(size);
    if (base != NULL) {
        memset((char *)base + MG_HEADER, 0, size);
    } else {
        base = calloc(1, size + MG_HEADER);
        if (base == NULL) return NULL;
    }
    return mg_user(base, size);
}

static void *mg_realloc(void *ctx, void *ptr, size_t size) {
    void *base;
    if (ptr == NULL) return mg_malloc(ctx, size);
    if (size > SIZE_MAX - MG_HEADER) return NULL;
    base = realloc(mg_base(ptr), size + MG_HEADER);
    return base == NULL ? NULL : mg_user(base, size);
}

static void mg_free(void *ctx, void *ptr, size_t numpy_size) {
    void *base;
    if (ptr == NULL) return;
    base = mg_base(ptr);
    if (!mg_keep(base, *(size_t *)base)) free(base);
}

/* Hand every cached block back to the system; returns the bytes released. */
static size_t mg_release(void) {
    size_t released;
    pthread_mutex_lock(&mg_lock);
    for (int i = 0; i < MG_BINS; i++) {
        while (mg_bins[i].count > 0) free(mg_bins[i].blocks[--mg_bins[i].count]);
        mg_bins[i].size = 0;
    }
    released = mg_cached_bytes;
    mg_cached_bytes = 0;
    pthread_mutex_unlock(&mg_lock);
    return released;
}

static size_t mg_cached(void) {
    size_t bytes;
    pthread_mutex_lock(&mg_lock);
    bytes = mg_cached_bytes;
    pthread_mutex_unlock(&mg_lock);
    return bytes;
}

/* A fork while another thread is inside the lock would leave the child a bin half-changed (a
 * count raised before its block pointer was stored hands out a stale pointer) and a lock held
 * forever: fork waits for the lock, and each side lets it go (the child keeps the blocks, which
 * are its own copies). */
static void mg_before_fork(void) { pthread_mutex_lock(&mg_lock); }

static void mg_after_fork(void) { pthread_mutex_unlock(&mg_lock); }

static int mg_register_fork_handler(void) {
    return pthread_atfork(mg_before_fork, mg_after_fork, mg_after_fork);
}

static PyDataMem_Handler mg_handler = {
    "minigrad_cache",
    1,
    {NULL, mg_malloc, mg_calloc, mg_realloc, mg_free},
};

#endif

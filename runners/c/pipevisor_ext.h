/*
 * pipevisor_ext.h: the ABI of C processing functions run by pipevisor's Python runner.
 *
 * A registry entry NAME.c is compiled on first use (through cffi, cached by a hash of the source,
 * this header and the compiler flags), or NAME.so is loaded as it is. Either defines
 *
 *     int pv_process_image(const pv_image *image, const pv_ext *ext);
 *
 * called for every camera image, in order, on the runner's thread. The image is the received
 * message's memory, not a copy: read it, never write it, never keep the pointer after returning.
 * The parameters (the instance's configuration) are read through ext->number and ext->string;
 * results are handed out through ext->scalar and ext->array and go out as the channels of one
 * bsread message, in the order they were given, with the image's pulse id and timestamp.
 *
 * Return PV_SEND to send the results, PV_SKIP to send nothing for this image, or PV_ERROR after
 * ext->error(ext, "what went wrong"): the runner logs the message, counts an error and goes on
 * with the next image (or exits with code 2 under abort_on_error).
 *
 * Optionally, also define
 *
 *     int pv_configure(const pv_ext *ext);
 *
 * to check a configuration before it is applied, at start and at every live change: return
 * PV_SEND (0) to accept it, PV_ERROR after ext->error to refuse it; the message, quoting the bad
 * key and value, reaches the person who asked (HTTP 422). ext->pulse_id is 0 there.
 *
 * A crash (SIGSEGV, abort) takes down the instance's process only: the supervisor logs the
 * signal and restarts it under its restart policy.
 */
#ifndef PIPEVISOR_EXT_H
#define PIPEVISOR_EXT_H

#include <stdint.h>

#define PV_EXT_ABI 1 /* ext->abi: a runner with another major ABI refuses to load the code */

enum {
    PV_SEND = 0,   /* send what was output */
    PV_SKIP = 1,   /* send nothing for this image */
    PV_ERROR = -1, /* failed: ext->error said why */
};

/* Pixel and value types, as numpy names them. */
typedef enum pv_dtype {
    PV_BOOL = 0,
    PV_INT8 = 1,
    PV_UINT8 = 2,
    PV_INT16 = 3,
    PV_UINT16 = 4,
    PV_INT32 = 5,
    PV_UINT32 = 6,
    PV_INT64 = 7,
    PV_UINT64 = 8,
    PV_FLOAT32 = 9,
    PV_FLOAT64 = 10,
} pv_dtype;

/* Log levels of ext->log. */
enum { PV_DEBUG = 10, PV_INFO = 20, PV_WARNING = 30, PV_ERROR_LEVEL = 40, PV_CRITICAL = 50 };

/* A 2-D image, rows of pixels: pixel (row, col) is at
 * (const char *)data + row * row_stride + col * <size of dtype>. */
typedef struct pv_image {
    const void *data;
    pv_dtype dtype;
    int64_t height;     /* rows */
    int64_t width;      /* columns */
    int64_t row_stride; /* bytes from the start of one row to the next (>= width * size) */
} pv_image;

typedef struct pv_ext pv_ext;

struct pv_ext {
    int abi;                 /* PV_EXT_ABI */
    uint64_t pulse_id;       /* of the image being processed */
    int64_t timestamp_sec;   /* its global timestamp: seconds and nanoseconds */
    int64_t timestamp_ns;

    /* A number parameter: 1 with *value set when the key holds a number (or a boolean), 0 when
     * it is absent or null, -1 when it holds something else. */
    int (*number)(const pv_ext *ext, const char *key, double *value);
    /* A string parameter, or NULL when absent or not a string; valid until the call returns. */
    const char *(*string)(const pv_ext *ext, const char *key);

    /* Output a scalar channel: value points to one value of dtype. 0, or -1 on a bad name or
     * dtype (ext->error then says why). */
    int (*scalar)(const pv_ext *ext, const char *name, pv_dtype dtype, const void *value);
    /* Output an array channel: returns a zero-filled, C-ordered buffer of ndim (1 to 8)
     * dimensions to fill before returning, or NULL on a bad name, dtype or shape. */
    void *(*array)(const pv_ext *ext, const char *name, pv_dtype dtype, int ndim,
                   const int64_t *shape);

    /* A line in the instance's log, with a level of PV_DEBUG to PV_CRITICAL. */
    void (*log)(const pv_ext *ext, int level, const char *message);
    /* Say what went wrong before returning PV_ERROR. */
    void (*error)(const pv_ext *ext, const char *message);
};

int pv_process_image(const pv_image *image, const pv_ext *ext);
int pv_configure(const pv_ext *ext); /* optional */

#endif /* PIPEVISOR_EXT_H */

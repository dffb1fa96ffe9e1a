/*
 * threshold_projections: an example pipevisor program in C; copy it to start your own.
 *
 * Input:  bsread messages with a 2-D integer channel "image" (int8, uint8, int16, uint16, int32
 *         or uint32). Messages without it, or where it is missing, are skipped.
 * Config: {"threshold": T}, a number >= 0 (default 0). Integers and reals are both accepted.
 * Output: one message per image, with the image's pulse id and global timestamp:
 *           x_profile  int64[width]   the sum of every column (one value per column)
 *           y_profile  int64[height]  the sum of every row
 *           intensity  int64          the sum of all pixels
 *           max_value  int64          the largest pixel
 *         all computed on the thresholded image, in one pass over the pixels.
 *
 * Threshold, precisely: a pixel p is kept when p >= T and becomes 0 when p < T, comparing the
 * exact values (so T = 2.5 keeps 3 and drops 2, and negative pixels always become 0). In numpy:
 *     kept = img * (img >= T)
 *     x_profile = kept.sum(axis=0, dtype=np.int64); y_profile = kept.sum(axis=1, dtype=np.int64)
 *     intensity = kept.sum(dtype=np.int64); max_value = kept.max()
 *
 * Build: make -C runners/c (links build/libpipevisor.a, libzmq, jansson and libmd).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "pipevisor.h"

typedef struct state {
    double threshold;    /* as configured, for messages */
    int64_t cut;         /* the smallest pixel value kept: ceil(threshold) */
    int64_t *x, *y;      /* profile buffers, grown to the largest image seen */
    size_t x_size, y_size;
} state;

/* The configure callback: validate everything first, then apply; refuse with the key quoted. */
static int configure(pv_program *program, const json_t *config, void *user)
{
    state *s = user;
    const json_t *value = json_object_get(config, "threshold");
    double threshold = 0;
    if (value != NULL && !json_is_null(value)) {
        threshold = json_is_number(value) ? json_number_value(value) : NAN;
        if (!(threshold >= 0) || !isfinite(threshold)) {
            char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
            int rc = pv_refuse(program, "config key 'threshold' must be a number >= 0, got %.200s",
                               text != NULL ? text : "?");
            free(text);
            return rc;
        }
    }
    if (threshold != s->threshold)
        pv_log(program, PV_LOG_INFO, "threshold changes from %g to %g", s->threshold, threshold);
    s->threshold = threshold;
    s->cut = threshold >= 9.2e18 ? INT64_MAX : (int64_t)ceil(threshold);
    return 0;
}

static int64_t *grow(int64_t **buffer, size_t *size, size_t count)
{
    if (*size < count) {
        int64_t *grown = realloc(*buffer, count * sizeof(int64_t));
        if (grown == NULL)
            return NULL;
        *buffer = grown;
        *size = count;
    }
    for (size_t i = 0; i < count; i++)
        (*buffer)[i] = 0;
    return *buffer;
}

/* One pass: every kept pixel is added to its column's and its row's sum. Sums are unsigned
 * (kept pixels are >= 0), so an overflow wraps like numpy's int64 instead of being undefined. */
#define PROJECT(TYPE)                                                                          \
    do {                                                                                       \
        const TYPE *pixels = image->data;                                                      \
        for (size_t r = 0; r < height; r++) {                                                  \
            const TYPE *row = pixels + r * width;                                              \
            uint64_t row_sum = 0;                                                              \
            for (size_t c = 0; c < width; c++) {                                               \
                int64_t p = row[c];                                                            \
                uint64_t v = p >= cut ? (uint64_t)p : 0;                                       \
                x[c] = (int64_t)((uint64_t)x[c] + v);                                          \
                row_sum += v;                                                                  \
                if (v > max)                                                                   \
                    max = v;                                                                   \
            }                                                                                  \
            y[r] = (int64_t)row_sum;                                                           \
            total += row_sum;                                                                  \
        }                                                                                      \
    } while (0)

static void process(pv_program *program, state *s, const pv_message *message)
{
    const pv_channel *image = pv_message_channel(message, "image");
    if (image == NULL || image->missing)
        return;
    if (image->ndim != 2) {
        pv_error(program, "channel 'image' must have 2 dimensions, it has %d", image->ndim);
        return;
    }
    size_t height = (size_t)image->shape[0], width = (size_t)image->shape[1];
    int64_t *x = grow(&s->x, &s->x_size, width);
    int64_t *y = grow(&s->y, &s->y_size, height);
    if (x == NULL || y == NULL) {
        pv_error(program, "out of memory for a %zu x %zu image", height, width);
        return;
    }
    /* A negative threshold is refused, so cut >= 0 and negative pixels are never kept. */
    int64_t cut = s->cut;
    uint64_t total = 0, max = 0;
    switch (image->type) {
    case PV_TYPE_INT8: PROJECT(int8_t); break;
    case PV_TYPE_UINT8: PROJECT(uint8_t); break;
    case PV_TYPE_INT16: PROJECT(int16_t); break;
    case PV_TYPE_UINT16: PROJECT(uint16_t); break;
    case PV_TYPE_INT32: PROJECT(int32_t); break;
    case PV_TYPE_UINT32: PROJECT(uint32_t); break;
    default:
        pv_error(program, "channel 'image' has type %s, expected an integer type of 32 bits or less",
                 pv_type_name(image->type));
        return;
    }
    int64_t intensity = (int64_t)total, max_value = (int64_t)max;
    pv_value out[] = {
        {.name = "x_profile", .type = PV_TYPE_INT64, .ndim = 1, .shape = {(int64_t)width},
         .data = x, .nbytes = width * sizeof(int64_t)},
        {.name = "y_profile", .type = PV_TYPE_INT64, .ndim = 1, .shape = {(int64_t)height},
         .data = y, .nbytes = height * sizeof(int64_t)},
        {.name = "intensity", .type = PV_TYPE_INT64, .data = &intensity, .nbytes = 8},
        {.name = "max_value", .type = PV_TYPE_INT64, .data = &max_value, .nbytes = 8},
    };
    if (pv_send(program, out, sizeof out / sizeof *out, message->pulse_id, message->timestamp_sec,
                message->timestamp_ns) < 0)
        pv_error(program, "cannot send: %s", pv_program_error(program));
}

int main(void)
{
    state s = {0};
    pv_options options = {
        .program = "threshold_projections 1.0",
        .configure = configure,
        .user = &s,
    };
    int exit_code;
    pv_program *program = pv_program_open(&options, &exit_code);
    if (program == NULL)
        return exit_code;
    pv_log(program, PV_LOG_INFO, "threshold_projections started as %s run %lld, threshold %g",
           pv_program_instance(program), pv_program_run(program), s.threshold);
    const pv_message *message;
    int rc;
    while ((rc = pv_program_next(program, &message, 1000)) != PV_NEXT_STOP)
        if (rc == PV_NEXT_MESSAGE)
            process(program, &s, message);
    pv_log(program, PV_LOG_INFO, "threshold_projections stops");
    pv_program_close(program);
    free(s.x);
    free(s.y);
    return PV_EXIT_OK;
}

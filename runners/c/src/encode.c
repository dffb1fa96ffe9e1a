/* bsread sender side: values in, frames out (bsread.md §1, as supervisor/contract/bsread's
 * Encoder). The data header and its MD5 are built once and shared by reference between the
 * messages in flight until the channel set changes, so the steady state formats one small main
 * header per message. */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <md5.h>
#include <zmq.h>

#include "internal.h"

/* Frame 1, referenced by every message sent with it; freed by whoever drops the last reference
 * (the encoder, or ZMQ's I/O thread once the last message using it has left). */
typedef struct shared_frame {
    atomic_int refs;
    size_t size;
    unsigned char bytes[];
} shared_frame;

typedef struct slot {
    char *name;
    pv_type type;
    int ndim;
    int64_t shape[PV_MAX_NDIM];
} slot;

struct pv_encoder {
    slot *layout; /* the channels of the current data header */
    size_t nlayout;
    shared_frame *header;
    char hash[MD5_DIGEST_STRING_LENGTH];
    zmq_msg_t *frames;
    size_t nframes;
    size_t frames_size;
    char error[PV_ERROR_SIZE];
};

static void release_shared(void *data, void *hint)
{
    (void)data;
    shared_frame *frame = hint;
    if (atomic_fetch_sub(&frame->refs, 1) == 1)
        free(frame);
}

static void clear_layout(pv_encoder *e)
{
    for (size_t i = 0; i < e->nlayout; i++)
        free(e->layout[i].name);
    free(e->layout);
    e->layout = NULL;
    e->nlayout = 0;
}

static void drop_frames(pv_encoder *e)
{
    for (size_t i = 0; i < e->nframes; i++)
        zmq_msg_close(&e->frames[i]);
    e->nframes = 0;
}

pv_encoder *pv_encoder_new(void)
{
    return calloc(1, sizeof(pv_encoder));
}

void pv_encoder_free(pv_encoder *e)
{
    if (e == NULL)
        return;
    drop_frames(e);
    free(e->frames);
    clear_layout(e);
    if (e->header != NULL)
        release_shared(NULL, e->header);
    free(e);
}

const char *pv_encoder_error(const pv_encoder *e)
{
    return e->error;
}

const char *pv_encoder_hash(const pv_encoder *e)
{
    return e->hash;
}

size_t pv_encoder_nframes(const pv_encoder *e)
{
    return e->nframes;
}

pv_frame pv_encoder_frame(const pv_encoder *e, size_t index)
{
    pv_frame frame = {NULL, 0};
    if (index < e->nframes) {
        zmq_msg_t *msg = (zmq_msg_t *)&e->frames[index];
        frame.data = zmq_msg_data(msg);
        frame.size = zmq_msg_size(msg);
    }
    return frame;
}

/* The value's shape as the header declares it: strings and scalars are [1]. */
static int value_ndim(const pv_value *v)
{
    return v->type == PV_TYPE_STRING ? 0 : v->ndim;
}

static int check_value(pv_encoder *e, const pv_value *v)
{
    if (v->name == NULL || v->name[0] == '\0') {
        pv_set_error(e->error, "channel name must be a non-empty string");
        return -1;
    }
    if (pv_type_name(v->type) == NULL) {
        pv_set_error(e->error, "channel '%s': unknown type %d", v->name, (int)v->type);
        return -1;
    }
    if (v->type == PV_TYPE_STRING) {
        if (v->data != NULL && !pv_utf8_valid(v->data, v->nbytes)) {
            pv_set_error(e->error, "channel '%s': string is not valid UTF-8", v->name);
            return -1;
        }
        return 0;
    }
    if (v->ndim < 0 || v->ndim > PV_MAX_NDIM) {
        pv_set_error(e->error, "channel '%s': %d dimensions, expected 0 to %d", v->name, v->ndim,
                     PV_MAX_NDIM);
        return -1;
    }
    size_t bytes = pv_type_size(v->type);
    for (int i = 0; i < v->ndim; i++) {
        if (v->shape[i] < 0 || pv_mul_size(bytes, (size_t)v->shape[i], &bytes) < 0) {
            pv_set_error(e->error, "channel '%s': bad or overflowing dimension %" PRId64,
                         v->name, v->shape[i]);
            return -1;
        }
    }
    if (v->data != NULL && v->nbytes != 0 && v->nbytes != bytes) {
        pv_set_error(e->error, "channel '%s': %zu bytes given, its shape and type need %zu",
                     v->name, v->nbytes, bytes);
        return -1;
    }
    return 0;
}

static int same_layout(const pv_encoder *e, const pv_value *values, size_t n)
{
    if (e->header == NULL || n != e->nlayout)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const slot *s = &e->layout[i];
        const pv_value *v = &values[i];
        int ndim = value_ndim(v);
        if (s->type != v->type || s->ndim != ndim || strcmp(s->name, v->name) != 0 ||
            memcmp(s->shape, v->shape, sizeof(int64_t) * (size_t)ndim) != 0)
            return 0;
    }
    return 1;
}

static json_t *header_json(const pv_value *values, size_t n)
{
    json_t *channels = json_array();
    json_t *root = json_pack("{s:s, s:o}", "htype", "bsr_d-1.1", "channels", channels);
    if (root == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const pv_value *v = &values[i];
        json_t *shape = json_array();
        int ndim = value_ndim(v);
        if (ndim == 0)
            json_array_append_new(shape, json_integer(1));
        for (int k = ndim - 1; k >= 0; k--) /* the wire lists the fastest dimension first */
            json_array_append_new(shape, json_integer(v->shape[k]));
        json_t *entry = json_pack("{s:s, s:s, s:o, s:s}", "name", v->name, "type",
                                  pv_type_name(v->type), "shape", shape, "encoding", "little");
        if (entry == NULL || json_array_append_new(channels, entry) < 0) {
            json_decref(root);
            return NULL;
        }
    }
    return root;
}

static int rebuild_header(pv_encoder *e, const pv_value *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < i; k++) {
            if (strcmp(values[i].name, values[k].name) == 0) {
                pv_set_error(e->error, "channel '%s' is given twice", values[i].name);
                return -1;
            }
        }
    }
    json_t *root = header_json(values, n);
    char *text = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    size_t size = text != NULL ? strlen(text) : 0;
    shared_frame *frame = text != NULL ? malloc(sizeof(shared_frame) + size) : NULL;
    slot *layout = calloc(n ? n : 1, sizeof(slot));
    if (frame == NULL || layout == NULL) {
        free(text);
        free(frame);
        free(layout);
        pv_set_error(e->error, "out of memory");
        return -1;
    }
    atomic_init(&frame->refs, 1);
    frame->size = size;
    memcpy(frame->bytes, text, size);
    free(text);
    for (size_t i = 0; i < n; i++) {
        layout[i].name = strdup(values[i].name);
        if (layout[i].name == NULL) {
            for (size_t k = 0; k < i; k++)
                free(layout[k].name);
            free(layout);
            free(frame);
            pv_set_error(e->error, "out of memory");
            return -1;
        }
        layout[i].type = values[i].type;
        layout[i].ndim = value_ndim(&values[i]);
        memcpy(layout[i].shape, values[i].shape, sizeof(int64_t) * (size_t)layout[i].ndim);
    }
    clear_layout(e);
    e->layout = layout;
    e->nlayout = n;
    if (e->header != NULL)
        release_shared(NULL, e->header);
    e->header = frame;
    MD5_CTX md5;
    MD5Init(&md5);
    MD5Update(&md5, frame->bytes, frame->size);
    MD5End(&md5, e->hash); /* lowercase hex, as hashlib's hexdigest */
    return 0;
}

static int add_copy(pv_encoder *e, const void *data, size_t size)
{
    zmq_msg_t *msg = &e->frames[e->nframes];
    if (zmq_msg_init_size(msg, size) != 0)
        return -1;
    if (size > 0)
        memcpy(zmq_msg_data(msg), data, size);
    e->nframes++;
    return 0;
}

/* Hands every value's free_fn its data: ownership passed at the call, whatever happens. */
static void release_values(const pv_value *values, size_t n, size_t from)
{
    for (size_t i = from; i < n; i++)
        if (values[i].free_fn != NULL && values[i].data != NULL)
            values[i].free_fn((void *)values[i].data, values[i].hint);
}

int pv_encode(pv_encoder *e, const pv_value *values, size_t n, uint64_t pulse_id, int64_t sec,
              int64_t ns)
{
    e->error[0] = '\0';
    drop_frames(e);
    size_t needed;
    if (n > (SIZE_MAX - 2) / 2 || (n > 0 && values == NULL)) {
        pv_set_error(e->error, "bad channel count %zu", n);
        release_values(values, values ? n : 0, 0);
        return -1;
    }
    needed = 2 + 2 * n;
    if (ns < 0 || ns > 999999999) {
        pv_set_error(e->error, "timestamp nanoseconds must be in [0, 1e9), got %" PRId64, ns);
        release_values(values, n, 0);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (check_value(e, &values[i]) < 0) {
            release_values(values, n, 0);
            return -1;
        }
    }
    if (!same_layout(e, values, n) && rebuild_header(e, values, n) < 0) {
        release_values(values, n, 0);
        return -1;
    }
    if (e->frames_size < needed) {
        zmq_msg_t *grown = realloc(e->frames, needed * sizeof(zmq_msg_t));
        if (grown == NULL) {
            pv_set_error(e->error, "out of memory");
            release_values(values, n, 0);
            return -1;
        }
        e->frames = grown;
        e->frames_size = needed;
    }
    char main[256]; /* the longest possible main header is about 170 bytes */
    int size = snprintf(main, sizeof main,
                        "{\"htype\":\"bsr_m-1.1\",\"pulse_id\":%" PRIu64
                        ",\"global_timestamp\":{\"sec\":%" PRId64 ",\"ns\":%" PRId64
                        "},\"hash\":\"%s\",\"dh_compression\":\"none\"}",
                        pulse_id, sec, ns, e->hash);
    if (size < 0 || (size_t)size >= sizeof main || add_copy(e, main, (size_t)size) < 0)
        goto oom;
    atomic_fetch_add(&e->header->refs, 1);
    if (zmq_msg_init_data(&e->frames[1], e->header->bytes, e->header->size, release_shared,
                          e->header) != 0) {
        atomic_fetch_sub(&e->header->refs, 1);
        goto oom;
    }
    e->nframes = 2;
    unsigned char stamp[16];
    for (int i = 0; i < 8; i++) {
        stamp[i] = (unsigned char)((uint64_t)sec >> (8 * i));
        stamp[8 + i] = (unsigned char)((uint64_t)ns >> (8 * i));
    }
    for (size_t i = 0; i < n; i++) {
        const pv_value *v = &values[i];
        if (v->data == NULL || v->nbytes == 0) {
            if (add_copy(e, NULL, 0) < 0 || add_copy(e, NULL, 0) < 0)
                goto oom_at;
            if (v->data != NULL && v->free_fn != NULL)
                v->free_fn((void *)v->data, v->hint);
            continue;
        }
        if (v->free_fn != NULL) {
            if (zmq_msg_init_data(&e->frames[e->nframes], (void *)v->data, v->nbytes, v->free_fn,
                                  v->hint) != 0)
                goto oom_at;
            e->nframes++;
        } else if (add_copy(e, v->data, v->nbytes) < 0) {
            goto oom_at;
        }
        if (add_copy(e, stamp, sizeof stamp) < 0) {
            release_values(values, n, i + 1);
            goto oom;
        }
        continue;
    oom_at:
        release_values(values, n, i);
        goto oom;
    }
    return 0;
oom:
    if (e->nframes < 2)
        release_values(values, n, 0);
    drop_frames(e);
    pv_set_error(e->error, "out of memory");
    return -1;
}

void pv_encoder_discard(pv_encoder *e)
{
    drop_frames(e);
}

long long pv_encoder_send(pv_encoder *e, void *socket, int flags)
{
    long long sent = 0;
    size_t n = e->nframes;
    for (size_t i = 0; i < n; i++) {
        size_t size = zmq_msg_size(&e->frames[i]);
        int more = i + 1 < n ? ZMQ_SNDMORE : 0;
        if (zmq_msg_send(&e->frames[i], socket, flags | more) < 0) {
            int err = errno;
            drop_frames(e);
            if (i == 0 && err == EAGAIN)
                return 0; /* nothing left: the message is dropped whole */
            pv_set_error(e->error, "sending frame %zu of %zu failed: %s", i, n,
                         zmq_strerror(err));
            return -1;
        }
        sent += (long long)size;
    }
    drop_frames(e); /* sent messages are empty now; closing them is a no-op */
    return sent;
}

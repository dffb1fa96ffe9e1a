/* bsread receiver side: frames in, pv_message out (bsread.md §1, as supervisor/contract/bsread's
 * Decoder). Every check of the Python decoder is made here too, in the same order, so both
 * accept and refuse the same messages; the one difference is that compressed data is refused. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

#define CACHE_SIZE 16 /* several senders on one PULL alternate between their headers */
#define QUOTE_SIZE 96

/* How to decode one channel, computed once per data header. */
typedef struct plan {
    int big_endian;
    size_t nbytes; /* expected value size (numeric types) */
    void *scratch; /* for byte-swapped, realigned or NUL-terminated copies */
    size_t scratch_size;
} plan;

typedef struct header {
    char *hash;
    unsigned char *frame; /* frame 1 as received: the hash is a key, the bytes the proof */
    size_t frame_size;
    size_t nchannels;
    pv_channel *channels;
    plan *plans;
    uint64_t id;   /* unique per parse, for format_changed */
    uint64_t used; /* last use, for eviction */
} header;

struct pv_decoder {
    header *cache[CACHE_SIZE];
    size_t ncache;
    uint64_t clock;
    uint64_t next_id;
    uint64_t current_id;
    char *hash; /* of the message being decoded */
    size_t hash_size;
    char error[PV_ERROR_SIZE];
};

pv_decoder *pv_decoder_new(void)
{
    return calloc(1, sizeof(pv_decoder));
}

static void header_free(header *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->nchannels; i++) {
        free((char *)h->channels[i].name);
        free(h->plans[i].scratch);
    }
    free(h->channels);
    free(h->plans);
    free(h->frame);
    free(h->hash);
    free(h);
}

void pv_decoder_free(pv_decoder *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->ncache; i++)
        header_free(d->cache[i]);
    free(d->hash);
    free(d);
}

const char *pv_decoder_error(const pv_decoder *d)
{
    return d->error;
}

const pv_channel *pv_message_channel(const pv_message *m, const char *name)
{
    for (size_t i = 0; i < m->nchannels; i++)
        if (strcmp(m->channels[i].name, name) == 0)
            return &m->channels[i];
    return NULL;
}

/* A JSON value for an error message, cut at 80 characters like Python's {value!r:.80}. */
static const char *quote(const json_t *value, char out[QUOTE_SIZE])
{
    if (value == NULL) {
        snprintf(out, QUOTE_SIZE, "(absent)");
        return out;
    }
    char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
    snprintf(out, QUOTE_SIZE, "%.80s", text != NULL ? text : "(unprintable)");
    free(text);
    return out;
}

static json_t *load_json(pv_decoder *d, const char *what, const pv_frame *frame)
{
    json_error_t err;
    json_t *value = json_loadb(frame->data, frame->size, 0, &err);
    if (value == NULL)
        pv_set_error(d->error, "%s is not valid JSON: %s (at byte %d)", what, err.text,
                     err.position);
    else if (!json_is_object(value)) {
        char q[QUOTE_SIZE];
        pv_set_error(d->error, "%s is not a JSON object: %s", what, quote(value, q));
        json_decref(value);
        value = NULL;
    }
    return value;
}

/* An optional string key, lower-cased into out; 0, or -1 when it is not a string. */
static int lower_key(pv_decoder *d, const json_t *entry, const char *name, const char *key,
                     const char *fallback, char *out, size_t size)
{
    const json_t *value = json_object_get(entry, key);
    const char *text = fallback;
    if (value != NULL && !json_is_null(value)) {
        if (!json_is_string(value)) {
            char q[QUOTE_SIZE];
            pv_set_error(d->error, "channel '%s': %s must be a string, got %s", name, key,
                         quote(value, q));
            return -1;
        }
        text = json_string_value(value);
    }
    size_t i = 0;
    for (; text[i] != '\0' && i + 1 < size; i++)
        out[i] = (char)tolower((unsigned char)text[i]);
    out[i] = '\0';
    if (text[i] != '\0')
        out[0] = '?'; /* too long to be a known word: make sure it matches none */
    return 0;
}

static int parse_channel(pv_decoder *d, const json_t *entry, pv_channel *c, plan *p)
{
    char q[QUOTE_SIZE];
    if (!json_is_object(entry)) {
        pv_set_error(d->error, "data header channel is not an object: %s", quote(entry, q));
        return -1;
    }
    const json_t *jname = json_object_get(entry, "name");
    const char *name = json_string_value(jname);
    if (name == NULL || name[0] == '\0') {
        pv_set_error(d->error, "data header channel has no name: %s", quote(entry, q));
        return -1;
    }
    char word[32];
    if (lower_key(d, entry, name, "type", "float64", word, sizeof word) < 0)
        return -1;
    if (pv_type_parse(word, &c->type) < 0) {
        pv_set_error(d->error, "channel '%s' has unknown type %s", name,
                     quote(json_object_get(entry, "type"), q));
        return -1;
    }
    const json_t *shape = json_object_get(entry, "shape");
    int64_t wire[PV_MAX_NDIM] = {1};
    size_t ndim = 1;
    if (shape != NULL && !json_is_null(shape)) {
        if (!json_is_array(shape) || json_array_size(shape) > PV_MAX_NDIM) {
            pv_set_error(d->error, "channel '%s' has a bad shape %s (a list of at most %d ints)",
                         name, quote(shape, q), PV_MAX_NDIM);
            return -1;
        }
        ndim = json_array_size(shape);
        for (size_t i = 0; i < ndim; i++) {
            const json_t *dim = json_array_get(shape, i);
            if (!json_is_integer(dim) || json_integer_value(dim) < 0) {
                pv_set_error(d->error, "channel '%s' has a bad shape %s", name, quote(shape, q));
                return -1;
            }
            wire[i] = json_integer_value(dim);
        }
    }
    size_t count = 1;
    for (size_t i = 0; i < ndim; i++) {
        c->shape[i] = wire[ndim - 1 - i]; /* the wire lists the fastest dimension first */
        if (pv_mul_size(count, (size_t)c->shape[i], &count) < 0) {
            pv_set_error(d->error, "channel '%s': shape %s overflows", name, quote(shape, q));
            return -1;
        }
    }
    if (pv_mul_size(count, pv_type_size(c->type), &p->nbytes) < 0) {
        pv_set_error(d->error, "channel '%s': shape %s overflows", name, quote(shape, q));
        return -1;
    }
    c->ndim = c->type == PV_TYPE_STRING ? 0 : (int)ndim; /* a string's length is its frame's */
    c->count = count;
    if (lower_key(d, entry, name, "encoding", "little", word, sizeof word) < 0)
        return -1;
    /* Java reads any encoding containing "big" as big-endian; Rust also accepts ">". */
    p->big_endian = strstr(word, "big") != NULL || strcmp(word, ">") == 0;
    if (lower_key(d, entry, name, "compression", "none", word, sizeof word) < 0)
        return -1;
    if (strcmp(word, "bitshuffle_lz4") == 0 || strcmp(word, "lz4") == 0) {
        pv_set_error(d->error,
                     "channel '%s' is compressed with %s, which is not supported by the C "
                     "library (send it uncompressed)",
                     name, word);
        return -1;
    }
    if (strcmp(word, "none") != 0) {
        pv_set_error(d->error, "channel '%s' has unknown compression %s", name,
                     quote(json_object_get(entry, "compression"), q));
        return -1;
    }
    c->name = strdup(name);
    if (c->name == NULL) {
        pv_set_error(d->error, "out of memory");
        return -1;
    }
    return 0;
}

static header *parse_header(pv_decoder *d, const pv_frame *frame, const char *hash)
{
    json_t *root = load_json(d, "data header", frame);
    if (root == NULL)
        return NULL;
    header *h = calloc(1, sizeof(header));
    const json_t *list = json_object_get(root, "channels");
    if (h == NULL) {
        pv_set_error(d->error, "out of memory");
        goto fail;
    }
    if (!json_is_array(list)) {
        char q[QUOTE_SIZE];
        pv_set_error(d->error, "data header is not an object with a channels list: %s",
                     quote(root, q));
        goto fail;
    }
    size_t n = json_array_size(list);
    h->channels = calloc(n ? n : 1, sizeof(pv_channel));
    h->plans = calloc(n ? n : 1, sizeof(plan));
    h->hash = strdup(hash);
    h->frame = malloc(frame->size ? frame->size : 1);
    if (h->channels == NULL || h->plans == NULL || h->hash == NULL || h->frame == NULL) {
        pv_set_error(d->error, "out of memory");
        goto fail;
    }
    memcpy(h->frame, frame->data, frame->size);
    h->frame_size = frame->size;
    for (size_t i = 0; i < n; i++) {
        if (parse_channel(d, json_array_get(list, i), &h->channels[i], &h->plans[i]) < 0)
            goto fail;
        h->nchannels = i + 1;
        for (size_t k = 0; k < i; k++) {
            if (strcmp(h->channels[k].name, h->channels[i].name) == 0) {
                pv_set_error(d->error, "data header lists the channel name '%s' twice",
                             h->channels[i].name);
                goto fail;
            }
        }
    }
    h->id = ++d->next_id;
    json_decref(root);
    return h;
fail:
    header_free(h);
    json_decref(root);
    return NULL;
}

/* The cached header of this hash and frame 1, parsing and caching it when new. */
static header *find_header(pv_decoder *d, const pv_frame *frame, const char *hash)
{
    size_t slot = d->ncache;
    for (size_t i = 0; i < d->ncache; i++) {
        header *h = d->cache[i];
        if (strcmp(h->hash, hash) != 0)
            continue;
        if (h->frame_size == frame->size && memcmp(h->frame, frame->data, frame->size) == 0) {
            h->used = ++d->clock;
            return h;
        }
        if (hash[0] != '\0')
            slot = i; /* same hash, other bytes: a stale or corrupted header, parse again */
    }
    header *h = parse_header(d, frame, hash);
    if (h == NULL)
        return NULL;
    if (slot == d->ncache && d->ncache == CACHE_SIZE) {
        slot = 0;
        for (size_t i = 1; i < d->ncache; i++)
            if (d->cache[i]->used < d->cache[slot]->used)
                slot = i;
    }
    if (slot == d->ncache)
        d->ncache++;
    else
        header_free(d->cache[slot]);
    d->cache[slot] = h;
    h->used = ++d->clock;
    return h;
}

static int64_t read_i64(const unsigned char *bytes, int big_endian)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)bytes[big_endian ? 7 - i : i] << (8 * i);
    return (int64_t)v;
}

static void *scratch(plan *p, size_t size)
{
    if (p->scratch_size < size) {
        void *grown = realloc(p->scratch, size);
        if (grown == NULL)
            return NULL;
        p->scratch = grown;
        p->scratch_size = size;
    }
    return p->scratch;
}

static int decode_value(pv_decoder *d, pv_channel *c, plan *p, const pv_frame *value,
                        const pv_frame *stamp, int64_t sec, int64_t ns)
{
    c->missing = value->size == 0;
    c->data = NULL;
    c->nbytes = 0;
    c->has_timestamp = 0;
    c->timestamp_sec = c->timestamp_ns = 0;
    if (c->missing)
        return 0;
    if (c->type == PV_TYPE_STRING) {
        if (!pv_utf8_valid(value->data, value->size)) {
            pv_set_error(d->error, "channel '%s': string value is not valid UTF-8", c->name);
            return -1;
        }
        char *text = value->size < SIZE_MAX ? scratch(p, value->size + 1) : NULL;
        if (text == NULL) {
            pv_set_error(d->error, "out of memory");
            return -1;
        }
        memcpy(text, value->data, value->size);
        text[value->size] = '\0';
        c->data = text;
        c->count = value->size;
    } else {
        if (value->size != p->nbytes) {
            pv_set_error(d->error, "channel '%s': value has %zu bytes, expected %zu", c->name,
                         value->size, p->nbytes);
            return -1;
        }
        size_t size = pv_type_size(c->type);
        int swap = p->big_endian && size > 1;
        if (!swap && (uintptr_t)value->data % size == 0) {
            c->data = value->data; /* zero copy */
        } else {
            unsigned char *copy = scratch(p, value->size);
            if (copy == NULL) {
                pv_set_error(d->error, "out of memory");
                return -1;
            }
            const unsigned char *src = value->data;
            if (swap) {
                for (size_t i = 0; i < value->size; i += size)
                    for (size_t k = 0; k < size; k++)
                        copy[i + k] = src[i + size - 1 - k];
            } else {
                memcpy(copy, src, value->size);
            }
            c->data = copy;
        }
    }
    c->nbytes = value->size;
    if (stamp->size == 16) {
        c->has_timestamp = 1;
        c->timestamp_sec = read_i64(stamp->data, p->big_endian);
        c->timestamp_ns = read_i64((const unsigned char *)stamp->data + 8, p->big_endian);
    } else if (stamp->size != 0) {
        c->has_timestamp = 1; /* neither a timestamp nor missing: the global one, as Python */
        c->timestamp_sec = sec;
        c->timestamp_ns = ns;
    }
    return 0;
}

/* global_timestamp: absent or null is 0, 0; "epoch" is a legacy name of "sec". */
static int parse_timestamp(pv_decoder *d, const json_t *value, int64_t *sec, int64_t *ns)
{
    *sec = *ns = 0;
    if (value == NULL || json_is_null(value))
        return 0;
    char q[QUOTE_SIZE];
    if (!json_is_object(value)) {
        pv_set_error(d->error, "global_timestamp must be an object, got %s", quote(value, q));
        return -1;
    }
    const json_t *jsec = json_object_get(value, "sec");
    if (jsec == NULL)
        jsec = json_object_get(value, "epoch");
    const json_t *jns = json_object_get(value, "ns");
    if (!json_is_integer(jsec) || (jns != NULL && !json_is_integer(jns))) {
        pv_set_error(d->error, "global_timestamp needs integer sec and ns, got %s",
                     quote(value, q));
        return -1;
    }
    *sec = json_integer_value(jsec);
    *ns = jns != NULL ? json_integer_value(jns) : 0;
    return 0;
}

/* The main header's fields; 1 for data, 0 for another htype, -1 when malformed. */
static int parse_main(pv_decoder *d, const pv_frame *frame, pv_message *m)
{
    json_t *root = load_json(d, "main header", frame);
    if (root == NULL)
        return -1;
    char q[QUOTE_SIZE];
    int result = -1;
    const char *htype = json_string_value(json_object_get(root, "htype"));
    const json_t *pulse = json_object_get(root, "pulse_id");
    const json_t *jhash = json_object_get(root, "hash");
    const json_t *dhc = json_object_get(root, "dh_compression");
    if (htype == NULL) {
        pv_set_error(d->error, "main header has no htype string: %s",
                     quote(json_object_get(root, "htype"), q));
    } else if (strncmp(htype, "bsr_m", 5) != 0) {
        result = 0;
    } else if (!json_is_integer(pulse) || json_integer_value(pulse) < 0) {
        pv_set_error(d->error, "main header pulse_id must be an unsigned integer, got %s",
                     quote(pulse, q));
    } else if (!json_is_string(jhash)) {
        pv_set_error(d->error, "main header hash must be a string, got %s", quote(jhash, q));
    } else if (dhc != NULL && !json_is_null(dhc) && !json_is_string(dhc)) {
        pv_set_error(d->error, "unknown dh_compression %s", quote(dhc, q));
    } else if (parse_timestamp(d, json_object_get(root, "global_timestamp"), &m->timestamp_sec,
                               &m->timestamp_ns) == 0) {
        const char *compression = dhc != NULL ? json_string_value(dhc) : NULL;
        if (compression != NULL && strcasecmp(compression, "none") != 0) {
            if (strcasecmp(compression, "bitshuffle_lz4") == 0 ||
                strcasecmp(compression, "lz4") == 0)
                pv_set_error(d->error,
                             "the data header is compressed with %s, which is not supported "
                             "by the C library",
                             compression);
            else
                pv_set_error(d->error, "unknown dh_compression %s", quote(dhc, q));
        } else {
            m->pulse_id = (uint64_t)json_integer_value(pulse);
            size_t size = json_string_length(jhash) + 1;
            if (d->hash_size < size) {
                char *grown = realloc(d->hash, size);
                if (grown != NULL) {
                    d->hash = grown;
                    d->hash_size = size;
                }
            }
            if (d->hash_size < size) {
                pv_set_error(d->error, "out of memory");
            } else {
                memcpy(d->hash, json_string_value(jhash), size);
                result = 1;
            }
        }
    }
    json_decref(root);
    return result;
}

int pv_decode(pv_decoder *d, const pv_frame *frames, size_t nframes, pv_message *m)
{
    d->error[0] = '\0';
    memset(m, 0, sizeof *m);
    if (nframes == 0) {
        pv_set_error(d->error, "empty bsread message (no frames)");
        return -1;
    }
    int kind = parse_main(d, &frames[0], m);
    if (kind <= 0)
        return kind;
    if (nframes < 2) {
        pv_set_error(d->error, "bsread data message with %zu frame(s)", nframes);
        return -1;
    }
    header *h = find_header(d, &frames[1], d->hash);
    if (h == NULL)
        return -1;
    if (nframes != 2 + 2 * h->nchannels) {
        pv_set_error(d->error, "bsread message has %zu frames, expected %zu for %zu channels",
                     nframes, 2 + 2 * h->nchannels, h->nchannels);
        return -1;
    }
    for (size_t i = 0; i < h->nchannels; i++) {
        if (decode_value(d, &h->channels[i], &h->plans[i], &frames[2 + 2 * i],
                         &frames[3 + 2 * i], m->timestamp_sec, m->timestamp_ns) < 0)
            return -1;
    }
    for (size_t i = 0; i < nframes; i++)
        m->nbytes += frames[i].size;
    m->hash = h->hash;
    m->nchannels = h->nchannels;
    m->channels = h->channels;
    m->format_changed = h->id != d->current_id;
    d->current_id = h->id;
    return 1;
}

/* The bsread codec: round trips of every type and shape, missing values, header reuse, the
 * receiver's tolerance (defaults, big-endian, misaligned frames), a corpus of malformed messages
 * that must all be refused, and a deterministic mutation loop that must never crash. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <md5.h>

#include "../pipevisor.h"
#include "check.h"

/* A message as separately malloc'ed frames of exact size, so ASan sees any overread. */
typedef struct frames {
    pv_frame f[64];
    size_t n;
} frames;

static void add_frame(frames *m, const void *data, size_t size)
{
    void *copy = malloc(size ? size : 1);
    if (size)
        memcpy(copy, data, size);
    m->f[m->n].data = copy;
    m->f[m->n].size = size;
    m->n++;
}

static void add_text(frames *m, const char *text)
{
    add_frame(m, text, strlen(text));
}

static void free_frames(frames *m)
{
    for (size_t i = 0; i < m->n; i++)
        free((void *)m->f[i].data);
    m->n = 0;
}

static frames from_encoder(const pv_encoder *e)
{
    frames m = {.n = 0};
    for (size_t i = 0; i < pv_encoder_nframes(e); i++) {
        pv_frame f = pv_encoder_frame(e, i);
        add_frame(&m, f.data, f.size);
    }
    return m;
}

static void fill(unsigned char *bytes, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        bytes[i] = (unsigned char)(seed * 31 + i * 7 + (i >> 3));
}

static void test_round_trip_every_type_and_shape(void)
{
    static const int64_t shapes[][4] = {{0}, {1, 1}, {1, 5}, {2, 3, 4}, {3, 2, 3, 4}, {1, 0}};
    pv_encoder *e = pv_encoder_new();
    pv_decoder *d = pv_decoder_new();
    unsigned char data[24 * 8];
    for (int t = 0; t < PV_TYPE_STRING; t++) {
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            pv_value v = {.name = "ch", .type = (pv_type)t, .ndim = (int)shapes[s][0]};
            size_t count = 1;
            for (int k = 0; k < v.ndim; k++) {
                v.shape[k] = shapes[s][k + 1];
                count *= (size_t)v.shape[k];
            }
            size_t nbytes = count * pv_type_size((pv_type)t);
            fill(data, nbytes, (unsigned)(t + s));
            if (t == PV_TYPE_BOOL)
                for (size_t i = 0; i < nbytes; i++)
                    data[i] &= 1;
            v.data = data;
            v.nbytes = nbytes;
            uint64_t pulse = 1000 + (uint64_t)t;
            CHECK(pv_encode(e, &v, 1, pulse, 1700000000, 123456789) == 0);
            frames m = from_encoder(e);
            CHECK(m.n == 4);
            pv_message msg;
            int rc = pv_decode(d, m.f, m.n, &msg);
            CHECK_MSG(rc == 1, "%s", pv_decoder_error(d));
            if (rc == 1) {
                const pv_channel *c = pv_message_channel(&msg, "ch");
                CHECK(msg.pulse_id == pulse && msg.timestamp_sec == 1700000000 &&
                      msg.timestamp_ns == 123456789);
                CHECK(c != NULL && c->type == (pv_type)t);
                CHECK(c->ndim == (v.ndim ? v.ndim : 1));
                for (int k = 0; k < v.ndim; k++)
                    CHECK(c->shape[k] == v.shape[k]);
                CHECK(c->count == count);
                if (nbytes == 0) {
                    CHECK(c->missing && c->data == NULL);
                } else {
                    CHECK(!c->missing && c->nbytes == nbytes && memcmp(c->data, data, nbytes) == 0);
                    CHECK(c->has_timestamp && c->timestamp_sec == 1700000000 &&
                          c->timestamp_ns == 123456789);
                }
            }
            free_frames(&m);
        }
    }
    pv_encoder_free(e);
    pv_decoder_free(d);
}

static void test_strings_missing_and_header_reuse(void)
{
    pv_encoder *e = pv_encoder_new();
    pv_decoder *d = pv_decoder_new();
    const char *text = "Gr\xc3\xbc\xc3\x9f" "e \xe2\x9c\x93";
    double value = 2.5;
    pv_value v[3] = {
        {.name = "text", .type = PV_TYPE_STRING, .data = text, .nbytes = strlen(text)},
        {.name = "gone", .type = PV_TYPE_FLOAT64, .ndim = 1, .shape = {1}},
        {.name = "x", .type = PV_TYPE_FLOAT64, .data = &value, .nbytes = 8},
    };
    CHECK(pv_encode(e, v, 3, 7, 1, 2) == 0);
    frames m = from_encoder(e);
    CHECK(m.n == 8 && m.f[4].size == 0 && m.f[5].size == 0); /* missing: two empty frames */
    char hash[MD5_DIGEST_STRING_LENGTH];
    MD5Data(m.f[1].data, m.f[1].size, hash);
    CHECK(strcmp(hash, pv_encoder_hash(e)) == 0); /* MD5 of frame 1 as sent */
    pv_message msg;
    CHECK(pv_decode(d, m.f, m.n, &msg) == 1);
    CHECK(msg.format_changed == 1 && strcmp(msg.hash, hash) == 0);
    const pv_channel *c = pv_message_channel(&msg, "text");
    CHECK(c && c->type == PV_TYPE_STRING && strcmp(c->data, text) == 0 &&
          c->nbytes == strlen(text));
    c = pv_message_channel(&msg, "gone");
    CHECK(c && c->missing && c->data == NULL && !c->has_timestamp);
    CHECK(*(const double *)pv_message_channel(&msg, "x")->data == 2.5);
    free_frames(&m);

    /* Same layout: same header, same hash, no format change. */
    value = 3.5;
    CHECK(pv_encode(e, v, 3, 8, 1, 2) == 0);
    CHECK(strcmp(hash, pv_encoder_hash(e)) == 0);
    m = from_encoder(e);
    CHECK(pv_decode(d, m.f, m.n, &msg) == 1 && msg.format_changed == 0);
    CHECK(*(const double *)pv_message_channel(&msg, "x")->data == 3.5);
    free_frames(&m);

    /* A shape change: a new header and hash, a format change. */
    v[1].shape[0] = 2;
    CHECK(pv_encode(e, v, 3, 9, 1, 2) == 0);
    CHECK(strcmp(hash, pv_encoder_hash(e)) != 0);
    m = from_encoder(e);
    CHECK(pv_decode(d, m.f, m.n, &msg) == 1 && msg.format_changed == 1);
    free_frames(&m);

    /* No channels at all is legal. */
    CHECK(pv_encode(e, NULL, 0, 10, 1, 2) == 0 && pv_encoder_nframes(e) == 2);
    m = from_encoder(e);
    CHECK(pv_decode(d, m.f, m.n, &msg) == 1 && msg.nchannels == 0);
    free_frames(&m);
    pv_encoder_free(e);
    pv_decoder_free(d);
}

static int freed;
static void count_free(void *data, void *hint)
{
    (void)data;
    (void)hint;
    freed++;
}

static void test_encoder_refuses_bad_values_and_owns_zero_copy_data(void)
{
    pv_encoder *e = pv_encoder_new();
    uint16_t pixels[6] = {1, 2, 3, 4, 5, 6};
    pv_value v = {.name = "img", .type = PV_TYPE_UINT16, .ndim = 2, .shape = {2, 3},
                  .data = pixels, .nbytes = sizeof pixels, .free_fn = count_free};
    CHECK(pv_encode(e, &v, 1, 1, 0, 0) == 0 && freed == 0);
    pv_frame f = pv_encoder_frame(e, 2);
    CHECK(f.data == pixels); /* zero copy */
    CHECK(pv_encode(e, &v, 1, 1, 0, 0) == 0 && freed == 1); /* unsent frames released */
    pv_encoder_free(e);
    CHECK(freed == 2);
    e = pv_encoder_new();
    pv_value bad = v;
    bad.nbytes = 10;
    CHECK(pv_encode(e, &bad, 1, 1, 0, 0) < 0 && freed == 3); /* owned even when refused */
    CHECK(strstr(pv_encoder_error(e), "img") != NULL);
    bad.free_fn = NULL;
    CHECK(pv_encode(e, &bad, 1, 1, 0, 0) < 0);
    bad = v;
    bad.free_fn = NULL;
    bad.ndim = PV_MAX_NDIM + 1;
    CHECK(pv_encode(e, &bad, 1, 1, 0, 0) < 0);
    bad.ndim = 2;
    bad.shape[0] = INT64_MAX;
    CHECK(pv_encode(e, &bad, 1, 1, 0, 0) < 0);
    bad.shape[0] = -1;
    CHECK(pv_encode(e, &bad, 1, 1, 0, 0) < 0);
    bad = v;
    bad.free_fn = NULL;
    bad.type = (pv_type)99;
    CHECK(pv_encode(e, &bad, 1, 1, 0, 0) < 0);
    bad.type = PV_TYPE_UINT16;
    bad.name = "";
    CHECK(pv_encode(e, &bad, 1, 1, 0, 0) < 0);
    pv_value twice[2] = {v, v};
    twice[0].free_fn = twice[1].free_fn = NULL;
    CHECK(pv_encode(e, twice, 2, 1, 0, 0) < 0 && strstr(pv_encoder_error(e), "twice"));
    CHECK(pv_encode(e, twice, 1, 1, 0, 1000000000) < 0);
    pv_value text = {.name = "t", .type = PV_TYPE_STRING, .data = "\xff", .nbytes = 1};
    CHECK(pv_encode(e, &text, 1, 1, 0, 0) < 0);
    pv_encoder_free(e);
}

/* Decode hand-written frames; they are kept in *keep (the message points into them) or freed. */
static int decode_text(pv_decoder *d, const char *main, const char *header, size_t nvalues,
                       const char *const *values, const size_t *sizes, pv_message *msg,
                       frames *keep)
{
    frames m = {.n = 0};
    add_text(&m, main);
    if (header)
        add_text(&m, header);
    for (size_t i = 0; i < nvalues; i++)
        add_frame(&m, values[i], sizes[i]);
    int rc = pv_decode(d, m.f, m.n, msg);
    if (keep != NULL)
        *keep = m;
    else
        free_frames(&m);
    return rc;
}

#define MAIN(extra) "{\"htype\":\"bsr_m-1.1\",\"pulse_id\":5,\"hash\":\"h\"" extra "}"

static void test_receiver_tolerance(void)
{
    pv_decoder *d = pv_decoder_new();
    pv_message msg;
    /* Defaults (as IOCs send): no type is float64, no shape is [1]; big-endian values. */
    double one = 1.5;
    frames kept;
    const unsigned char big16[] = {0x01, 0x02, 0x03, 0x04, 0xff, 0xfe};
    const unsigned char big_ts[16] = {0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 7};
    const char *values[] = {(const char *)&one, "abc", (const char *)big16, (const char *)big_ts};
    size_t sizes[] = {8, 3, 6, 16};
    int rc = decode_text(d, MAIN(",\"global_timestamp\":{\"epoch\":3}"),
                         "{\"channels\":[{\"name\":\"F\"},{\"name\":\"W\",\"type\":\"UINT16\","
                         "\"shape\":[3],\"encoding\":\"big\"}]}",
                         4, values, sizes, &msg, &kept);
    CHECK_MSG(rc == 1, "%s", pv_decoder_error(d));
    if (rc == 1) {
        const pv_channel *f = pv_message_channel(&msg, "F");
        const pv_channel *w = pv_message_channel(&msg, "W");
        CHECK(msg.timestamp_sec == 3 && msg.timestamp_ns == 0);
        CHECK(f->type == PV_TYPE_FLOAT64);
        CHECK(f->ndim == 1);
        CHECK(f->data && *(const double *)f->data == 1.5);
        CHECK(f->has_timestamp && f->timestamp_sec == 3); /* a stamp of 3 bytes: the global one */
        const uint16_t *px = w->data;
        CHECK(px[0] == 0x0102 && px[1] == 0x0304 && px[2] == 0xfffe);
        CHECK(w->timestamp_sec == 9 && w->timestamp_ns == 7);
    }
    free_frames(&kept);
    /* Not data: skipped, even as a single frame. */
    CHECK(decode_text(d, "{\"htype\":\"bsr_stop-1.0\",\"sentMessages\":3}", NULL, 0, NULL, NULL,
                      &msg, NULL) == 0);
    /* Misaligned frames are copied to aligned memory. */
    unsigned char *buffer = malloc(17);
    int64_t want = -42;
    memcpy(buffer + 1, &want, 8);
    frames m = {.n = 0};
    add_text(&m, MAIN(""));
    add_text(&m, "{\"channels\":[{\"name\":\"i\",\"type\":\"int64\"}]}");
    m.f[2].data = buffer + 1;
    m.f[2].size = 8;
    m.f[3].data = buffer;
    m.f[3].size = 0;
    m.n = 4;
    CHECK(pv_decode(d, m.f, m.n, &msg) == 1);
    const pv_channel *c = pv_message_channel(&msg, "i");
    CHECK(c && (uintptr_t)c->data % 8 == 0 && *(const int64_t *)c->data == -42);
    m.n = 2;
    free_frames(&m);
    free(buffer);
    pv_decoder_free(d);
}

typedef struct bad_case {
    const char *main, *header;
    size_t nvalues;
    const char *values[4];
    size_t sizes[4];
    const char *must_say; /* a word the error must contain, or NULL */
} bad_case;

static const char EIGHT[16] = {0}; /* a value of 8 bytes or a timestamp of 16 */
#define ONE_F64 "{\"channels\":[{\"name\":\"a\",\"type\":\"float64\"}]}"

static const bad_case BAD[] = {
    {"", ONE_F64, 2, {EIGHT, EIGHT}, {8, 16}, "JSON"},
    {"{\"htype\":\"bsr_m-1.1\",\"pulse_id\":5,", ONE_F64, 2, {EIGHT, EIGHT}, {8, 16}, "JSON"},
    {"[1,2]", ONE_F64, 2, {EIGHT, EIGHT}, {8, 16}, "object"},
    {"{\"pulse_id\":5,\"hash\":\"h\"}", ONE_F64, 2, {EIGHT, EIGHT}, {8, 16}, "htype"},
    {"{\"htype\":\"bsr_m-1.1\",\"hash\":\"h\"}", ONE_F64, 2, {EIGHT, EIGHT}, {8, 16}, "pulse_id"},
    {"{\"htype\":\"bsr_m-1.1\",\"pulse_id\":-1,\"hash\":\"h\"}", ONE_F64, 2, {EIGHT, EIGHT},
     {8, 16}, "pulse_id"},
    {"{\"htype\":\"bsr_m-1.1\",\"pulse_id\":1.5,\"hash\":\"h\"}", ONE_F64, 2, {EIGHT, EIGHT},
     {8, 16}, "pulse_id"},
    {"{\"htype\":\"bsr_m-1.1\",\"pulse_id\":99999999999999999999999,\"hash\":\"h\"}", ONE_F64, 2,
     {EIGHT, EIGHT}, {8, 16}, NULL},
    {"{\"htype\":\"bsr_m-1.1\",\"pulse_id\":5,\"hash\":7}", ONE_F64, 2, {EIGHT, EIGHT}, {8, 16},
     "hash"},
    {"{\"htype\":\"bsr_m-1.1\",\"pulse_id\":5}", ONE_F64, 2, {EIGHT, EIGHT}, {8, 16}, "hash"},
    {MAIN(",\"dh_compression\":\"bitshuffle_lz4\""), ONE_F64, 2, {EIGHT, EIGHT}, {8, 16},
     "not supported by the C library"},
    {MAIN(",\"dh_compression\":\"zip\""), ONE_F64, 2, {EIGHT, EIGHT}, {8, 16}, "dh_compression"},
    {MAIN(",\"global_timestamp\":5"), ONE_F64, 2, {EIGHT, EIGHT}, {8, 16}, "global_timestamp"},
    {MAIN(",\"global_timestamp\":{\"ns\":5}"), ONE_F64, 2, {EIGHT, EIGHT}, {8, 16}, "sec"},
    {MAIN(""), NULL, 0, {0}, {0}, "frame"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\"", 2, {EIGHT, EIGHT}, {8, 16}, "JSON"},
    {MAIN(""), "\"channels\"", 2, {EIGHT, EIGHT}, {8, 16}, NULL},
    {MAIN(""), "{\"channels\":{}}", 2, {EIGHT, EIGHT}, {8, 16}, "channels"},
    {MAIN(""), "{\"channels\":[5]}", 2, {EIGHT, EIGHT}, {8, 16}, "not an object"},
    {MAIN(""), "{\"channels\":[{\"type\":\"int8\"}]}", 2, {EIGHT, EIGHT}, {1, 16}, "name"},
    {MAIN(""), "{\"channels\":[{\"name\":\"\"}]}", 2, {EIGHT, EIGHT}, {8, 16}, "name"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\",\"type\":\"complex64\"}]}", 2, {EIGHT, EIGHT},
     {8, 16}, "complex64"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\",\"type\":8}]}", 2, {EIGHT, EIGHT}, {8, 16},
     "type"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\",\"shape\":[-1]}]}", 2, {EIGHT, EIGHT}, {8, 16},
     "shape"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\",\"shape\":[1.5]}]}", 2, {EIGHT, EIGHT}, {8, 16},
     "shape"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\",\"shape\":\"2\"}]}", 2, {EIGHT, EIGHT}, {8, 16},
     "shape"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\",\"shape\":[1,1,1,1,1,1,1,1,1]}]}", 2,
     {EIGHT, EIGHT}, {8, 16}, "shape"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\",\"shape\":[4294967296,4294967296]}]}", 2,
     {EIGHT, EIGHT}, {8, 16}, "overflow"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\",\"shape\":[9223372036854775807,2]}]}", 2,
     {EIGHT, EIGHT}, {8, 16}, "overflow"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\",\"shape\":[1000000000,1000000000]}]}", 2,
     {EIGHT, EIGHT}, {8, 16}, "bytes"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\",\"encoding\":5}]}", 2, {EIGHT, EIGHT}, {8, 16},
     "encoding"},
    {MAIN(""), "{\"channels\":[{\"name\":\"cam\",\"compression\":\"bitshuffle_lz4\"}]}", 2,
     {EIGHT, EIGHT}, {8, 16}, "'cam' is compressed with bitshuffle_lz4, which is not supported"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\",\"compression\":\"lz4\"}]}", 2, {EIGHT, EIGHT},
     {8, 16}, "not supported"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\",\"compression\":\"gzip\"}]}", 2, {EIGHT, EIGHT},
     {8, 16}, "gzip"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\"},{\"name\":\"a\"}]}", 4,
     {EIGHT, EIGHT, EIGHT, EIGHT}, {8, 16, 8, 16}, "twice"},
    {MAIN(""), ONE_F64, 1, {EIGHT}, {8}, "frames"},
    {MAIN(""), ONE_F64, 3, {EIGHT, EIGHT, EIGHT}, {8, 16, 8}, "frames"},
    {MAIN(""), ONE_F64, 2, {EIGHT, EIGHT}, {7, 16}, "7 bytes"},
    {MAIN(""), ONE_F64, 2, {EIGHT, EIGHT}, {1, 16}, "expected 8"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\",\"type\":\"uint16\",\"shape\":[3]}]}", 2,
     {EIGHT, EIGHT}, {5, 16}, "expected 6"},
    {MAIN(""), "{\"channels\":[{\"name\":\"s\",\"type\":\"string\"}]}", 2, {"\xc3(", EIGHT},
     {2, 16}, "UTF-8"},
    {MAIN(""), "{\"channels\":[{\"name\":\"s\",\"type\":\"string\"}]}", 2, {"\xed\xa0\x80", EIGHT},
     {3, 16}, "UTF-8"},
    {MAIN(""), "{\"channels\":[{\"name\":\"a\xff\"}]}", 2, {EIGHT, EIGHT}, {8, 16}, "JSON"},
};

static void test_malformed_corpus_is_refused(void)
{
    pv_decoder *d = pv_decoder_new();
    for (size_t i = 0; i < sizeof BAD / sizeof *BAD; i++) {
        const bad_case *b = &BAD[i];
        pv_message msg;
        int rc = decode_text(d, b->main, b->header, b->nvalues, b->values, b->sizes, &msg, NULL);
        CHECK_MSG(rc == -1, "case %zu decoded (%d)", i, rc);
        const char *error = pv_decoder_error(d);
        CHECK_MSG(error[0] != '\0', "case %zu has no message", i);
        if (b->must_say)
            CHECK_MSG(strstr(error, b->must_say) != NULL, "case %zu: '%s' lacks '%s'", i, error,
                      b->must_say);
    }
    pv_message msg;
    CHECK(pv_decode(d, NULL, 0, &msg) == -1);
    pv_decoder_free(d);
}

/* xorshift64: deterministic, so a failure replays. */
static uint64_t rng = 0x9E3779B97F4A7C15u;
static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void mutate(frames *m)
{
    size_t ops = 1 + next_random() % 3;
    for (size_t op = 0; op < ops && m->n > 0; op++) {
        size_t i = next_random() % m->n;
        pv_frame *f = &m->f[i];
        unsigned char *bytes = (unsigned char *)f->data;
        switch (next_random() % 6) {
        case 0: /* flip a byte */
            if (f->size)
                bytes[next_random() % f->size] ^= (unsigned char)(1 + next_random() % 255);
            break;
        case 1: /* a digit or quote in the JSON frames */
            if (f->size && i < 2)
                bytes[next_random() % f->size] = "0123456789\"-[]{},:e."[next_random() % 20];
            break;
        case 2: /* truncate */
            f->size = f->size ? next_random() % f->size : 0;
            break;
        case 3: { /* grow by one byte */
            unsigned char *grown = realloc(bytes, f->size + 1);
            grown[f->size] = (unsigned char)next_random();
            f->data = grown;
            f->size++;
            break;
        }
        case 4: /* drop a frame */
            free(bytes);
            memmove(&m->f[i], &m->f[i + 1], (m->n - i - 1) * sizeof(pv_frame));
            m->n--;
            break;
        default: /* duplicate a frame */
            if (m->n < 64) {
                frames one = {.n = 0};
                add_frame(&one, f->data, f->size);
                memmove(&m->f[i + 1], &m->f[i], (m->n - i) * sizeof(pv_frame));
                m->f[i] = one.f[0];
                m->n++;
            }
        }
    }
}

static void test_mutated_messages_never_crash(void)
{
    pv_encoder *e = pv_encoder_new();
    pv_decoder *d = pv_decoder_new();
    uint16_t image[12];
    int32_t wave[5];
    fill((unsigned char *)image, sizeof image, 1);
    fill((unsigned char *)wave, sizeof wave, 2);
    const char *text = "\xc3\xa9t\xc3\xa9";
    frames bases[3];
    pv_value v[] = {
        {.name = "image", .type = PV_TYPE_UINT16, .ndim = 2, .shape = {3, 4}, .data = image,
         .nbytes = sizeof image},
        {.name = "wave", .type = PV_TYPE_INT32, .ndim = 1, .shape = {5}, .data = wave,
         .nbytes = sizeof wave},
        {.name = "text", .type = PV_TYPE_STRING, .data = text, .nbytes = strlen(text)},
        {.name = "none", .type = PV_TYPE_FLOAT32},
    };
    for (size_t b = 0; b < 3; b++) {
        CHECK(pv_encode(e, v + b, 4 - b, 100 + b, 5, 6) == 0);
        bases[b] = from_encoder(e);
    }
    int decoded = 0, refused = 0;
    for (int round = 0; round < 5000; round++) {
        const frames *base = &bases[round % 3];
        frames m = {.n = 0};
        for (size_t i = 0; i < base->n; i++)
            add_frame(&m, base->f[i].data, base->f[i].size);
        mutate(&m);
        if (round % 500 == 0) { /* a fresh cache now and then */
            pv_decoder_free(d);
            d = pv_decoder_new();
        }
        pv_message msg;
        int rc = pv_decode(d, m.f, m.n, &msg);
        CHECK(rc >= -1 && rc <= 1);
        if (rc == 1) {
            decoded++;
            for (size_t c = 0; c < msg.nchannels; c++) {
                const pv_channel *ch = &msg.channels[c];
                size_t sum = 0;
                if (ch->missing) {
                    CHECK(ch->data == NULL);
                    continue;
                }
                for (size_t k = 0; k < ch->nbytes; k++) /* touch every byte: ASan checks */
                    sum += ((const unsigned char *)ch->data)[k];
                (void)sum;
                if (ch->type != PV_TYPE_STRING)
                    CHECK(ch->nbytes == ch->count * pv_type_size(ch->type));
            }
        } else if (rc < 0) {
            refused++;
            CHECK(pv_decoder_error(d)[0] != '\0');
        }
        free_frames(&m);
    }
    fprintf(stderr, "mutations: %d decoded, %d refused\n", decoded, refused);
    CHECK(refused > 1000);
    for (size_t b = 0; b < 3; b++)
        free_frames(&bases[b]);
    pv_encoder_free(e);
    pv_decoder_free(d);
}

int main(void)
{
    test_round_trip_every_type_and_shape();
    test_strings_missing_and_header_reuse();
    test_encoder_refuses_bad_values_and_owns_zero_copy_data();
    test_receiver_tolerance();
    test_malformed_corpus_is_refused();
    test_mutated_messages_never_crash();
    return check_exit("test_bsread");
}

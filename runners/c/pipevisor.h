/*
 * pipevisor.h: write a pipevisor program in C.
 *
 * Two layers, usable apart:
 *
 *  1. The program contract (supervisor/contract/CONTRACT.md): pv_program_open() reads the
 *     PIPEVISOR_* environment, connects DATA, binds OUTPUT, says hello on CONFIG and applies the
 *     initial configuration through your callback; pv_program_next() hands you the next decoded
 *     bsread message while it answers live configuration updates and sends status in between;
 *     pv_send() encodes and sends one output message without blocking; pv_log() ships a
 *     structured log record; pv_program_close() closes everything. SIGTERM and SIGINT make
 *     pv_program_next() return PV_NEXT_STOP after the current message: close and exit 0.
 *
 *  2. The bsread 1.1 codec (/work/shared/reference/bsread.md, checked against the Python codec
 *     in supervisor/contract/bsread/ and PSI's psi-bsread): pv_decoder and pv_encoder.
 *
 * Values are in numpy (C, row-major) order: shape[0] is the slowest dimension (rows of an
 * image), the reverse of the bsread data header, which lists the fastest dimension first.
 * Decoded values are always in the host's byte order (little-endian hosts only).
 *
 * Compression: bitshuffle_lz4 (and lz4) is NOT supported by this library. A message whose data
 * header or any channel is compressed is refused as malformed, with an error naming the channel.
 *
 * Threads: one pv_program, pv_decoder or pv_encoder belongs to one thread at a time.
 * Errors: functions return -1 (or NULL) and leave a message for a person in the object's error
 * text (pv_program_error, pv_decoder_error, pv_encoder_error), never crash on bad input.
 */
#ifndef PIPEVISOR_H
#define PIPEVISOR_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PV_CONTRACT_VERSION 1
#define PV_MAX_NDIM 8 /* the most dimensions a channel may have */

/* Exit codes with a meaning for the supervisor (CONTRACT.md §5). */
enum {
    PV_EXIT_OK = 0,              /* finished its work, or stopped by SIGTERM/SIGINT */
    PV_EXIT_FAILURE = 1,         /* any failure (bad environment, a socket that cannot bind) */
    PV_EXIT_PROCESSING_ERROR = 2,/* a processing error with abort_on_error set */
    PV_EXIT_CONFIG_ERROR = 3,    /* the initial configuration was refused */
    PV_EXIT_LOAD_ERROR = 4,      /* the user code could not be loaded */
};

/* ------------------------------------------------------------------------------------------ */
/* Types                                                                                       */

/* The bsread type table (bsread.md §1.12). */
typedef enum pv_type {
    PV_TYPE_BOOL = 0, /* one byte, 0 or 1 */
    PV_TYPE_INT8,
    PV_TYPE_UINT8,
    PV_TYPE_INT16,
    PV_TYPE_UINT16,
    PV_TYPE_INT32,
    PV_TYPE_UINT32,
    PV_TYPE_INT64,
    PV_TYPE_UINT64,
    PV_TYPE_FLOAT32,
    PV_TYPE_FLOAT64,
    PV_TYPE_STRING, /* UTF-8 bytes, no terminator on the wire */
    PV_TYPE_COUNT_
} pv_type;

/* Bytes of one element (1 for bool and string), 0 for an invalid type. */
size_t pv_type_size(pv_type type);
/* The bsread name ("uint16"), or NULL for an invalid type. */
const char *pv_type_name(pv_type type);
/* The type of a bsread name, case-insensitive: 0, or -1 when the name is unknown. */
int pv_type_parse(const char *name, pv_type *type);

/* ------------------------------------------------------------------------------------------ */
/* Decoding                                                                                    */

/* One frame of a received multipart message. */
typedef struct pv_frame {
    const void *data;
    size_t size;
} pv_frame;

/* One channel of a decoded message. */
typedef struct pv_channel {
    const char *name;            /* NUL-terminated, owned by the decoder */
    pv_type type;
    int ndim;                    /* 0..PV_MAX_NDIM; a [1]-shaped scalar has ndim 1, shape {1} */
    int64_t shape[PV_MAX_NDIM];  /* numpy order: shape[0] rows, shape[1] columns of an image */
    size_t count;                /* elements: the product of shape */
    const void *data;            /* the value in host byte order, suitably aligned; NULL when
                                    missing. Points into the received frame when it could (no
                                    copy), else into the decoder's memory. Strings are
                                    NUL-terminated copies of valid UTF-8. */
    size_t nbytes;               /* bytes of the value (for strings: without the terminator) */
    int missing;                 /* 1: the value frame was empty (bsread's None) */
    int has_timestamp;           /* 0: the timestamp frame was empty */
    int64_t timestamp_sec;       /* the channel's timestamp (the global one when its frame */
    int64_t timestamp_ns;        /* was neither 16 nor 0 bytes long) */
} pv_channel;

/* One decoded data message. Valid until the next pv_decode (or pv_program_next) call, and as
 * long as the frames it was decoded from. */
typedef struct pv_message {
    uint64_t pulse_id;
    int64_t timestamp_sec;       /* global_timestamp; 0, 0 when the main header has none */
    int64_t timestamp_ns;
    const char *hash;            /* the data header's hash as received */
    size_t nchannels;
    const pv_channel *channels;  /* in data-header order */
    int format_changed;          /* 1 on the first message and whenever the header changes */
    size_t nbytes;               /* all frames together */
} pv_message;

typedef struct pv_decoder pv_decoder;

/* A decoder caching a few parsed data headers by hash; NULL when out of memory. */
pv_decoder *pv_decoder_new(void);
void pv_decoder_free(pv_decoder *decoder);

/* Decode one multipart message.
 * Returns 1 with *message filled for a data message, 0 for a message that is not bsread data
 * (htype not starting with "bsr_m", e.g. bsr_stop-1.0: skip it), -1 for a malformed message
 * (pv_decoder_error says why). The hash is a cache key, not verified (as PSI's receivers). */
int pv_decode(pv_decoder *decoder, const pv_frame *frames, size_t nframes, pv_message *message);
/* The reason of the last failure, for a person ("" when none). */
const char *pv_decoder_error(const pv_decoder *decoder);
/* The channel of that name in a decoded message, or NULL. */
const pv_channel *pv_message_channel(const pv_message *message, const char *name);

/* ------------------------------------------------------------------------------------------ */
/* Encoding                                                                                    */

/* One channel to send. */
typedef struct pv_value {
    const char *name;
    pv_type type;
    int ndim;                    /* 0 (scalar) .. PV_MAX_NDIM; ignored for strings */
    int64_t shape[PV_MAX_NDIM];  /* numpy order; the data header gets the reverse */
    const void *data;            /* C-ordered, host byte order; NULL: a missing value */
    size_t nbytes;               /* must be the product of shape times the type size (any size
                                    for a string; 0 sends a missing value) */
    /* Optional zero-copy: when set, the frame references data, and ZMQ calls
     * free_fn(data, hint) (from its I/O thread) once it is done with it. Otherwise the bytes are
     * copied at pv_encode and data may change as soon as it returns. */
    void (*free_fn)(void *data, void *hint);
    void *hint;
} pv_value;

typedef struct pv_encoder pv_encoder;

pv_encoder *pv_encoder_new(void);
void pv_encoder_free(pv_encoder *encoder);

/* Encode one message: the main header, the data header (re-used, with its MD5 hash, while the
 * channel names, types and shapes stay the same), and a value and a 16-byte timestamp frame
 * (sec, ns: int64 little-endian) per channel, or two empty frames for a missing value.
 * 0 on success: the frames wait in the encoder for pv_encoder_send or pv_encoder_frame; -1 on
 * an invalid value, pulse id or timestamp (ns must be 0..999999999). */
int pv_encode(pv_encoder *encoder, const pv_value *values, size_t nvalues, uint64_t pulse_id,
              int64_t sec, int64_t ns);
/* Frames of the last pv_encode, not yet sent. */
size_t pv_encoder_nframes(const pv_encoder *encoder);
pv_frame pv_encoder_frame(const pv_encoder *encoder, size_t index);
/* Send the encoded frames on a ZMQ socket with the given flags (e.g. ZMQ_DONTWAIT) and release
 * them. Returns the bytes sent, 0 when the socket could not take the message now (EAGAIN: it
 * was dropped), -1 on another error. */
long long pv_encoder_send(pv_encoder *encoder, void *socket, int flags);
/* The data header's hash (32 hex digits) of the last message encoded, "" before the first. */
const char *pv_encoder_hash(const pv_encoder *encoder);
const char *pv_encoder_error(const pv_encoder *encoder);

/* ------------------------------------------------------------------------------------------ */
/* The program contract                                                                        */

typedef struct pv_program pv_program;

/* Validate and apply a configuration (the whole JSON object, never a delta), between two
 * messages. Return 0 to accept it, or pv_refuse(...) to keep the old one: the message reaches
 * the person who asked, so quote the bad key and value. The object is borrowed: json_incref
 * what you keep. */
typedef int (*pv_configure_fn)(pv_program *program, const json_t *config, void *user);

typedef struct pv_options {
    const char *program;         /* free text in hello, e.g. "threshold_projections 1.0" */
    pv_configure_fn configure;   /* NULL: every configuration is accepted */
    void *user;                  /* passed to configure */
    double hello_timeout;        /* seconds to wait for the initial config; <= 0: 5 s */
} pv_options;

/* Start: read the environment, make the sockets, install the SIGTERM/SIGINT handlers, say
 * hello, apply the initial configuration (the supervisor's answer, or PIPEVISOR_CONFIG when
 * none comes in time or CONFIG is unset) and send ready.
 * Without PIPEVISOR_INSTANCE the program runs standalone: no CONFIG or LOG channel, logs on
 * stderr, the configuration from PIPEVISOR_CONFIG (default {}).
 * Returns NULL on failure, with *exit_code set to the code to exit with (PV_EXIT_CONFIG_ERROR
 * when the initial configuration was refused, PV_EXIT_FAILURE otherwise) and the reason on
 * stderr and LOG. */
pv_program *pv_program_open(const pv_options *options, int *exit_code);

enum {
    PV_NEXT_MESSAGE = 1, /* *message is the next decoded input message */
    PV_NEXT_TIMEOUT = 0, /* nothing within timeout_ms (a source program sends now) */
    PV_NEXT_STOP = -1,   /* SIGTERM/SIGINT or pv_program_stop: close and exit 0 */
};

/* Wait up to timeout_ms (-1: forever) for the next data message while handling configuration
 * updates and status. Malformed input is counted (status.malformed), logged at a limited rate
 * and skipped. *message stays valid until the next call or pv_program_close. The time between
 * a PV_NEXT_MESSAGE return and the next call counts as processing time. */
int pv_program_next(pv_program *program, const pv_message **message, int timeout_ms);

/* Encode and send one output message without blocking (see pv_encode for the values).
 * 0 sent, 1 dropped (no peer or queue full: counted as output_drops), -1 invalid values
 * (pv_program_error says why). */
int pv_send(pv_program *program, const pv_value *values, size_t nvalues, uint64_t pulse_id,
            int64_t sec, int64_t ns);

/* Describe a channel of the current input message as a value to send, without copying it: the
 * output frame shares the received frame's memory (a reference held until ZMQ has sent it), so
 * forwarding an image costs no memcpy. Returns 1 when the value is shared that way, 0 when it
 * will be copied by pv_send (a missing value, a string, or bytes the decoder had to swap or
 * realign). Either way *value is ready for pv_send; give it to exactly one pv_send (or
 * pv_encode), which takes the hold. */
int pv_program_hold(pv_program *program, const pv_channel *channel, pv_value *value);

/* Close the sockets after a last status, restore the signal handlers and free everything. */
void pv_program_close(pv_program *program);

/* Ask pv_program_next to return PV_NEXT_STOP (a finite source that is done). */
void pv_program_stop(pv_program *program);

/* Log levels. */
typedef enum pv_level {
    PV_LOG_DEBUG = 10,
    PV_LOG_INFO = 20,
    PV_LOG_WARNING = 30,
    PV_LOG_ERROR = 40,
    PV_LOG_CRITICAL = 50,
} pv_level;

/* A structured log record on LOG (or a line on stderr when LOG is unset), sent without
 * blocking; a record that cannot leave is counted in log_drops. */
void pv_log(pv_program *program, pv_level level, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with structured context: fields is a JSON object or NULL, and is stolen. */
void pv_log_fields(pv_program *program, pv_level level, json_t *fields, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

/* For the configure callback: record why a configuration is refused; returns -1. */
int pv_refuse(pv_program *program, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* Count a processing error (status.errors, status.last_error) and log it, at a limited rate. */
void pv_error(pv_program *program, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* The configuration in force (borrowed), the instance name and the run number. */
const json_t *pv_program_config(const pv_program *program);
const char *pv_program_instance(const pv_program *program);
long long pv_program_run(const pv_program *program);
/* The last API failure (pv_send), for a person. */
const char *pv_program_error(const pv_program *program);

#ifdef __cplusplus
}
#endif

#endif /* PIPEVISOR_H */

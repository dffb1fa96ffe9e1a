/* The program side of the contract (supervisor/contract/CONTRACT.md): environment, sockets,
 * hello and configuration, status, logs and signals. The Python twin is
 * supervisor/contract/program.py; the JSON fields are those of supervisor/contract/messages.py. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "internal.h"

#define DATA_HWM 4           /* a few messages of backlog; older input waits in the sender */
#define OUTPUT_HWM 10        /* as PSI's senders */
#define CONFIG_HWM 100
#define LOG_HWM 1000
#define CHANNEL_LINGER_MS 500 /* lets a last status, ack or log record leave at exit */
#define DEFAULT_OUTPUT_WAIT 1.0 /* seconds, as the Python runner's output_wait */
#define IO_THREADS 2          /* ZMQ I/O threads: DATA and OUTPUT move bytes on two cores */
#define MAX_FRAMES (1u << 20) /* a message with more frames is malformed (2 + 2N, N channels) */
#define LOG_WINDOW_S 1.0      /* malformed-input and error lines: at most a few a second */
#define LOG_LINES_PER_WINDOW 3
#define LAST_ERROR_MAX 2000   /* Status.last_error's max_length */

/* The only global state: set by the SIGTERM/SIGINT handler, read by pv_program_next. */
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    if (stop_signal) { /* a second signal: stop now */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
}

typedef struct limiter {
    double window; /* start of the current window */
    int lines;     /* lines sent in it */
    unsigned long long suppressed;
} limiter;

struct pv_program {
    void *context, *data, *output, *config, *log;
    char *instance;
    long long run;
    char *program;
    char *logger;
    char *output_url;
    pv_configure_fn configure;
    void *user;
    json_t *config_json;
    char *refusal;
    double status_interval, next_status;
    unsigned long long messages_in, bytes_in, messages_out, bytes_out, drops, output_drops,
        errors, malformed, log_drops;
    double time_sum, time_max, processing_since;
    unsigned long long time_count;
    int has_pulse;
    uint64_t last_pulse_id;
    char *last_error;
    limiter malformed_log, error_log;
    pv_decoder *decoder;
    pv_encoder *encoder;
    zmq_msg_t *frames;
    pv_frame *views;
    size_t nframes, frames_size;
    pv_message message;
    int stop;
    int ready; /* ready was sent: close sends a last status */
    int push_output;   /* OUTPUT is a PUSH: a connected consumer gets backpressure */
    void *monitor;     /* PAIR reading OUTPUT's monitor events: the connected clients */
    int *peers;        /* file descriptors of the connected clients */
    size_t npeers, peers_size;
    double output_wait; /* seconds a PUSH waits for a connected consumer ("output_wait") */
    struct sigaction old_term, old_int;
    char error[PV_ERROR_SIZE];
};

static void update_clients(pv_program *p);

static double monotonic(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double wall_time(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static const char *level_name(pv_level level)
{
    if (level >= PV_LOG_CRITICAL)
        return "critical";
    if (level >= PV_LOG_ERROR)
        return "error";
    if (level >= PV_LOG_WARNING)
        return "warning";
    if (level >= PV_LOG_INFO)
        return "info";
    return "debug";
}

static json_t *json_text(const char *text)
{
    char *copy = strdup(text != NULL ? text : "");
    if (copy == NULL)
        return NULL;
    pv_utf8_repair(copy);
    json_t *value = json_string(copy);
    free(copy);
    return value;
}

/* Send one JSON object on CONFIG without blocking; steals message. */
static void send_control(pv_program *p, json_t *message)
{
    if (message == NULL)
        return;
    if (p->config != NULL) {
        json_object_set_new(message, "instance", json_text(p->instance));
        json_object_set_new(message, "run", json_integer(p->run));
        char *text = json_dumps(message, JSON_COMPACT);
        if (text != NULL)
            zmq_send(p->config, text, strlen(text), ZMQ_DONTWAIT); /* full: the peer is gone */
        free(text);
    }
    json_decref(message);
}

static void log_record(pv_program *p, pv_level level, const char *logger, json_t *fields,
                       const char *message)
{
    if (p->log == NULL) {
        fprintf(stderr, "%s %s: %s\n", level_name(level), logger, message);
        json_decref(fields);
        return;
    }
    if (!json_is_object(fields)) {
        json_decref(fields);
        fields = json_object();
    }
    json_t *record = json_pack("{s:s, s:o, s:I, s:f, s:s, s:o, s:o, s:o, s:n}", "kind", "log",
                               "instance", json_text(p->instance), "run", (json_int_t)p->run,
                               "time", wall_time(), "level", level_name(level), "logger",
                               json_text(logger), "message", json_text(message), "fields",
                               fields, "exc");
    char *text = record != NULL ? json_dumps(record, JSON_COMPACT) : NULL;
    if (text == NULL || zmq_send(p->log, text, strlen(text), ZMQ_DONTWAIT) < 0)
        p->log_drops++;
    free(text);
    json_decref(record);
}

static void vlog(pv_program *p, pv_level level, const char *logger, json_t *fields,
                 const char *format, va_list args)
{
    char *message = pv_vformat(format, args);
    log_record(p, level, logger, fields, message != NULL ? message : format);
    free(message);
}

static void library_log(pv_program *p, pv_level level, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static void library_log(pv_program *p, pv_level level, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vlog(p, level, "pipevisor.c", NULL, format, args);
    va_end(args);
}

void pv_log(pv_program *p, pv_level level, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vlog(p, level, p->logger, NULL, format, args);
    va_end(args);
}

void pv_log_fields(pv_program *p, pv_level level, json_t *fields, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vlog(p, level, p->logger, fields, format, args);
    va_end(args);
}

int pv_refuse(pv_program *p, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    free(p->refusal);
    p->refusal = pv_vformat(format, args);
    va_end(args);
    return -1;
}

/* 1 when a rate-limited line may go out now (a few a second, so that distinct reasons all show
 * at once); counts the ones held back. */
static int limiter_allow(limiter *l, unsigned long long *suppressed)
{
    double now = monotonic();
    if (now >= l->window + LOG_WINDOW_S) {
        l->window = now;
        l->lines = 0;
    }
    if (l->lines >= LOG_LINES_PER_WINDOW) {
        l->suppressed++;
        return 0;
    }
    l->lines++;
    *suppressed = l->suppressed;
    l->suppressed = 0;
    return 1;
}

void pv_error(pv_program *p, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    char *message = pv_vformat(format, args);
    va_end(args);
    p->errors++;
    if (message == NULL)
        return;
    size_t size = strlen(message);
    if (size > LAST_ERROR_MAX) { /* cut on a character boundary: at most 2000 characters */
        size = LAST_ERROR_MAX;
        while (size > 0 && ((unsigned char)message[size] & 0xC0) == 0x80)
            size--;
        message[size] = '\0';
    }
    unsigned long long suppressed;
    if (limiter_allow(&p->error_log, &suppressed))
        log_record(p, PV_LOG_ERROR, p->logger,
                   json_pack("{s:I}", "suppressed", (json_int_t)suppressed), message);
    free(p->last_error);
    p->last_error = message;
}

static void send_status(pv_program *p)
{
    double avg = p->time_count ? p->time_sum / (double)p->time_count : 0.0;
    json_t *status = json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:n}", "kind", "status",
        "messages_in", (json_int_t)p->messages_in, "bytes_in", (json_int_t)p->bytes_in,
        "messages_out", (json_int_t)p->messages_out, "bytes_out", (json_int_t)p->bytes_out,
        "drops", (json_int_t)p->drops, "output_drops", (json_int_t)p->output_drops, "errors",
        (json_int_t)p->errors, "malformed", (json_int_t)p->malformed, "log_drops",
        (json_int_t)p->log_drops, "processing_time_avg", avg, "processing_time_max",
        p->time_max, "clients");
    if (status != NULL && p->monitor != NULL) {
        update_clients(p);
        json_object_set_new(status, "clients", json_integer((json_int_t)p->npeers));
    }
    if (status != NULL) {
        json_object_set_new(status, "last_pulse_id",
                            p->has_pulse ? json_integer((json_int_t)p->last_pulse_id)
                                         : json_null());
        json_object_set_new(status, "last_error",
                            p->last_error ? json_text(p->last_error) : json_null());
    }
    send_control(p, status);
    p->time_sum = p->time_max = 0.0;
    p->time_count = 0;
}

/* Run the user's callback; 0 when the configuration is accepted (and now in force). */
static int apply_config(pv_program *p, json_t *config)
{
    free(p->refusal);
    p->refusal = NULL;
    /* The library's own key, as the Python runner's option of the same name. */
    double output_wait = DEFAULT_OUTPUT_WAIT;
    const json_t *wait = json_object_get(config, "output_wait");
    if (wait != NULL && !json_is_null(wait)) {
        output_wait = json_is_number(wait) ? json_number_value(wait) : -1;
        if (!(output_wait >= 0) || output_wait > 3600) {
            char *text = json_dumps(wait, JSON_ENCODE_ANY | JSON_COMPACT);
            pv_refuse(p, "config key 'output_wait' must be a number of seconds from 0 to 3600, "
                         "got %.200s", text != NULL ? text : "?");
            free(text);
            return -1;
        }
    }
    if (p->configure != NULL && p->configure(p, config, p->user) != 0) {
        if (p->refusal == NULL)
            p->refusal = strdup("the program refused the configuration");
        return -1;
    }
    json_incref(config);
    json_decref(p->config_json);
    p->config_json = config;
    p->output_wait = output_wait;
    return 0;
}

/* A config message's seq and config, or -1 when the frame is not one (logged). */
static int parse_update(pv_program *p, const zmq_msg_t *frame, json_int_t *seq, json_t **config)
{
    json_error_t err;
    json_t *root = json_loadb(zmq_msg_data((zmq_msg_t *)frame), zmq_msg_size((zmq_msg_t *)frame),
                              0, &err);
    const char *kind = json_string_value(json_object_get(root, "kind"));
    json_t *jseq = json_object_get(root, "seq");
    json_t *jconfig = json_object_get(root, "config");
    if (kind == NULL || strcmp(kind, "config") != 0 || !json_is_integer(jseq) ||
        json_integer_value(jseq) < 0 || !json_is_object(jconfig)) {
        library_log(p, PV_LOG_WARNING, "ignored a CONFIG frame that is not a config message");
        json_decref(root);
        return -1;
    }
    *seq = json_integer_value(jseq);
    *config = json_incref(jconfig);
    json_decref(root);
    return 0;
}

/* Receive one CONFIG message (the last frame is the JSON, whatever the envelope). */
static int receive_update(pv_program *p, json_int_t *seq, json_t **config)
{
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    int result = -2; /* nothing waiting */
    while (zmq_msg_recv(&frame, p->config, ZMQ_DONTWAIT) >= 0) {
        if (!zmq_msg_more(&frame)) {
            result = parse_update(p, &frame, seq, config);
            break;
        }
    }
    zmq_msg_close(&frame);
    return result;
}

static void answer_update(pv_program *p, json_int_t seq, json_t *config)
{
    if (apply_config(p, config) == 0) {
        send_control(p, json_pack("{s:s, s:I}", "kind", "config_ack", "seq", seq));
        library_log(p, PV_LOG_INFO, "configuration %lld applied", (long long)seq);
    } else {
        send_control(p, json_pack("{s:s, s:I, s:o}", "kind", "config_error", "seq", seq,
                                  "message", json_text(p->refusal)));
        library_log(p, PV_LOG_WARNING, "configuration %lld refused: %s", (long long)seq,
                    p->refusal);
    }
    json_decref(config);
}

static void handle_updates(pv_program *p)
{
    json_int_t seq;
    json_t *config;
    int rc;
    while ((rc = receive_update(p, &seq, &config)) != -2)
        if (rc == 0)
            answer_update(p, seq, config);
}

static const char *env(const char *name)
{
    const char *value = getenv(name);
    return value != NULL && value[0] != '\0' ? value : NULL;
}

/* Watch a socket that is about to bind, so no early client is missed. 0, or -1. */
static int monitor_clients(pv_program *p, void *socket)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://pipevisor-output-monitor-%p", (void *)p);
    if (zmq_socket_monitor(socket, endpoint,
                           ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED) != 0)
        return -1;
    p->monitor = zmq_socket(p->context, ZMQ_PAIR);
    if (p->monitor == NULL || zmq_connect(p->monitor, endpoint) != 0) {
        if (p->monitor != NULL)
            zmq_close(p->monitor);
        p->monitor = NULL;
        zmq_socket_monitor(socket, NULL, 0);
        return -1;
    }
    int linger = 0;
    zmq_setsockopt(p->monitor, ZMQ_LINGER, &linger, sizeof linger);
    return 0;
}

/* Read the pending monitor events; never blocks. Clients are tracked by file descriptor, so a
 * disconnect never counts twice; the listener closing forgets them all. */
static void update_clients(pv_program *p)
{
    if (p->monitor == NULL)
        return;
    for (;;) {
        zmq_msg_t event, address;
        zmq_msg_init(&event);
        if (zmq_msg_recv(&event, p->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&event);
            return;
        }
        uint16_t kind = 0;
        uint32_t fd = 0;
        if (zmq_msg_size(&event) >= 6) {
            memcpy(&kind, zmq_msg_data(&event), 2);
            memcpy(&fd, (const char *)zmq_msg_data(&event) + 2, 4);
        }
        int more = zmq_msg_more(&event);
        zmq_msg_close(&event);
        if (more) { /* the endpoint frame */
            zmq_msg_init(&address);
            zmq_msg_recv(&address, p->monitor, 0);
            zmq_msg_close(&address);
        }
        if (kind == ZMQ_EVENT_ACCEPTED) {
            if (p->npeers == p->peers_size) {
                size_t size = p->peers_size ? 2 * p->peers_size : 8;
                int *peers = realloc(p->peers, size * sizeof *peers);
                if (peers == NULL)
                    continue; /* not counted: only the wait and the status see it */
                p->peers = peers;
                p->peers_size = size;
            }
            p->peers[p->npeers++] = (int)fd;
        } else if (kind == ZMQ_EVENT_DISCONNECTED) {
            for (size_t i = 0; i < p->npeers; i++)
                if (p->peers[i] == (int)fd) {
                    p->peers[i] = p->peers[--p->npeers];
                    break;
                }
        } else if (kind == ZMQ_EVENT_CLOSED) {
            p->npeers = 0;
        }
    }
}

static void *open_socket(pv_program *p, int type, const char *url, int bind, int hwm_option,
                         int hwm, int linger)
{
    void *socket = zmq_socket(p->context, type);
    if (socket == NULL) {
        pv_set_error(p->error, "cannot make a socket: %s", zmq_strerror(errno));
        return NULL;
    }
    zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(socket, hwm_option, &hwm, sizeof hwm);
    if (type == ZMQ_SUB)
        zmq_setsockopt(socket, ZMQ_SUBSCRIBE, "", 0);
    if (bind && monitor_clients(p, socket) != 0) {
        pv_set_error(p->error, "cannot monitor the clients of %s: %s", url, zmq_strerror(errno));
        zmq_close(socket);
        return NULL;
    }
    if ((bind ? zmq_bind(socket, url) : zmq_connect(socket, url)) != 0) {
        pv_set_error(p->error, "cannot %s %s: %s", bind ? "bind" : "connect to", url,
                     zmq_strerror(errno));
        zmq_close(socket);
        return NULL;
    }
    return socket;
}

/* A fan-in (the entry's input is a list): DATA also connects to every other input, and ZMQ
 * reads them fairly. The order across inputs is arrival order: unlike the Python runner, the
 * library does not put pulses back in pulse-id order. 0, or -1 with p->error set. */
static int connect_gathered(pv_program *p, int data_type)
{
    const char *text = env("PIPEVISOR_GATHER");
    if (text == NULL)
        return 0;
    json_error_t err;
    json_t *inputs = json_loads(text, 0, &err);
    if (!json_is_array(inputs)) {
        pv_set_error(p->error, "PIPEVISOR_GATHER is not a JSON list: %.200s", text);
        json_decref(inputs);
        return -1;
    }
    size_t index;
    json_t *input;
    int result = 0;
    json_array_foreach(inputs, index, input) {
        const char *url = json_string_value(json_object_get(input, "url"));
        const char *mode = json_string_value(json_object_get(input, "mode"));
        int type = mode != NULL && strcmp(mode, "PULL") == 0 ? ZMQ_PULL : ZMQ_SUB;
        if (url == NULL || type != data_type) {
            pv_set_error(p->error, "PIPEVISOR_GATHER input %zu: %s", index,
                         url == NULL ? "no url" : "its mode differs from PIPEVISOR_DATA_MODE");
            result = -1;
            break;
        }
        if (zmq_connect(p->data, url) != 0) {
            pv_set_error(p->error, "cannot connect to %s: %s", url, zmq_strerror(errno));
            result = -1;
            break;
        }
    }
    json_decref(inputs);
    return result;
}

/* The environment and the sockets; 0, or -1 with p->error set. */
static int open_contract(pv_program *p, json_t **initial)
{
    const char *instance = env("PIPEVISOR_INSTANCE");
    const char *text;
    p->instance = strdup(instance != NULL ? instance : "standalone");
    if ((text = env("PIPEVISOR_RUN")) != NULL) {
        char *end;
        errno = 0;
        p->run = strtoll(text, &end, 10);
        if (errno != 0 || *end != '\0') {
            pv_set_error(p->error, "PIPEVISOR_RUN must be an integer, got '%s'", text);
            return -1;
        }
    }
    p->status_interval = 1.0;
    if ((text = env("PIPEVISOR_STATUS_INTERVAL")) != NULL) {
        char *end;
        p->status_interval = strtod(text, &end);
        if (*end != '\0' || !(p->status_interval > 0) || !isfinite(p->status_interval)) {
            pv_set_error(p->error, "PIPEVISOR_STATUS_INTERVAL must be seconds > 0, got '%s'",
                         text);
            return -1;
        }
    }
    const char *data_mode = env("PIPEVISOR_DATA_MODE");
    const char *output_mode = env("PIPEVISOR_OUTPUT_MODE");
    int data_type = ZMQ_SUB, output_type = ZMQ_PUB;
    if (data_mode != NULL && strcmp(data_mode, "PULL") == 0)
        data_type = ZMQ_PULL;
    else if (data_mode != NULL && strcmp(data_mode, "SUB") != 0) {
        pv_set_error(p->error, "PIPEVISOR_DATA_MODE must be SUB or PULL, got '%s'", data_mode);
        return -1;
    }
    if (output_mode != NULL && strcmp(output_mode, "PUSH") == 0)
        output_type = ZMQ_PUSH;
    else if (output_mode != NULL && strcmp(output_mode, "PUB") != 0) {
        pv_set_error(p->error, "PIPEVISOR_OUTPUT_MODE must be PUB or PUSH, got '%s'",
                     output_mode);
        return -1;
    }
    p->context = zmq_ctx_new();
    if (p->context == NULL || p->instance == NULL) {
        pv_set_error(p->error, "cannot make a ZMQ context");
        return -1;
    }
    /* DATA and OUTPUT each get an I/O thread, as in the Python runner: a frame is received
     * while the previous one is sent, on two cores. Set before the first socket. */
    zmq_ctx_set(p->context, ZMQ_IO_THREADS, IO_THREADS);
    if (instance != NULL) { /* standalone programs have no supervisor to talk to */
        if ((text = env("PIPEVISOR_LOG_URL")) != NULL &&
            (p->log = open_socket(p, ZMQ_PUSH, text, 0, ZMQ_SNDHWM, LOG_HWM,
                                  CHANNEL_LINGER_MS)) == NULL)
            return -1;
        if ((text = env("PIPEVISOR_CONFIG_URL")) != NULL &&
            (p->config = open_socket(p, ZMQ_DEALER, text, 0, ZMQ_RCVHWM, CONFIG_HWM,
                                     CHANNEL_LINGER_MS)) == NULL)
            return -1;
    }
    if ((text = env("PIPEVISOR_DATA_URL")) != NULL &&
        (p->data = open_socket(p, data_type, text, 0, ZMQ_RCVHWM, DATA_HWM, 0)) == NULL)
        return -1;
    if (p->data != NULL && connect_gathered(p, data_type) != 0)
        return -1;
    if ((text = env("PIPEVISOR_OUTPUT_URL")) != NULL) {
        if ((p->output = open_socket(p, output_type, text, 1, ZMQ_SNDHWM, OUTPUT_HWM, 0)) == NULL)
            return -1;
        p->push_output = output_type == ZMQ_PUSH;
        char bound[1024];
        size_t size = sizeof bound;
        if (zmq_getsockopt(p->output, ZMQ_LAST_ENDPOINT, bound, &size) != 0)
            snprintf(bound, sizeof bound, "%s", text);
        p->output_url = strdup(bound); /* the real port when the URL asked for port 0 */
    }
    text = env("PIPEVISOR_CONFIG");
    json_error_t err;
    *initial = text != NULL ? json_loads(text, 0, &err) : json_object();
    if (!json_is_object(*initial)) {
        pv_set_error(p->error, "PIPEVISOR_CONFIG is not a JSON object: %.200s", text);
        json_decref(*initial);
        *initial = NULL;
        return -2;
    }
    return 0;
}

/* Say hello and wait for the supervisor's configuration; NULL keeps the one of the env. */
static json_t *hello(pv_program *p, double timeout, json_int_t *seq)
{
    send_control(p, json_pack("{s:s, s:I, s:i, s:o}", "kind", "hello", "pid",
                              (json_int_t)getpid(), "contract", PV_CONTRACT_VERSION, "program",
                              json_text(p->program)));
    double deadline = monotonic() + timeout;
    for (;;) {
        double left = deadline - monotonic();
        if (left <= 0 || stop_signal)
            break;
        zmq_pollitem_t item = {p->config, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)(left * 1000) + 1) <= 0)
            continue;
        json_t *config;
        int rc = receive_update(p, seq, &config);
        if (rc == 0)
            return config;
    }
    if (!stop_signal)
        library_log(p, PV_LOG_WARNING,
                    "no configuration from the supervisor within %g s: going on with the one in "
                    "the environment",
                    timeout);
    return NULL;
}

static void install_signals(pv_program *p)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal; /* no SA_RESTART: a blocked zmq_poll returns EINTR */
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, &p->old_term);
    sigaction(SIGINT, &action, &p->old_int);
}

pv_program *pv_program_open(const pv_options *options, int *exit_code)
{
    *exit_code = PV_EXIT_FAILURE;
    pv_program *p = calloc(1, sizeof(pv_program));
    if (p == NULL) {
        fprintf(stderr, "pipevisor: out of memory\n");
        return NULL;
    }
    install_signals(p);
    const char *program = options != NULL && options->program ? options->program : "";
    p->program = strdup(program);
    p->logger = strndup(program, strcspn(program, " "));
    if (options != NULL) {
        p->configure = options->configure;
        p->user = options->user;
    }
    p->decoder = pv_decoder_new();
    p->encoder = pv_encoder_new();
    json_t *initial = NULL;
    int rc = -1;
    if (p->program && p->logger && p->decoder && p->encoder)
        rc = open_contract(p, &initial);
    else
        pv_set_error(p->error, "out of memory");
    if (rc < 0) {
        if (rc == -2)
            *exit_code = PV_EXIT_CONFIG_ERROR;
        fprintf(stderr, "pipevisor: %s\n", p->error);
        if (p->log != NULL)
            library_log(p, PV_LOG_CRITICAL, "%s", p->error);
        pv_program_close(p);
        return NULL;
    }
    json_int_t seq = -1;
    json_t *update = NULL;
    if (p->config != NULL) {
        double timeout = options != NULL && options->hello_timeout > 0 ? options->hello_timeout
                                                                       : 5.0;
        update = hello(p, timeout, &seq);
    }
    if (stop_signal) {
        json_decref(update);
        json_decref(initial);
        *exit_code = PV_EXIT_OK;
        pv_program_close(p);
        return NULL;
    }
    json_t *config = update != NULL ? update : initial;
    if (apply_config(p, config) < 0) {
        if (update != NULL)
            send_control(p, json_pack("{s:s, s:I, s:o}", "kind", "config_error", "seq", seq,
                                      "message", json_text(p->refusal)));
        library_log(p, PV_LOG_CRITICAL, "the initial configuration was refused: %s", p->refusal);
        if (p->log != NULL)
            fprintf(stderr, "pipevisor: the initial configuration was refused: %s\n", p->refusal);
        json_decref(update);
        json_decref(initial);
        *exit_code = PV_EXIT_CONFIG_ERROR;
        pv_program_close(p);
        return NULL;
    }
    if (update != NULL)
        send_control(p, json_pack("{s:s, s:I}", "kind", "config_ack", "seq", seq));
    json_decref(update);
    json_decref(initial);
    send_control(p, json_pack("{s:s, s:o}", "kind", "ready", "output_url",
                              p->output_url ? json_text(p->output_url) : json_null()));
    p->ready = 1;
    p->next_status = monotonic() + p->status_interval;
    *exit_code = PV_EXIT_OK;
    return p;
}

static void release_input(pv_program *p)
{
    for (size_t i = 0; i < p->nframes; i++)
        zmq_msg_close(&p->frames[i]);
    p->nframes = 0;
}

/* Receive every frame of one DATA message; 0, or -1 when nothing was waiting. */
static int receive_input(pv_program *p)
{
    for (;;) {
        if (p->nframes == p->frames_size) {
            size_t size = p->frames_size ? 2 * p->frames_size : 16;
            zmq_msg_t *frames = realloc(p->frames, size * sizeof(zmq_msg_t));
            if (frames != NULL)
                p->frames = frames;
            pv_frame *views = realloc(p->views, size * sizeof(pv_frame));
            if (views != NULL)
                p->views = views;
            if (frames == NULL || views == NULL)
                return -1;
            p->frames_size = size;
        }
        zmq_msg_t *frame = &p->frames[p->nframes];
        zmq_msg_init(frame);
        if (zmq_msg_recv(frame, p->data, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(frame);
            return p->nframes ? 0 : -1;
        }
        p->nframes++;
        p->bytes_in += zmq_msg_size(frame);
        if (!zmq_msg_more(frame))
            return 0;
        if (p->nframes >= MAX_FRAMES) { /* keep the frame count bounded: drop the rest */
            zmq_msg_t rest;
            zmq_msg_init(&rest);
            while (zmq_msg_recv(&rest, p->data, 0) >= 0 && zmq_msg_more(&rest))
                p->bytes_in += zmq_msg_size(&rest);
            zmq_msg_close(&rest);
            return 0;
        }
    }
}

static void count_malformed(pv_program *p, const char *reason)
{
    p->malformed++;
    unsigned long long suppressed;
    if (limiter_allow(&p->malformed_log, &suppressed))
        log_record(p, PV_LOG_WARNING, "pipevisor.c",
                   json_pack("{s:I, s:I}", "malformed", (json_int_t)p->malformed, "suppressed",
                             (json_int_t)suppressed),
                   reason);
}

/* 1 when a data message is ready in p->message. */
static int handle_input(pv_program *p)
{
    if (receive_input(p) < 0)
        return 0;
    p->messages_in++;
    if (p->nframes >= MAX_FRAMES) {
        count_malformed(p, "malformed input dropped: too many frames");
        release_input(p);
        return 0;
    }
    for (size_t i = 0; i < p->nframes; i++) {
        p->views[i].data = zmq_msg_data(&p->frames[i]);
        p->views[i].size = zmq_msg_size(&p->frames[i]);
    }
    int rc = pv_decode(p->decoder, p->views, p->nframes, &p->message);
    if (rc < 0) {
        char reason[PV_ERROR_SIZE + 32];
        snprintf(reason, sizeof reason, "malformed input dropped: %s",
                 pv_decoder_error(p->decoder));
        count_malformed(p, reason);
    }
    if (rc <= 0) {
        release_input(p);
        return 0;
    }
    p->has_pulse = 1;
    p->last_pulse_id = p->message.pulse_id;
    return 1;
}

int pv_program_next(pv_program *p, const pv_message **message, int timeout_ms)
{
    double now = monotonic();
    if (p->processing_since > 0) {
        double spent = now - p->processing_since;
        p->time_sum += spent;
        p->time_count++;
        if (spent > p->time_max)
            p->time_max = spent;
        p->processing_since = 0;
    }
    release_input(p);
    *message = NULL;
    double deadline = timeout_ms < 0 ? INFINITY : now + timeout_ms * 1e-3;
    for (;;) {
        if (stop_signal || p->stop)
            return PV_NEXT_STOP;
        now = monotonic();
        if (now >= p->next_status) {
            send_status(p);
            p->next_status = now + p->status_interval;
        }
        double wait = fmin(deadline, p->next_status) - now;
        zmq_pollitem_t items[2];
        int n = 0;
        if (p->data != NULL)
            items[n++] = (zmq_pollitem_t){p->data, 0, ZMQ_POLLIN, 0};
        if (p->config != NULL)
            items[n++] = (zmq_pollitem_t){p->config, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(items, n, wait > 0 ? (long)ceil(wait * 1000) : 0);
        if (rc < 0 && errno != EINTR) {
            library_log(p, PV_LOG_ERROR, "polling failed: %s", zmq_strerror(errno));
            return PV_NEXT_STOP;
        }
        if (p->config != NULL)
            handle_updates(p); /* between two messages, never in the middle of one */
        if (p->data != NULL && handle_input(p)) {
            *message = &p->message;
            p->processing_since = monotonic();
            return PV_NEXT_MESSAGE;
        }
        if (monotonic() >= deadline)
            return PV_NEXT_TIMEOUT;
    }
}

int pv_send(pv_program *p, const pv_value *values, size_t n, uint64_t pulse_id, int64_t sec,
            int64_t ns)
{
    if (pv_encode(p->encoder, values, n, pulse_id, sec, ns) < 0) {
        pv_set_error(p->error, "%s", pv_encoder_error(p->encoder));
        return -1;
    }
    if (p->output == NULL) {
        pv_encoder_discard(p->encoder); /* no output configured: nothing to send to */
        return 0;
    }
    if (p->push_output && p->output_wait > 0) {
        /* A connected consumer (a writer) is lossless: wait for it, bounded so configuration
         * and status still flow. With no consumer nothing waits: never frozen. */
        update_clients(p);
        zmq_pollitem_t item = {p->output, 0, ZMQ_POLLOUT, 0};
        if (p->npeers > 0 && zmq_poll(&item, 1, 0) == 0)
            zmq_poll(&item, 1, (long)(p->output_wait * 1000));
    }
    long long sent = pv_encoder_send(p->encoder, p->output, ZMQ_DONTWAIT);
    if (sent < 0) {
        pv_set_error(p->error, "%s", pv_encoder_error(p->encoder));
        p->output_drops++;
        return 1;
    }
    if (sent == 0) {
        p->output_drops++;
        return 1;
    }
    p->messages_out++;
    p->bytes_out += (unsigned long long)sent;
    return 0;
}

/* The zero-copy hold on a received frame: ZMQ calls this from its I/O thread once the output
 * frame that referenced it has been sent. */
static void release_held(void *data, void *hint)
{
    (void)data;
    zmq_msg_close(hint);
    free(hint);
}

int pv_program_hold(pv_program *p, const pv_channel *channel, pv_value *value)
{
    memset(value, 0, sizeof *value);
    value->name = channel->name;
    value->type = channel->type;
    value->ndim = channel->ndim;
    memcpy(value->shape, channel->shape, sizeof value->shape);
    value->data = channel->data;
    value->nbytes = channel->data != NULL ? channel->nbytes : 0;
    if (channel->data == NULL || channel->type == PV_TYPE_STRING)
        return 0; /* missing, or a string: the encoder copies it */
    const char *at = channel->data;
    for (size_t i = 0; i < p->nframes; i++) {
        const char *start = p->views[i].data;
        if (at < start || at + channel->nbytes > start + p->views[i].size)
            continue;
        zmq_msg_t *held = malloc(sizeof *held);
        if (held == NULL)
            return 0; /* the encoder copies it */
        zmq_msg_init(held);
        if (zmq_msg_copy(held, &p->frames[i]) != 0) {
            zmq_msg_close(held);
            free(held);
            return 0;
        }
        value->data = (const char *)zmq_msg_data(held) + (at - start);
        value->free_fn = release_held;
        value->hint = held;
        return 1;
    }
    return 0; /* in the decoder's memory (swapped or realigned): the encoder copies it */
}

void pv_program_stop(pv_program *p)
{
    p->stop = 1;
}

void pv_program_close(pv_program *p)
{
    if (p == NULL)
        return;
    release_input(p);
    if (p->ready)
        send_status(p); /* the final counters */
    if (p->monitor != NULL) {
        zmq_socket_monitor(p->output, NULL, 0);
        zmq_close(p->monitor);
    }
    void *sockets[] = {p->data, p->output, p->config, p->log};
    for (size_t i = 0; i < sizeof sockets / sizeof *sockets; i++)
        if (sockets[i] != NULL)
            zmq_close(sockets[i]);
    if (p->context != NULL)
        zmq_ctx_term(p->context);
    sigaction(SIGTERM, &p->old_term, NULL);
    sigaction(SIGINT, &p->old_int, NULL);
    pv_decoder_free(p->decoder);
    pv_encoder_free(p->encoder);
    json_decref(p->config_json);
    free(p->frames);
    free(p->views);
    free(p->instance);
    free(p->program);
    free(p->logger);
    free(p->output_url);
    free(p->refusal);
    free(p->last_error);
    free(p->peers);
    free(p);
}

const json_t *pv_program_config(const pv_program *p)
{
    return p->config_json;
}

const char *pv_program_instance(const pv_program *p)
{
    return p->instance;
}

long long pv_program_run(const pv_program *p)
{
    return p->run;
}

const char *pv_program_error(const pv_program *p)
{
    return p->error;
}

/*
 * passthrough: forward every input message unchanged, without copying its values.
 *
 * The smallest useful pipevisor program in C, and the measure of what the library costs: each
 * channel of the input goes out with the same name, type, shape, pulse id and global timestamp,
 * its bytes shared with the received frame (pv_program_hold), so an image is never copied.
 * Build: make -C runners/c (build/passthrough).
 */
#include <stdlib.h>

#include "pipevisor.h"

int main(void)
{
    int exit_code;
    pv_options options = {.program = "passthrough (pipevisor C library)"};
    pv_program *program = pv_program_open(&options, &exit_code);
    if (program == NULL)
        return exit_code;
    pv_value *values = NULL;
    size_t capacity = 0;
    const pv_message *message;
    int next;
    while ((next = pv_program_next(program, &message, 1000)) != PV_NEXT_STOP) {
        if (next != PV_NEXT_MESSAGE)
            continue;
        if (message->nchannels > capacity) {
            pv_value *grown = realloc(values, message->nchannels * sizeof *grown);
            if (grown == NULL) {
                pv_error(program, "out of memory for %zu channels", message->nchannels);
                continue;
            }
            values = grown;
            capacity = message->nchannels;
        }
        for (size_t i = 0; i < message->nchannels; i++)
            pv_program_hold(program, &message->channels[i], &values[i]);
        if (pv_send(program, values, message->nchannels, message->pulse_id,
                    message->timestamp_sec, message->timestamp_ns) < 0)
            pv_error(program, "cannot forward pulse %llu: %s",
                     (unsigned long long)message->pulse_id, pv_program_error(program));
    }
    free(values);
    pv_program_close(program);
    return PV_EXIT_OK;
}

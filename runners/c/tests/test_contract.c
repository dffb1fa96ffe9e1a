/* The program contract without a supervisor: standalone start, refused configurations and their
 * exit codes, a bad environment, output drops without a peer, and stopping. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../pipevisor.h"
#include "check.h"

static int refuse_negative(pv_program *program, const json_t *config, void *user)
{
    (void)user;
    const json_t *t = json_object_get(config, "threshold");
    if (t != NULL && (!json_is_number(t) || json_number_value(t) < 0))
        return pv_refuse(program, "config key 'threshold' must be a number >= 0");
    return 0;
}

static void clear_env(void)
{
    const char *names[] = {"PIPEVISOR_INSTANCE", "PIPEVISOR_RUN", "PIPEVISOR_CONFIG",
                           "PIPEVISOR_DATA_URL", "PIPEVISOR_DATA_MODE", "PIPEVISOR_OUTPUT_URL",
                           "PIPEVISOR_OUTPUT_MODE", "PIPEVISOR_CONFIG_URL", "PIPEVISOR_LOG_URL",
                           "PIPEVISOR_STATUS_INTERVAL"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        unsetenv(names[i]);
}

static pv_program *open_with(const char *config, int *exit_code)
{
    if (config != NULL)
        setenv("PIPEVISOR_CONFIG", config, 1);
    pv_options options = {.program = "test_contract", .configure = refuse_negative};
    return pv_program_open(&options, exit_code);
}

int main(void)
{
    int code = -1;
    clear_env();
    pv_program *p = open_with("{\"threshold\": 2}", &code);
    CHECK(p != NULL && code == PV_EXIT_OK);
    if (p != NULL) {
        CHECK(strcmp(pv_program_instance(p), "standalone") == 0);
        CHECK(json_number_value(json_object_get(pv_program_config(p), "threshold")) == 2);
        const pv_message *m;
        CHECK(pv_program_next(p, &m, 10) == PV_NEXT_TIMEOUT && m == NULL);
        int64_t v = 1;
        pv_value value = {.name = "v", .type = PV_TYPE_INT64, .data = &v, .nbytes = 8};
        CHECK(pv_send(p, &value, 1, 1, 0, 0) == 0); /* no output: nothing to send to */
        value.nbytes = 3;
        CHECK(pv_send(p, &value, 1, 1, 0, 0) == -1 && strstr(pv_program_error(p), "'v'"));
        pv_program_stop(p);
        CHECK(pv_program_next(p, &m, 1000) == PV_NEXT_STOP);
        pv_program_close(p);
    }

    CHECK(open_with("{\"threshold\": -1}", &code) == NULL && code == PV_EXIT_CONFIG_ERROR);
    CHECK(open_with("{not json", &code) == NULL && code == PV_EXIT_CONFIG_ERROR);
    CHECK(open_with("[1]", &code) == NULL && code == PV_EXIT_CONFIG_ERROR);
    setenv("PIPEVISOR_DATA_MODE", "REQ", 1);
    CHECK(open_with("{}", &code) == NULL && code == PV_EXIT_FAILURE);
    unsetenv("PIPEVISOR_DATA_MODE");
    setenv("PIPEVISOR_STATUS_INTERVAL", "0", 1);
    CHECK(open_with("{}", &code) == NULL && code == PV_EXIT_FAILURE);
    unsetenv("PIPEVISOR_STATUS_INTERVAL");
    setenv("PIPEVISOR_OUTPUT_URL", "nonsense://x", 1);
    CHECK(open_with("{}", &code) == NULL && code == PV_EXIT_FAILURE);

    /* A PUSH output without a peer drops instead of blocking. */
    setenv("PIPEVISOR_OUTPUT_URL", "tcp://127.0.0.1:0", 1);
    setenv("PIPEVISOR_OUTPUT_MODE", "PUSH", 1);
    p = open_with("{}", &code);
    CHECK(p != NULL);
    if (p != NULL) {
        int64_t v = 1;
        pv_value value = {.name = "v", .type = PV_TYPE_INT64, .data = &v, .nbytes = 8};
        CHECK(pv_send(p, &value, 1, 1, 0, 0) == 1);
        /* SIGTERM: the next call stops. */
        raise(SIGTERM);
        const pv_message *m;
        CHECK(pv_program_next(p, &m, 1000) == PV_NEXT_STOP);
        pv_program_close(p);
    }
    clear_env();
    return check_exit("test_contract");
}

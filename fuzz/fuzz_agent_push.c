/* libFuzzer target for se-agent's push events (src/agent/push.h
 * agent_push_parse, agent_push_news; docs/ota.md section 4). The input is
 * the event name, a newline, then the event's data line. Any input parses
 * or is refused; a job event names a decimal job, its SE and an attempt of
 * 0 (not said) or more; a backstage event a decimal request and a known op;
 * news names a job. */
#include "agent/push.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct agent_push_event ev;
    char job[AGENT_JOB_ID_MAX + 1];
    const uint8_t *nl = memchr(data, '\n', size);
    char *event;
    char *text;
    size_t el;

    if (nl == NULL || size > 8192) {
        return 0;
    }
    el = (size_t)(nl - data);
    event = malloc(el + 1);
    text = malloc(size - el);
    if (event == NULL || text == NULL) {
        free(event);
        free(text);
        return 0;
    }
    memcpy(event, data, el);
    event[el] = '\0';
    memcpy(text, nl + 1, size - el - 1);
    text[size - el - 1] = '\0';
    if (agent_push_parse(event, text, &ev)) {
        if (ev.kind == AGENT_PUSH_JOB) {
            if (ev.job.job[0] == '\0' || strspn(ev.job.job, "0123456789") != strlen(ev.job.job)
                || ev.se[0] == '\0' || ev.attempt < 0) {
                abort();
            }
        } else if (ev.kind != AGENT_PUSH_BACKSTAGE || ev.request[0] == '\0'
                   || (strcmp(ev.op, "add") != 0 && strcmp(ev.op, "verify") != 0
                       && strcmp(ev.op, "query") != 0 && strcmp(ev.op, "delete") != 0)) {
            abort();
        }
    }
    if (agent_push_news(event, text, job, sizeof job) && job[0] == '\0') {
        abort();
    }
    free(event);
    free(text);
    return 0;
}

/* payterm's client interface (payterm.h): results as text or JSON, the PIN. */
#include "payterm/pt_priv.h"

#include "core/buf.h"
#include "net/json.h"

#include <stdlib.h>
#include <string.h>

void pt_ui_result(const struct pt *t, const char *what, const char *const *kv)
{
    FILE *out = t->cfg->out;

    if (t->cfg->json) {
        json_t *o = json_obj_new();
        char *s = NULL;
        size_t n = 0;
        if (o == NULL || json_put_str(o, "result", what) != OT_OK) {
            json_free(o);
            return;
        }
        for (size_t i = 0; kv[i] != NULL && kv[i + 1] != NULL; i += 2) {
            if (kv[i + 1][0] == '\0') {
                continue; /* absent */
            }
            if (kv[i + 1][0] == '#') {
                (void)json_put_int(o, kv[i], strtoll(kv[i + 1] + 1, NULL, 10));
            } else {
                (void)json_put_str(o, kv[i], kv[i + 1]);
            }
        }
        if (json_serialize(o, &s, &n) == OT_OK) {
            fprintf(out, "%s\n", s);
        }
        free(s);
        json_free(o);
    } else {
        fprintf(out, "%s", what);
        for (size_t i = 0; kv[i] != NULL && kv[i + 1] != NULL; i += 2) {
            if (kv[i + 1][0] == '\0') {
                continue;
            }
            fprintf(out, " %s=%s", kv[i], kv[i + 1][0] == '#' ? kv[i + 1] + 1 : kv[i + 1]);
        }
        fprintf(out, "\n");
    }
    fflush(out);
}

void pt_ui_error(const struct pt *t, const char *what, ot_err err, const struct pay_client_err *e)
{
    char st[16];
    const char *kv[] = {"error", ot_strerror(err), "status", st,   "code", "", "field",
                        "",      "message",        "",       NULL, NULL};

    snprintf(st, sizeof(st), "#%ld", e != NULL ? e->status : 0L);
    if (e != NULL) {
        kv[5] = e->code;
        kv[7] = e->field;
        kv[9] = e->message;
    }
    pt_ui_result(t, what, kv);
}

ot_err pt_ui_pin(const struct pt *t, char pin[13])
{
    char line[64];
    size_t n;

    if (t->cfg->pin_in == NULL || fgets(line, sizeof(line), t->cfg->pin_in) == NULL) {
        return OT_E_FORMAT;
    }
    n = strcspn(line, "\r\n");
    line[n] = '\0';
    if (n < 4 || n > 12 || strspn(line, "0123456789") != n) {
        ot_mem_wipe(line, sizeof(line));
        return OT_E_FORMAT;
    }
    memcpy(pin, line, n + 1);
    ot_mem_wipe(line, sizeof(line));
    return OT_OK;
}

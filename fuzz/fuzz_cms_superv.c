/* Fuzz target: supervision's parsers (src/cms/superv.h).
 *
 * The first input byte picks the parser, the rest is its input:
 *   0 one payment event (sv_event_parse)
 *   1 an NDJSON batch (sv_ndjson_each), each line an event; the events run
 *     through one card's window and a fixed set of rules of every kind
 *     (sv_window_add, sv_eval, sv_why_json)
 *   2 a rule's body (sv_rule_parse), then an event evaluated against it
 * Any result is fine; a crash, leak or sanitizer report is a finding. */
#include "cms/superv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
    struct sv_rule *rules;
    size_t n;
    struct sv_window w;
};

static void fz_eval(struct fz *f, const struct sv_event *ev)
{
    struct sv_hit hit;
    char *why = NULL;

    if (!sv_window_add(&f->w, ev)) {
        return;
    }
    if (sv_eval(f->rules, f->n, &f->w, ev, ev->amount % 2 == 1, &hit)
        && sv_why_json(&f->rules[hit.rule], &hit, &why) == OT_OK) {
        free(why);
    }
}

static ot_err fz_line(void *ctx, const char *line, size_t len, size_t no)
{
    struct sv_event ev;
    struct json_err je;

    (void)no;
    memset(&je, 0, sizeof(je));
    if (sv_event_parse(line, len, &ev, &je) == OT_OK) {
        fz_eval(ctx, &ev);
    }
    return OT_OK;
}

static void fz_rules(struct fz *f)
{
    static const char *const bodies[] = {
        "{\"kind\":\"velocity\",\"action\":\"lock\",\"max\":3,\"window_s\":60}",
        "{\"kind\":\"wrong_pin\",\"action\":\"destroy\",\"max\":2,\"window_s\":60}",
        "{\"kind\":\"travel\",\"action\":\"destroy\",\"min_s\":600}",
        "{\"kind\":\"blocklist\",\"action\":\"lock\",\"merchants\":[\"m-1\",\"evil\"]}",
        "{\"kind\":\"lost_stolen\",\"action\":\"destroy\"}",
    };
    f->rules = calloc(5, sizeof(*f->rules));
    for (size_t i = 0; f->rules != NULL && i < 5; i++) {
        json_t *doc = NULL;
        struct json_err je;
        char name[8] = {'r', (char)('0' + i), 0};
        memset(&je, 0, sizeof(je));
        if (json_parse(bodies[i], strlen(bodies[i]), 4096, &doc, &je) == OT_OK
            && sv_rule_parse(name, doc, &f->rules[f->n], &je) == OT_OK) {
            f->n++;
        }
        json_free(doc);
    }
}

static void fz_free(struct fz *f)
{
    for (size_t i = 0; i < f->n; i++) {
        sv_rule_clear(&f->rules[i]);
    }
    free(f->rules);
    sv_window_free(&f->w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    struct json_err je;
    struct sv_event ev;
    struct fz f;
    size_t line = 0;

    if (size < 1 || size > 65536) {
        return 0;
    }
    memset(&je, 0, sizeof(je));
    memset(&f, 0, sizeof(f));
    switch (data[0] % 3) {
    case 0:
        (void)sv_event_parse(p, n, &ev, &je);
        break;
    case 1:
        fz_rules(&f);
        (void)sv_ndjson_each(p, n, 1000, fz_line, &f, &line);
        fz_free(&f);
        break;
    default: {
        json_t *doc = NULL;
        f.rules = calloc(1, sizeof(*f.rules));
        if (f.rules != NULL && json_parse(p, n, 65536, &doc, &je) == OT_OK
            && sv_rule_parse("fz", doc, &f.rules[0], &je) == OT_OK) {
            f.n = 1;
            memset(&ev, 0, sizeof(ev));
            memcpy(ev.id, "e1", 3);
            memcpy(ev.merchant, "evil", 5);
            memcpy(ev.area, "LA-1", 5);
            ev.pin = SV_PIN_WRONG;
            for (int i = 0; i < 40; i++) {
                ev.id[1] = (char)('A' + i);
                ev.at_ms = i * 1000;
                ev.area[3] = (char)('0' + i % 3);
                fz_eval(&f, &ev);
            }
        }
        json_free(doc);
        fz_free(&f);
        break;
    }
    }
    return 0;
}

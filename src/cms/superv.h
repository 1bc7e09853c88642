/* Supervision's engine, sans I/O (issue 13 point 5, docs/cms.md
 * "Supervision and notifications"): the payment events (one JSON object
 * each, or NDJSON: one per line), the rules and their evaluation over a
 * bounded window of each card's recent events. superv.c puts it behind the
 * API and the card database; fuzz/fuzz_cms_superv.c drives the parsers.
 *
 * Not thread-safe: one struct sv_card at a time per thread (superv.c holds
 * its lock). */
#ifndef OT_CMS_SUPERV_H
#define OT_CMS_SUPERV_H

#include "cms/card.h"
#include "core/err.h"
#include "net/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SV_ID_MAX        48u   /* an event's id: [A-Za-z0-9._:-] */
#define SV_REF_MAX       64u   /* card_id / pan_token (64) or the CIN in hex (64) */
#define SV_AREA_MAX      32u   /* a location area */
#define SV_MERCHANT_MAX  64u   /* a merchant id */
#define SV_RING          32u   /* events kept per card */
#define SV_LINE_MAX      4096u /* bytes of one NDJSON line */
#define SV_RULE_NAME_MAX 32u
#define SV_RULES_MAX     64u
#define SV_BLOCKLIST_MAX 10000u

enum sv_by {
    SV_BY_CARD_ID,
    SV_BY_PAN_TOKEN,
    SV_BY_CIN,
};

enum sv_pin {
    SV_PIN_NONE,
    SV_PIN_OK,
    SV_PIN_WRONG,
};

/* One payment event (POST /events, /events/batch):
 *   {"id": "tx-1", "card_id" | "pan_token" | "cin": "...", "at": <Unix ms>,
 *    "amount": <minor units>, "currency": "EUR", "merchant": "m-42",
 *    "location_area": "LA-7501", "pin": "ok" | "wrong" | "none",
 *    "type": "purchase" | "withdrawal" | "refund" | "pin_check"}
 * id, one card reference and at are required; the rest is optional. */
struct sv_event {
    char id[SV_ID_MAX + 1];
    enum sv_by by;
    char ref[SV_REF_MAX + 1];
    int64_t at_ms;
    int64_t amount;
    char merchant[SV_MERCHANT_MAX + 1]; /* "" = none */
    char area[SV_AREA_MAX + 1];         /* "" = none */
    enum sv_pin pin;
};

/* Parses one event from p[0..n) (a JSON object). OT_E_FORMAT / OT_E_RANGE /
 * OT_E_TOO_LONG with je naming the field (json_err_scope applies). */
ot_err sv_event_parse(const char *p, size_t n, struct sv_event *ev, struct json_err *je);

/* Splits NDJSON: fn for every line that is not empty (a trailing \r is
 * dropped), with its 1-based number, until fn fails (its error returned).
 * OT_E_LIMIT when a line is longer than SV_LINE_MAX or there are more than
 * max_lines events (*line names it). */
ot_err sv_ndjson_each(const char *p, size_t n, size_t max_lines,
                      ot_err (*fn)(void *ctx, const char *line, size_t len, size_t no), void *ctx,
                      size_t *line);

/* ---- rules ------------------------------------------------------------- */

enum sv_kind {
    SV_K_VELOCITY,    /* more than max events within window_s */
    SV_K_WRONG_PIN,   /* max wrong PINs within window_s */
    SV_K_TRAVEL,      /* two events in different location areas less than min_s apart */
    SV_K_BLOCKLIST,   /* an event at a blocklisted merchant */
    SV_K_LOST_STOLEN, /* any use of a card reported lost or stolen */
    SV_K_N,
};
extern const char *const sv_kind_names[SV_K_N];

struct sv_rule {
    char name[SV_RULE_NAME_MAX + 1];
    enum sv_kind kind;
    enum cms_action action; /* lock or destroy */
    bool enabled;
    int64_t max;       /* velocity, wrong_pin */
    int64_t window_ms; /* velocity, wrong_pin */
    int64_t min_ms;    /* travel */
    char **merchants;  /* blocklist, sorted */
    size_t n_merchants;
    char *json; /* the rule as the API shows it (canonical JSON object) */
};

/* A rule from its API body {"kind", "action", "enabled", "max", "window_s",
 * "min_s", "merchants"} (what the kind needs, nothing else). name:
 * [a-z0-9_-]{1,32}. *out is cleared first; sv_rule_clear frees it. */
ot_err sv_rule_parse(const char *name, const json_t *doc, struct sv_rule *out, struct json_err *je);
void sv_rule_clear(struct sv_rule *r);

/* ---- a card's window ----------------------------------------------------- */

struct sv_mem {
    char id[SV_ID_MAX + 1];
    int64_t at_ms;
    uint32_t area; /* hash of the area, 0 = none */
    uint8_t pin;
};

struct sv_window {
    struct sv_mem *ring; /* grows to SV_RING */
    unsigned cap;
    unsigned n;    /* events held */
    unsigned head; /* the next slot */
};

/* Adds ev; false when an event with its id is in the window already (a
 * replay: not counted again). OT_E_NOMEM is reported as true with nothing
 * added... never: the window keeps the oldest slot then. */
bool sv_window_add(struct sv_window *w, const struct sv_event *ev);
void sv_window_free(struct sv_window *w);

/* What decided a hit. */
struct sv_hit {
    size_t rule; /* index in the rules given */
    const char *ids[SV_RING + 1];
    size_t n_ids;
};

/* Evaluates the rules (n of them) for ev, just added to w, on a card that
 * is (reported) lost or stolen or not. Of the enabled rules that hit, a
 * destroy wins over a lock, then the first in order. true on a hit. The ids
 * in *hit point into w (valid until the next add). */
bool sv_eval(const struct sv_rule *rules, size_t n, const struct sv_window *w,
             const struct sv_event *ev, bool reported, struct sv_hit *hit);

/* The decision's explanation for the card's history: {"rule", "kind",
 * "action", "params": <rule json>, "events": [ids]} (malloc'd, at most
 * CMS_WHY_MAX bytes). */
ot_err sv_why_json(const struct sv_rule *r, const struct sv_hit *hit, char **out);

#endif

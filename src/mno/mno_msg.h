/* The headers of an admin-session POST (docs/ota.md §5, §9): GlobalPlatform
 * RAM over HTTP's X-Admin-Protocol, X-Admin-From, X-Admin-Script-Status,
 * X-Admin-Resume and Content-Type, with the body's presence.
 *
 * A pure function over strings (no I/O, no allocation): what the agent
 * sent is checked against the protocol before anything is read or written,
 * and a refusal names the header (or "body") and the rule. The response
 * script itself is mno_script.h's. Thread-safe. */
#ifndef OT_MNO_MNO_MSG_H
#define OT_MNO_MNO_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MNO_MSG_CIN_MAX  32u /* bytes (= MNO_CIN_MAX) */
#define MNO_MSG_IMEI_MAX 15u /* digits */

enum mno_status {
    MNO_ST_NONE,
    MNO_ST_OK,
    MNO_ST_UNKNOWN_APP,
    MNO_ST_NOT_SD,
    MNO_ST_SECURITY,
    MNO_ST_SE_UNAVAILABLE,
    MNO_ST_INTERRUPTED,
};

/* The header values as received (NULL: absent) and the body. */
struct mno_msg_in {
    const char *proto;  /* X-Admin-Protocol */
    const char *from;   /* X-Admin-From */
    const char *status; /* X-Admin-Script-Status */
    const char *resume; /* X-Admin-Resume */
    const char *ct;     /* Content-Type */
    const uint8_t *body;
    size_t body_n;
};

struct mno_msg {
    enum mno_status status; /* MNO_ST_NONE on the first POST */
    bool resume;
    uint8_t cin[MNO_MSG_CIN_MAX];
    size_t cin_n;
    char imei[MNO_MSG_IMEI_MAX + 1];
    const uint8_t *body; /* in's */
    size_t body_n;
};

/* Why a message was refused: the error code (NULL: the generic one of a
 * format error), the rule and the header ("body" for the body). */
struct mno_msg_err {
    const char *code;
    const char *msg;
    const char *field;
};

/* Checks in as the first POST of a session (first) or a later one. true:
 * *out holds the message; false: *err says why and *out is empty. */
bool mno_msg_parse(const struct mno_msg_in *in, bool first, struct mno_msg *out,
                   struct mno_msg_err *err);

/* "ok", "unknown-application", ...; "" for MNO_ST_NONE. */
const char *mno_status_name(enum mno_status st);

#endif

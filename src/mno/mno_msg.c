/* Admin-session POST headers (mno_msg.h, docs/ota.md §5 and §9). */
#include "mno/mno_msg.h"

#include "core/hex.h"
#include "mno/mno_priv.h"

#include <stdio.h>
#include <string.h>

#define MNO_FROM_CIN  "//se-id/cin/"
#define MNO_FROM_IMEI ";//agent-id/imei/"

_Static_assert(MNO_MSG_CIN_MAX == MNO_CIN_MAX, "one CIN size");
_Static_assert(MNO_MSG_IMEI_MAX == MNO_DIGITS_MAX, "one IMEI size");

static const char *const mno_status_names[] = {
    "",
    "ok",
    "unknown-application",
    "not-a-security-domain",
    "security-error",
    "se-unavailable",
    "interrupted",
};

const char *mno_status_name(enum mno_status st)
{
    size_t i = (size_t)st;

    return i < sizeof(mno_status_names) / sizeof(mno_status_names[0]) ? mno_status_names[i] : "";
}

/* X-Admin-From: //se-id/cin/<HEX>;//agent-id/imei/<digits>, exactly. */
static bool mno_from_parse(const char *s, struct mno_msg *msg)
{
    const char *hex;
    const char *sep;
    size_t hn;

    if (s == NULL || strncmp(s, MNO_FROM_CIN, strlen(MNO_FROM_CIN)) != 0) {
        return false;
    }
    hex = s + strlen(MNO_FROM_CIN);
    sep = strchr(hex, ';');
    if (sep == NULL) {
        return false;
    }
    hn = (size_t)(sep - hex);
    if (hn == 0 || hn > MNO_CIN_MAX * 2 || hn % 2 != 0) {
        return false;
    }
    for (size_t i = 0; i < hn; i++) {
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'A' && hex[i] <= 'F'))) {
            return false; /* upper case only */
        }
    }
    msg->cin_n = sizeof(msg->cin);
    if (hex_decode(hex, hn, msg->cin, &msg->cin_n) != OT_OK) {
        return false;
    }
    if (strncmp(sep, MNO_FROM_IMEI, strlen(MNO_FROM_IMEI)) != 0) {
        return false;
    }
    sep += strlen(MNO_FROM_IMEI);
    if (!mno_digits_ok(sep, 14, MNO_DIGITS_MAX)) {
        return false;
    }
    snprintf(msg->imei, sizeof(msg->imei), "%s", sep);
    return true;
}

static bool mno_msg_refuse(struct mno_msg *out, struct mno_msg_err *err, const char *code,
                           const char *msg, const char *field)
{
    memset(out, 0, sizeof(*out));
    err->code = code;
    err->msg = msg;
    err->field = field;
    return false;
}

bool mno_msg_parse(const struct mno_msg_in *in, bool first, struct mno_msg *msg,
                   struct mno_msg_err *err)
{
    memset(msg, 0, sizeof(*msg));
    memset(err, 0, sizeof(*err));
    msg->body = in->body;
    msg->body_n = in->body_n;
    if (in->proto == NULL || strcmp(in->proto, MNO_PROTO) != 0) {
        return mno_msg_refuse(msg, err, NULL, "must be " MNO_PROTO, "X-Admin-Protocol");
    }
    if (!mno_from_parse(in->from, msg)) {
        return mno_msg_refuse(msg, err, NULL,
                              "must be //se-id/cin/<CIN upper-case hex>;//agent-id/imei/<IMEI>",
                              "X-Admin-From");
    }
    if (in->resume != NULL) {
        if (strcmp(in->resume, "true") != 0) {
            return mno_msg_refuse(msg, err, NULL, "only \"true\"", "X-Admin-Resume");
        }
        msg->resume = true;
    }
    if (first) {
        if (in->status != NULL) {
            return mno_msg_refuse(msg, err, NULL, "not on the first POST", "X-Admin-Script-Status");
        }
    } else {
        for (size_t i = 1;
             in->status != NULL && i < sizeof(mno_status_names) / sizeof(mno_status_names[0]);
             i++) {
            if (strcmp(in->status, mno_status_names[i]) == 0) {
                msg->status = (enum mno_status)i;
            }
        }
        if (msg->status == MNO_ST_NONE) {
            return mno_msg_refuse(msg, err, NULL,
                                  "ok, unknown-application, not-a-security-domain, "
                                  "security-error, se-unavailable or interrupted",
                                  "X-Admin-Script-Status");
        }
    }
    if (msg->status == MNO_ST_OK) {
        if (in->ct == NULL || strcmp(in->ct, MNO_CT_RSP) != 0) {
            return mno_msg_refuse(msg, err, NULL, "must be " MNO_CT_RSP, "Content-Type");
        }
        if (in->body_n == 0) {
            return mno_msg_refuse(msg, err, "bad_script", "a response script is required", "body");
        }
    } else if (in->body_n != 0) {
        return mno_msg_refuse(
            msg, err, NULL,
            first ? "the first POST has no body" : "no body with this script status", "body");
    }
    return true;
}

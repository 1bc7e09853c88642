/* libFuzzer target for the admin-session message parser of mno (docs/ota.md
 * §5 and §9): the headers of an agent's POST (mno/mno_msg.h) and, when they
 * are accepted with the status ok, its response script (mno/mno_script.h),
 * the way mno_admin.c takes a POST apart before anything is read or written.
 *
 * Input: byte 0 = flags (bit 0: the session's first POST; bits 1..7: the
 * C-APDUs sent, minus 1), then five header values each ended by '\n'
 * (X-Admin-Protocol, X-Admin-From, X-Admin-Script-Status, X-Admin-Resume,
 * Content-Type; a value that is exactly "-" is an absent header), then the
 * body. Besides "no crash, no sanitizer report":
 *   - a refusal names a header (or "body") and a rule, and leaves the
 *     message empty;
 *   - an accepted message holds a CIN of 1..32 bytes, an IMEI of 14..15
 *     digits, a status only after the first POST, a body only with "ok".
 */
#include "mno/mno_msg.h"
#include "mno/mno_script.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FIELDS    5
#define FIELD_MAX 512

static void check(int ok)
{
    if (!ok) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char val[FIELDS][FIELD_MAX + 1];
    const char *f[FIELDS];
    struct mno_msg_in in;
    struct mno_msg msg;
    struct mno_msg_err err;
    size_t pos = 1;
    bool first;
    size_t sent;

    if (size < 1) {
        return 0;
    }
    first = (data[0] & 1) != 0;
    sent = (size_t)(data[0] >> 1) + 1;
    for (size_t i = 0; i < FIELDS; i++) {
        size_t n = 0;
        while (pos < size && data[pos] != '\n' && n < FIELD_MAX) {
            val[i][n++] = (char)data[pos++];
        }
        if (pos < size && data[pos] == '\n') {
            pos++;
        }
        val[i][n] = '\0';
        /* A header value is text: an embedded NUL ends it, as the server's
         * header strings do. */
        f[i] = strcmp(val[i], "-") == 0 ? NULL : val[i];
    }
    in.proto = f[0];
    in.from = f[1];
    in.status = f[2];
    in.resume = f[3];
    in.ct = f[4];
    in.body = data + pos;
    in.body_n = size - pos;
    if (!mno_msg_parse(&in, first, &msg, &err)) {
        check(err.field != NULL && err.msg != NULL && err.msg[0] != '\0');
        check(msg.cin_n == 0 && msg.imei[0] == '\0' && msg.body == NULL && !msg.resume
              && msg.status == MNO_ST_NONE);
        return 0;
    }
    check(msg.cin_n >= 1 && msg.cin_n <= MNO_MSG_CIN_MAX);
    check(strlen(msg.imei) >= 14 && strlen(msg.imei) <= MNO_MSG_IMEI_MAX);
    for (size_t i = 0; msg.imei[i] != '\0'; i++) {
        check(msg.imei[i] >= '0' && msg.imei[i] <= '9');
    }
    check(first == (msg.status == MNO_ST_NONE));
    check(mno_status_name(msg.status) != NULL);
    check(msg.body == in.body && msg.body_n == in.body_n);
    check((msg.body_n != 0) == (msg.status == MNO_ST_OK));
    if (msg.status == MNO_ST_OK) {
        struct mno_script rsp;
        struct mno_script_err serr;
        if (mno_rsp_parse(msg.body, msg.body_n, sent, &rsp, &serr) == OT_OK) {
            check(rsp.n >= 1 && rsp.n <= sent && rsp.count == rsp.n);
            for (size_t i = 0; i < rsp.n; i++) {
                check(rsp.items[i].p >= msg.body
                      && rsp.items[i].p + rsp.items[i].n <= msg.body + msg.body_n);
            }
        } else {
            check(rsp.n == 0 && rsp.items == NULL);
        }
        mno_script_free(&rsp);
    }
    return 0;
}

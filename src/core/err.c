#include "core/err.h"

#include <stddef.h>

struct err_text {
    ot_err code;
    const char *name;
    const char *text;
};

#define E(c, t)  \
    {            \
        c, #c, t \
    }
static const struct err_text err_table[] = {
    E(OT_OK, "success"),
    E(OT_E_ARG, "invalid argument"),
    E(OT_E_NOMEM, "out of memory"),
    E(OT_E_BUF_SMALL, "output buffer too small"),
    E(OT_E_UNSUPPORTED, "operation not supported"),
    E(OT_E_STATE, "operation not valid in the current state"),
    E(OT_E_INTERNAL, "internal error"),
    E(OT_E_LIMIT, "limit reached"),
    E(OT_E_RATE_LIMITED, "too many requests"),
    E(OT_E_TRUNCATED, "input truncated"),
    E(OT_E_TLV, "malformed BER-TLV"),
    E(OT_E_HEX, "malformed hex string"),
    E(OT_E_APDU, "malformed APDU"),
    E(OT_E_APDU_LEN, "APDU length fields do not match its size"),
    E(OT_E_RANGE, "value out of range"),
    E(OT_E_FORMAT, "input does not follow the expected format"),
    E(OT_E_CAP, "malformed CAP file"),
    E(OT_E_TOO_LONG, "input too long"),
    E(OT_E_TRAILING, "unexpected trailing bytes"),
    E(OT_E_SW, "card returned an error status word"),
    E(OT_E_SW_WRONG_LENGTH, "card: wrong length (6700)"),
    E(OT_E_SW_SECURITY, "card: security status not satisfied (6982)"),
    E(OT_E_SW_AUTH_BLOCKED, "card: authentication method blocked (6983)"),
    E(OT_E_SW_REF_INVALID, "card: referenced data invalidated (6984)"),
    E(OT_E_SW_CONDITIONS, "card: conditions of use not satisfied (6985)"),
    E(OT_E_SW_WRONG_DATA, "card: incorrect values in command data (6A80)"),
    E(OT_E_SW_FUNC_NOT_SUPP, "card: function not supported (6A81)"),
    E(OT_E_SW_NOT_FOUND, "card: application or file not found (6A82)"),
    E(OT_E_SW_NO_SPACE, "card: not enough memory space (6A84)"),
    E(OT_E_SW_P1P2, "card: incorrect parameters P1-P2 (6A86)"),
    E(OT_E_SW_REF_NOT_FOUND, "card: referenced data not found (6A88)"),
    E(OT_E_SW_INS, "card: instruction not supported (6D00)"),
    E(OT_E_SW_CLA, "card: class not supported (6E00)"),
    E(OT_E_SW_VERIFY_FAILED, "card: verification failed (63xx)"),
    E(OT_E_SW_MEMORY, "card: memory failure (6581)"),
    E(OT_E_SW_CHANNEL, "card: logical channel not supported (6881)"),
    E(OT_E_SW_SM_UNSUPPORTED, "card: secure messaging not supported (6882)"),
    E(OT_E_SW_EXEC, "card: execution error (6400)"),
    E(OT_E_SW_WRONG_LE, "card: wrong Le (6Cxx)"),
    E(OT_E_SW_NOT_ALLOWED, "card: command not allowed (6986)"),
    E(OT_E_SW_FILE_INVALID, "card: selected file invalidated (6283)"),
    E(OT_E_IO, "input/output error"),
    E(OT_E_TIMEOUT, "timed out"),
    E(OT_E_CLOSED, "connection closed by peer"),
    E(OT_E_NO_CARD, "no card present or card mute"),
    E(OT_E_PROTOCOL, "transport protocol violated by peer"),
    E(OT_E_DB, "storage error"),
    E(OT_E_NOT_FOUND, "not found"),
    E(OT_E_CONFLICT, "conflict with existing data"),
    E(OT_E_CORRUPT, "stored data failed its integrity check"),
    E(OT_E_IDEM_MISMATCH, "idempotency key reused with a different request"),
    E(OT_E_CRYPTO, "cryptographic library failure"),
    E(OT_E_CARD_CRYPTOGRAM, "card cryptogram does not verify"),
    E(OT_E_HOST_CRYPTOGRAM, "host cryptogram does not verify"),
    E(OT_E_CMAC, "command MAC does not verify"),
    E(OT_E_RMAC, "response MAC does not verify"),
    E(OT_E_REPLAY, "replayed or out-of-order message"),
    E(OT_E_KCV, "key check value does not match"),
    E(OT_E_PADDING, "bad padding"),
    E(OT_E_KEY, "key of wrong type or length"),
    E(OT_E_SEC_LEVEL, "security level invalid or not met"),
    E(OT_E_NO_CHANNEL, "no open secure channel"),
    E(OT_E_SEQ_EXHAUSTED, "sequence counter exhausted"),
    E(OT_E_AUTH, "not authenticated"),
    E(OT_E_FORBIDDEN, "not authorised"),
};
#undef E

static const struct err_text *err_find(ot_err e)
{
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++) {
        if (err_table[i].code == e) {
            return &err_table[i];
        }
    }
    return NULL;
}

const char *ot_strerror(ot_err e)
{
    const struct err_text *t = err_find(e);
    return t ? t->text : "unknown error";
}

const char *ot_errname(ot_err e)
{
    const struct err_text *t = err_find(e);
    return t ? t->name : "OT_E_UNKNOWN";
}

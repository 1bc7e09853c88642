/* OpenTSM error codes: one enum for the whole project, one strerror.
 *
 * Ranges of 100 (STYLE.md 7): 1xx caller, 2xx input, 3xx card status word,
 * 4xx transport, 5xx storage, 6xx authentication and cryptography.
 * Codes are never renumbered or reused; a retired code becomes OT_E_RETIRED_<n>.
 */
#ifndef OT_CORE_ERR_H
#define OT_CORE_ERR_H

typedef enum ot_err {
    OT_OK = 0,

    /* 1xx: the caller got something wrong */
    OT_E_ARG = 100,          /* invalid argument (NULL, out of range) */
    OT_E_NOMEM = 101,        /* allocation failed */
    OT_E_BUF_SMALL = 102,    /* output buffer too small; needed size in the length out-param */
    OT_E_UNSUPPORTED = 103,  /* operation or option not supported */
    OT_E_STATE = 104,        /* call not valid in the object's current state */
    OT_E_INTERNAL = 105,     /* an internal invariant failed */
    OT_E_LIMIT = 106,        /* a named cap was reached */
    OT_E_RATE_LIMITED = 107, /* too many requests from this caller; retry later */

    /* 2xx: malformed input */
    OT_E_TRUNCATED = 200, /* input ended before a field was complete */
    OT_E_TLV = 201,       /* malformed BER-TLV */
    OT_E_HEX = 202,       /* malformed hex string */
    OT_E_APDU = 203,      /* malformed command or response APDU */
    OT_E_APDU_LEN = 204,  /* APDU length fields disagree with its size */
    OT_E_RANGE = 205,     /* value out of its allowed range */
    OT_E_FORMAT = 206,    /* input does not follow the expected format */
    OT_E_CAP = 207,       /* malformed CAP file */
    OT_E_TOO_LONG = 208,  /* input longer than its format allows */
    OT_E_TRAILING = 209,  /* unexpected bytes after the end of an object */

    /* 3xx: the card answered with a status word that means failure */
    OT_E_SW = 300,                /* any other unsuccessful status word */
    OT_E_SW_WRONG_LENGTH = 301,   /* 6700 */
    OT_E_SW_SECURITY = 302,       /* 6982 security status not satisfied */
    OT_E_SW_AUTH_BLOCKED = 303,   /* 6983 authentication method blocked */
    OT_E_SW_REF_INVALID = 304,    /* 6984 referenced data invalidated */
    OT_E_SW_CONDITIONS = 305,     /* 6985 conditions of use not satisfied */
    OT_E_SW_WRONG_DATA = 306,     /* 6A80 incorrect values in command data */
    OT_E_SW_FUNC_NOT_SUPP = 307,  /* 6A81 function not supported */
    OT_E_SW_NOT_FOUND = 308,      /* 6A82 application or file not found */
    OT_E_SW_NO_SPACE = 309,       /* 6A84 not enough memory space */
    OT_E_SW_P1P2 = 310,           /* 6A86 / 6B00 incorrect P1 P2 */
    OT_E_SW_REF_NOT_FOUND = 311,  /* 6A88 referenced data not found */
    OT_E_SW_INS = 312,            /* 6D00 INS not supported */
    OT_E_SW_CLA = 313,            /* 6E00 CLA not supported */
    OT_E_SW_VERIFY_FAILED = 314,  /* 6300 / 63Cx authentication or verification failed */
    OT_E_SW_MEMORY = 315,         /* 6581 memory failure */
    OT_E_SW_CHANNEL = 316,        /* 6881 logical channel not supported */
    OT_E_SW_SM_UNSUPPORTED = 317, /* 6882 secure messaging not supported */
    OT_E_SW_EXEC = 318,           /* 6400 execution error */
    OT_E_SW_WRONG_LE = 319,       /* 6Cxx wrong Le */
    OT_E_SW_NOT_ALLOWED = 320,    /* 6986 command not allowed */
    OT_E_SW_FILE_INVALID = 321,   /* 6283 selected file invalidated / locked */

    /* 4xx: transport */
    OT_E_IO = 400,       /* read or write failed */
    OT_E_TIMEOUT = 401,  /* peer did not answer in time */
    OT_E_CLOSED = 402,   /* peer closed the connection */
    OT_E_NO_CARD = 403,  /* no card present or card mute */
    OT_E_PROTOCOL = 404, /* peer broke the transport protocol */

    /* 5xx: storage */
    OT_E_DB = 500,            /* storage back end failed */
    OT_E_NOT_FOUND = 501,     /* record not found */
    OT_E_CONFLICT = 502,      /* record exists or changed concurrently */
    OT_E_CORRUPT = 503,       /* stored data failed its integrity check */
    OT_E_IDEM_MISMATCH = 504, /* idempotency key reused with a different request */

    /* 6xx: authentication and cryptography */
    OT_E_CRYPTO = 600,          /* the crypto library failed */
    OT_E_CARD_CRYPTOGRAM = 601, /* card cryptogram does not verify */
    OT_E_HOST_CRYPTOGRAM = 602, /* host cryptogram does not verify */
    OT_E_CMAC = 603,            /* C-MAC of a command does not verify */
    OT_E_RMAC = 604,            /* R-MAC of a response does not verify */
    OT_E_REPLAY = 605,          /* command or counter replayed or out of order */
    OT_E_KCV = 606,             /* key check value does not match */
    OT_E_PADDING = 607,         /* bad padding after decryption */
    OT_E_KEY = 608,             /* key of wrong type or length */
    OT_E_SEC_LEVEL = 609,       /* security level invalid or not met */
    OT_E_NO_CHANNEL = 610,      /* no open secure channel (never opened, or aborted) */
    OT_E_SEQ_EXHAUSTED = 611,   /* sequence counter reached its maximum */
    OT_E_AUTH = 612,            /* caller not authenticated */
    OT_E_FORBIDDEN = 613,       /* caller not authorised */
} ot_err;

/* Static English text for e; never NULL (unknown codes give "unknown error"). */
const char *ot_strerror(ot_err e);

/* Symbolic name of e, e.g. "OT_E_TLV"; never NULL. */
const char *ot_errname(ot_err e);

#endif

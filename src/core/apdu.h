/* ISO/IEC 7816-4 command and response APDUs.
 *
 * Command cases (ISO 7816-3 12.1.3): 1, 2S, 3S, 4S, 2E, 3E, 4E. Short Lc is
 * 01-FF, short Le 00 (= 256) to FF; extended Lc 0001-FFFF after a 00 byte,
 * extended Le 0000 (= 65536) to FFFF. Short and extended fields never mix.
 * apdu_parse() accepts exactly these seven layouts; anything else is
 * OT_E_APDU_LEN (lengths do not match the size) or OT_E_APDU (structure).
 *
 * CLA (GPCS Tables 11-11/11-12): channels 0-3 in b2b1 of first interindustry
 * CLA (b7 = 0), 4-19 as b4..b1 = ch - 4 with b7 = 1 (further interindustry).
 */
#ifndef OT_CORE_APDU_H
#define OT_CORE_APDU_H

#include "core/buf.h"
#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define APDU_MAX_SHORT_NC 255u
#define APDU_MAX_SHORT_NE 256u
#define APDU_MAX_EXT_NC   65535u
#define APDU_MAX_EXT_NE   65536u
#define APDU_MAX_CHANNEL  19u
/* Largest encoded command: 4 header + 3 Lc + 65535 data + 2 Le. */
#define APDU_MAX_CMD_SIZE  (4u + 3u + 65535u + 2u)
#define APDU_MAX_RESP_SIZE (65536u + 2u)

#define SW_OK 0x9000u

enum apdu_case {
    APDU_CASE_1 = 1,
    APDU_CASE_2S,
    APDU_CASE_3S,
    APDU_CASE_4S,
    APDU_CASE_2E,
    APDU_CASE_3E,
    APDU_CASE_4E,
};

struct apdu {
    uint8_t cla, ins, p1, p2;
    const uint8_t *data; /* Nc bytes; borrowed (points into the parsed input when parsed) */
    size_t nc;           /* 0..65535 */
    size_t ne;           /* expected response length: 0 = no Le field, else 1..65536 */
    bool extended;       /* parse: was extended; encode: force extended encoding */
};

/* Parses a raw command APDU; out->data points into raw (NULL when nc = 0).
 * Fewer than 4 bytes, or Lc / Le fields that do not match the size (truncated
 * or trailing bytes): OT_E_APDU_LEN. CLA FF, or an extended Lc of 0000
 * followed by more bytes: OT_E_APDU. A 5th byte 00 followed by more bytes is
 * always the extended form. */
ot_err apdu_parse(const uint8_t *raw, size_t n, struct apdu *out);
/* Case of an encoded or to-be-encoded command (short unless a->extended or a
 * length needs extended). */
enum apdu_case apdu_case_of(const struct apdu *a);

/* Encodes a. out_len: in = capacity, out = bytes written (needed on
 * OT_E_BUF_SMALL; out may be NULL to ask for the size). nc > 65535 or
 * ne > 65536: OT_E_RANGE. data NULL with nc > 0: OT_E_ARG. CLA FF: OT_E_APDU.
 * Uses short encoding when nc <= 255 and ne <= 256 and !a->extended, so
 * apdu_encode(apdu_parse(x)) gives back x exactly. */
ot_err apdu_encode(const struct apdu *a, uint8_t *out, size_t *out_len);

/* Logical channel of a CLA byte (0-19). CLA values that are neither first nor
 * further interindustry (e.g. 0x20-0x3F, 0xFF): OT_E_APDU. */
ot_err apdu_cla_channel(uint8_t cla, uint8_t *ch);
/* cla with its channel bits replaced by ch, switching between first and further
 * interindustry encoding as needed, keeping the GP proprietary bit (b8), the
 * chaining bit (b5) and whether secure messaging is indicated. Staying in first
 * interindustry keeps b4b3 as they are; SM coming from further interindustry
 * (one bit, b6) becomes b4b3 = 01, the GP proprietary SM indication. ch > 19,
 * or a result that would be FF (proprietary + SM + chaining on channel 19):
 * OT_E_RANGE. Invalid cla (see apdu_cla_channel): OT_E_APDU. */
ot_err apdu_cla_with_channel(uint8_t cla, uint8_t ch, uint8_t *out);
/* True when the CLA indicates secure messaging (b4b3 != 00 in first
 * interindustry, b6 in further interindustry). False for invalid CLAs. */
bool apdu_cla_has_sm(uint8_t cla);
/* True when b8 is set (GlobalPlatform proprietary class), except 0xFF (invalid). */
bool apdu_cla_is_proprietary(uint8_t cla);

/* Response APDU: data and status word; data borrowed from the input. */
struct rapdu {
    const uint8_t *data;
    size_t len;
    uint16_t sw;
};

/* n < 2: OT_E_APDU_LEN. out->data is raw (never NULL), out->len = n - 2. */
ot_err rapdu_parse(const uint8_t *raw, size_t n, struct rapdu *out);

static inline uint8_t sw1(uint16_t sw)
{
    return (uint8_t)(sw >> 8);
}
static inline uint8_t sw2(uint16_t sw)
{
    return (uint8_t)sw;
}
/* 9000 only. */
bool sw_is_ok(uint16_t sw);
/* 9000, 61xx, 62xx, 63xx (ISO normal processing and warnings). */
bool sw_is_success_or_warning(uint16_t sw);
/* The ot_err for a status word: OT_OK for 9000, 61xx; a specific OT_E_SW_* for
 * the known ones (one static table); OT_E_SW for the rest. */
ot_err sw_to_err(uint16_t sw);
/* Short English description ("wrong length"); never NULL ("unknown status
 * word" for codes not in the table). */
const char *sw_describe(uint16_t sw);

/* 61xx / 6Cxx handling as a step machine (usable over any transport).
 *
 * After sending cmd and receiving a response with status sw, call
 * apdu_followup(): it returns OT_OK with *next_len > 0 and the next command
 * in next (GET RESPONSE 0x C0 00 00 xx on cmd's channel for 61xx, or cmd
 * re-encoded with Le = xx for 6Cxx), or OT_OK with *next_len = 0 when no
 * follow-up is needed. Response data of each 61xx step is to be appended by the
 * caller (struct apdu_chain below does it). */
/* next_len: in = capacity, out = bytes written (needed on OT_E_BUF_SMALL).
 * cmd's CLA invalid when a GET RESPONSE is needed: OT_E_APDU. */
ot_err apdu_followup(const struct apdu *cmd, uint16_t sw, uint8_t *next, size_t *next_len);

/* Collects a whole response across 61xx chains, capped at max bytes. */
struct apdu_chain {
    struct ot_buf data;
    uint16_t sw;
    unsigned steps; /* GET RESPONSE / resend steps taken so far */
};
#define APDU_CHAIN_MAX_STEPS 256

/* max: cap on the collected data (0: OT_BUF_DEFAULT_MAX). */
void apdu_chain_init(struct apdu_chain *c, size_t max);
/* Feed one raw R-APDU received for cmd, the command that was just sent (the
 * original first, then each follow-up as parsed from next). Sets *next_len
 * (in = capacity of next) to the length of the follow-up command written to
 * next (0 = complete; the full response is in c->data, the final status in
 * c->sw). Data of 61xx responses and of the final response is appended;
 * data of a 6Cxx response is dropped. More than APDU_CHAIN_MAX_STEPS
 * follow-ups, or more data than max: OT_E_LIMIT. R-APDU shorter than 2
 * bytes: OT_E_APDU_LEN. */
ot_err apdu_chain_feed(struct apdu_chain *c, const struct apdu *cmd, const uint8_t *resp,
                       size_t resp_len, uint8_t *next, size_t *next_len);
void apdu_chain_free(struct apdu_chain *c);

/* Blocking convenience over a transmit callback, built on apdu_chain. */
typedef ot_err (*apdu_transmit_fn)(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                                   size_t *resp_len);
/* Sends cmd, follows 61xx/6Cxx, and returns the full response data in out
 * (caller-initialised, appended to; its max caps the data) and the final
 * status word in *sw. fn gets resp_len = APDU_MAX_RESP_SIZE as capacity; its
 * errors are returned as they are. The status word is not turned into an
 * error: use sw_to_err(). On error out may hold partial data. */
ot_err apdu_transceive(apdu_transmit_fn fn, void *ctx, const struct apdu *cmd, struct ot_buf *out,
                       uint16_t *sw);

#endif

/* Admin-session scripts (agent/script.h). */
#define OT_LOG_COMPONENT "agent.script"
#include "agent/script.h"

#include "agent/agent_priv.h"
#include "core/apdu.h"
#include "core/log.h"

#include <stdlib.h>
#include <string.h>

#define TAG_CMD_SCRIPT  0xAEu
#define TAG_RESP_SCRIPT 0xAFu
#define TAG_MODE        0x82u
#define TAG_CAPDU       0x22u
#define TAG_GUARD       0xC1u
#define TAG_COUNT       0x80u
#define TAG_RAPDU       0x23u
#define INDEFINITE      0x80u

/* One inner length in the shortest definite form at p[*off]. */
static ot_err rd_len(const uint8_t *p, size_t n, size_t *off, size_t *len, char *why, size_t cap)
{
    size_t o = *off;

    if (o >= n) {
        agent_why(why, cap, "length missing");
        return OT_E_TRUNCATED;
    }
    if (p[o] < 0x80u) {
        *len = p[o];
        *off = o + 1;
        return OT_OK;
    }
    if (p[o] == 0x81u) {
        if (o + 1 >= n) {
            agent_why(why, cap, "length cut");
            return OT_E_TRUNCATED;
        }
        if (p[o + 1] < 0x80u) {
            agent_why(why, cap, "length 81 %02X not in the shortest form", p[o + 1]);
            return OT_E_FORMAT;
        }
        *len = p[o + 1];
        *off = o + 2;
        return OT_OK;
    }
    if (p[o] == 0x82u) {
        if (o + 2 >= n) {
            agent_why(why, cap, "length cut");
            return OT_E_TRUNCATED;
        }
        if (p[o + 1] == 0) {
            agent_why(why, cap, "length 82 00 %02X not in the shortest form", p[o + 2]);
            return OT_E_FORMAT;
        }
        *len = ((size_t)p[o + 1] << 8) | p[o + 2];
        *off = o + 3;
        return OT_OK;
    }
    agent_why(why, cap, "length byte %02X: only 00..7F, 81 xx, 82 xx xx", p[o]);
    return OT_E_FORMAT;
}

/* Outer AE 80 / AF 80 ... 00 00: the inner range into *start / *end. */
static ot_err outer(const uint8_t *p, size_t n, uint8_t tag, size_t *start, size_t *end,
                    size_t *bad, char *why, size_t cap)
{
    if (n < 4) {
        *bad = 0;
        agent_why(why, cap, "shorter than %02X 80 00 00", tag);
        return OT_E_TRUNCATED;
    }
    if (p[0] != tag || p[1] != INDEFINITE) {
        *bad = 0;
        agent_why(why, cap, "must start %02X 80 (indefinite length)", tag);
        return OT_E_FORMAT;
    }
    *start = 2;
    *end = n;
    return OT_OK;
}

ot_err agent_script_parse(const uint8_t *p, size_t n, struct agent_script *out, size_t *bad_off,
                          char *why, size_t why_cap)
{
    size_t off, end, len, at;
    size_t dummy;
    uint8_t prev = 0;
    bool ended = false;
    ot_err err;

    if (bad_off == NULL) {
        bad_off = &dummy;
    }
    *bad_off = 0;
    if ((p == NULL && n > 0) || out == NULL) {
        return OT_E_ARG;
    }
    out->mode = AGENT_SCRIPT_MODE_STOP;
    out->n = 0;
    err = outer(p, n, TAG_CMD_SCRIPT, &off, &end, bad_off, why, why_cap);
    if (err != OT_OK) {
        return err;
    }
    while (off < end) {
        uint8_t tag = p[off];
        at = off;
        *bad_off = at;
        if (tag == 0x00) {
            if (off + 1 >= end || p[off + 1] != 0x00) {
                agent_why(why, why_cap, "end-of-contents must be 00 00");
                return off + 1 >= end ? OT_E_TRUNCATED : OT_E_FORMAT;
            }
            if (off + 2 != end) {
                *bad_off = off + 2;
                agent_why(why, why_cap, "bytes after the end-of-contents");
                return OT_E_TRAILING;
            }
            ended = true;
            break;
        }
        off++;
        err = rd_len(p, end, &off, &len, why, why_cap);
        if (err != OT_OK) {
            return err;
        }
        if (len > end - off) {
            agent_why(why, why_cap, "tag %02X: length %zu runs past the end", tag, len);
            return OT_E_TRUNCATED;
        }
        switch (tag) {
        case TAG_MODE:
            if (at != 2) {
                agent_why(why, why_cap, "82 (error action) must come first");
                return OT_E_FORMAT;
            }
            if (len != 1 || p[off] > AGENT_SCRIPT_MODE_ALL) {
                agent_why(why, why_cap, "82 (error action): one byte, 00 or 01");
                return OT_E_FORMAT;
            }
            out->mode = p[off];
            break;
        case TAG_CAPDU:
            if (len < AGENT_SCRIPT_CAPDU_MIN || len > AGENT_SCRIPT_CAPDU_MAX) {
                agent_why(why, why_cap, "22 (C-APDU): 4..65544 bytes, not %zu", len);
                return OT_E_FORMAT;
            }
            if (out->n >= AGENT_SCRIPT_MAX_CMDS) {
                agent_why(why, why_cap, "more than %u C-APDUs", AGENT_SCRIPT_MAX_CMDS);
                return OT_E_LIMIT;
            }
            out->cmd[out->n].capdu = p + off;
            out->cmd[out->n].capdu_len = len;
            out->cmd[out->n].guard = NULL;
            out->cmd[out->n].guard_len = 0;
            out->n++;
            break;
        case TAG_GUARD:
            if (prev != TAG_CAPDU) {
                agent_why(why, why_cap, "C1 (guard) only right after a 22 (C-APDU)");
                return OT_E_FORMAT;
            }
            if (len < AGENT_SCRIPT_RAPDU_MIN || len > AGENT_SCRIPT_RAPDU_MAX) {
                agent_why(why, why_cap, "C1 (guard): 2..65538 bytes, not %zu", len);
                return OT_E_FORMAT;
            }
            out->cmd[out->n - 1].guard = p + off;
            out->cmd[out->n - 1].guard_len = len;
            break;
        default:
            agent_why(why, why_cap, "tag %02X not allowed in a command script", tag);
            return OT_E_FORMAT;
        }
        off += len;
        prev = tag;
    }
    if (!ended) {
        *bad_off = end;
        agent_why(why, why_cap, "no end-of-contents 00 00");
        return OT_E_TRUNCATED;
    }
    if (out->n == 0) {
        *bad_off = 2;
        agent_why(why, why_cap, "no C-APDU (22)");
        return OT_E_FORMAT;
    }
    return OT_OK;
}

bool agent_sw_failing(uint16_t sw)
{
    return !(sw == 0x9000u || (sw & 0xFF00u) == 0x6100u || sw == 0x6310u);
}

static ot_err put_len(struct ot_buf *b, size_t len)
{
    uint8_t l[3];
    size_t n;

    if (len < 0x80u) {
        l[0] = (uint8_t)len;
        n = 1;
    } else if (len <= 0xFFu) {
        l[0] = 0x81;
        l[1] = (uint8_t)len;
        n = 2;
    } else {
        l[0] = 0x82;
        l[1] = (uint8_t)(len >> 8);
        l[2] = (uint8_t)len;
        n = 3;
    }
    return ot_buf_append(b, l, n);
}

ot_err agent_script_run(struct agent_channel *ch, const struct agent_script *s, struct ot_buf *out,
                        size_t *ran, bool *stopped_by_guard)
{
    static const uint8_t head[] = {TAG_RESP_SCRIPT, INDEFINITE};
    static const uint8_t eoc[] = {0x00, 0x00};
    struct ot_buf body;
    uint8_t *resp = NULL;
    uint8_t cnt[4];
    size_t rl;
    size_t i;
    ot_err err = OT_OK;

    if (ch == NULL || s == NULL || out == NULL || ran == NULL || stopped_by_guard == NULL) {
        return OT_E_ARG;
    }
    *ran = 0;
    *stopped_by_guard = false;
    ot_buf_init(&body, AGENT_SCRIPT_RESP_MAX);
    resp = malloc(AGENT_RESP_MAX);
    if (resp == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (i = 0; i < s->n; i++) {
        const struct agent_script_cmd *c = &s->cmd[i];
        uint16_t sw;

        rl = AGENT_RESP_MAX;
        err = agent_channel_transmit(ch, c->capdu, c->capdu_len, resp, &rl);
        if (err != OT_OK) {
            OT_LOG_WARN("event=script_aborted index=%zu reason=\"%s\"", i, ot_strerror(err));
        }
        OT_TRY(err);
        OT_TRY(ot_buf_append_u8(&body, TAG_RAPDU));
        OT_TRY(put_len(&body, rl));
        OT_TRY(ot_buf_append(&body, resp, rl));
        (*ran)++;
        sw = (uint16_t)((resp[rl - 2] << 8) | resp[rl - 1]);
        if (c->guard != NULL && (c->guard_len != rl || memcmp(c->guard, resp, rl) != 0)) {
            OT_LOG_INFO("event=guard_mismatch index=%zu sw=%04X: the script stops here", i, sw);
            *stopped_by_guard = true;
            break;
        }
        if (s->mode == AGENT_SCRIPT_MODE_STOP && agent_sw_failing(sw)) {
            OT_LOG_INFO("event=script_stopped index=%zu sw=%04X", i, sw);
            break;
        }
    }
    /* 80 count (1 or 2 bytes, minimal), then the 23s. */
    OT_TRY(ot_buf_append(out, head, sizeof head));
    cnt[0] = TAG_COUNT;
    if (*ran <= 0xFFu) {
        cnt[1] = 1;
        cnt[2] = (uint8_t)*ran;
        OT_TRY(ot_buf_append(out, cnt, 3));
    } else {
        cnt[1] = 2;
        cnt[2] = (uint8_t)(*ran >> 8);
        cnt[3] = (uint8_t)*ran;
        OT_TRY(ot_buf_append(out, cnt, 4));
    }
    OT_TRY(ot_buf_append(out, body.data, body.len));
    OT_TRY(ot_buf_append(out, eoc, sizeof eoc));
out:
    ot_buf_free(&body);
    free(resp);
    return err;
}

ot_err agent_resp_parse(const uint8_t *p, size_t n, const uint8_t **rapdu, size_t *rapdu_len,
                        size_t max, size_t *count)
{
    size_t off, end, len, bad;
    size_t declared = 0;
    bool have_count = false;
    bool ended = false;
    ot_err err;

    if ((p == NULL && n > 0) || count == NULL) {
        return OT_E_ARG;
    }
    *count = 0;
    err = outer(p, n, TAG_RESP_SCRIPT, &off, &end, &bad, NULL, 0);
    if (err != OT_OK) {
        return err;
    }
    while (off < end) {
        uint8_t tag = p[off];
        size_t at = off;
        if (tag == 0x00) {
            if (off + 2 != end || p[off + 1] != 0x00) {
                return OT_E_FORMAT;
            }
            ended = true;
            break;
        }
        off++;
        OT_TRY(rd_len(p, end, &off, &len, NULL, 0));
        if (len > end - off) {
            return OT_E_TRUNCATED;
        }
        if (tag == TAG_COUNT) {
            if (at != 2 || len < 1 || len > 2 || (len == 2 && p[off] == 0)) {
                return OT_E_FORMAT;
            }
            declared = len == 1 ? p[off] : ((size_t)p[off] << 8) | p[off + 1];
            have_count = true;
        } else if (tag == TAG_RAPDU) {
            if (len < AGENT_SCRIPT_RAPDU_MIN || len > AGENT_SCRIPT_RAPDU_MAX) {
                return OT_E_FORMAT;
            }
            if (*count >= max || *count >= AGENT_SCRIPT_MAX_CMDS) {
                return OT_E_LIMIT;
            }
            if (rapdu != NULL && rapdu_len != NULL) {
                rapdu[*count] = p + off;
                rapdu_len[*count] = len;
            }
            (*count)++;
        } else {
            return OT_E_FORMAT;
        }
        off += len;
    }
    if (!ended) {
        return OT_E_TRUNCATED;
    }
    if (*count == 0 || (have_count && declared != *count)) {
        return OT_E_FORMAT;
    }
out:
    return err;
}

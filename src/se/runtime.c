/* vse card runtime: power, APDU dispatch, channels, secure channels (stub). */
#define OT_LOG_COMPONENT "se.runtime"

#include "se/card.h"
#include "se/se_priv.h"

#include "core/log.h"
#include "gp/privs.h"

#include <stdlib.h>
#include <string.h>

ot_err se_card_from_profile(const char *profile_json, size_t len, struct se_card **out)
{
    (void)profile_json;
    (void)len;
    *out = NULL;
    return OT_E_UNSUPPORTED;
}

ot_err se_card_from_profile_file(const char *path, struct se_card **out)
{
    (void)path;
    *out = NULL;
    return OT_E_UNSUPPORTED;
}

ot_err se_card_open(const char *image_path, struct se_card **out)
{
    (void)image_path;
    *out = NULL;
    return OT_E_UNSUPPORTED;
}

ot_err se_card_save_as(struct se_card *card, const char *image_path)
{
    (void)card;
    (void)image_path;
    return OT_E_UNSUPPORTED;
}

void se_card_free(struct se_card *card)
{
    if (card == NULL) {
        return;
    }
    free(card->image_path);
    ot_buf_free(&card->committed);
    ot_mem_wipe(card, sizeof *card);
    free(card);
}

ot_err se_card_power_on(struct se_card *card, uint8_t *atr, size_t *atr_len)
{
    (void)card;
    (void)atr;
    (void)atr_len;
    return OT_E_NO_CARD;
}

void se_card_power_off(struct se_card *card)
{
    if (card != NULL) {
        card->powered = false;
    }
}

ot_err se_card_transmit(struct se_card *card, const uint8_t *cmd, size_t n, uint8_t *resp,
                        size_t *resp_len)
{
    (void)card;
    (void)cmd;
    (void)n;
    (void)resp;
    (void)resp_len;
    return OT_E_NO_CARD;
}

bool se_card_is_mute(const struct se_card *card)
{
    return card->st.mute;
}

void se_mark_dirty(struct se_card *c)
{
    c->dirty = true;
}

int se_find_app(const struct se_state *st, const uint8_t *aid, size_t len)
{
    for (int i = 0; i < (int)st->napps; i++) {
        if (st->apps[i].aid.len == len && memcmp(st->apps[i].aid.b, aid, len) == 0) {
            return i;
        }
    }
    return -1;
}

int se_find_elf(const struct se_state *st, const uint8_t *aid, size_t len)
{
    for (int i = 0; i < (int)st->nelfs; i++) {
        if (st->elfs[i].aid.len == len && memcmp(st->elfs[i].aid.b, aid, len) == 0) {
            return i;
        }
    }
    return -1;
}

int se_app_sd(const struct se_state *st, int app)
{
    (void)st;
    (void)app;
    return 0;
}

bool se_has_priv(const struct se_state *st, int app, unsigned p)
{
    if (app < 0 || app >= (int)st->napps || p >= GP_PRIV_COUNT) {
        return false;
    }
    return (st->apps[app].privs & GP_PRIV_BIT(p)) != 0;
}

int se_priv_holder(const struct se_state *st, unsigned p)
{
    for (int i = 0; i < (int)st->napps; i++) {
        if (se_has_priv(st, i, p)) {
            return i;
        }
    }
    return 0;
}

void se_remove_app(struct se_card *c, int i)
{
    (void)c;
    (void)i;
}

void se_remove_elf(struct se_card *c, int i)
{
    (void)c;
    (void)i;
}

uint32_t se_mem_free(const struct se_state *st)
{
    (void)st;
    return SE_MEM_TOTAL;
}

ot_err se_applet_set_data(struct se_applet_ctx *x, const uint8_t *p, size_t n)
{
    (void)x;
    (void)p;
    (void)n;
    return OT_E_UNSUPPORTED;
}

void se_applet_block_card(struct se_applet_ctx *x)
{
    (void)x;
}

ot_err se_applet_ppse_list(const struct se_applet_ctx *x, struct buf_wr *out)
{
    (void)x;
    return out->err;
}

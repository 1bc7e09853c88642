/* Native applet module "emv-payment" (minimal placeholder, replaced by the real module). */
#include "se/applets/registry.h"

static const uint8_t se_emv_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x02};
static const uint8_t se_emv_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x02, 0x01};

static ot_err se_emv_install(struct se_applet_ctx *x, const uint8_t *params, size_t n)
{
    (void)params;
    (void)n;
    return se_applet_set_data(x, NULL, 0);
}

static uint16_t se_emv_select(struct se_applet_ctx *x, struct buf_wr *out)
{
    (void)x;
    (void)out;
    return 0x9000;
}

static uint16_t se_emv_process(struct se_applet_ctx *x, const struct apdu *cmd, struct buf_wr *out)
{
    (void)x;
    (void)cmd;
    (void)out;
    return 0x6D00;
}

static uint16_t se_emv_personalize(struct se_applet_ctx *x, uint8_t p1, uint8_t p2,
                                   const uint8_t *d, size_t n)
{
    (void)x;
    (void)p1;
    (void)p2;
    (void)d;
    (void)n;
    return 0x6A80;
}

const struct se_applet_ops se_emv_ops = {
    .name = "emv-payment",
    .pkg_aid = se_emv_pkg,
    .pkg_aid_len = sizeof(se_emv_pkg),
    .module_aid = se_emv_mod,
    .module_aid_len = sizeof(se_emv_mod),
    .payment = true,
    .install = se_emv_install,
    .select = se_emv_select,
    .process = se_emv_process,
    .personalize = se_emv_personalize,
    .wipe = NULL,
    .ppse_entry = NULL,
};

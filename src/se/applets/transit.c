/* Native applet module "transit" (minimal placeholder, replaced by the real module). */
#include "se/applets/registry.h"

static const uint8_t se_transit_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x03};
static const uint8_t se_transit_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x03, 0x01};

static ot_err se_transit_install(struct se_applet_ctx *x, const uint8_t *params, size_t n)
{
    (void)params;
    (void)n;
    return se_applet_set_data(x, NULL, 0);
}

static uint16_t se_transit_select(struct se_applet_ctx *x, struct buf_wr *out)
{
    (void)x;
    (void)out;
    return 0x9000;
}

static uint16_t se_transit_process(struct se_applet_ctx *x, const struct apdu *cmd,
                                   struct buf_wr *out)
{
    (void)x;
    (void)cmd;
    (void)out;
    return 0x6D00;
}

static uint16_t se_transit_personalize(struct se_applet_ctx *x, uint8_t p1, uint8_t p2,
                                       const uint8_t *d, size_t n)
{
    (void)x;
    (void)p1;
    (void)p2;
    (void)d;
    (void)n;
    return 0x6A80;
}

const struct se_applet_ops se_transit_ops = {
    .name = "transit",
    .pkg_aid = se_transit_pkg,
    .pkg_aid_len = sizeof(se_transit_pkg),
    .module_aid = se_transit_mod,
    .module_aid_len = sizeof(se_transit_mod),
    .payment = true,
    .install = se_transit_install,
    .select = se_transit_select,
    .process = se_transit_process,
    .personalize = se_transit_personalize,
    .wipe = NULL,
    .ppse_entry = NULL,
};

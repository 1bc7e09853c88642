/* Native applet module "telecom" (minimal placeholder, replaced by the real module). */
#include "se/applets/registry.h"

static const uint8_t se_telecom_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x04};
static const uint8_t se_telecom_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x04, 0x01};

static ot_err se_telecom_install(struct se_applet_ctx *x, const uint8_t *params, size_t n)
{
    (void)params;
    (void)n;
    return se_applet_set_data(x, NULL, 0);
}

static uint16_t se_telecom_select(struct se_applet_ctx *x, struct buf_wr *out)
{
    (void)x;
    (void)out;
    return 0x9000;
}

static uint16_t se_telecom_process(struct se_applet_ctx *x, const struct apdu *cmd,
                                   struct buf_wr *out)
{
    (void)x;
    (void)cmd;
    (void)out;
    return 0x6D00;
}

static uint16_t se_telecom_personalize(struct se_applet_ctx *x, uint8_t p1, uint8_t p2,
                                       const uint8_t *d, size_t n)
{
    (void)x;
    (void)p1;
    (void)p2;
    (void)d;
    (void)n;
    return 0x6A80;
}

const struct se_applet_ops se_telecom_ops = {
    .name = "telecom",
    .pkg_aid = se_telecom_pkg,
    .pkg_aid_len = sizeof(se_telecom_pkg),
    .module_aid = se_telecom_mod,
    .module_aid_len = sizeof(se_telecom_mod),
    .payment = false,
    .install = se_telecom_install,
    .select = se_telecom_select,
    .process = se_telecom_process,
    .personalize = se_telecom_personalize,
    .wipe = NULL,
    .ppse_entry = NULL,
};

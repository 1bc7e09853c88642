/* Native applet module "ppse": the Proximity Payment System Environment
 * (EMV Book B, 2PAY.SYS.DDF01).
 *
 * SELECT answers the FCI
 *   6F { 84 <DF name = instance AID>, A5 { BF0C { 61 {4F, 50, 87} ... } } }
 * where the directory entries come from se_applet_ppse_list(): one per
 * selectable instance whose module has a ppse_entry (emv-payment). The PPSE
 * has no command of its own (6D00) and no personalization (6985).
 *
 * Persistent blob: version byte only.
 */
#include "se/applets/aputil.h"
#include "se/applets/registry.h"

#include "core/tlv.h"

#define OT_LOG_COMPONENT "se.ppse"
#include "core/log.h"

#define PPSE_BLOB_VERSION 1u

static const uint8_t ppse_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x01};
static const uint8_t ppse_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x01, 0x01};

static ot_err ppse_install(struct se_applet_ctx *x, const uint8_t *params, size_t n)
{
    static const uint8_t blob[] = {PPSE_BLOB_VERSION};
    (void)params; /* no install parameters are defined; any are ignored */
    (void)n;
    return se_applet_set_data(x, blob, sizeof(blob));
}

static uint16_t ppse_select(struct se_applet_ctx *x, struct buf_wr *out)
{
    size_t fci, prop, dir;
    tlv_open(out, 0x6Fu, &fci);
    tlv_put(out, 0x84u, x->aid, x->aid_len);
    tlv_open(out, 0xA5u, &prop);
    tlv_open(out, 0xBF0Cu, &dir); /* FCI issuer discretionary data */
    if (out->err == OT_OK && se_applet_ppse_list(x, out) != OT_OK) {
        OT_LOG_DEBUG("ppse: directory does not fit the response");
    }
    tlv_close(out, dir);
    tlv_close(out, prop);
    tlv_close(out, fci);
    return out->err == OT_OK ? APUTIL_SW_OK : APUTIL_SW_NO_DIAG;
}

static uint16_t ppse_process(struct se_applet_ctx *x, const struct apdu *a, struct buf_wr *out)
{
    uint16_t sw = aputil_check_cla(a->cla, apdu_cla_is_proprietary(a->cla));
    (void)x;
    (void)out;
    return sw != 0 ? sw : APUTIL_SW_INS;
}

static uint16_t ppse_personalize(struct se_applet_ctx *x, uint8_t p1, uint8_t p2, const uint8_t *d,
                                 size_t n)
{
    (void)x;
    (void)p1;
    (void)p2;
    (void)d;
    (void)n;
    return APUTIL_SW_CONDITIONS; /* nothing to personalize: the list is computed */
}

const struct se_applet_ops se_ppse_ops = {
    .name = "ppse",
    .pkg_aid = ppse_pkg,
    .pkg_aid_len = sizeof(ppse_pkg),
    .module_aid = ppse_mod,
    .module_aid_len = sizeof(ppse_mod),
    .payment = false,
    .install = ppse_install,
    .select = ppse_select,
    .process = ppse_process,
    .personalize = ppse_personalize,
    .wipe = NULL,
    .ppse_entry = NULL,
};

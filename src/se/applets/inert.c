/* The inert module: what an instance of a Load File the vse has no code for
 * runs (issue 12 point 5).
 *
 * A CAP file of any Java Card package can be loaded (gpcm_install.c stores
 * its Load File Data Block and lists its modules); INSTALL [for install] of
 * one of its modules creates an inert instance, so the load - install -
 * select - delete round trip of every GP tool works with any package. The
 * instance answers SELECT with an FCI naming itself (6F {84 AID}) and every
 * other command with 6D00; it keeps no data and cannot be personalized.
 */
#include "se/applets/registry.h"

#include "core/tlv.h"

#define INERT_TAG_FCI 0x6Fu
#define INERT_TAG_DF  0x84u
#define INERT_SW_OK   0x9000u
#define INERT_SW_INS  0x6D00u

static uint16_t inert_select(struct se_applet_ctx *x, struct buf_wr *out)
{
    size_t m;
    tlv_open(out, INERT_TAG_FCI, &m);
    tlv_put(out, INERT_TAG_DF, x->aid, x->aid_len);
    tlv_close(out, m);
    return INERT_SW_OK;
}

static uint16_t inert_process(struct se_applet_ctx *x, const struct apdu *cmd, struct buf_wr *out)
{
    (void)x;
    (void)cmd;
    (void)out;
    return INERT_SW_INS;
}

const struct se_applet_ops se_inert_ops = {
    .name = "inert",
    .select = inert_select,
    .process = inert_process,
};

const struct se_applet_ops *se_applet_for_instance(const uint8_t *elf_aid, size_t len)
{
    const struct se_applet_ops *ops = se_applet_find(elf_aid, len);
    return ops != NULL ? ops : &se_inert_ops;
}

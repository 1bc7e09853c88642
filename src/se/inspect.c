/* vse registry listing (tree / JSON). */
#include "se/card.h"
#include "se/se_priv.h"

#define OT_LOG_COMPONENT "se.inspect"
#include "core/log.h"

ot_err se_card_inspect(const struct se_card *card, enum se_inspect_fmt fmt, char *out,
                       size_t *out_len)
{
    (void)card;
    (void)fmt;
    (void)out;
    (void)out_len;
    return OT_E_UNSUPPORTED;
}

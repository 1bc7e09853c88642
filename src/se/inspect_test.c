/* Tests for se/inspect.c: the registry as a tree and as JSON. */
#include "se/card.h"
#include "se/se_priv.h"

#include "core/testutil.h"
#include "gp/privs.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ISD  "A000000151000000"
#define PPSE "325041592E5359532E4444463031"

static struct se_card *card_from(const char *file)
{
    char path[512];
    struct se_card *c = NULL;
    snprintf(path, sizeof(path), "%s/profiles/%s", OT_SOURCE_DIR, file);
    assert_int_equal(se_card_from_profile_file(path, &c), OT_OK);
    return c;
}

static char *inspect(const struct se_card *c, enum se_inspect_fmt fmt)
{
    size_t len = 0;
    char *out;

    /* the size probe: OT_E_BUF_SMALL with the size needed (NUL included) */
    assert_int_equal(se_card_inspect(c, fmt, NULL, &len), OT_E_BUF_SMALL);
    assert_true(len > 1);
    out = malloc(len);
    assert_non_null(out);
    size_t cap = len;
    assert_int_equal(se_card_inspect(c, fmt, out, &cap), OT_OK);
    assert_int_equal(cap, len - 1);
    assert_int_equal(strlen(out), cap);
    /* one byte short is refused and says the same size */
    cap = len - 1;
    char *small = malloc(cap);
    assert_non_null(small);
    assert_int_equal(se_card_inspect(c, fmt, small, &cap), OT_E_BUF_SMALL);
    assert_int_equal(cap, len);
    free(small);
    return out;
}

/* No key value of the card appears in the text, in any case. */
static void assert_no_keys(const struct se_card *c, const char *text)
{
    for (size_t i = 0; i < c->st.napps; i++) {
        const struct se_sd *sd = &c->st.apps[i].sd_data;
        if (!c->st.apps[i].is_sd) {
            continue;
        }
        for (size_t k = 0; k < sd->nkeys; k++) {
            char hex[65];
            assert_int_equal(hex_encode(sd->keys[k].val, sd->keys[k].len, hex, sizeof(hex)), OT_OK);
            assert_null(strstr(text, hex));
            for (char *p = hex; *p != '\0'; p++) {
                if (*p >= 'A' && *p <= 'F') {
                    *p = (char)(*p - 'A' + 'a');
                }
            }
            assert_null(strstr(text, hex));
            /* nor half of one (8 bytes) */
            hex[16] = '\0';
            assert_null(strstr(text, hex));
        }
    }
}

static void test_tree_dev(void **state)
{
    (void)state;
    struct se_card *c = card_from("dev.json");
    char *t = inspect(c, SE_INSPECT_TREE);

    assert_non_null(strstr(t, "card type=eSE lcs=SECURED (0F) cin=4F54534D44455601 iin=4F54534D"));
    assert_non_null(strstr(t, "ISD " ISD " lcs=SECURED (0F) privileges=security-domain,"));
    assert_non_null(strstr(t, "card-lock"));
    /* the PPSE instance nested under the ISD */
    assert_non_null(strstr(t, "\n  APP " PPSE " lcs=SELECTABLE (07) privileges=none "
                              "elf=F04F54534D01 module=F04F54534D0101"));
    assert_non_null(strstr(t, "key kvn=30 kid=01 type=aes len=16"));
    assert_non_null(strstr(t, "key kvn=30 kid=03 type=aes len=16"));
    assert_non_null(strstr(t, "sequence kvn=30 counter=000000"));
    assert_non_null(strstr(t, "confirmation counter=0000")); /* 9EFE80: Receipt Generation */
    assert_non_null(strstr(t, "ELF A0000001515350 lcs=LOADED"));
    assert_non_null(strstr(t, "\n  module A000000151535041"));
    static const char *const pkgs[] = {"F04F54534D01", "F04F54534D02", "F04F54534D03",
                                       "F04F54534D04", "F04F54534D05"};
    for (size_t i = 0; i < 5; i++) {
        char line[64];
        snprintf(line, sizeof(line), "ELF %s lcs=LOADED version=0100 sd=" ISD, pkgs[i]);
        assert_non_null(strstr(t, line));
        snprintf(line, sizeof(line), "  module %s01", pkgs[i]);
        assert_non_null(strstr(t, line));
    }
    assert_null(strstr(t, "unattached"));
    assert_no_keys(c, t);
    free(t);
    se_card_free(c);
}

/* Nesting follows the associations: SP SDs under the central SD, their
 * applications under them. */
static void test_tree_nesting(void **state)
{
    (void)state;
    struct se_card *c = card_from("uicc-thirdparty.json");
    char *t = inspect(c, SE_INSPECT_TREE);

    assert_non_null(strstr(t, "card type=UICC"));
    assert_non_null(strstr(t, "\n  SD F04F54534D534401 lcs=PERSONALIZED (0F) "
                              "privileges=security-domain,trusted-path,authorized-management "));
    assert_non_null(strstr(t, "\n    SD F04F54534D534410 "));    /* SP SD under central */
    assert_non_null(strstr(t, "\n      APP A0000000041010 "));   /* its payment app */
    assert_non_null(strstr(t, "\n    SD F04F54534D534413 "));    /* under the third party */
    assert_non_null(strstr(t, "\n      APP F04F54534D0301AA ")); /* its transit app */
    assert_non_null(strstr(t, "\n    APP A0000000871002 "));     /* telecom under the MNO SD */
    assert_non_null(strstr(t, "delegated-management"));
    assert_non_null(strstr(t, "mandated-dap-verification"));
    assert_no_keys(c, t);
    free(t);
    se_card_free(c);
}

static json_t *find_child(json_t *node, const char *aid)
{
    json_t *children = json_object_get(node, "children");
    size_t i;
    json_t *ch;
    json_array_foreach(children, i, ch)
    {
        if (strcmp(json_string_value(json_object_get(ch, "aid")), aid) == 0) {
            return ch;
        }
    }
    return NULL;
}

static void test_json_dev(void **state)
{
    (void)state;
    struct se_card *c = card_from("dev.json");
    char *t = inspect(c, SE_INSPECT_JSON);
    json_error_t jerr;
    json_t *root = json_loads(t, JSON_REJECT_DUPLICATES, &jerr);

    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "type")), "eSE");
    assert_string_equal(json_string_value(json_object_get(root, "lcs")), "SECURED");
    assert_string_equal(json_string_value(json_object_get(root, "cin")), "4F54534D44455601");
    assert_true(json_is_false(json_object_get(root, "mute")));
    json_t *isd = json_object_get(root, "isd");
    assert_string_equal(json_string_value(json_object_get(isd, "aid")), ISD);
    assert_string_equal(json_string_value(json_object_get(isd, "kind")), "ISD");
    assert_string_equal(json_string_value(json_object_get(isd, "privileges_hex")), "9EFE80");
    json_t *privs = json_object_get(isd, "privileges");
    assert_string_equal(json_string_value(json_array_get(privs, 0)), "security-domain");
    assert_int_equal(json_integer_value(json_object_get(isd, "scp")), 3);
    assert_string_equal(json_string_value(json_object_get(isd, "i")), "10");
    assert_int_equal(json_integer_value(json_object_get(isd, "confirmation_counter")), 0);
    json_t *keys = json_object_get(isd, "keys");
    assert_int_equal(json_array_size(keys), 3);
    for (size_t k = 0; k < 3; k++) {
        json_t *ko = json_array_get(keys, k);
        assert_int_equal(json_integer_value(json_object_get(ko, "kvn")), 0x30);
        assert_int_equal(json_integer_value(json_object_get(ko, "kid")), (json_int_t)k + 1);
        assert_string_equal(json_string_value(json_object_get(ko, "type")), "aes");
        assert_int_equal(json_integer_value(json_object_get(ko, "len")), 16);
        assert_int_equal(json_object_size(ko), 4); /* nothing else: no value */
    }
    json_t *pp = find_child(isd, PPSE);
    assert_non_null(pp);
    assert_string_equal(json_string_value(json_object_get(pp, "kind")), "APP");
    assert_string_equal(json_string_value(json_object_get(pp, "lcs")), "SELECTABLE");
    assert_string_equal(json_string_value(json_object_get(pp, "module")), "F04F54534D0101");
    assert_string_equal(json_string_value(json_object_get(pp, "sd")), ISD);
    assert_true(json_integer_value(json_object_get(pp, "data_len")) > 0); /* installed */
    assert_int_equal(json_array_size(json_object_get(root, "unattached")), 0);
    json_t *elfs = json_object_get(root, "load_files");
    assert_int_equal(json_array_size(elfs), 6);
    json_t *ssd = json_array_get(elfs, 0);
    assert_string_equal(json_string_value(json_object_get(ssd, "aid")), "A0000001515350");
    assert_true(json_is_false(json_object_get(ssd, "native")));
    json_t *emv = json_array_get(elfs, 2);
    assert_string_equal(json_string_value(json_object_get(emv, "aid")), "F04F54534D02");
    assert_true(json_is_true(json_object_get(emv, "native")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(emv, "modules"), 0)),
                        "F04F54534D0201");
    assert_no_keys(c, t);
    json_decref(root);
    free(t);
    se_card_free(c);
}

/* Every shipped profile lists in both formats, without key values, and the
 * JSON has one node per registry entry. */
static size_t count_nodes(json_t *node)
{
    size_t n = 1, i;
    json_t *ch;
    json_array_foreach(json_object_get(node, "children"), i, ch)
    {
        n += count_nodes(ch);
    }
    return n;
}

static void test_all_profiles(void **state)
{
    (void)state;
    static const char *const files[] = {"dev.json", "ese-central.json", "ese-thirdparty.json",
                                        "uicc-central.json", "uicc-thirdparty.json"};
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        struct se_card *c = card_from(files[f]);
        char *t = inspect(c, SE_INSPECT_TREE);
        assert_no_keys(c, t);
        free(t);
        t = inspect(c, SE_INSPECT_JSON);
        assert_no_keys(c, t);
        json_t *root = json_loads(t, 0, NULL);
        assert_non_null(root);
        assert_int_equal(count_nodes(json_object_get(root, "isd")), c->st.napps);
        json_decref(root);
        free(t);
        se_card_free(c);
    }
}

/* An association that leads nowhere (possible only in a crafted image) is
 * listed under "unattached", never dropped; a loop does not hang. */
static void test_unattached(void **state)
{
    (void)state;
    struct se_card *c = card_from("ese-central.json");
    int sp = se_find_app(&c->st, (const uint8_t *)"\xF0\x4F\x54\x53\x4D\x53\x44\x10", 8);
    int cen = se_find_app(&c->st, (const uint8_t *)"\xF0\x4F\x54\x53\x4D\x53\x44\x01", 8);
    assert_true(sp > 0 && cen > 0);
    /* SP SD and central SD associated with each other */
    c->st.apps[cen].sd = c->st.apps[sp].aid;
    c->st.apps[sp].sd = c->st.apps[cen].aid;
    char *t = inspect(c, SE_INSPECT_TREE);
    assert_non_null(strstr(t, "unattached:"));
    assert_non_null(strstr(t, "SD F04F54534D534410"));
    assert_non_null(strstr(t, "SD F04F54534D534401"));
    free(t);
    t = inspect(c, SE_INSPECT_JSON);
    json_t *root = json_loads(t, 0, NULL);
    assert_non_null(root);
    size_t n = count_nodes(json_object_get(root, "isd"));
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(root, "unattached"), i, o)
    {
        n += count_nodes(o);
    }
    assert_int_equal(n, c->st.napps);
    json_decref(root);
    free(t);
    size_t cap = 16;
    char buf[16];
    assert_int_equal(se_card_inspect(c, (enum se_inspect_fmt)7, buf, &cap), OT_E_ARG);
    assert_int_equal(se_card_inspect(NULL, SE_INSPECT_TREE, buf, &cap), OT_E_ARG);
    se_card_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_dev),   cmocka_unit_test(test_tree_nesting),
        cmocka_unit_test(test_json_dev),   cmocka_unit_test(test_all_profiles),
        cmocka_unit_test(test_unattached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

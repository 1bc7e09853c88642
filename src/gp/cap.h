/* Java Card CAP files: reading the zip, checking the components, building the
 * Load File for GlobalPlatform LOAD (GPCS 11.6) and its hash for INSTALL [for load].
 *
 * A CAP file is a zip (JAR) holding one package's components as entries named
 * "<package path>/javacard/<Component>.cap" (JCVM 2.x and 3.0/3.1 compact
 * format; the package path may be empty). Each component is
 * u1 tag, u2 size, u1 info[size] (JCVM 3.0.5 6.1). The reader:
 *   - accepts the CAP from memory (cap_open_mem) or from a path (cap_open_path,
 *     which reads the file into memory with a cap and then does the same);
 *   - looks only at entries whose last directory is "javacard"; all components
 *     must sit in one such directory (a second one: OT_E_CAP); a name it does
 *     not know is ignored; a component seen twice: OT_E_CAP; a JC 3.1
 *     StaticResources.cap (not part of this reader's load order):
 *     OT_E_UNSUPPORTED;
 *   - checks each known component's tag byte (OT_E_CAP) and that its u2 size
 *     plus 3 equals the entry size (shorter entry: OT_E_TRUNCATED, longer: OT_E_CAP);
 *   - requires Header, Directory, Import, Class, Method, StaticField,
 *     ConstantPool and RefLocation (missing: OT_E_CAP); Applet, Export,
 *     Descriptor and Debug are optional;
 *   - parses the Header (magic DECAFFED, CAP format version, flags, package
 *     version and AID) and the Applet component (applet AIDs). A field running
 *     past its component: OT_E_TRUNCATED; an AID length outside 5..16 or
 *     trailing bytes: OT_E_CAP. The JC 3.1 extended format (Header flag 0x08,
 *     u4 component sizes) is OT_E_UNSUPPORTED.
 * Bytes that are not a zip, a damaged or encrypted entry: OT_E_CAP. Caps:
 * CAP_MAX_FILE_SIZE (zip bytes), CAP_MAX_ENTRIES (zip entries), CAP_MAX_TOTAL
 * (sum of component sizes); beyond them OT_E_LIMIT.
 *
 * A struct cap_file is immutable after cap_open_*; reading it from several
 * threads is safe.
 */
#ifndef OT_GP_CAP_H
#define OT_GP_CAP_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAP_MAX_FILE_SIZE ((size_t)4 * 1024 * 1024) /* zip file bytes */
#define CAP_MAX_ENTRIES   256u                      /* zip entries, any name */
#define CAP_MAX_TOTAL     ((size_t)512 * 1024)      /* sum of component entry sizes */
#define CAP_AID_MIN       5u                        /* ISO 7816-5 AID: 5..16 bytes */
#define CAP_AID_MAX       16u
#define CAP_MAX_APPLETS   255u        /* Applet component count is a u1 */
#define CAP_MAGIC         0xDECAFFEDu /* JCVM 6.4 */

/* Component tags (JCVM 3.0.5 Table 6-1). */
enum cap_component {
    CAP_COMP_HEADER = 1,
    CAP_COMP_DIRECTORY = 2,
    CAP_COMP_APPLET = 3,
    CAP_COMP_IMPORT = 4,
    CAP_COMP_CONSTANT_POOL = 5,
    CAP_COMP_CLASS = 6,
    CAP_COMP_METHOD = 7,
    CAP_COMP_STATIC_FIELD = 8,
    CAP_COMP_REF_LOCATION = 9,
    CAP_COMP_EXPORT = 10,
    CAP_COMP_DESCRIPTOR = 11,
    CAP_COMP_DEBUG = 12,
};
#define CAP_COMP_MAX 12

/* Flags for the Load File Data Block. Default (0): Header, Directory, Import,
 * Applet, Class, Method, StaticField, Export, ConstantPool, RefLocation (each
 * only if present), the order of JCVM 6.2 / GPCS C.2. */
#define CAP_LFDB_DESCRIPTOR 0x01u /* append the Descriptor component */
#define CAP_LFDB_DEBUG      0x02u /* append the Debug component (after Descriptor) */

struct cap_aid {
    size_t len;
    uint8_t b[CAP_AID_MAX];
};

struct cap_info {
    uint8_t cap_major, cap_minor; /* CAP file format version (Header) */
    uint8_t flags;                /* Header flags: 01 ACC_INT, 02 ACC_EXPORT, 04 ACC_APPLET */
    uint8_t pkg_major, pkg_minor; /* package version */
    struct cap_aid package_aid;
    size_t applet_count; /* 0 when there is no Applet component */
    struct cap_aid applets[CAP_MAX_APPLETS];
};

struct cap_file;

/* Reads a CAP from n bytes of memory (copied; the caller's buffer may go
 * away). n > CAP_MAX_FILE_SIZE: OT_E_LIMIT. *out = NULL on failure. */
ot_err cap_open_mem(const uint8_t *zip, size_t n, struct cap_file **out);
/* Same from a file. Cannot open/read: OT_E_IO. */
ot_err cap_open_path(const char *path, struct cap_file **out);
void cap_free(struct cap_file *cap); /* NULL: no-op */

const struct cap_info *cap_get_info(const struct cap_file *cap);

/* The whole component (tag, size and info) as stored; borrowed from cap.
 * Absent: OT_E_NOT_FOUND. Unknown tag: OT_E_ARG. */
ot_err cap_component(const struct cap_file *cap, enum cap_component c, const uint8_t **p,
                     size_t *n);

/* Size of the Load File Data Block for these CAP_LFDB_* flags. */
size_t cap_lfdb_size(const struct cap_file *cap, unsigned flags);
/* Writes the LFDB (components concatenated in load order). len: in = capacity,
 * out = bytes written (needed on OT_E_BUF_SMALL). */
ot_err cap_lfdb(const struct cap_file *cap, unsigned flags, uint8_t *out, size_t *len);

enum cap_hash {
    CAP_HASH_SHA1 = 1,   /* 20 bytes; legacy cards */
    CAP_HASH_SHA256 = 2, /* 32 bytes */
};
#define CAP_HASH_MAX 32u

/* Hash of the LFDB (the components, without the C4 tag and length), as
 * INSTALL [for load] and DAP verification use it (GPCS 11.5.2.3, C.2).
 * Writes 20 or 32 bytes; len as above. Unknown alg: OT_E_ARG. */
ot_err cap_lfdb_hash(const struct cap_file *cap, unsigned flags, enum cap_hash alg, uint8_t *out,
                     size_t *len);

/* One DAP block of the Load File (GPCS 11.6.2.3): E2 L { 4F L sd_aid, C3 L sig }. */
struct cap_dap {
    const uint8_t *sd_aid;
    size_t sd_aid_len; /* 5..16 */
    const uint8_t *sig;
    size_t sig_len; /* 1..65535 */
};
#define CAP_MAX_DAPS 8u

/* Builds a Load File from any LFDB: the DAP blocks (ndap <= CAP_MAX_DAPS,
 * may be 0 with daps NULL) then C4 <BER length> lfdb. lfdb_len 1..0xFFFFFF.
 * len: in = capacity, out = bytes written (needed on OT_E_BUF_SMALL). */
ot_err cap_load_file_build(const uint8_t *lfdb, size_t lfdb_len, const struct cap_dap *daps,
                           size_t ndap, uint8_t *out, size_t *len);
/* Bytes cap_load_file_build needs (0 if the arguments are invalid). */
size_t cap_load_file_size(size_t lfdb_len, const struct cap_dap *daps, size_t ndap);

/* The Load File of this CAP (cap_lfdb + cap_load_file_build). */
ot_err cap_load_file(const struct cap_file *cap, unsigned flags, const struct cap_dap *daps,
                     size_t ndap, uint8_t *out, size_t *len);

/* Name of a component as used in the zip entry ("Header", "RefLocation"...);
 * NULL for an unknown tag. */
const char *cap_component_name(enum cap_component c);

#endif

/* WWN parsing and generation, and vHBAs through libvirt's node device API
 * (see npiv.h). */
#include "plugins/sriov/npiv.h"

#include <errno.h>
#include <inttypes.h>
#include <libvirt/virterror.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messages/json_util.h"
#include "messages/util.h"

#define WWN_DIGITS 16
#define OUI_DIGITS 6
#define NAA5_VENDOR_DIGITS 9
#define NAA5_VENDOR_MASK ((UINT64_C(1) << (4 * NAA5_VENDOR_DIGITS)) - 1)
/* Longer than any node device name libvirt makes; bounds what operator
 * input can put into the XML and the messages. */
#define NODE_NAME_MAX 128
#define SCSI_HOST_PREFIX "scsi_host"

/* Copies n hex digits of s to out in lower case: the index of the first
 * non-hex character, or -1 when all are hex. */
static ssize_t copy_hex_lower(const char *s, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                int v = nst_hex_digit(s[i]);
                if (v < 0)
                        return (ssize_t)i;
                out[i] = digits[v];
        }
        return -1;
}

/* Which NAA types name an FC port or node (FC-FS): 1 IEEE 48-bit, 2 IEEE
 * extended, 3 locally assigned, 5 IEEE registered. */
static const char *naa_refusal(int naa) {
        switch (naa) {
        case 1:
        case 2:
        case 3:
        case 5:
                return NULL;
        case 6:
                return "is 128-bit (IEEE registered extended), not a port or node name";
        default:
                return "is not a port or node name type (1, 2, 3 or 5)";
        }
}

int nst_wwn_parse(const char *s, char out[NST_WWN_LEN], struct nst_error *err) {
        char wwn[NST_WWN_LEN];
        if (!s)
                return nst_error_set(err, -EINVAL, "InvalidInput", "WWN: missing");
        const char *digits = s;
        if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X'))
                digits += 2;

        size_t len = strlen(digits);
        if (len != WWN_DIGITS)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "WWN '%.64s': expected 16 hex digits%s, got %zu characters",
                                     s, strchr(s, ':') ? " without colons" : "", len);
        ssize_t bad = copy_hex_lower(digits, WWN_DIGITS, wwn);
        if (bad >= 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "WWN '%s': '%c' is not a hex digit", s, digits[bad]);
        wwn[WWN_DIGITS] = '\0';

        int naa = nst_hex_digit(wwn[0]);
        const char *refusal = naa_refusal(naa);
        if (refusal)
                return nst_error_set(err, -EINVAL, "InvalidInput", "WWN '%s': NAA type %x %s", s,
                                     naa, refusal);
        memcpy(out, wwn, NST_WWN_LEN);
        return 0;
}

/* "001a4a" or "00:1a:4a" (either case) to 6 lower-case digits. */
static bool parse_oui(const char *oui, char out[OUI_DIGITS]) {
        size_t len = strlen(oui);
        if (len == OUI_DIGITS)
                return copy_hex_lower(oui, OUI_DIGITS, out) < 0;
        if (len != OUI_DIGITS + 2 || oui[2] != ':' || oui[5] != ':')
                return false;
        for (size_t i = 0; i < 3; i++)
                if (copy_hex_lower(oui + 3 * i, 2, out + 2 * i) >= 0)
                        return false;
        return true;
}

int nst_wwn_generate_naa5(const char *oui, uint64_t rnd, char out[NST_WWN_LEN],
                          struct nst_error *err) {
        char digits[OUI_DIGITS];
        if (!oui || !parse_oui(oui, digits))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "OUI '%.32s': expected 6 hex digits as 001a4a or 00:1a:4a",
                                     oui ? oui : "(null)");
        snprintf(out, NST_WWN_LEN, "5%.6s%09" PRIx64, digits, rnd & NAA5_VENDOR_MASK);
        return 0;
}

/* ---- vHBA XML ---------------------------------------------------------- */

static bool xml_value_ok(const char *s) {
        size_t len = strlen(s);
        if (!nst_utf8_valid(s, len))
                return false;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                        return false;
        }
        return true;
}

static void put_escaped(FILE *f, const char *s) {
        for (; *s; s++) {
                switch (*s) {
                case '&':
                        fputs("&amp;", f);
                        break;
                case '<':
                        fputs("&lt;", f);
                        break;
                case '>':
                        fputs("&gt;", f);
                        break;
                case '\'':
                        fputs("&apos;", f);
                        break;
                case '"':
                        fputs("&quot;", f);
                        break;
                default:
                        fputc(*s, f);
                }
        }
}

char *nst_vhba_xml(const char *parent, const char *wwnn, const char *wwpn) {
        char *xml = NULL;
        size_t size = 0;
        if (!parent || !wwnn || !wwpn || !xml_value_ok(parent) || !xml_value_ok(wwnn) ||
            !xml_value_ok(wwpn))
                return NULL;
        FILE *f = open_memstream(&xml, &size);
        if (!f)
                return NULL;
        fputs("<device>\n  <parent>", f);
        put_escaped(f, parent);
        fputs("</parent>\n"
              "  <capability type='scsi_host'>\n"
              "    <capability type='fc_host'>\n"
              "      <wwnn>",
              f);
        put_escaped(f, wwnn);
        fputs("</wwnn>\n      <wwpn>", f);
        put_escaped(f, wwpn);
        fputs("</wwpn>\n"
              "    </capability>\n"
              "  </capability>\n"
              "</device>\n",
              f);
        bool failed = ferror(f);
        if (fclose(f) != 0 || failed) {
                free(xml);
                return NULL;
        }
        return xml;
}

/* ---- vHBA create / destroy --------------------------------------------- */

static const char *libvirt_message(void) {
        const char *m = virGetLastErrorMessage();
        return m ? m : "unknown libvirt error";
}

static int check_parent(const char *parent, struct nst_error *err) {
        if (!parent || !*parent)
                return nst_error_set(err, -EINVAL, "InvalidInput", "vHBA: no parent HBA");
        if (strlen(parent) > NODE_NAME_MAX || !xml_value_ok(parent))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "vHBA: parent HBA '%.*s' is not a node device name",
                                     NODE_NAME_MAX, xml_value_ok(parent) ? parent : "?");
        return 0;
}

static int parse_named_wwn(const char *what, const char *s, char out[NST_WWN_LEN],
                           struct nst_error *err) {
        int r = nst_wwn_parse(s, out, err);
        if (r < 0)
                nst_error_prefix(err, "vHBA %s", what);
        return r;
}

NST_DEFINE_CLEANUP(struct _virNodeDevice, virNodeDeviceFree)

int nst_vhba_create(virConnectPtr conn, const char *parent, const char *wwnn, const char *wwpn,
                    char *ret_name, size_t name_size, struct nst_error *err) {
        char nn[NST_WWN_LEN], pn[NST_WWN_LEN];
        int r;

        if (!conn || !ret_name || name_size == 0)
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "vHBA: no libvirt connection or name buffer");
        if ((r = check_parent(parent, err)) < 0 ||
            (r = parse_named_wwn("wwnn", wwnn, nn, err)) < 0 ||
            (r = parse_named_wwn("wwpn", wwpn, pn, err)) < 0)
                return r;
        _cleanup_free_ char *xml = nst_vhba_xml(parent, nn, pn);
        if (!xml)
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");

        _cleanup_(virNodeDeviceFreep) virNodeDevicePtr dev = virNodeDeviceCreateXML(conn, xml, 0);
        if (!dev)
                return nst_error_set(err, -EIO, "NpivFailed",
                                     "vHBA with WWPN %s on parent %s: %s", pn, parent,
                                     libvirt_message());
        const char *name = virNodeDeviceGetName(dev);
        if (!name || strlen(name) >= name_size) {
                /* Nobody could ever destroy a vHBA whose name we cannot
                 * return: take it back now. */
                (void)virNodeDeviceDestroy(dev);
                return nst_error_set(err, -ENAMETOOLONG, "NpivFailed",
                                     "vHBA with WWPN %s on parent %s: the new device's name "
                                     "'%s' does not fit %zu bytes; destroyed it again",
                                     pn, parent, name ? name : "", name_size);
        }
        memcpy(ret_name, name, strlen(name) + 1);
        return 0;
}

static bool is_scsi_host_name(const char *name) {
        size_t plen = strlen(SCSI_HOST_PREFIX);
        if (strncmp(name, SCSI_HOST_PREFIX, plen) != 0 || name[plen] == '\0')
                return false;
        for (const char *c = name + plen; *c; c++)
                if (*c < '0' || *c > '9')
                        return false;
        return strlen(name) <= NODE_NAME_MAX;
}

static bool libvirt_says_gone(void) {
        virErrorPtr e = virGetLastError();
        return e && e->code == VIR_ERR_NO_NODE_DEVICE;
}

int nst_vhba_destroy(virConnectPtr conn, const char *name, struct nst_error *err) {
        if (!conn)
                return nst_error_set(err, -EINVAL, "InvalidInput", "vHBA: no libvirt connection");
        if (!name || !is_scsi_host_name(name))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "vHBA '%.*s': not a scsi_hostN node device name",
                                     NODE_NAME_MAX, name && xml_value_ok(name) ? name : "?");

        _cleanup_(virNodeDeviceFreep) virNodeDevicePtr dev = virNodeDeviceLookupByName(conn, name);
        if (!dev) {
                if (libvirt_says_gone())
                        return 0;
                return nst_error_set(err, -EIO, "NpivFailed", "vHBA %s: lookup failed: %s", name,
                                     libvirt_message());
        }
        if (virNodeDeviceDestroy(dev) < 0) {
                /* Gone between the lookup and the destroy. */
                if (libvirt_says_gone())
                        return 0;
                return nst_error_set(err, -EIO, "NpivFailed", "vHBA %s: destroy failed: %s", name,
                                     libvirt_message());
        }
        return 0;
}

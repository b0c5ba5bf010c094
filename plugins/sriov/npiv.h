/* NPIV: Fibre Channel world wide names and virtual HBAs (vHBAs).
 *
 * A guest gets its own FC port by a vHBA created on an NPIV-capable HBA
 * (the parent, e.g. "scsi_host1") through libvirt's node device API; the
 * vHBA logs into the fabric with the WWPN/WWNN given here. WWNs are checked
 * here because libvirt's node device path does not check them (reference
 * sriov.md section 4). Uniqueness of WWPNs across claims is the plugin's
 * claim table's job, not this module's. */
#ifndef NESTOR_PLUGINS_SRIOV_NPIV_H
#define NESTOR_PLUGINS_SRIOV_NPIV_H

#include <libvirt/libvirt.h>
#include <stddef.h>
#include <stdint.h>

#include "messages/error.h"

#define NST_WWN_LEN 17 /* 16 hex digits + NUL */

/* Accepts 16 hex digits with an optional 0x/0X (the form sysfs shows) and
 * writes them to out in lower case without 0x (out is untouched on error).
 * InvalidInput naming what is wrong: the length (the colon form is refused),
 * a non-hex digit, NAA type 6 (128-bit) or 0/4/7..f (not a port or node name
 * type). Accepted NAA types: 1, 2, 3 and 5. */
int nst_wwn_parse(const char *s, char out[NST_WWN_LEN], struct nst_error *err);

/* NAA type 5 (IEEE registered): "5" + OUI (6 hex digits) + the low 36 bits
 * of rnd as 9 hex digits; the caller draws rnd (e.g. getrandom). oui like
 * "001a4a" or "00:1a:4a", either case. InvalidInput for another OUI form. */
int nst_wwn_generate_naa5(const char *oui, uint64_t rnd, char out[NST_WWN_LEN],
                          struct nst_error *err);

/* Creates a vHBA through virNodeDeviceCreateXML on conn under parent (a node
 * device name such as "scsi_host1") with the given wwnn/wwpn (any form
 * nst_wwn_parse accepts). ret_name (name_size bytes) gets the new node device
 * name ("scsi_host12"). Errors: InvalidInput (bad arguments; nothing
 * created), NpivFailed naming parent and libvirt's message; a name that
 * does not fit ret_name destroys the new vHBA again and fails with
 * NpivFailed. Needs a libvirt error handler installed by the caller if
 * libvirt must not print to stderr. */
int nst_vhba_create(virConnectPtr conn, const char *parent, const char *wwnn, const char *wwpn,
                    char *ret_name, size_t name_size, struct nst_error *err);

/* Destroys the vHBA called name ("scsi_hostN"; anything else is refused with
 * InvalidInput so that a wrong name cannot destroy another kind of node
 * device). A device that is already gone is success. NpivFailed otherwise. */
int nst_vhba_destroy(virConnectPtr conn, const char *name, struct nst_error *err);

/* The node device XML of a vHBA, for tests and logs: owned by the caller
 * (free()). Values are escaped; NULL on OOM, a NULL argument, or a value
 * XML 1.0 cannot carry (control characters). */
char *nst_vhba_xml(const char *parent, const char *wwnn, const char *wwpn);

#endif

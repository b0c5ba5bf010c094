/* VF settings that libvirt does not make: trust, spoof checking, link state
 * and TX rates of one VF, programmed through its PF (reference sriov.md 1.7).
 *
 * libvirt sets the MAC and VLAN of an <interface type='hostdev'> itself; nova
 * runs `ip link set <PF> vf N trust on|off` and neutron's sriov agent sets
 * spoofchk, state and rates. The plugin does those through a backend:
 * "netlink" talks rtnetlink to the kernel, "record" appends what would have
 * been applied to a JSON-lines file (for machines without SR-IOV hardware and
 * for tests). Backends are thread-safe: apply may be called concurrently. */
#ifndef NESTOR_PLUGINS_SRIOV_VF_CONFIG_H
#define NESTOR_PLUGINS_SRIOV_VF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "messages/error.h"
#include "messages/util.h"

/* Values as the kernel's IFLA_VF_LINK_STATE has them. */
enum nst_vf_link_state {
        NST_VF_LINK_UNCHANGED = -1,
        NST_VF_LINK_AUTO = 0,
        NST_VF_LINK_ENABLE = 1,
        NST_VF_LINK_DISABLE = 2,
};

struct nst_vf_settings {
        int trust;    /* -1 unchanged, 0 off, 1 on */
        int spoofchk; /* -1 unchanged, 0 off, 1 on */
        enum nst_vf_link_state link_state;
        /* Mbps, 0 = no limit; -1 unchanged. The kernel takes both in one
         * attribute, so they are set together: both -1 or both >= 0. */
        int64_t min_tx_rate, max_tx_rate;
};

#define NST_VF_SETTINGS_UNCHANGED {-1, -1, NST_VF_LINK_UNCHANGED, -1, -1}

/* What a guest leaves behind on release: trust off, spoofchk on, link auto,
 * rates 0. */
extern const struct nst_vf_settings nst_vf_settings_reset;

struct nst_vf_backend {
        const char *name; /* "netlink", "record" */
        /* Applies the settings that are not "unchanged" to VF vf of the PF
         * whose netdev is pf_netdev. Settings are checked first
         * (nst_vf_settings_check). Errors: InvalidInput (bad arguments),
         * VfConfigFailed (the PF is missing, the kernel refused a setting, or
         * the record file cannot be written). Every setting is attempted even
         * after one is refused (so that a reset does what it can); what was
         * accepted stays applied and the error names the first refusal. */
        int (*apply)(struct nst_vf_backend *b, const char *pf_netdev, int vf,
                     const struct nst_vf_settings *s, struct nst_error *err);
        void (*free)(struct nst_vf_backend *b);
};

/* Frees b (NULL is a no-op). */
void nst_vf_backend_free(struct nst_vf_backend *b);
NST_DEFINE_CLEANUP(struct nst_vf_backend, nst_vf_backend_free)

/* rtnetlink (NETLINK_ROUTE) without libnl: one RTM_SETLINK per setting so
 * that a refusal names the setting ("trust on VF 3 of enp3s0f0: Operation
 * not supported; also refused: spoofchk"). Needs CAP_NET_ADMIN. All settings
 * unchanged: returns 0 without any I/O. */
int nst_vf_backend_netlink_new(struct nst_vf_backend **ret, struct nst_error *err);

/* Appends one JSON line per apply to path (created 0644 if missing):
 * {"pf": "...", "vf": N, "trust": true, "spoofchk": false, "link_state": "enable",
 *  "min_tx_rate": 0, "max_tx_rate": 100}, unchanged fields omitted (an apply
 * with nothing to change still writes {"pf", "vf"}). The file is opened here,
 * so an unwritable path fails now (VfConfigFailed). */
int nst_vf_backend_record_new(const char *path, struct nst_vf_backend **ret,
                              struct nst_error *err);

/* "netlink" or "record:<absolute path>" (the [pci] vf_config option).
 * ConfigError for anything else, InvalidInput for NULL. */
int nst_vf_backend_from_spec(const char *spec, struct nst_vf_backend **ret, struct nst_error *err);

/* InvalidInput naming the field: trust/spoofchk outside -1..1, link_state
 * outside -1..2, a rate below -1 or above UINT32_MAX, only one of the two
 * rates set, min_tx_rate > max_tx_rate when max_tx_rate limits (is not 0). */
int nst_vf_settings_check(const struct nst_vf_settings *s, struct nst_error *err);

/* True when s changes nothing. */
bool nst_vf_settings_empty(const struct nst_vf_settings *s);

/* "auto", "enable", "disable" (NULL for anything else). */
const char *nst_vf_link_state_name(enum nst_vf_link_state state);

/* Encodes the RTM_SETLINK request (NLM_F_REQUEST | NLM_F_ACK, pid 0) that
 * applies every set field of s to VF vf of ifindex into buf: ifinfomsg, then
 * IFLA_VFINFO_LIST { IFLA_VF_INFO { IFLA_VF_TRUST, IFLA_VF_SPOOFCHK,
 * IFLA_VF_LINK_STATE, IFLA_VF_RATE } } with only the set fields, in that
 * order. s is not checked. Returns the length, or -ENOSPC when buf is too
 * small. Exposed so tests can check the bytes. */
ssize_t nst_vf_netlink_encode(int ifindex, uint32_t seq, int vf, const struct nst_vf_settings *s,
                              void *buf, size_t size);

#endif

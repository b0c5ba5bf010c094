/* Claims: a guest spec's pci_requests (pci_claims.h) into allocator
 * requests, and claim/release/restore with what goes with a device -- a
 * MAC and VLAN for a VF used as a NIC, VF settings through the PF, WWNs and
 * a vHBA for a Fibre Channel function.
 *
 * Everything is checked before anything is taken; once devices are taken,
 * a failure gives back every one of them and undoes every setting made. */
#define NST_LOG_MODULE "sriov"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agent/log.h"
#include "messages/json_util.h"
#include "plugins/sriov/npiv.h"
#include "plugins/sriov/sriov.h"

#define MAC_TRIES 64
#define MAX_REQUEST_COUNT NST_PCI_CLAIMS_MAX

enum req_kind { REQ_ALIAS, REQ_PORT };

struct parsed_req {
        enum req_kind kind;
        char id[56];
        unsigned count;
        int dev_type;
        enum nst_pci_numa_policy numa_policy;
        enum nst_pci_claim_form form;
        const struct nst_pci_alias *alias;
        /* A port's pool match: physical_network, remote_managed [, trusted]. */
        struct nst_pci_match port_match;
        struct nst_pci_tag port_tags[3];
        char physnet[64];
        char mac[18];       /* given, or "" to generate */
        int vlan;           /* -1 none */
        struct nst_vf_settings vf;
        char wwnn[NST_WWN_LEN], wwpn[NST_WWN_LEN]; /* given, or "" to generate */
};

/* ---- parsing ---- */

static int bad(struct nst_error *err, size_t i, const char *key, const char *what) {
        return nst_error_set(err, -EINVAL, "InvalidInput", "spec.pci_requests[%zu]%s%s: %s", i,
                             key ? "." : "", key ? key : "", what);
}

static int check_keys(json_object *o, size_t i, const char *const *allowed,
                      struct nst_error *err) {
        json_object_object_foreach(o, key, val) {
                (void)val;
                bool ok = false;
                for (size_t k = 0; allowed[k] && !ok; k++)
                        ok = strcmp(key, allowed[k]) == 0;
                if (!ok) {
                        char what[160];
                        snprintf(what, sizeof(what), "unknown key (this request form takes: %s%s)",
                                 allowed[0], allowed[1] ? ", ..." : "");
                        return bad(err, i, key, what);
                }
        }
        return 0;
}

static int opt_bool(json_object *o, size_t i, const char *key, int *ret, struct nst_error *err) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !v)
                return 0;
        if (!json_object_is_type(v, json_type_boolean))
                return bad(err, i, key, "must be true or false");
        *ret = json_object_get_boolean(v);
        return 1;
}

static int opt_int(json_object *o, size_t i, const char *key, int64_t min, int64_t max,
                   int64_t *ret, struct nst_error *err) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !v)
                return 0;
        if (!json_object_is_type(v, json_type_int))
                return bad(err, i, key, "must be an integer");
        int64_t x = json_object_get_int64(v);
        if (x < min || x > max) {
                char what[96];
                snprintf(what, sizeof(what), "must be between %lld and %lld, got %lld",
                         (long long)min, (long long)max, (long long)x);
                return bad(err, i, key, what);
        }
        *ret = x;
        return 1;
}

static int opt_string(json_object *o, size_t i, const char *key, size_t max, const char **ret,
                      struct nst_error *err) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !v)
                return 0;
        if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
                return bad(err, i, key, "must be a non-empty string");
        if ((size_t)json_object_get_string_len(v) > max) {
                char what[64];
                snprintf(what, sizeof(what), "longer than %zu characters", max);
                return bad(err, i, key, what);
        }
        *ret = json_object_get_string(v);
        return 1;
}

/* A unicast MAC "xx:xx:xx:xx:xx:xx" into lower case. */
static bool parse_mac(const char *s, char out[18]) {
        unsigned b[6];
        char tail;
        if (strlen(s) != 17 ||
            sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                   &tail) != 6)
                return false;
        for (size_t k = 2; k < 17; k += 3)
                if (s[k] != ':')
                        return false;
        if ((b[0] & 1) || (b[0] | b[1] | b[2] | b[3] | b[4] | b[5]) == 0)
                return false;
        snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", b[0] & 0xffu, b[1] & 0xffu,
                 b[2] & 0xffu, b[3] & 0xffu, b[4] & 0xffu, b[5] & 0xffu);
        return true;
}

static int parse_numa_policy(json_object *o, size_t i, struct parsed_req *r,
                             struct nst_error *err) {
        const char *s = NULL;
        int k = opt_string(o, i, "numa_policy", 16, &s, err);
        if (k <= 0)
                return k;
        if (nst_pci_numa_policy_parse(s, &r->numa_policy) < 0)
                return bad(err, i, "numa_policy", "must be required, legacy, preferred or socket");
        return 0;
}

static int parse_wwns(json_object *o, size_t i, struct parsed_req *r, struct nst_error *err) {
        const char *keys[] = {"wwnn", "wwpn"};
        char *outs[] = {r->wwnn, r->wwpn};
        for (size_t k = 0; k < 2; k++) {
                const char *s = NULL;
                int x = opt_string(o, i, keys[k], 32, &s, err);
                if (x < 0)
                        return x;
                if (x > 0 && nst_wwn_parse(s, outs[k], err) < 0)
                        return nst_error_prefix(err, "spec.pci_requests[%zu].%s", i, keys[k]);
        }
        if (!r->wwnn[0] != !r->wwpn[0])
                return bad(err, i, NULL, "give both wwnn and wwpn, or neither");
        if (r->wwpn[0] && r->count != 1)
                return bad(err, i, "wwpn", "given WWNs need a request of count 1");
        return 0;
}

static int parse_alias_req(struct sriov *s, json_object *o, size_t i, struct parsed_req *r,
                           struct nst_error *err) {
        static const char *const keys[] = {"alias", "count", "id", "numa_policy", "wwnn",
                                           "wwpn", NULL};
        const char *name = NULL, *id = NULL;
        int64_t count = 1;
        int x;
        if ((x = check_keys(o, i, keys, err)) < 0 ||
            (x = opt_string(o, i, "alias", 63, &name, err)) < 0 ||
            (x = opt_int(o, i, "count", 1, MAX_REQUEST_COUNT, &count, err)) < 0 ||
            (x = opt_string(o, i, "id", sizeof(r->id) - 4, &id, err)) < 0)
                return x;
        r->kind = REQ_ALIAS;
        r->count = (unsigned)count;
        r->alias = nst_pci_alias_lookup(s->aliases, name);
        if (!r->alias) {
                char what[128];
                snprintf(what, sizeof(what), "no [pci] alias called '%.63s' is configured", name);
                return nst_error_set(err, -ENOENT, "PciAliasNotFound", "spec.pci_requests[%zu]"
                                     ".alias: %s", i, what);
        }
        r->dev_type = r->alias->dev_type;
        r->numa_policy = r->alias->numa_policy;
        r->form = NST_PCI_FORM_HOSTDEV;
        /* Room is left for "#k" in the claims' request names. */
        snprintf(r->id, sizeof(r->id), "%.*s", (int)sizeof(r->id) - 1,
                 id ? id : r->alias->name);
        if ((x = parse_numa_policy(o, i, r, err)) < 0)
                return x;
        return parse_wwns(o, i, r, err);
}

static int parse_vlan(json_object *o, size_t i, struct parsed_req *r, struct nst_error *err) {
        json_object *v;
        if (!json_object_object_get_ex(o, "vlan", &v) || !v)
                return 0;
        /* libvirt turns several tags into a trunk, which SR-IOV VFs refuse
         * when the guest starts: refuse it here, where the caller sees why. */
        if (json_object_is_type(v, json_type_array))
                return bad(err, i, "vlan", "an SR-IOV port takes exactly one VLAN tag; trunks "
                                           "and lists of tags are not supported by VFs");
        int64_t vlan;
        int x = opt_int(o, i, "vlan", 0, 4094, &vlan, err);
        if (x > 0)
                r->vlan = (int)vlan;
        return x < 0 ? x : 0;
}

static int parse_vf_settings(json_object *o, size_t i, struct parsed_req *r,
                             struct nst_error *err) {
        int x, trusted = -1;
        if ((x = opt_bool(o, i, "trusted", &trusted, err)) < 0 ||
            (x = opt_bool(o, i, "spoofchk", &r->vf.spoofchk, err)) < 0)
                return x;
        r->vf.trust = trusted;
        const char *ls = NULL;
        if ((x = opt_string(o, i, "link_state", 8, &ls, err)) < 0)
                return x;
        if (ls) {
                if (strcmp(ls, "auto") == 0)
                        r->vf.link_state = NST_VF_LINK_AUTO;
                else if (strcmp(ls, "enable") == 0)
                        r->vf.link_state = NST_VF_LINK_ENABLE;
                else if (strcmp(ls, "disable") == 0)
                        r->vf.link_state = NST_VF_LINK_DISABLE;
                else
                        return bad(err, i, "link_state", "must be auto, enable or disable");
        }
        int64_t min = -1, max = -1;
        if ((x = opt_int(o, i, "min_tx_rate", 0, INT32_MAX, &min, err)) < 0 ||
            (x = opt_int(o, i, "max_tx_rate", 0, INT32_MAX, &max, err)) < 0)
                return x;
        if (min >= 0 || max >= 0) {
                /* The kernel sets both at once; an unset one means no limit. */
                r->vf.min_tx_rate = min < 0 ? 0 : min;
                r->vf.max_tx_rate = max < 0 ? 0 : max;
        }
        x = nst_vf_settings_check(&r->vf, err);
        return x < 0 ? nst_error_prefix(err, "spec.pci_requests[%zu]", i) : 0;
}

static int parse_port_req(json_object *o, size_t i, struct parsed_req *r,
                          struct nst_error *err) {
        static const char *const keys[] = {
                "vnic_type",  "physical_network", "id",          "mac",         "vlan",
                "trusted",    "spoofchk",         "link_state",  "min_tx_rate", "max_tx_rate",
                "numa_policy", "remote_managed",  NULL,
        };
        const char *vnic = NULL, *physnet = NULL, *id = NULL, *mac = NULL;
        int x, remote = 0;
        if ((x = check_keys(o, i, keys, err)) < 0 ||
            (x = opt_string(o, i, "vnic_type", 32, &vnic, err)) < 0 ||
            (x = opt_string(o, i, "physical_network", sizeof(r->physnet) - 1, &physnet, err)) <
                    0 ||
            (x = opt_string(o, i, "id", sizeof(r->id) - 1, &id, err)) < 0 ||
            (x = opt_string(o, i, "mac", 17, &mac, err)) < 0 ||
            (x = opt_bool(o, i, "remote_managed", &remote, err)) < 0)
                return x;
        r->kind = REQ_PORT;
        r->count = 1;
        if (strcmp(vnic, "direct") == 0) {
                r->dev_type = -1;
                r->form = NST_PCI_FORM_INTERFACE;
        } else if (strcmp(vnic, "direct-physical") == 0) {
                r->dev_type = NST_PCI_TYPE_PF;
                r->form = NST_PCI_FORM_HOSTDEV;
        } else {
                return bad(err, i, "vnic_type", "must be direct (a VF as a NIC) or "
                                                "direct-physical (a whole PF)");
        }
        if (!physnet)
                return bad(err, i, "physical_network", "is required for an SR-IOV port");
        if (mac && !parse_mac(mac, r->mac))
                return bad(err, i, "mac", "must be a unicast MAC address xx:xx:xx:xx:xx:xx");
        if ((x = parse_vlan(o, i, r, err)) < 0 || (x = parse_vf_settings(o, i, r, err)) < 0 ||
            (x = parse_numa_policy(o, i, r, err)) < 0)
                return x;
        if (r->form == NST_PCI_FORM_HOSTDEV && (r->vlan >= 0 || r->mac[0] ||
                                                 !nst_vf_settings_empty(&r->vf)))
                return bad(err, i, NULL, "a direct-physical port takes the PF whole: no mac, "
                                         "vlan or VF settings");
        snprintf(r->id, sizeof(r->id), "%s", id ? id : "port");
        snprintf(r->physnet, sizeof(r->physnet), "%s", physnet);
        /* nova's port spec: a port without "trusted" matches pools with or
         * without the tag; one with it only pools that have it equal. */
        size_t n = 0;
        r->port_tags[n++] = (struct nst_pci_tag){"physical_network", r->physnet};
        r->port_tags[n++] = (struct nst_pci_tag){"remote_managed", remote ? "true" : "false"};
        if (r->vf.trust >= 0)
                r->port_tags[n++] = (struct nst_pci_tag){"trusted", r->vf.trust ? "true"
                                                                                 : "false"};
        r->port_match = (struct nst_pci_match){.vendor = -1, .product = -1,
                                               .tags = {r->port_tags, n}};
        return 0;
}

static int parse_requests(struct sriov *s, json_object *reqs, struct parsed_req *out, size_t n,
                          struct nst_error *err) {
        for (size_t i = 0; i < n; i++) {
                json_object *o = json_object_array_get_idx(reqs, i);
                struct parsed_req *r = &out[i];
                *r = (struct parsed_req){.vlan = -1, .vf = NST_VF_SETTINGS_UNCHANGED};
                if (!json_object_is_type(o, json_type_object))
                        return bad(err, i, NULL, "must be an object");
                bool alias = json_object_object_get_ex(o, "alias", NULL);
                bool port = json_object_object_get_ex(o, "vnic_type", NULL);
                if (alias == port)
                        return bad(err, i, NULL, "needs exactly one of alias (a flavor-style "
                                                 "request) or vnic_type (an SR-IOV port)");
                int x = alias ? parse_alias_req(s, o, i, r, err) : parse_port_req(o, i, r, err);
                if (x < 0)
                        return x;
        }
        return 0;
}

/* ---- what goes with a device ---- */

static bool mac_taken(const struct sriov *s, const char *mac, const struct nst_pci_claim *done,
                      size_t n_done, const char **owner) {
        for (size_t i = 0; i < n_done; i++)
                if (strcasecmp(done[i].mac, mac) == 0) {
                        *owner = "this request";
                        return true;
                }
        return nst_sriov_find_mac(s, mac, owner) != NULL;
}

static int assign_mac(struct sriov *s, const struct parsed_req *r, struct nst_pci_claim *c,
                      const struct nst_pci_claim *done, size_t n_done, struct nst_error *err) {
        const char *owner = NULL;
        if (r->mac[0]) {
                if (mac_taken(s, r->mac, done, n_done, &owner))
                        return nst_error_set(err, -EEXIST, "InvalidInput",
                                             "request %s: MAC %s is already in use by %s", r->id,
                                             r->mac, owner);
                snprintf(c->mac, sizeof(c->mac), "%s", r->mac);
                return 0;
        }
        const unsigned char *p = s->cfg.mac_prefix;
        for (int t = 0; t < MAC_TRIES; t++) {
                unsigned char b[3];
                if (s->random(s->random_userdata, b, sizeof(b)) < 0)
                        return nst_error_set(err, -EIO, "RuntimeError", "no random bytes");
                snprintf(c->mac, sizeof(c->mac), "%02x:%02x:%02x:%02x:%02x:%02x", p[0], p[1],
                         p[2], b[0], b[1], b[2]);
                if (!mac_taken(s, c->mac, done, n_done, &owner))
                        return 0;
        }
        return nst_error_set(err, -EEXIST, "PciAllocationFailed",
                             "request %s: no unused MAC address under prefix "
                             "%02x:%02x:%02x",
                             r->id, p[0], p[1], p[2]);
}

static bool wwpn_taken(const struct sriov *s, const char *wwpn, const struct nst_pci_claim *done,
                       size_t n_done, const char **owner) {
        for (size_t i = 0; i < n_done; i++)
                if (strcasecmp(done[i].wwpn, wwpn) == 0) {
                        *owner = "this request";
                        return true;
                }
        return nst_sriov_find_wwpn(s, wwpn, owner) != NULL;
}

static int random_wwn(struct sriov *s, char out[NST_WWN_LEN], struct nst_error *err) {
        uint64_t rnd;
        if (s->random(s->random_userdata, &rnd, sizeof(rnd)) < 0)
                return nst_error_set(err, -EIO, "RuntimeError", "no random bytes");
        return nst_wwn_generate_naa5(s->cfg.wwn_oui, rnd, out, err);
}

static int assign_wwns(struct sriov *s, const struct parsed_req *r, struct nst_pci_claim *c,
                       const struct nst_pci_claim *done, size_t n_done, struct nst_error *err) {
        const char *owner = NULL;
        if (r->wwpn[0]) {
                if (wwpn_taken(s, r->wwpn, done, n_done, &owner))
                        return nst_error_set(err, -EEXIST, "InvalidInput",
                                             "request %s: WWPN %s is already in use by %s",
                                             r->id, r->wwpn, owner);
                snprintf(c->wwnn, sizeof(c->wwnn), "%s", r->wwnn);
                snprintf(c->wwpn, sizeof(c->wwpn), "%s", r->wwpn);
                return 0;
        }
        int x;
        if ((x = random_wwn(s, c->wwnn, err)) < 0)
                return x;
        for (int t = 0; t < MAC_TRIES; t++) {
                if ((x = random_wwn(s, c->wwpn, err)) < 0)
                        return x;
                if (strcmp(c->wwpn, c->wwnn) != 0 && !wwpn_taken(s, c->wwpn, done, n_done, &owner))
                        return 0;
        }
        return nst_error_set(err, -EEXIST, "PciAllocationFailed",
                             "request %s: no unused WWPN under OUI %s", r->id, s->cfg.wwn_oui);
}

/* The fc host a vHBA for fn goes on: the configured one, the function's
 * own, or its PF's. */
static const char *vhba_parent(const struct sriov *s, const struct nst_pci_function *fn) {
        if (s->cfg.npiv_parent[0])
                return s->cfg.npiv_parent;
        if (fn->scsi_host[0])
                return fn->scsi_host;
        if (fn->parent != NST_PCI_NONE && s->inv->fns[fn->parent].scsi_host[0])
                return s->inv->fns[fn->parent].scsi_host;
        return NULL;
}

static int create_vhba(struct sriov *s, const struct nst_pci_function *fn,
                       struct nst_pci_claim *c, struct nst_error *err) {
        const char *parent = vhba_parent(s, fn);
        if (!parent)
                return nst_error_set(err, -ENOENT, "NpivFailed",
                                     "%s is a Fibre Channel function without an fc host to put "
                                     "its vHBA on; set [pci] npiv_parent",
                                     fn->address);
        if (!s->libvirt)
                return nst_error_set(err, -ENOTSUP, "NpivFailed",
                                     "%s: creating a vHBA needs the libvirt plugin", fn->address);
        virConnectPtr conn = NULL;
        int x = s->libvirt->get(s->libvirt->self, &conn, err);
        if (x < 0)
                return x;
        x = nst_vhba_create(conn, parent, c->wwnn, c->wwpn, c->vhba, sizeof(c->vhba), err);
        virConnectClose(conn);
        return x;
}

static int destroy_vhba(struct sriov *s, const struct nst_pci_claim *c, struct nst_error *err) {
        if (!c->vhba[0])
                return 0;
        if (!s->libvirt)
                return nst_error_set(err, -ENOTSUP, "NpivFailed",
                                     "vHBA %s: destroying it needs the libvirt plugin", c->vhba);
        virConnectPtr conn = NULL;
        int x = s->libvirt->get(s->libvirt->self, &conn, err);
        if (x < 0)
                return x;
        x = nst_vhba_destroy(conn, c->vhba, err);
        virConnectClose(conn);
        return x;
}

/* The PF netdev and VF number settings go through, or NULL. */
static const char *vf_pf_netdev(const struct sriov *s, const struct nst_pci_function *fn) {
        if (fn->type != NST_PCI_TYPE_VF || fn->parent == NST_PCI_NONE)
                return NULL;
        const char *pf = s->inv->fns[fn->parent].netdev;
        return pf[0] ? pf : NULL;
}

static void reset_vf(struct sriov *s, const struct nst_pci_claim *c) {
        struct nst_pci_addr a;
        size_t k;
        const char *pf;
        struct nst_error e = NST_ERROR_INIT;
        if (!s->inv || nst_pci_addr_parse(c->address, &a) < 0 ||
            (k = nst_pci_inventory_find(s->inv, a)) == NST_PCI_NONE ||
            !(pf = vf_pf_netdev(s, &s->inv->fns[k])))
                return;
        if (s->vf->apply(s->vf, pf, s->inv->fns[k].vf_number, &nst_vf_settings_reset, &e) < 0)
                log_warning("%s: cannot reset the VF's settings: %s", c->address, e.message);
}

/* Undoes what was made for the claims built so far (vHBAs, VF settings). */
static void undo_claims(struct sriov *s, struct sriov_claim *cs, size_t n) {
        for (size_t i = n; i-- > 0;) {
                struct nst_error e = NST_ERROR_INIT;
                if (destroy_vhba(s, &cs[i].c, &e) < 0)
                        log_warning("%s: cannot remove vHBA %s: %s", cs[i].c.address,
                                    cs[i].c.vhba, e.message);
                if (cs[i].vf_programmed)
                        reset_vf(s, &cs[i].c);
        }
}

static int build_claim(struct sriov *s, const struct parsed_req *r, unsigned k,
                       const struct nst_pci_grant *g, struct sriov_claim *out,
                       const struct nst_pci_claim *done, size_t n_done, struct nst_error *err) {
        struct nst_pci_claim *c = &out->c;
        *out = (struct sriov_claim){.c = {.vlan = -1, .form = r->form}};
        nst_pci_addr_format(g->addr, c->address);
        if (r->count > 1 || (r->kind == REQ_ALIAS && strcmp(r->id, r->alias->name) == 0))
                snprintf(c->request, sizeof(c->request), "%s#%u", r->id, k);
        else
                snprintf(c->request, sizeof(c->request), "%s", r->id);
        size_t idx = nst_pci_inventory_find(s->inv, g->addr);
        if (idx == NST_PCI_NONE)
                return nst_error_set(err, -ENOENT, "PciAllocationFailed",
                                     "%s was claimed but is no longer on the host", c->address);
        const struct nst_pci_function *fn = &s->inv->fns[idx];
        int x;
        if (c->form == NST_PCI_FORM_INTERFACE) {
                if ((fn->class_code >> 16) != NST_PCI_CLASS_NETWORK)
                        return nst_error_set(err, -EINVAL, "PciAllocationFailed",
                                             "request %s: %s is not a network function "
                                             "(class %06x) and cannot be a NIC",
                                             r->id, c->address, fn->class_code);
                c->vlan = r->vlan;
                if ((x = assign_mac(s, r, c, done, n_done, err)) < 0)
                        return x;
        }
        if (nst_pci_is_fc(fn->class_code)) {
                if ((x = assign_wwns(s, r, c, done, n_done, err)) < 0 ||
                    (x = create_vhba(s, fn, c, err)) < 0)
                        return x;
        } else if (r->wwpn[0]) {
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "request %s: WWNs were given but %s is not a Fibre Channel "
                                     "function",
                                     r->id, c->address);
        }
        if (!nst_vf_settings_empty(&r->vf)) {
                const char *pf = vf_pf_netdev(s, fn);
                if (!pf)
                        return nst_error_set(err, -EINVAL, "PciAllocationFailed",
                                             "request %s: VF settings need a VF whose PF has a "
                                             "netdev; %s has none",
                                             r->id, c->address);
                if ((x = s->vf->apply(s->vf, pf, fn->vf_number, &r->vf, err)) < 0)
                        return nst_error_prefix(err, "request %s (%s)", r->id, c->address);
                out->vf_programmed = true;
        }
        return 0;
}

static void placement_of(const struct sriov *s, const int *nodes, size_t n,
                         struct nst_pci_placement *pl) {
        *pl = (struct nst_pci_placement){.numa_nodes = nodes, .n_numa_nodes = n};
        if (s->inv && s->inv->facts.n_numa_nodes) {
                pl->node_socket = s->inv->facts.node_socket;
                pl->n_node_socket = s->inv->facts.n_numa_nodes;
        }
}

static int claim_locked(struct sriov *s, const char *owner, const struct parsed_req *pr,
                        size_t n, const int *numa_nodes, size_t n_numa,
                        struct sriov_claim **ret, size_t *ret_n, struct nst_error *err) {
        if (!s->inv)
                return nst_error_set(err, -EAGAIN, "PciAllocationFailed",
                                     "no PCI scan has completed on this host%s%s",
                                     s->last_scan_error[0] ? ": " : "", s->last_scan_error);
        if (nst_sriov_owner(s, owner))
                return nst_error_set(err, -EEXIST, "PciAllocationFailed",
                                     "instance %s already holds PCI devices", owner);
        struct nst_pci_request reqs[NST_PCI_CLAIMS_MAX];
        for (size_t i = 0; i < n; i++) {
                const struct parsed_req *r = &pr[i];
                reqs[i] = (struct nst_pci_request){
                        .id = r->id,
                        .count = r->count,
                        .dev_type = r->dev_type,
                        .numa_policy = r->numa_policy,
                        .matches = r->kind == REQ_ALIAS ? r->alias->matches : &r->port_match,
                        .n_matches = r->kind == REQ_ALIAS ? r->alias->n_matches : 1,
                };
        }
        struct nst_pci_placement pl;
        placement_of(s, numa_nodes, n_numa, &pl);
        _cleanup_free_ struct nst_pci_grant *grants = NULL;
        size_t n_grants = 0;
        int x = nst_pci_alloc_claim(s->alloc, owner, reqs, n, &pl, &grants, &n_grants, err);
        if (x < 0)
                return x;
        _cleanup_free_ struct sriov_claim *cs = calloc(n_grants ? n_grants : 1, sizeof(*cs));
        struct nst_pci_claim done[NST_PCI_CLAIMS_MAX];
        if (!cs)
                x = nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        size_t built = 0;
        unsigned k = 0;
        for (size_t g = 0; x >= 0 && g < n_grants; g++, built++) {
                k = g > 0 && grants[g].request == grants[g - 1].request ? k + 1 : 0;
                x = build_claim(s, &pr[grants[g].request], k, &grants[g], &cs[g], done, g, err);
                if (x >= 0)
                        done[g] = cs[g].c;
        }
        if (x >= 0 && nst_sriov_owner_set(s, owner, cs, n_grants) < 0)
                x = nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        if (x < 0) {
                undo_claims(s, cs, built);
                nst_pci_alloc_release(s->alloc, owner);
                return x;
        }
        *ret = nst_steal(&cs);
        *ret_n = n_grants;
        return 0;
}

int nst_sriov_claim(struct sriov *s, const char *owner, json_object *requests,
                    const int *numa_nodes, size_t n_numa_nodes, struct nst_pci_claim **ret,
                    size_t *ret_n, struct nst_error *err) {
        if (!owner || !owner[0] || strlen(owner) > 36)
                return nst_error_set(err, -EINVAL, "InvalidInput", "a claim needs an instance uuid");
        if (!requests || !json_object_is_type(requests, json_type_array))
                return nst_error_set(err, -EINVAL, "InvalidInput",
                                     "spec.pci_requests: must be an array of objects");
        size_t n = json_object_array_length(requests), total = 0;
        if (n > NST_PCI_CLAIMS_MAX)
                return nst_error_set(err, -E2BIG, "InvalidInput",
                                     "spec.pci_requests: at most %d requests", NST_PCI_CLAIMS_MAX);
        struct parsed_req pr[NST_PCI_CLAIMS_MAX];
        pthread_mutex_lock(&s->lock);
        int x = parse_requests(s, requests, pr, n, err);
        for (size_t i = 0; x >= 0 && i < n; i++)
                total += pr[i].count;
        if (x >= 0 && total > NST_PCI_CLAIMS_MAX)
                x = nst_error_set(err, -E2BIG, "InvalidInput",
                                  "spec.pci_requests: %zu devices asked for, at most %d per "
                                  "instance",
                                  total, NST_PCI_CLAIMS_MAX);
        struct sriov_claim *cs = NULL;
        size_t n_cs = 0;
        if (x >= 0)
                x = claim_locked(s, owner, pr, n, numa_nodes, n_numa_nodes, &cs, &n_cs, err);
        pthread_mutex_unlock(&s->lock);
        if (x < 0)
                return x;
        struct nst_pci_claim *out = calloc(n_cs ? n_cs : 1, sizeof(*out));
        if (!out) {
                free(cs);
                nst_sriov_release(s, owner, NULL);
                return nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        }
        for (size_t i = 0; i < n_cs; i++) {
                out[i] = cs[i].c;
                log_info("instance %s: claimed %s for %s%s%s", owner, out[i].address,
                         out[i].request, out[i].mac[0] ? ", MAC " : "", out[i].mac);
        }
        free(cs);
        *ret = out;
        *ret_n = n_cs;
        return 0;
}

int nst_sriov_release(struct sriov *s, const char *owner, struct nst_error *err) {
        pthread_mutex_lock(&s->lock);
        struct sriov_owner *o = nst_sriov_owner(s, owner);
        int x = 0;
        /* A vHBA that cannot be removed keeps its WWPN logged into the
         * fabric: keep the claim, so that a retry finishes the job. */
        for (size_t i = 0; o && i < o->n && x >= 0; i++) {
                x = destroy_vhba(s, &o->claims[i].c, err);
                if (x >= 0)
                        o->claims[i].c.vhba[0] = '\0';
        }
        if (x >= 0) {
                for (size_t i = 0; o && i < o->n; i++)
                        if (o->claims[i].vf_programmed)
                                reset_vf(s, &o->claims[i].c);
                size_t freed = nst_pci_alloc_release(s->alloc, owner);
                nst_sriov_owner_drop(s, owner);
                if (freed)
                        log_info("instance %s: released %zu PCI device(s)", owner, freed);
        }
        pthread_mutex_unlock(&s->lock);
        return x;
}

static int check_restorable(struct sriov *s, const char *owner, const struct nst_pci_claim *c,
                            size_t n, struct nst_pci_addr *addrs, struct nst_error *err) {
        for (size_t i = 0; i < n; i++) {
                const char *holder = NULL;
                if (nst_pci_addr_parse(c[i].address, &addrs[i]) < 0)
                        return nst_error_set(err, -EINVAL, "InvalidInput",
                                             "claim %zu: '%s' is not a PCI address", i,
                                             c[i].address);
                if (c[i].mac[0] && nst_sriov_find_mac(s, c[i].mac, &holder) &&
                    strcmp(holder, owner) != 0)
                        return nst_error_set(err, -EEXIST, "PciAllocationFailed",
                                             "MAC %s of %s is also held by instance %s",
                                             c[i].mac, c[i].address, holder);
                if (c[i].wwpn[0] && nst_sriov_find_wwpn(s, c[i].wwpn, &holder) &&
                    strcmp(holder, owner) != 0)
                        return nst_error_set(err, -EEXIST, "PciAllocationFailed",
                                             "WWPN %s of %s is also held by instance %s",
                                             c[i].wwpn, c[i].address, holder);
        }
        return 0;
}

int nst_sriov_restore(struct sriov *s, const char *owner, const struct nst_pci_claim *claims,
                      size_t n, struct nst_error *err) {
        if (n > NST_PCI_CLAIMS_MAX)
                return nst_error_set(err, -E2BIG, "InvalidInput", "at most %d claims",
                                     NST_PCI_CLAIMS_MAX);
        struct nst_pci_addr addrs[NST_PCI_CLAIMS_MAX];
        struct sriov_claim cs[NST_PCI_CLAIMS_MAX];
        pthread_mutex_lock(&s->lock);
        int x = check_restorable(s, owner, claims, n, addrs, err);
        if (x >= 0)
                x = nst_pci_alloc_restore(s->alloc, owner, addrs, n, err);
        for (size_t i = 0; x >= 0 && i < n; i++)
                /* Whether settings were made is not recorded: reset a NIC VF
                 * on release in any case (harmless when nothing was set). */
                cs[i] = (struct sriov_claim){.c = claims[i],
                                             .vf_programmed =
                                                     claims[i].form == NST_PCI_FORM_INTERFACE};
        if (x >= 0 && nst_sriov_owner_set(s, owner, cs, n) < 0)
                x = nst_error_set(err, -ENOMEM, "MemoryError", "out of memory");
        pthread_mutex_unlock(&s->lock);
        if (x >= 0 && n)
                log_debug("instance %s: %zu PCI claim(s) restored", owner, n);
        return x;
}

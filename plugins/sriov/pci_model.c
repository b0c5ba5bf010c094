/* Addresses, type names, the inventory's address index and tags. */
#include "plugins/sriov/pci_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool hex_field(const char *s, size_t n, unsigned *ret) {
        unsigned v = 0;
        for (size_t i = 0; i < n; i++) {
                int h = nst_hex_digit(s[i]);
                if (h < 0)
                        return false;
                v = v << 4 | (unsigned)h;
        }
        *ret = v;
        return true;
}

int nst_pci_addr_parse(const char *s, struct nst_pci_addr *ret) {
        unsigned d, b, sl, f;
        if (!s || strlen(s) != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.' ||
            !hex_field(s, 4, &d) || !hex_field(s + 5, 2, &b) || !hex_field(s + 8, 2, &sl) ||
            !hex_field(s + 11, 1, &f) || sl > 0x1f || f > 7)
                return -EINVAL;
        *ret = (struct nst_pci_addr){.domain = (uint16_t)d, .bus = (uint8_t)b,
                                     .slot = (uint8_t)sl, .function = (uint8_t)f};
        return 0;
}

void nst_pci_addr_format(struct nst_pci_addr a, char out[NST_PCI_ADDR_LEN]) {
        snprintf(out, NST_PCI_ADDR_LEN, "%04x:%02x:%02x.%x", a.domain, a.bus, a.slot & 0x1f,
                 a.function & 7);
}

static const char *const type_names[] = {
        [NST_PCI_TYPE_PCI] = "type-PCI",
        [NST_PCI_TYPE_PF] = "type-PF",
        [NST_PCI_TYPE_VF] = "type-VF",
};

const char *nst_pci_type_name(enum nst_pci_type t) {
        return (unsigned)t < NST_ARRAY_SIZE(type_names) ? type_names[t] : "type-?";
}

int nst_pci_type_parse(const char *s, enum nst_pci_type *ret) {
        for (size_t i = 0; s && i < NST_ARRAY_SIZE(type_names); i++)
                if (strcmp(s, type_names[i]) == 0) {
                        *ret = (enum nst_pci_type)i;
                        return 0;
                }
        return -EINVAL;
}

static size_t slot_of(uint32_t key, size_t cap) {
        /* Fibonacci hashing: addresses are dense in a few buses. */
        return (size_t)((key * UINT64_C(0x9E3779B97F4A7C15)) >> 32) & (cap - 1);
}

int nst_pci_inventory_index(struct nst_pci_inventory *inv) {
        size_t cap = 16;
        while (cap < inv->n * 2)
                cap *= 2;
        uint32_t *keys = calloc(cap, sizeof(*keys));
        size_t *vals = malloc(cap * sizeof(*vals));
        if (!keys || !vals) {
                free(keys);
                free(vals);
                return -ENOMEM;
        }
        for (size_t i = 0; i < cap; i++)
                vals[i] = NST_PCI_NONE;
        for (size_t i = 0; i < inv->n; i++) {
                uint32_t k = nst_pci_addr_key(inv->fns[i].addr);
                size_t s = slot_of(k, cap);
                while (vals[s] != NST_PCI_NONE)
                        s = (s + 1) & (cap - 1);
                keys[s] = k;
                vals[s] = i;
        }
        free(inv->index_keys);
        free(inv->index_vals);
        inv->index_keys = keys;
        inv->index_vals = vals;
        inv->index_cap = cap;
        return 0;
}

size_t nst_pci_inventory_find(const struct nst_pci_inventory *inv, struct nst_pci_addr a) {
        if (!inv || inv->index_cap == 0)
                return NST_PCI_NONE;
        uint32_t k = nst_pci_addr_key(a);
        for (size_t s = slot_of(k, inv->index_cap); inv->index_vals[s] != NST_PCI_NONE;
             s = (s + 1) & (inv->index_cap - 1))
                if (inv->index_keys[s] == k)
                        return inv->index_vals[s];
        return NST_PCI_NONE;
}

void nst_pci_inventory_free(struct nst_pci_inventory *inv) {
        if (!inv)
                return;
        for (size_t i = 0; i < inv->n; i++)
                free(inv->fns[i].vfs);
        free(inv->fns);
        free(inv->index_keys);
        free(inv->index_vals);
        for (size_t i = 0; i < inv->n_warnings; i++)
                free(inv->warnings[i]);
        free(inv->warnings);
        free(inv);
}

const char *nst_pci_tags_get(const struct nst_pci_tags *t, const char *key) {
        for (size_t i = 0; t && i < t->n; i++)
                if (strcasecmp(t->tags[i].key, key) == 0)
                        return t->tags[i].value;
        return NULL;
}

/* Host topology, memory and disk for the resource report (topology.h). */
#include "plugins/inventory/topology.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "messages/util.h"

#define MAX_CPUS 4096

/* The first line of a small file, trailing newline removed; false when it
 * cannot be read. */
static bool read_line(const char *path, char *buf, size_t size) {
        FILE *f = fopen(path, "re");
        if (!f)
                return false;
        bool ok = fgets(buf, (int)size, f) != NULL;
        fclose(f);
        if (ok)
                buf[strcspn(buf, "\n")] = '\0';
        return ok;
}

static long read_long(const char *path) {
        char buf[64];
        char *end;
        if (!read_line(path, buf, sizeof(buf)))
                return -1;
        errno = 0;
        long v = strtol(buf, &end, 10);
        return errno || end == buf ? -1 : v;
}

/* Marks the CPUs of a kernel cpulist ("0-3,8,10-11") in set; returns how
 * many, or -1 when malformed. */
static int parse_cpulist(const char *s, bool *set) {
        int n = 0;
        while (*s) {
                char *end;
                long a = strtol(s, &end, 10), b = a;
                if (end == s || a < 0 || a >= MAX_CPUS)
                        return -1;
                s = end;
                if (*s == '-') {
                        b = strtol(s + 1, &end, 10);
                        if (end == s + 1 || b < a || b >= MAX_CPUS)
                                return -1;
                        s = end;
                }
                for (long c = a; c <= b; c++)
                        if (set && !set[c]) {
                                set[c] = true;
                                n++;
                        } else if (!set) {
                                n++;
                        }
                if (*s == ',')
                        s++;
                else if (*s)
                        return -1;
        }
        return n;
}

static json_object *int_or_null(long v) {
        return v < 0 ? NULL : json_object_new_int64(v);
}

/* "Node 0 MemTotal:  5990176 kB" -> MiB, -1 when absent. */
static long node_meminfo_mb(const char *path, const char *field) {
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        char line[256];
        long kb = -1;
        while (kb < 0 && fgets(line, sizeof(line), f)) {
                const char *p = strstr(line, field);
                if (p && p[strlen(field)] == ':')
                        kb = strtol(p + strlen(field) + 1, NULL, 10);
        }
        fclose(f);
        return kb < 0 ? -1 : kb / 1024;
}

static int node_number(const char *name) {
        if (strncmp(name, "node", 4) != 0 || !name[4])
                return -1;
        char *end;
        long v = strtol(name + 4, &end, 10);
        return *end || v < 0 || v > 4095 ? -1 : (int)v;
}

static int compare_ints(const void *a, const void *b) {
        return *(const int *)a - *(const int *)b;
}

static json_object *numa_nodes(const char *root) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/devices/system/node", root);
        DIR *d = opendir(path);
        json_object *a = json_object_new_array();
        if (!d)
                return a;
        int ids[256];
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d)) && n < NST_ARRAY_SIZE(ids)) {
                int id = node_number(e->d_name);
                if (id >= 0)
                        ids[n++] = id;
        }
        closedir(d);
        qsort(ids, n, sizeof(*ids), compare_ints);
        for (size_t i = 0; i < n; i++) {
                char cpus[1024] = "";
                snprintf(path, sizeof(path), "%s/devices/system/node/node%d/cpulist", root, ids[i]);
                read_line(path, cpus, sizeof(cpus));
                snprintf(path, sizeof(path), "%s/devices/system/node/node%d/meminfo", root, ids[i]);
                json_object *o = json_object_new_object();
                json_object_object_add(o, "id", json_object_new_int(ids[i]));
                json_object_object_add(o, "cpus", json_object_new_string(cpus));
                json_object_object_add(o, "cpu_count", int_or_null(parse_cpulist(cpus, NULL)));
                json_object_object_add(o, "memory_mb", int_or_null(node_meminfo_mb(path,
                                                                                   "MemTotal")));
                json_object_object_add(o, "free_memory_mb",
                                       int_or_null(node_meminfo_mb(path, "MemFree")));
                json_object_array_add(a, o);
        }
        return a;
}

json_object *nst_topology_json(const char *root) {
        char path[4096], online[4096] = "";
        snprintf(path, sizeof(path), "%s/devices/system/cpu/online", root);
        _cleanup_free_ bool *set = calloc(MAX_CPUS, sizeof(*set));
        json_object *o = json_object_new_object();
        int threads = -1;
        if (set && read_line(path, online, sizeof(online)))
                threads = parse_cpulist(online, set);
        /* Distinct packages and (package, core) pairs among online CPUs. */
        _cleanup_free_ uint32_t *cores = calloc(MAX_CPUS, sizeof(*cores));
        size_t n_cores = 0;
        long sockets_seen[256];
        size_t n_sockets = 0;
        bool known = threads > 0 && cores;
        for (int c = 0; known && c < MAX_CPUS; c++) {
                if (!set[c])
                        continue;
                snprintf(path, sizeof(path), "%s/devices/system/cpu/cpu%d/topology/"
                                             "physical_package_id", root, c);
                long pkg = read_long(path);
                snprintf(path, sizeof(path), "%s/devices/system/cpu/cpu%d/topology/core_id", root,
                         c);
                long core = read_long(path);
                if (pkg < 0 || core < 0 || pkg > 0xffff || core > 0xffff) {
                        known = false;
                        break;
                }
                uint32_t key = (uint32_t)pkg << 16 | (uint32_t)core;
                bool seen = false;
                for (size_t i = 0; i < n_cores && !seen; i++)
                        seen = cores[i] == key;
                if (!seen)
                        cores[n_cores++] = key;
                seen = false;
                for (size_t i = 0; i < n_sockets && !seen; i++)
                        seen = sockets_seen[i] == pkg;
                if (!seen && n_sockets < NST_ARRAY_SIZE(sockets_seen))
                        sockets_seen[n_sockets++] = pkg;
        }
        json_object_object_add(o, "sockets", known ? json_object_new_int64((int64_t)n_sockets)
                                                   : NULL);
        json_object_object_add(o, "cores", known ? json_object_new_int64((int64_t)n_cores) : NULL);
        json_object_object_add(o, "threads", int_or_null(threads));
        json_object_object_add(o, "threads_per_core",
                               known && n_cores ? json_object_new_int64(threads / (int)n_cores)
                                                : NULL);
        json_object_object_add(o, "numa_nodes", numa_nodes(root));
        return o;
}

json_object *nst_memory_json(const char *meminfo_path) {
        FILE *f = fopen(meminfo_path, "re");
        long total = -1, avail = -1;
        char line[256];
        while (f && fgets(line, sizeof(line), f)) {
                if (strncmp(line, "MemTotal:", 9) == 0)
                        total = strtol(line + 9, NULL, 10) / 1024;
                else if (strncmp(line, "MemAvailable:", 13) == 0)
                        avail = strtol(line + 13, NULL, 10) / 1024;
        }
        if (f)
                fclose(f);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "total_mb", int_or_null(total));
        json_object_object_add(o, "available_mb", int_or_null(avail));
        return o;
}

json_object *nst_disk_json(const char *path) {
        char probe[4096];
        snprintf(probe, sizeof(probe), "%s", path);
        struct statvfs st;
        /* state_path may not exist yet: measure where it will be. */
        while (statvfs(probe, &st) < 0) {
                char *slash = strrchr(probe, '/');
                if (!slash || slash == probe) {
                        snprintf(probe, sizeof(probe), "/");
                        if (statvfs(probe, &st) < 0)
                                memset(&st, 0, sizeof(st));
                        break;
                }
                *slash = '\0';
        }
        json_object *o = json_object_new_object();
        json_object_object_add(o, "path", json_object_new_string(path));
        double gb = 1024.0 * 1024.0 * 1024.0;
        json_object_object_add(o, "total_gb", st.f_frsize ? json_object_new_double(
                                                                    (double)st.f_blocks *
                                                                    (double)st.f_frsize / gb)
                                                          : NULL);
        json_object_object_add(o, "free_gb", st.f_frsize ? json_object_new_double(
                                                                   (double)st.f_bavail *
                                                                   (double)st.f_frsize / gb)
                                                         : NULL);
        return o;
}

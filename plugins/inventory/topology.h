/* The host's CPU and memory topology as the resource report shows it:
 * sockets, cores, threads (licensing is per socket) and NUMA nodes with
 * their CPUs and memory, read from sysfs (<root>/devices/system/{cpu,node});
 * plus memory totals from /proc/meminfo and the disk under state_path.
 *
 * Read once per report; nothing is cached, since CPUs and memory can be
 * hot-plugged. A missing file leaves its field null, never fails the
 * report. */
#ifndef NESTOR_PLUGINS_INVENTORY_TOPOLOGY_H
#define NESTOR_PLUGINS_INVENTORY_TOPOLOGY_H

#include <json.h>

/* {"sockets": n, "cores": n, "threads": n, "threads_per_core": n,
 *  "numa_nodes": [{"id": n, "cpus": "0-3", "cpu_count": n,
 *                  "memory_mb": n|null, "free_memory_mb": n|null}]}
 * sysfs_root: "/sys" in production. Owned. */
json_object *nst_topology_json(const char *sysfs_root);

/* {"total_mb": n, "available_mb": n} from meminfo_path ("/proc/meminfo"),
 * null fields when unreadable. Owned. */
json_object *nst_memory_json(const char *meminfo_path);

/* {"path": p, "total_gb": x, "free_gb": x} for the filesystem holding path
 * (the nearest existing parent), null sizes when it cannot be read. Owned. */
json_object *nst_disk_json(const char *path);

#endif

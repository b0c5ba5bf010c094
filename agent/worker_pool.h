/* A fixed pool of threads running jobs from a FIFO. A job owns its data and
 * frees it itself. */
#ifndef NESTOR_AGENT_WORKER_POOL_H
#define NESTOR_AGENT_WORKER_POOL_H

#include <stddef.h>

struct nst_worker_pool;

int nst_worker_pool_new(size_t n_threads, const char *name, struct nst_worker_pool **ret);
/* Queues a job. Fails with -ESHUTDOWN once draining started. */
int nst_worker_pool_submit(struct nst_worker_pool *p, void (*fn)(void *), void *data);
/* Jobs queued or running. */
size_t nst_worker_pool_pending(struct nst_worker_pool *p);
/* Stops accepting jobs, runs everything queued, joins the threads, frees. */
void nst_worker_pool_free(struct nst_worker_pool *p);

#endif

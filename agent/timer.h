/* Periodic tasks driven by an explicit clock. The owner asks when the next
 * one is due (to bound its poll timeout) and collects due tasks; running them
 * is the owner's business (the agent hands them to the worker pool). A task
 * that is still running when it falls due again is skipped, not stacked. */
#ifndef NESTOR_AGENT_TIMER_H
#define NESTOR_AGENT_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nst_timer_task {
        char *name;
        int64_t interval_ms;
        int64_t next_due;   /* ms, monotonic */
        bool running;
        void (*fn)(void *userdata);
        void *userdata;
};

struct nst_timers {
        struct nst_timer_task *tasks;
        size_t n, cap;
};

void nst_timers_init(struct nst_timers *t);
void nst_timers_done(struct nst_timers *t);

/* First run at now + initial_delay_ms, then every interval_ms after the
 * previous *start* (fixed rate, no drift). Returns the task index. */
int nst_timers_add(struct nst_timers *t, const char *name, int64_t interval_ms,
                   int64_t initial_delay_ms, void (*fn)(void *), void *userdata, int64_t now);

/* Milliseconds until the next due, not-running task (-1 if none). */
int64_t nst_timers_timeout(const struct nst_timers *t, int64_t now);

/* Returns the index of one due task and marks it running (scheduling its
 * next run), or -1. Call repeatedly until -1. */
int nst_timers_take_due(struct nst_timers *t, int64_t now);
/* Marks a taken task as finished. */
void nst_timers_finished(struct nst_timers *t, int index);

#endif

/* Periodic tasks on a fixed grid: run k is due at first + k * interval, so a
 * slow loop or a slow task never makes the schedule drift.
 *
 * A slot that passes while the task is still running is dropped rather than
 * queued behind it. take_due notices such slots when it looks during the run;
 * if the loop only looks after the task finished, the missed slot is
 * indistinguishable from a late loop and is handled like one: the task runs
 * once and the schedule jumps to the next slot in the future, so several
 * missed periods never turn into a burst of back-to-back runs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/timer.h"

void nst_timers_init(struct nst_timers *t) {
        *t = (struct nst_timers){0};
}

void nst_timers_done(struct nst_timers *t) {
        for (size_t i = 0; i < t->n; i++)
                free(t->tasks[i].name);
        free(t->tasks);
        *t = (struct nst_timers){0};
}

int nst_timers_add(struct nst_timers *t, const char *name, int64_t interval_ms,
                   int64_t initial_delay_ms, void (*fn)(void *), void *userdata, int64_t now) {
        if (interval_ms <= 0 || !fn)
                return -EINVAL;
        if (t->n > (size_t)INT32_MAX)
                return -E2BIG;
        if (t->n == t->cap) {
                size_t cap = t->cap ? t->cap * 2 : 8;
                struct nst_timer_task *tasks = reallocarray(t->tasks, cap, sizeof(*tasks));
                if (!tasks)
                        return -ENOMEM;
                t->tasks = tasks;
                t->cap = cap;
        }
        char *copy = strdup(name ? name : "");
        if (!copy)
                return -ENOMEM;
        t->tasks[t->n] = (struct nst_timer_task){
                .name = copy,
                .interval_ms = interval_ms,
                .next_due = now + (initial_delay_ms > 0 ? initial_delay_ms : 0),
                .fn = fn,
                .userdata = userdata,
        };
        return (int)t->n++;
}

/* The first slot of the task's grid strictly after now. */
static void skip_to_future(struct nst_timer_task *task, int64_t now) {
        if (task->next_due <= now)
                task->next_due += ((now - task->next_due) / task->interval_ms + 1) *
                                  task->interval_ms;
}

int64_t nst_timers_timeout(const struct nst_timers *t, int64_t now) {
        int64_t best = -1;
        for (size_t i = 0; i < t->n; i++) {
                const struct nst_timer_task *task = &t->tasks[i];
                if (task->running)
                        continue;
                int64_t wait = task->next_due > now ? task->next_due - now : 0;
                if (best < 0 || wait < best)
                        best = wait;
        }
        return best;
}

int nst_timers_take_due(struct nst_timers *t, int64_t now) {
        int found = -1;
        for (size_t i = 0; i < t->n; i++) {
                struct nst_timer_task *task = &t->tasks[i];
                if (task->next_due > now)
                        continue;
                if (task->running) {
                        skip_to_future(task, now);
                        continue;
                }
                /* The most overdue first, so a busy loop cannot starve one task. */
                if (found < 0 || task->next_due < t->tasks[found].next_due)
                        found = (int)i;
        }
        if (found < 0)
                return -1;
        struct nst_timer_task *task = &t->tasks[found];
        task->running = true;
        skip_to_future(task, now);
        return found;
}

void nst_timers_finished(struct nst_timers *t, int index) {
        if (index >= 0 && (size_t)index < t->n)
                t->tasks[index].running = false;
}

/* The scheduler's arithmetic (see sched_plan.h). */
#include "sched_plan.h"

#include "backoff.h"

uint64_t sched_jitter_ms(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h % SCHED_JITTER_MS;
}

uint64_t sched_interval_ms(int interval_min, int failures, int max_backoff_min)
{
    return backoff_interval_ms((uint64_t)interval_min * 60000, failures,
                               (uint64_t)max_backoff_min * 60000);
}

int64_t sched_due_ms(bool request_pending, bool synced_valid, int64_t synced_mono_ms,
                     int interval_min, int failures, int max_backoff_min)
{
    if (request_pending) return SCHED_DUE_REQUEST;
    if (!synced_valid) return SCHED_DUE_NEVER;
    return synced_mono_ms + (int64_t)sched_interval_ms(interval_min, failures, max_backoff_min);
}

bool sched_is_due(int64_t due_ms, uint64_t not_before_ms, uint64_t now)
{
    return (due_ms == SCHED_DUE_REQUEST || due_ms == SCHED_DUE_NEVER || due_ms <= (int64_t)now) &&
           not_before_ms <= now;
}

uint64_t sched_delay_ms(int64_t due_ms, uint64_t jitter_ms, uint64_t not_before_ms, uint64_t now)
{
    uint64_t delay = 0;
    if (due_ms == SCHED_DUE_NEVER)
        delay = jitter_ms;
    else if (due_ms != SCHED_DUE_REQUEST)
        delay = (due_ms > (int64_t)now ? (uint64_t)(due_ms - (int64_t)now) : 0) + jitter_ms;
    if (not_before_ms > now && not_before_ms - now > delay) delay = not_before_ms - now;
    return delay;
}

int64_t sched_synced_mono_ms(int64_t db_last_us, int64_t db_now_us, uint64_t mono_now)
{
    return (int64_t)mono_now - (db_now_us - db_last_us) / 1000;
}

uint64_t sched_no_db_retry_ms(int poll_interval_s)
{
    uint64_t wait = SCHED_NO_DB_RETRY_MS;
    if (poll_interval_s > 0 && (uint64_t)poll_interval_s * 1000 < wait)
        wait = (uint64_t)poll_interval_s * 1000;
    return wait;
}

uint64_t sched_auth_wait_ms(unsigned refused)
{
    return backoff_interval_ms(SCHED_AUTH_WAIT_BASE_MS, (int)refused - 1, SCHED_AUTH_WAIT_CAP_MS);
}

uint64_t sched_once_wait_ms(int64_t held_ms)
{
    uint64_t wait = (uint64_t)held_ms + SCHED_LEASE_MARGIN_MS;
    return wait < SCHED_ONCE_WAIT_MS ? wait : SCHED_ONCE_WAIT_MS;
}

uint64_t sched_not_before_ms(uint64_t now, uint64_t lease_left_ms)
{
    return now + lease_left_ms + SCHED_LEASE_MARGIN_MS;
}

uint64_t sched_inbox_gather_due_ms(uint64_t first_ms, uint64_t last_ms)
{
    uint64_t quiet = last_ms + SCHED_INBOX_QUIET_MS, most = first_ms + SCHED_INBOX_GATHER_MAX_MS;
    return quiet < most ? quiet : most;
}

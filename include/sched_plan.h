/* The scheduler's arithmetic: when an integration is due, how long its timer waits, and the
 * waits after failures. Pure functions of their inputs (no clock read, no loop, no state), so
 * tests/unit/test_sched_plan.c checks them without a daemon; scheduler_runs.c and
 * scheduler_poll.c apply them. Times are monotonic milliseconds unless named _us (microseconds
 * on the database's clock). */
#ifndef KVS_SCHED_PLAN_H
#define KVS_SCHED_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#define SCHED_JITTER_MS 3000        /* spread of start times of integrations due together */
#define SCHED_NO_DB_RETRY_MS 30000  /* a run that could not reach the database is retried this
                                       soon (or at the next poll interval, when shorter) */
#define SCHED_LEASE_MARGIN_MS 250   /* after another daemon's lease expires, try this much later */
#define SCHED_ONCE_WAIT_MS 1000     /* --once --wait: claim again this often while the lease
                                       lasts (its holder may finish early, or die) */
/* A refused database login (wrong password, unknown user) is not retried for this long,
 * doubling per refusal up to the cap: Supabase bans an address after a few failed password
 * attempts, and retrying cannot fix a password anyway. A reload tries again at once. */
#define SCHED_AUTH_WAIT_BASE_MS (2u * 60u * 1000u)
#define SCHED_AUTH_WAIT_CAP_MS (60u * 60u * 1000u)
/* Due times that are not computed from a last sync (no computed due time equals them). */
#define SCHED_DUE_REQUEST INT64_MIN     /* run-now request: at once */
#define SCHED_DUE_NEVER (INT64_MIN + 1) /* never synced: after its jitter */
#define SCHED_DUE_RETRY (INT64_MIN + 2) /* retry after the database was unreachable */

/* The integration's own jitter in [0, SCHED_JITTER_MS): a hash of its id, stable, so re-arming
 * on every poll does not keep postponing it. */
uint64_t sched_jitter_ms(const char *id);
/* The wait from one sync to the next: interval_min, doubled per failure in a row, at most
 * max_backoff_min (which never shortens the plain interval). */
uint64_t sched_interval_ms(int interval_min, int failures, int max_backoff_min);
/* When the integration is due: SCHED_DUE_REQUEST with a run-now request pending, else
 * SCHED_DUE_NEVER when it never synced (synced_valid false), else its last sync on the
 * monotonic clock plus sched_interval_ms. */
int64_t sched_due_ms(bool request_pending, bool synced_valid, int64_t synced_mono_ms,
                     int interval_min, int failures, int max_backoff_min);
/* Whether an integration due at due_ms may run at now: due, and no other daemon's lease holds
 * it back (not_before_ms, 0 = none). */
bool sched_is_due(int64_t due_ms, uint64_t not_before_ms, uint64_t now);
/* The timer's delay at now: at once for a request, the jitter for a first sync, else the time
 * left until due_ms plus the jitter; never before not_before_ms. */
uint64_t sched_delay_ms(int64_t due_ms, uint64_t jitter_ms, uint64_t not_before_ms,
                        uint64_t now);
/* When the last sync happened on the monotonic clock: db_last_us and db_now_us came in one
 * answer received at mono_now (both the database's clock, so this host's wall clock plays no
 * part). */
int64_t sched_synced_mono_ms(int64_t db_last_us, int64_t db_now_us, uint64_t mono_now);
/* The retry after the database could not be reached: SCHED_NO_DB_RETRY_MS, or the poll
 * interval when shorter (poll_interval_s 0: no configuration known). */
uint64_t sched_no_db_retry_ms(int poll_interval_s);
/* The wait after the refused-th refused login in a row (refused >= 1). */
uint64_t sched_auth_wait_ms(unsigned refused);
/* --once --wait: when to claim again while another daemon holds the lease for held_ms more. */
uint64_t sched_once_wait_ms(int64_t held_ms);
/* Not before this moment: when another daemon's lease, lease_left_ms from now, is over. */
uint64_t sched_not_before_ms(uint64_t now, uint64_t lease_left_ms);

/* Webhook notifications come in bursts (one per change): an inbox run starts once none came
 * for SCHED_INBOX_QUIET_MS, and at the latest SCHED_INBOX_GATHER_MAX_MS after the first, so a
 * burst is one run with one GET /productOnHands (issue 14's GET budget). */
#define SCHED_INBOX_QUIET_MS 40
#define SCHED_INBOX_GATHER_MAX_MS 250
/* When the gathering of notifications that came first at first_ms and last at last_ms ends. */
uint64_t sched_inbox_gather_due_ms(uint64_t first_ms, uint64_t last_ms);

#endif

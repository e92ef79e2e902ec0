/* Retry delays and the hourly GET budget: pure functions of their inputs and a clock value,
 * so they are unit-tested without waiting. */
#ifndef KVS_BACKOFF_H
#define KVS_BACKOFF_H

#include <stdint.h>

/* Exponential backoff with "equal jitter": the delay for retry number attempt (0-based) is
 * half of min(cap, base * 2^attempt) plus a random part of the other half. rnd is any
 * uniformly random 32-bit value. */
uint64_t backoff_delay_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms, uint32_t rnd);

/* How long a server-requested wait (Retry-After) is honoured: clamp to [1 s, cap]. */
uint64_t backoff_retry_after_ms(long retry_after_s, uint64_t cap_ms);

/* The interval of an integration that keeps failing: interval * 2^failures, capped; failures
 * of 0 give the plain interval. */
uint64_t backoff_interval_ms(uint64_t interval_ms, int failures, uint64_t cap_ms);

/* Sliding one-hour window of GET requests. */
typedef struct kv_budget {
    uint64_t *stamps;  /* owned ring of monotonic ms of the last `limit` requests */
    int limit;
    int head, count;
    uint64_t window_ms; /* 3600000 */
} kv_budget;

void kv_budget_init(kv_budget *b, int limit);
void kv_budget_free(kv_budget *b);
/* Changes the limit (reload); keeps the newest stamps. */
void kv_budget_resize(kv_budget *b, int limit);
/* Takes one request slot at now_ms if the window allows: returns 0. Otherwise returns how many
 * ms until a slot frees (nothing taken). */
uint64_t kv_budget_take(kv_budget *b, uint64_t now_ms);
/* Requests counted in the window ending at now_ms. */
int kv_budget_used(kv_budget *b, uint64_t now_ms);

#endif

/* Retry delays and the hourly GET budget. */
#include "backoff.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* base * 2^n, saturating at cap (no overflow whatever the inputs). */
static uint64_t doubled(uint64_t base, long n, uint64_t cap)
{
    uint64_t d = base;
    if (!d) return 0;
    for (long i = 0; i < n && d < cap; i++) d = d > cap / 2 ? cap : d * 2;
    return d > cap ? cap : d;
}

uint64_t backoff_delay_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms, uint32_t rnd)
{
    uint64_t d = doubled(base_ms, (long)attempt, cap_ms);
    uint64_t half = d / 2;
    return half + (half ? (uint64_t)rnd % (half + 1) : 0);
}

uint64_t backoff_retry_after_ms(long retry_after_s, uint64_t cap_ms)
{
    if (retry_after_s <= 1) return cap_ms < 1000 ? cap_ms : 1000;
    if ((uint64_t)retry_after_s >= cap_ms / 1000) return cap_ms; /* also avoids overflow */
    return (uint64_t)retry_after_s * 1000;
}

uint64_t backoff_interval_ms(uint64_t interval_ms, int failures, uint64_t cap_ms)
{
    if (failures <= 0 || cap_ms <= interval_ms) return interval_ms; /* never shorter */
    return doubled(interval_ms, failures, cap_ms);
}

void kv_budget_init(kv_budget *b, int limit)
{
    memset(b, 0, sizeof *b);
    b->limit = limit > 0 ? limit : 1;
    b->stamps = kvs_xcalloc((size_t)b->limit, sizeof *b->stamps);
    b->window_ms = 3600u * 1000u;
}

void kv_budget_free(kv_budget *b)
{
    free(b->stamps);
    b->stamps = NULL;
}

/* Drops stamps older than the window. The ring holds stamps oldest first from head. */
static void expire(kv_budget *b, uint64_t now_ms)
{
    while (b->count > 0) {
        uint64_t oldest = b->stamps[b->head];
        if (now_ms < oldest + b->window_ms) break;
        b->head = (b->head + 1) % b->limit;
        b->count--;
    }
}

void kv_budget_resize(kv_budget *b, int limit)
{
    if (limit <= 0) limit = 1;
    if (limit == b->limit) return;
    uint64_t *n = kvs_xcalloc((size_t)limit, sizeof *n);
    int keep = b->count < limit ? b->count : limit;
    /* keep the newest `keep` stamps, oldest first */
    for (int i = 0; i < keep; i++) n[i] = b->stamps[(b->head + b->count - keep + i) % b->limit];
    free(b->stamps);
    b->stamps = n;
    b->limit = limit;
    b->head = 0;
    b->count = keep;
}

uint64_t kv_budget_take(kv_budget *b, uint64_t now_ms)
{
    expire(b, now_ms);
    if (b->count >= b->limit) {
        uint64_t oldest = b->stamps[b->head];
        uint64_t wait = oldest + b->window_ms - now_ms;
        return wait ? wait : 1;
    }
    b->stamps[(b->head + b->count) % b->limit] = now_ms;
    b->count++;
    return 0;
}

int kv_budget_used(kv_budget *b, uint64_t now_ms)
{
    expire(b, now_ms);
    return b->count;
}

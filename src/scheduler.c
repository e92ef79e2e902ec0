/* The daemon's schedule: integrations, timers, runs, reload and stop (see scheduler.h). */
#include "scheduler.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "db.h"
#include "log.h"
#include "mapping.h"
#include "notify.h"
#include "store.h"
#include "sync.h"

#define JITTER_MS 3000         /* spread of start times of integrations due together */
#define NO_DB_RETRY_MS 30000   /* a run that could not reach the database is retried this soon */
#define PRUNE_EVERY_MS (3600u * 1000u)

/* Config + discovered schema + mapping options; refcounted by the runs that use it. */
typedef struct gen {
    kvs_config *cfg;  /* owned */
    store *store;     /* owned */
    map_opts mopts;   /* owned */
    int refs;         /* runs using it, plus one while it is current */
} gen;

typedef struct integ integ;
struct integ {
    sched *s;
    integ *next;
    char *id, *name;           /* owned */
    bool enabled, present, removed;
    int interval_min, failures;
    int64_t last_sync_us, requested_us, handled_request_us;
    bool request_full;
    uv_timer_t timer;          /* due timer; integ freed in its close callback */
    bool queued;
    sync_run *run;
    gen *run_gen;
    int64_t run_request_us;    /* the request this run serves (0 = none) */
    uint64_t run_started_ms;
    kv_budget budget;
};

typedef enum { CTL_IDLE, CTL_DISCOVER, CTL_ABANDONED, CTL_LIST } ctl_state;

struct sched {
    uv_loop_t *loop;
    http_client *http;
    sched_opts o;
    char *daemon_id, *only;
    gen *cur;                  /* current generation, NULL until discovered */
    kvs_config *boot_cfg;      /* config waiting for its first discovery (owned) */
    kvs_config *reload_cfg;    /* config waiting for a reload discovery (owned) */
    db_conn *ctl;
    ctl_state ctl_state;
    bool poll_wanted;
    unsigned discover_failures;
    uv_timer_t poll_timer, grace_timer, retry_timer;
    integ *integs;
    int running;
    bool stopping, hard_stop, finishing, ready_sent, once_listed;
    int once_pending;
    int exit_code;
    uint64_t last_prune_ms;
    sched_done_cb done;
    void *arg;
    int handles_open;
};

static void ctl_list(sched *s);
static void ctl_discover(sched *s, kvs_config *cfg);
static void integ_arm(integ *it);
static void runs_start_queued(sched *s);
static void sched_maybe_finish(sched *s);

static const kvs_config *cfg_of(const sched *s)
{
    return s->cur ? s->cur->cfg : s->reload_cfg ? s->reload_cfg : s->boot_cfg;
}

/* ---- generations -------------------------------------------------------------------------- */

static void gen_unref(gen *g)
{
    if (!g || --g->refs > 0) return;
    map_opts_free(&g->mopts);
    store_free(g->store);
    config_free(g->cfg);
    free(g);
}

/* ---- status -------------------------------------------------------------------------------- */

static void status_update(sched *s)
{
    if (s->o.once) return;
    const integ *next = NULL;
    uint64_t next_due = UINT64_MAX;
    for (const integ *it = s->integs; it; it = it->next) {
        if (it->run || !it->enabled || !uv_is_active((const uv_handle_t *)&it->timer)) continue;
        uint64_t due = uv_timer_get_due_in(&it->timer);
        if (due < next_due) {
            next_due = due;
            next = it;
        }
    }
    if (next)
        notify_status("%d running, next %s in %" PRIu64 "m%02" PRIu64 "s", s->running, next->name,
                      next_due / 60000, next_due / 1000 % 60);
    else
        notify_status("%d running, nothing scheduled", s->running);
}

/* ---- runs ------------------------------------------------------------------------------------ */

static void print_once_result(const integ *it, const sync_result *r, uint64_t ms)
{
    const sync_counts *c = &r->counts;
    printf("%s: %s", it->name, sync_status_name(r->status));
    if (r->status == SYNC_SUCCESS || r->status == SYNC_PARTIAL || r->status == SYNC_FAILED ||
        r->status == SYNC_CANCELLED)
        printf(" (%s, run %s, %.1f s): categories %d synced (%d new, %d changed, %d failed, %d "
               "removed); products %d synced (%d new, %d changed, %d failed, %d removed); "
               "%d requests",
               r->full ? "full" : "incremental", r->log_id[0] ? r->log_id : "-", ms / 1000.0,
               c->categories_synced, c->categories_created, c->categories_updated,
               c->categories_failed, c->categories_deactivated, c->products_synced,
               c->products_created, c->products_updated, c->products_failed,
               c->products_deactivated, c->requests + c->token_requests);
    if (r->message[0]) printf(": %s", r->message);
    printf("\n");
    fflush(stdout);
}

static void request_cleared_cb(db_result *res, void *arg)
{
    (void)arg;
    if (res->status != DB_OK && res->status != DB_E_CANCELLED)
        log_warn("could not clear a run-now request: %s", res->message ? res->message : "?");
}

static void integ_free_cb(uv_handle_t *h)
{
    integ *it = h->data;
    sched *s = it->s;
    kv_budget_free(&it->budget);
    free(it->id);
    free(it->name);
    free(it);
    s->handles_open--;
    sched_maybe_finish(s);
}

static void integ_unlink_close(integ *it)
{
    sched *s = it->s;
    for (integ **pp = &s->integs; *pp; pp = &(*pp)->next)
        if (*pp == it) {
            *pp = it->next;
            break;
        }
    uv_timer_stop(&it->timer);
    uv_close((uv_handle_t *)&it->timer, integ_free_cb);
}

static void run_done(const sync_result *res, void *arg)
{
    integ *it = arg;
    sched *s = it->s;
    uint64_t ms = kvs_now_mono_ms() - it->run_started_ms;
    it->run = NULL;
    s->running--;
    gen_unref(it->run_gen);
    it->run_gen = NULL;
    switch (res->status) {
    case SYNC_SUCCESS:
    case SYNC_PARTIAL:
        it->failures = 0;
        it->last_sync_us = kvs_now_wall_ms() * 1000;
        break;
    case SYNC_FAILED:
        it->failures++;
        it->last_sync_us = kvs_now_wall_ms() * 1000;
        if (it->failures > 1)
            log_msg(KVS_LOG_WARNING, &(log_ctx){it->name, NULL},
                    "%d failed runs in a row: next attempt in %" PRIu64 " min", it->failures,
                    backoff_interval_ms((uint64_t)it->interval_min * 60000, it->failures,
                                        (uint64_t)cfg_of(s)->max_backoff_minutes * 60000) /
                        60000);
        break;
    default:
        break;
    }
    if (it->run_request_us && s->ctl && res->status != SYNC_NO_DB && res->status != SYNC_SKIPPED) {
        char seen[32];
        snprintf(seen, sizeof seen, "%" PRId64, it->run_request_us);
        const char *p[2] = {it->id, seen};
        it->handled_request_us = it->run_request_us;
        db_exec(s->ctl, store_sql(s->cur->store, ST_REQUEST_CLEAR), 2, p, request_cleared_cb, NULL);
    }
    it->run_request_us = 0;
    if (s->o.once) {
        print_once_result(it, res, ms);
        if (res->status == SYNC_FAILED || res->status == SYNC_NO_DB ||
            res->status == SYNC_CANCELLED)
            s->exit_code = 1;
        s->once_pending--;
    } else if (res->status == SYNC_NO_DB) {
        uv_timer_start(&it->timer, NULL, 0, 0); /* placeholder, re-armed below */
    }
    if (it->removed) {
        integ_unlink_close(it);
    } else if (!s->o.once && !s->stopping) {
        if (res->status == SYNC_NO_DB) {
            extern void sched_integ_fire(uv_timer_t *);
            uv_timer_start(&it->timer, sched_integ_fire, NO_DB_RETRY_MS, 0);
        } else {
            integ_arm(it);
        }
    }
    runs_start_queued(s);
    status_update(s);
    sched_maybe_finish(s);
}

static void run_start(integ *it)
{
    sched *s = it->s;
    it->queued = false;
    s->running++;
    it->run_gen = s->cur;
    s->cur->refs++;
    sync_env env = {
        .loop = s->loop,
        .http = s->http,
        .cfg = s->cur->cfg,
        .store = s->cur->store,
        .mopts = &s->cur->mopts,
        .daemon_id = s->daemon_id,
    };
    bool full = (s->o.once && s->o.full) || (it->run_request_us && it->request_full);
    it->run_started_ms = kvs_now_mono_ms();
    it->run = sync_run_start(&env, it->id, it->name, full, &it->budget, run_done, it);
}

static void runs_start_queued(sched *s)
{
    if (s->stopping || !s->cur) return;
    for (integ *it = s->integs; it && s->running < s->cur->cfg->max_concurrent_runs; it = it->next)
        if (it->queued && !it->run) run_start(it);
}

/* The integration's due timer fired. */
void sched_integ_fire(uv_timer_t *t);
void sched_integ_fire(uv_timer_t *t)
{
    integ *it = t->data;
    sched *s = it->s;
    if (s->stopping || it->run || !it->enabled || !s->cur) return;
    if (it->requested_us > it->handled_request_us) it->run_request_us = it->requested_us;
    if (s->running >= s->cur->cfg->max_concurrent_runs) {
        it->queued = true;
        return;
    }
    run_start(it);
    status_update(s);
}

/* Stable per-integration jitter, so re-arming on every poll does not keep postponing it. */
static uint64_t jitter_of(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = id; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h % JITTER_MS;
}

static void integ_arm(integ *it)
{
    sched *s = it->s;
    if (!it->enabled || it->run || s->stopping) {
        uv_timer_stop(&it->timer);
        return;
    }
    const kvs_config *cfg = cfg_of(s);
    uint64_t delay;
    if (it->requested_us > it->handled_request_us) {
        delay = 0; /* run-now request */
    } else if (!it->last_sync_us) {
        delay = jitter_of(it->id);
    } else {
        uint64_t interval = backoff_interval_ms((uint64_t)it->interval_min * 60000, it->failures,
                                                (uint64_t)cfg->max_backoff_minutes * 60000);
        int64_t due_ms = it->last_sync_us / 1000 + (int64_t)interval;
        int64_t now_ms = kvs_now_wall_ms();
        delay = (due_ms > now_ms ? (uint64_t)(due_ms - now_ms) : 0) + jitter_of(it->id);
    }
    uv_timer_start(&it->timer, sched_integ_fire, delay, 0);
}

/* ---- control connection --------------------------------------------------------------------- */

static void list_cb(db_result *res, void *arg)
{
    sched *s = arg;
    s->ctl_state = CTL_IDLE;
    if (res->status != DB_OK) {
        if (res->status == DB_E_CANCELLED) return;
        log_warn("could not read the integrations: %s", res->message ? res->message : "?");
        if (s->o.once) {
            s->exit_code = 1;
            s->once_listed = true;
            sched_maybe_finish(s);
        }
        return;
    }
    PGresult *pr = res->results[0];
    for (integ *it = s->integs; it; it = it->next) it->present = false;
    int enabled = 0;
    for (int i = 0; i < PQntuples(pr); i++) {
        integ_row *row = integ_row_parse(pr, i);
        integ *it = s->integs;
        while (it && strcmp(it->id, row->id)) it = it->next;
        if (!it) {
            it = kvs_xcalloc(1, sizeof *it);
            it->s = s;
            it->id = kvs_strdup(row->id);
            it->name = kvs_strdup(row->name);
            kv_budget_init(&it->budget, cfg_of(s)->hourly_get_budget);
            uv_timer_init(s->loop, &it->timer);
            it->timer.data = it;
            s->handles_open++;
            it->next = s->integs;
            s->integs = it;
            it->failures = row->consecutive_failures;
        }
        it->present = true;
        bool was_enabled = it->enabled;
        it->enabled = row->is_active && row->sync_enabled &&
                      (!s->only || !strcmp(s->only, row->name));
        if (it->enabled != was_enabled && !s->o.once)
            log_msg(KVS_LOG_NOTICE, &(log_ctx){it->name, NULL}, "%s (every %d min)",
                    it->enabled ? "scheduled" : "disabled: not syncing", row->interval_min);
        else if (it->enabled && it->interval_min && it->interval_min != row->interval_min)
            log_msg(KVS_LOG_NOTICE, &(log_ctx){it->name, NULL}, "interval now %d min",
                    row->interval_min);
        it->interval_min = row->interval_min > 0 ? row->interval_min : 60;
        if (!it->run) {
            it->last_sync_us = row->last_sync_us;
            it->failures = row->consecutive_failures;
        }
        it->requested_us = row->requested_us;
        it->request_full = row->request_full;
        if (it->enabled) enabled++;
        integ_row_free(row);
    }
    for (integ *it = s->integs, *nx; it; it = nx) {
        nx = it->next;
        if (it->present) continue;
        log_msg(KVS_LOG_NOTICE, &(log_ctx){it->name, NULL}, "removed from third_party_integrations");
        it->enabled = false;
        it->removed = true;
        if (!it->run) integ_unlink_close(it);
    }
    if (s->o.once) {
        if (!s->once_listed) {
            s->once_listed = true;
            if (!enabled) {
                printf("no active, sync-enabled KiotViet integration%s%s to sync\n",
                       s->only ? " named " : "", s->only ? s->only : "");
                fflush(stdout);
                if (s->only) s->exit_code = 1;
            }
            for (integ *it = s->integs; it; it = it->next) {
                if (!it->enabled) continue;
                s->once_pending++;
                if (s->running < s->cur->cfg->max_concurrent_runs)
                    run_start(it);
                else
                    it->queued = true;
            }
            sched_maybe_finish(s);
        }
        return;
    }
    for (integ *it = s->integs; it; it = it->next) integ_arm(it);
    if (!s->ready_sent) {
        s->ready_sent = true;
        notify_ready();
        log_notice("ready: %d integration(s) enabled", enabled);
    }
    status_update(s);
    if (s->poll_wanted) {
        s->poll_wanted = false;
        ctl_list(s);
    }
}

static void ctl_list(sched *s)
{
    if (!s->cur || s->finishing) return;
    if (s->ctl_state != CTL_IDLE) {
        s->poll_wanted = true;
        return;
    }
    s->ctl_state = CTL_LIST;
    db_exec(s->ctl, store_sql(s->cur->store, ST_LIST), 0, NULL, list_cb, s);
}

static void prune_cb(db_result *res, void *arg)
{
    (void)arg;
    if (res->status == DB_OK) {
        long n = atol(PQgetvalue(res->results[0], 0, 0));
        if (n) log_info("pruned %ld old sync_logs row(s)", n);
    } else if (res->status != DB_E_CANCELLED) {
        log_warn("pruning sync_logs failed: %s", res->message ? res->message : "?");
    }
}

static void poll_cb(uv_timer_t *t)
{
    sched *s = t->data;
    if (!s->cur) return;
    uint64_t now = kvs_now_mono_ms();
    if (s->cur->cfg->log_retention_days > 0 && now - s->last_prune_ms >= PRUNE_EVERY_MS) {
        s->last_prune_ms = now;
        char days[16];
        snprintf(days, sizeof days, "%d", s->cur->cfg->log_retention_days);
        const char *p[1] = {days};
        db_exec(s->ctl, store_sql(s->cur->store, ST_LOG_PRUNE), 1, p, prune_cb, NULL);
    }
    ctl_list(s);
}

static void abandoned_cb(db_result *res, void *arg)
{
    sched *s = arg;
    s->ctl_state = CTL_IDLE;
    if (res->status == DB_OK) {
        long n = atol(PQgetvalue(res->results[0], 0, 0));
        if (n) log_notice("closed %ld abandoned sync_logs row(s) as failed", n);
    } else if (res->status != DB_E_CANCELLED) {
        log_warn("could not close abandoned sync_logs rows: %s", res->message ? res->message : "?");
    }
    ctl_list(s);
}

static void retry_cb(uv_timer_t *t)
{
    sched *s = t->data;
    kvs_config *cfg = s->boot_cfg;
    s->boot_cfg = NULL;
    ctl_discover(s, cfg);
}

/* Swaps in a new generation built from cfg and a discovery result. */
static int gen_build(sched *s, kvs_config *cfg, PGresult *pr, gen **out)
{
    kvs_err e;
    kvs_err_clear(&e);
    char *warnings = NULL;
    store *st = store_new(cfg->db_schema, pr, &warnings, &e);
    if (!st) {
        log_err("database schema: %s", e.msg);
        return -1;
    }
    if (warnings) {
        log_warn("columns the daemon would fill but the shop does not have (skipped): %s",
                 warnings);
        free(warnings);
    }
    gen *g = kvs_xcalloc(1, sizeof *g);
    if (map_opts_from_config(cfg, &g->mopts, &e)) {
        log_err("%s", e.msg);
        store_free(st);
        free(g);
        return -1;
    }
    log_info("mapping %s", store_describe(st));
    g->cfg = cfg;
    g->store = st;
    g->refs = 1;
    (void)s;
    *out = g;
    return 0;
}

static void discover_cb(db_result *res, void *arg)
{
    sched *s = arg;
    s->ctl_state = CTL_IDLE;
    bool reload = s->cur != NULL;
    kvs_config *cfg = reload ? s->reload_cfg : s->boot_cfg;
    if (reload)
        s->reload_cfg = NULL;
    else
        s->boot_cfg = NULL;
    if (res->status == DB_E_CANCELLED) {
        config_free(cfg);
        return;
    }
    if (res->status != DB_OK) {
        if (reload) {
            log_err("reload failed: cannot read the schema (%s); keeping the old configuration",
                    res->message ? res->message : "?");
            config_free(cfg);
            notify_ready();
            return;
        }
        log_err("cannot reach the database: %s", res->message ? res->message : "?");
        if (s->o.once) {
            config_free(cfg);
            s->exit_code = 1;
            s->once_listed = true;
            sched_maybe_finish(s);
            return;
        }
        /* The daemon stays up and keeps trying. */
        uint64_t wait = backoff_delay_ms(s->discover_failures++, 2000, 60000,
                                         (uint32_t)kvs_now_mono_ms());
        notify_status("waiting for the database (retry in %" PRIu64 " s)", wait / 1000);
        s->boot_cfg = cfg;
        uv_timer_start(&s->retry_timer, retry_cb, wait, 0);
        return;
    }
    gen *g = NULL;
    if (gen_build(s, cfg, res->results[0], &g)) {
        config_free(cfg);
        if (reload) {
            log_err("reload failed; keeping the old configuration");
            notify_ready();
            return;
        }
        s->exit_code = KVS_EX_CONFIG;
        s->once_listed = true;
        sched_stop(s);
        sched_stop(s);
        return;
    }
    s->discover_failures = 0;
    if (reload) {
        gen_unref(s->cur);
        s->cur = g;
        log_set_level(g->cfg->log_level);
        for (integ *it = s->integs; it; it = it->next)
            kv_budget_resize(&it->budget, g->cfg->hourly_get_budget);
        uv_timer_start(&s->poll_timer, poll_cb, (uint64_t)g->cfg->poll_interval_s * 1000,
                       (uint64_t)g->cfg->poll_interval_s * 1000);
        log_notice("configuration reloaded");
        notify_ready();
        ctl_list(s);
        return;
    }
    s->cur = g;
    log_set_level(g->cfg->log_level);
    if (!s->o.once)
        uv_timer_start(&s->poll_timer, poll_cb, (uint64_t)g->cfg->poll_interval_s * 1000,
                       (uint64_t)g->cfg->poll_interval_s * 1000);
    s->ctl_state = CTL_ABANDONED;
    db_exec(s->ctl, store_sql(g->store, ST_LOG_ABANDONED), 0, NULL, abandoned_cb, s);
}

static void ctl_discover(sched *s, kvs_config *cfg)
{
    if (s->cur)
        s->reload_cfg = cfg;
    else
        s->boot_cfg = cfg;
    s->ctl_state = CTL_DISCOVER;
    const char *p[1] = {cfg->db_schema};
    db_exec(s->ctl, store_discover_sql, 1, p, discover_cb, s);
}

/* ---- life ---------------------------------------------------------------------------------- */

sched *sched_new(uv_loop_t *loop, kvs_config *cfg, http_client *http, const sched_opts *o,
                 sched_done_cb done, void *arg)
{
    sched *s = kvs_xcalloc(1, sizeof *s);
    s->loop = loop;
    s->http = http;
    s->o = *o;
    s->daemon_id = kvs_strdup(o->daemon_id);
    s->only = o->only ? kvs_strdup(o->only) : NULL;
    s->o.daemon_id = s->daemon_id;
    s->o.only = s->only;
    s->done = done;
    s->arg = arg;
    uv_timer_init(loop, &s->poll_timer);
    uv_timer_init(loop, &s->grace_timer);
    uv_timer_init(loop, &s->retry_timer);
    s->poll_timer.data = s->grace_timer.data = s->retry_timer.data = s;
    s->handles_open = 3;
    s->last_prune_ms = kvs_now_mono_ms() - PRUNE_EVERY_MS; /* prune at the first poll */
    db_opts d = {
        .conninfo = cfg->db_url,
        .connect_timeout_ms = (long)cfg->db_connect_timeout_s * 1000,
        .statement_timeout_ms = (long)cfg->db_statement_timeout_s * 1000,
        .application_name = "kiotviet-syncd control",
    };
    s->ctl = db_conn_new(loop, &d);
    ctl_discover(s, cfg);
    return s;
}

void sched_reload(sched *s, kvs_config *cfg)
{
    if (s->stopping) {
        config_free(cfg);
        return;
    }
    const kvs_config *old = cfg_of(s);
    char keys[256];
    if (old && config_diff_noreload(old, cfg, keys, sizeof keys) > 0) {
        log_warn("reload: %s cannot change while running (restart to apply); keeping the old "
                 "value(s)",
                 keys);
        free(cfg->db_url);
        cfg->db_url = kvs_strdup(old->db_url);
        free(cfg->db_schema);
        cfg->db_schema = kvs_strdup(old->db_schema);
    }
    if (!s->cur || s->reload_cfg || s->ctl_state == CTL_DISCOVER) {
        /* A discovery is under way: the newest config wins. */
        if (s->cur) {
            config_free(s->reload_cfg);
            s->reload_cfg = cfg;
        } else {
            config_free(s->boot_cfg);
            s->boot_cfg = cfg;
        }
        return;
    }
    if (s->ctl_state != CTL_IDLE) {
        /* The list query is in flight; discovery queues behind it on the same connection. */
    }
    ctl_discover(s, cfg);
}

void sched_poll_now(sched *s) { ctl_list(s); }

static void closed_cb(uv_handle_t *h)
{
    sched *s = h->data;
    s->handles_open--;
    sched_maybe_finish(s);
}

static void cancel_all(sched *s)
{
    for (integ *it = s->integs; it; it = it->next)
        if (it->run) sync_run_cancel(it->run);
}

static void grace_cb(uv_timer_t *t)
{
    sched *s = t->data;
    log_notice("grace period over: cancelling %d run(s)", s->running);
    cancel_all(s);
}

/* Once every run is over (and, in once mode, every run has been started), close everything;
 * done is called when the last handle is closed. */
static void sched_maybe_finish(sched *s)
{
    if (!s->finishing) {
        bool over = s->o.once ? (s->once_listed && s->once_pending == 0 && s->running == 0)
                              : (s->stopping && s->running == 0);
        if (!over) return;
        s->finishing = true;
        if (s->ctl) {
            db_conn_close(s->ctl);
            s->ctl = NULL;
        }
        for (integ *it = s->integs, *nx; it; it = nx) {
            nx = it->next;
            integ_unlink_close(it);
        }
        uv_timer_stop(&s->poll_timer);
        uv_timer_stop(&s->grace_timer);
        uv_timer_stop(&s->retry_timer);
        uv_close((uv_handle_t *)&s->poll_timer, closed_cb);
        uv_close((uv_handle_t *)&s->grace_timer, closed_cb);
        uv_close((uv_handle_t *)&s->retry_timer, closed_cb);
        return;
    }
    if (s->handles_open > 0 || !s->done) return;
    sched_done_cb cb = s->done;
    s->done = NULL;
    cb(s->exit_code, s->arg);
}

void sched_stop(sched *s)
{
    if (s->stopping) {
        if (!s->hard_stop) {
            s->hard_stop = true;
            cancel_all(s);
        }
        return;
    }
    s->stopping = true;
    if (s->o.once) s->once_listed = true, s->once_pending = s->running;
    uv_timer_stop(&s->poll_timer);
    uv_timer_stop(&s->retry_timer);
    for (integ *it = s->integs; it; it = it->next) {
        uv_timer_stop(&it->timer);
        it->queued = false;
    }
    if (s->running > 0) {
        int grace = cfg_of(s) ? cfg_of(s)->grace_period_s : 0;
        log_notice("stopping: %d run(s) in flight get %d s to finish", s->running, grace);
        uv_timer_start(&s->grace_timer, grace_cb, (uint64_t)grace * 1000, 0);
    }
    sched_maybe_finish(s);
}

void sched_free(sched *s)
{
    if (!s) return;
    gen_unref(s->cur);
    config_free(s->boot_cfg);
    config_free(s->reload_cfg);
    free(s->daemon_id);
    free(s->only);
    free(s);
}

/* The daemon's schedule: generations, status, start, reload and stop (see scheduler.h;
 * runs in scheduler_runs.c, the control connection's reads in scheduler_poll.c). */
#include "scheduler.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "db.h"
#include "log.h"
#include "notify.h"
#include "sched_int.h"
#include "store.h"

/* ---- generations -------------------------------------------------------------------------- */

void gen_unref(gen *g)
{
    if (!g || --g->refs > 0) return;
    map_opts_free(&g->mopts);
    store_free(g->store);
    config_free(g->cfg);
    free(g);
}


/* ---- status -------------------------------------------------------------------------------- */

void status_update(sched *s)
{
    if (s->o.once || s->finishing) return;
    if (s->stopping) {
        notify_status("stopping: %d run(s) finishing", s->running);
        return;
    }
    if (s->auth_waiting) {
        notify_status("database login refused (%u in a row): next attempt in %" PRIu64
                      " min, or at a reload",
                      s->auth_refused, (uv_timer_get_due_in(&s->auth_timer) + 59999) / 60000);
        return;
    }
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
    /* Whole minutes (seconds only in the last one), so the text does not change on every
     * poll: notify_status sends only changes. */
    if (next && next_due >= 60000)
        notify_status("%d running, next %s in %" PRIu64 "m", s->running, next->name,
                      (next_due + 59999) / 60000);
    else if (next)
        notify_status("%d running, next %s in %" PRIu64 "s", s->running, next->name,
                      (next_due + 999) / 1000);
    else
        notify_status("%d running, nothing scheduled", s->running);
}

/* ---- control-connection writes whose outcome only matters for logging --------------------- */

typedef struct ctl_write {
    sched *s;
    const char *what;          /* static */
} ctl_write;

static void ctl_write_cb(db_result *res, void *arg)
{
    ctl_write *w = arg;
    sched *s = w->s;
    if (res->status != DB_OK && res->status != DB_E_CANCELLED)
        log_warn("could not %s: %s", w->what, res->message ? res->message : "?");
    free(w);
    s->ctl_writes--;
    sched_maybe_finish(s);
}

void ctl_write_submit(sched *s, const char *what, const char *sql, int n,
                      const char *const *p)
{
    if (!s->ctl) return;
    ctl_write *w = kvs_xcalloc(1, sizeof *w);
    w->s = s;
    w->what = what;
    s->ctl_writes++;
    db_exec(s->ctl, sql, n, p, ctl_write_cb, w);
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
    uv_timer_init(loop, &s->auth_timer);
    uv_timer_init(loop, &s->inbox_timer);
    s->poll_timer.data = s->grace_timer.data = s->retry_timer.data = s->auth_timer.data = s;
    s->inbox_timer.data = s;
    s->handles_open = 5;
    s->last_prune_ms = kvs_now_mono_ms() - PRUNE_EVERY_MS; /* prune at the first poll */
    s->last_abandoned_ms = kvs_now_mono_ms();
    db_opts d = {
        .conninfo = cfg->db_url,
        .connect_timeout_ms = (long)cfg->db_connect_timeout_s * 1000,
        .statement_timeout_ms = (long)cfg->db_statement_timeout_s * 1000,
        .application_name = "kiotviet-syncd control",
        .schema = cfg->db_schema,
    };
    (void)db_pooler_parse(cfg->db_pooler, &d.pooler); /* validated by config_load */
    s->ctl = db_conn_new(loop, &d);
    if (!o->once) db_conn_set_notify_cb(s->ctl, on_notify, s);
    ctl_discover(s, cfg);
    return s;
}

/* Keys that only take effect at start: the control connection is made once from [database],
 * and main creates the one HTTP client from [kiotviet]. A reload that changes them keeps the
 * old values (so the running state and the config agree) and says so. */
static void reload_keep_fixed(const kvs_config *old, kvs_config *cfg)
{
    char keys[512];
    int n = config_diff_noreload(old, cfg, keys, sizeof keys);
    size_t used = strlen(keys);
#define FIXED_INT(field, name)                                                                  \
    do {                                                                                        \
        if (old->field != cfg->field) {                                                         \
            used += (size_t)snprintf(keys + used, used < sizeof keys ? sizeof keys - used : 0,  \
                                     "%s%s", n++ ? ", " : "", name);                            \
            cfg->field = old->field;                                                            \
        }                                                                                       \
    } while (0)
    FIXED_INT(http_connect_timeout_s, "[kiotviet] connect_timeout");
    FIXED_INT(http_timeout_s, "[kiotviet] request_timeout");
    FIXED_INT(max_page_bytes, "[kiotviet] max_page_bytes");
#undef FIXED_INT
    if (!kvs_streq(old->ca_file, cfg->ca_file)) {
        used += (size_t)snprintf(keys + used, used < sizeof keys ? sizeof keys - used : 0, "%s%s",
                                 n++ ? ", " : "", "[kiotviet] ca_file");
        free(cfg->ca_file);
        cfg->ca_file = kvs_strdup(old->ca_file);
    }
    if (n == 0) return;
    log_warn("reload: %s cannot change while running (restart to apply); keeping the old "
             "value(s)",
             keys);
    free(cfg->db_url);
    cfg->db_url = kvs_strdup(old->db_url);
    free(cfg->db_schema);
    cfg->db_schema = kvs_strdup(old->db_schema);
}

void sched_reload(sched *s, kvs_config *cfg)
{
    if (s->stopping || s->finishing) {
        config_free(cfg);
        return;
    }
    /* A reload is how an operator says "fixed": a refused login is tried again at once. */
    s->auth_refused = 0;
    if (s->auth_waiting) {
        s->auth_waiting = false;
        uv_timer_stop(&s->auth_timer);
        log_notice("reload: trying the database login again now");
    }
    if (!s->cur) {
        /* Still starting: the newest config is the one to start with; READY=1 comes when
         * the start is complete. */
        if (cfg) {
            if (s->boot_cfg) reload_keep_fixed(s->boot_cfg, cfg);
            if (s->discovering) {
                config_free(s->boot_cfg);
                s->boot_cfg = cfg;
            } else {
                /* Waiting for the database: retry now with the new config. */
                config_free(s->boot_cfg);
                s->boot_cfg = NULL;
                uv_timer_stop(&s->retry_timer);
                ctl_discover(s, cfg);
            }
        }
        return;
    }
    s->reloading = true;
    if (!cfg) {
        /* The new file was invalid (main logged why): keep the config, re-read the list. */
        ctl_list(s);
        return;
    }
    reload_keep_fixed(s->cur->cfg, cfg);
    if (s->discovering) {
        /* A reload discovery is under way: the newest config wins; its list follows. */
        config_free(s->reload_cfg);
        s->reload_cfg = cfg;
        return;
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
void sched_maybe_finish(sched *s)
{
    if (!s->finishing) {
        bool over = s->o.once ? (s->once_listed && s->once_pending == 0 && s->running == 0)
                              : (s->stopping && s->running == 0);
        if (!over || s->ctl_writes > 0) return;
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
        uv_timer_stop(&s->auth_timer);
        uv_timer_stop(&s->inbox_timer);
        uv_close((uv_handle_t *)&s->auth_timer, closed_cb);
        uv_close((uv_handle_t *)&s->inbox_timer, closed_cb);
        uv_close((uv_handle_t *)&s->poll_timer, closed_cb);
        uv_close((uv_handle_t *)&s->grace_timer, closed_cb);
        uv_close((uv_handle_t *)&s->retry_timer, closed_cb);
        return;
    }
    if (s->handles_open > 0 || !s->done) return;
    if (s->o.once && s->exit_code == 0 && s->once_held > 0) s->exit_code = SCHED_EX_TEMPFAIL;
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
    uv_timer_stop(&s->auth_timer);
    uv_timer_stop(&s->inbox_timer);
    s->auth_waiting = false;
    for (integ *it = s->integs; it; it = it->next) {
        uv_timer_stop(&it->timer);
        it->queued = false;
        if (it->once_waiting) { /* --wait interrupted: still held by the other daemon */
            it->once_waiting = false;
            s->once_held++;
        }
    }
    if (s->running > 0) {
        int grace = cfg_of(s) ? cfg_of(s)->grace_period_s : 0;
        log_notice("stopping: %d run(s) in flight get %d s to finish", s->running, grace);
        uv_timer_start(&s->grace_timer, grace_cb, (uint64_t)grace * 1000, 0);
    }
    status_update(s);
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

/* A run's bookkeeping of what the writer reports: counts, failed rows and cursor floors, the
 * reconciliation guard, the progress row; and jobs_dec, where every database job of the run
 * ends and moves it on (see sync_int.h). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "store.h"
#include "sync_int.h"

/* ---- what the writer reports ------------------------------------------------------------ */

/* Every asynchronous database job of a run ends here: it moves the run on. */
void jobs_dec(sync_run *r)
{
    r->jobs--;
    if (r->phase >= PH_FINISH) return;
    if (sync_stopping(r)) {
        if (r->jobs == 0) run_finish(r);
        return;
    }
    if ((r->phase == PH_CATEGORIES || r->phase == PH_PRODUCTS || r->phase == PH_STOCK) &&
        !r->pg.done)
        sync_pager_pump(r);
    else if (r->phase == PH_BRANCHES && !r->br.done)
        return; /* its pages call the next phase */
    else if (r->jobs == 0 && r->phase > PH_START)
        sync_phase_next(r);
}

static void progress_cb(db_result *res, void *arg)
{
    (void)res; /* a lost update is not worth failing for: the next one, or the end, says it */
    jobs_dec(arg);
}

/* Progress goes on the run's connection, apart from the pages (the sync_logs row lock would
 * otherwise make the writers wait for each other), at most every PROGRESS_MS: enough for
 * `status` and a watching operator, and not an extra UPDATE with every page. */
void sync_progress_send(sync_run *r)
{
    uint64_t now_ms = kvs_now_mono_ms();
    if (!r->log_id[0] || sync_stopping(r) || r->phase >= PH_FINISH ||
        now_ms - r->progress_ms < PROGRESS_MS)
        return;
    r->progress_ms = now_ms;
    kvs_buf counts;
    kvs_buf_init(&counts);
    counts_json(r, &counts);
    const char *lp[2] = {r->log_id, counts.data};
    r->jobs++;
    db_exec(r->db, store_sql(r->env.store, ST_LOG_PROGRESS), 2, lp, progress_cb, r);
    kvs_buf_free(&counts);
}

/* Lowers the entity's cursor floor to the modification time of a row the database refused. */
static void floor_lower(sync_run *r, enum writer_entity ent, int64_t modified_us)
{
    if (modified_us > 0) {
        if (!r->floor_us[ent] || modified_us < r->floor_us[ent]) r->floor_us[ent] = modified_us;
    } else {
        r->floor_unknown[ent] = true;
    }
}

/* A stock row is a product's (its stock): it counts as a product failure. */
static void row_failure(sync_run *r, enum writer_entity ent, int64_t id, const char *msg)
{
    if (sync_ent_products(ent))
        r->counts.products_failed++;
    else
        r->counts.categories_failed++;
    if (r->failures_listed >= MAX_LISTED) return;
    if (r->failures.len) REQUIRE(kvs_buf_puts(&r->failures, ",") == 0);
    REQUIRE(kvs_buf_printf(&r->failures, "{\"%s\":%" PRId64 ",%s\"error\":",
                           sync_ent_products(ent) ? "id" : "category_id", id,
                           ent == WRITER_STOCK ? "\"stock\":true," : "") == 0);
    char text[1024];
    snprintf(text, sizeof text, "%s", msg);
    log_redact(text, sizeof text); /* the text, not the JSON: see finish_submit */
    kvs_utf8_clean(text);
    REQUIRE(kvs_buf_json_str(&r->failures, text) == 0);
    REQUIRE(kvs_buf_puts(&r->failures, "}") == 0);
    r->failures_listed++;
}

/* A reconciliation came back: marking none of a positive number means the guard held. */
static void reconcile_checked(sync_run *r, const writer_outcome *o)
{
    if (r->env.force_deletes && o->marked > 0)
        rlog_notice(&r->lctx, "--force-deletes: marked %d of %ld live products deleted",
                    o->marked, o->live);
    if (o->others)
        rlog_info(&r->lctx, "reconciliation covered this integration's products only: "
                            "another KiotViet integration has run, so rows without "
                            "kiotviet_integration_id were left alone (without that "
                            "column nothing is reconciled: re-apply the migration)");
    if (o->marked > 0 || o->would_mark == 0) return;
    r->deletes_held = true;
    r->held_would = o->would_mark;
    r->held_live = o->live;
    snprintf(r->res.message, sizeof r->res.message,
             "reconciliation not applied: it would mark %ld of the integration's %ld live "
             "products deleted, more than [sync] max_delete_ratio = %g; if KiotViet really no "
             "longer has them, run kiotviet-syncd --once --full --force-deletes",
             o->would_mark, o->live, r->env.cfg->max_delete_ratio);
    rlog_warn(&r->lctx, "%s", r->res.message);
}

/* The writer's report of one piece of work: counts, failures, and the run's fate. */
void written_cb(const writer_outcome *o, void *arg)
{
    sync_run *r = arg;
    bool prod = sync_ent_products(o->ent); /* a stock page updates product rows */
    sync_counts *c = &r->counts;
    if (r->inbox) inbox_written(r, o);
    if (o->ent == WRITER_BRANCHES)
        sync_branches_written(r, o);
    else switch (o->kind) {
    case WRITER_PAGE:
        *(prod ? &c->products_created : &c->categories_created) += o->inserted;
        *(prod ? &c->products_updated : &c->categories_updated) += o->updated;
        for (int i = 0; i < o->nfailed; i++) {
            row_failure(r, o->ent, o->failed[i].id, o->failed[i].message);
            floor_lower(r, o->ent, o->failed[i].modified_us);
        }
        /* Rows not stored no longer count as synced. */
        *(o->ent == WRITER_STOCK    ? &c->stock_synced
          : o->ent == WRITER_PRODUCTS ? &c->products_synced
                                      : &c->categories_synced) -= o->nfailed + o->unsent;
        if (o->ent == WRITER_STOCK) c->stock_updated += o->updated;
        break;
    case WRITER_REMOVE:
    case WRITER_RECONCILE:
        *(prod ? &c->products_deactivated : &c->categories_deactivated) += o->marked;
        if (o->kind == WRITER_RECONCILE && !o->lease_lost && !o->error) reconcile_checked(r, o);
        break;
    case WRITER_RELINK:
        break;
    }
    if (o->lease_lost) {
        sync_fail(r, "the integration's lease was taken over by another daemon: stopped writing");
    } else if (o->error) {
        if (o->db_down) r->db_down = true;
        sync_fail(r, "%s", o->error);
    }
    sync_progress_send(r);
    jobs_dec(r);
}

/* The branches phase of a sync run (issue 16, see sync_int.h): GET /branches into
 * kiotviet_branches through the writer. Branches change rarely and every GET counts against
 * the hourly budget (an unchanged incremental run costs at most 3 GETs, issue 14): a full run
 * always reads them, an incremental one when the integration's last read is more than
 * SYNC_BRANCHES_EVERY_MIN old, from the newest branch change stored minus overlap_minutes.
 * A [mapping] price_book given by name is resolved (GET /pricebooks) by the runs that read
 * /branches; the others take the id from the integration's sync_memo.
 * A branch in removedIds was made inactive: its row stays, is_active false. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtime.h"
#include "sync_int.h"

#define BRANCH_PAGES_MAX 50 /* more pages of branches than any shop has stores: stop there */

static void fetch_branches(sync_run *r);
static void fetch_books(sync_run *r);

/* Branches read (or not due): then the price book's id, when it was given by name. A run that
 * did not read /branches takes the id an earlier run resolved (sync_memo). */
static void branches_finished(sync_run *r)
{
    if (r->mopts.book_name && !r->mopts.book_id) {
        const sync_memo *m = r->memo;
        if (!r->br.read && m && m->book_id && !strcmp(m->book_name, r->mopts.book_name)) {
            r->mopts.book_id = m->book_id;
        } else {
            fetch_books(r);
            return;
        }
    }
    r->br.done = true;
    if (r->jobs == 0) sync_phase_next(r);
}

static fetch *fetch_new(sync_run *r)
{
    fetch *f = kvs_xcalloc(1, sizeof *f);
    f->run = r;
    f->ent = WRITER_BRANCHES;
    f->next = r->fetches;
    if (r->fetches) r->fetches->prev = f;
    r->fetches = f;
    return f;
}

static void fetch_unlink(fetch *f)
{
    sync_run *r = f->run;
    if (f->prev) f->prev->next = f->next;
    else r->fetches = f->next;
    if (f->next) f->next->prev = f->prev;
    free(f);
}

static void books_cb(int rc, kv_page *page, const char *err, void *arg)
{
    fetch *f = arg;
    sync_run *r = f->run;
    fetch_unlink(f);
    if (rc != KV_OK) {
        sync_fail(r, "price books page at offset %d: %s", r->br.book_offset, err ? err : "error");
        return;
    }
    const cJSON *it;
    int got = 0;
    cJSON_ArrayForEach(it, page->data)
    {
        const char *name;
        int64_t id;
        got++;
        if (!r->mopts.book_id && kvjson_get_str(it, "name", &name) == 0 &&
            kvs_strcaseeq(name, r->mopts.book_name) && kvjson_get_int64(it, "id", &id) == 0)
            r->mopts.book_id = id;
    }
    kv_page_free(page);
    if (sync_stopping(r)) return;
    if (r->mopts.book_id) {
        rlog_info(&r->lctx, "[mapping] price_book '%s' is price book %" PRId64,
                  r->mopts.book_name, r->mopts.book_id);
        if (r->memo && strlen(r->mopts.book_name) < sizeof r->memo->book_name) {
            snprintf(r->memo->book_name, sizeof r->memo->book_name, "%s", r->mopts.book_name);
            r->memo->book_id = r->mopts.book_id;
        }
        branches_finished(r);
    } else if (got >= r->psize && r->br.book_offset / r->psize < BRANCH_PAGES_MAX) {
        r->br.book_offset += got;
        fetch_books(r);
    } else {
        sync_fail(r, "[mapping] price_book '%s': KiotViet has no price book of that name (GET "
                     "/pricebooks); give its id, or fix the name",
                  r->mopts.book_name);
    }
}

static void fetch_books(sync_run *r)
{
    char q[128];
    snprintf(q, sizeof q, "/pricebooks?pageSize=%d&currentItem=%d", r->psize, r->br.book_offset);
    fetch *f = fetch_new(r);
    f->req = kv_get(r->kv, q, books_cb, f);
}

static void page_cb(int rc, kv_page *page, const char *err, void *arg)
{
    fetch *f = arg;
    sync_run *r = f->run;
    fetch_unlink(f);
    if (rc != KV_OK) {
        sync_fail(r, "branches page at offset %d: %s", r->br.offset, err ? err : "error");
        return;
    }
    if (sync_stopping(r)) {
        kv_page_free(page);
        return;
    }
    map_page mp;
    map_page_init(&mp);
    if (page->data) map_branches(page->data, &mp);
    if (mp.nfailed) {
        r->br.incomplete = true;
        rlog_warn(&r->lctx, "%d branch record(s) could not be mapped", mp.nfailed);
    }
    if (mp.nrows) {
        r->jobs++;
        writer_put_page(r->w, WRITER_BRANCHES, &mp); /* takes the rows */
    }
    if (page->removed && r->br.offset == 0) {
        int n, nbad;
        int64_t *ids = map_removed_ids(page->removed, &n, &nbad);
        if (n) {
            r->jobs++;
            writer_put_ids(r->w, WRITER_REMOVE, WRITER_BRANCHES, ids, n);
        }
        free(ids);
    }
    int got = page->data ? cJSON_GetArraySize(page->data) : 0;
    kv_page_free(page);
    map_page_free(&mp);
    r->br.pages++;
    if (got >= r->psize && r->br.pages < BRANCH_PAGES_MAX) {
        r->br.offset += got;
        fetch_branches(r);
        return;
    }
    branches_finished(r);
}

static void fetch_branches(sync_run *r)
{
    char q[256], from[KVTIME_BUFSZ + 24] = "";
    if (!r->full && r->br.since_us) {
        char t[KVTIME_BUFSZ];
        kvtime_format_vn_local(r->br.since_us - (int64_t)r->env.cfg->overlap_minutes * 60 * 1000000,
                               t);
        snprintf(from, sizeof from, "&lastModifiedFrom=%s", t);
    }
    snprintf(q, sizeof q,
             "/branches?pageSize=%d&currentItem=%d&orderBy=id&orderDirection=Asc"
             "&includeRemoveIds=true%s",
             r->psize, r->br.offset, from);
    fetch *f = fetch_new(r);
    f->req = kv_get(r->kv, q, page_cb, f);
}

static void since_cb(db_result *res, void *arg)
{
    sync_run *r = arg;
    if (sync_stopping(r)) {
        /* the run ends: nothing to read */
    } else if (res->status != DB_OK || PQntuples(res->results[0]) != 1) {
        /* Branches are the run's side dish: a read that fails (a pooler's hiccup, the
         * integration row gone) leaves them for the next run, the catalogue goes on. */
        rlog_warn(&r->lctx, "branches not read this run: reading kiotviet_branches: %s",
                  res->message ? res->message : "no row");
        branches_finished(r);
    } else {
        PGresult *pr = res->results[0];
        r->br.since_us = PQgetisnull(pr, 0, 0) ? 0 : strtoll(PQgetvalue(pr, 0, 0), NULL, 10);
        bool due = PQgetvalue(pr, 0, 1)[0] == 't';
        if (r->full || due) {
            r->br.read = true;
            fetch_branches(r);
        } else {
            branches_finished(r);
        }
    }
    jobs_dec(r);
}

void sync_branches_begin(sync_run *r)
{
    memset(&r->br, 0, sizeof r->br);
    r->mopts = *r->env.mopts;
    r->mopts.now_us = r->db_start_us; /* a price book's dates are judged by the database's clock */
    char every[16];
    snprintf(every, sizeof every, "%d", SYNC_BRANCHES_EVERY_MIN);
    const char *p[2] = {r->row->id, every};
    r->jobs++;
    db_exec(r->db, store_sql(r->env.store, ST_BRANCHES_SINCE), 2, p, since_cb, r);
}

static void recorded_cb(db_result *res, void *arg)
{
    sync_run *r = arg;
    if (res->status != DB_OK)
        rlog_warn(&r->lctx, "could not record the branches' read (read again next run): %s",
                  res->message ? res->message : "error");
    jobs_dec(r);
}

bool sync_branches_end(sync_run *r)
{
    if (!r->br.read || r->br.incomplete) return false;
    const char *p[2] = {r->row->id, r->env.daemon_id};
    r->jobs++;
    db_exec(r->db, store_sql(r->env.store, ST_BRANCHES_READ), 2, p, recorded_cb, r);
    return true;
}

void sync_branches_written(sync_run *r, const writer_outcome *o)
{
    for (int i = 0; i < o->nfailed; i++)
        rlog_warn(&r->lctx, "branch %" PRId64 " not stored: %s", o->failed[i].id,
                  o->failed[i].message);
    if (o->nfailed || o->unsent) r->br.incomplete = true;
    if (o->inserted || o->updated || o->marked)
        rlog_info(&r->lctx, "branches: %d new, %d changed, %d made inactive", o->inserted,
                  o->updated, o->marked);
}

/* The pager of a sync run (see sync_int.h): pages of one entity fetched pages_in_flight at a
 * time, ordered by id, with an overlap between neighbours so that a catalogue that shrinks
 * while it is paged is noticed and the gap fetched again; each page is mapped, the rows this run
 * already stored are dropped, and the rest go to the writer. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvtime.h"
#include "sync_int.h"

/* Appends a page's notes or failures (n items in text) to a run's list, keeping the first
 * MAX_LISTED overall. */
static void list_append(kvs_buf *dst, int *listed, const kvs_buf *text, const map_item *items,
                        int n)
{
    for (int i = 0; i < n && *listed < MAX_LISTED; i++) {
        if (dst->len) REQUIRE(kvs_buf_puts(dst, ",") == 0);
        REQUIRE(kvs_buf_append(dst, text->data + items[i].start, items[i].len) == 0);
        (*listed)++;
    }
}

const char *sync_entity_name(enum writer_entity ent)
{
    return ent == WRITER_PRODUCTS   ? "products"
           : ent == WRITER_STOCK    ? "stock"
           : ent == WRITER_BRANCHES ? "branches"
                                    : "categories";
}

/* ---- paging -------------------------------------------------------------------------------- */

/* Rows shared by neighbouring pages: a neighbour that starts beyond our last id then proves
 * rows were missed (the catalogue shrank in between). Without overlap nothing can be proved. */
static void pager_restart(sync_run *r);

static int overlap_of(int page_size) { return page_size >= 8 ? 3 : page_size >= 2 ? 1 : 0; }

static int step_of(const sync_run *r)
{
    return r->psize - overlap_of(r->psize);
}

static void slot_ensure(pager *pg, int i, int step)
{
    while (pg->nslots <= i) {
        pg->slots = kvs_xrealloc(pg->slots, (size_t)(pg->nslots + 1) * sizeof *pg->slots);
        slot *s = &pg->slots[pg->nslots];
        memset(s, 0, sizeof *s);
        s->offset = (int64_t)pg->nslots * step;
        pg->nslots++;
    }
}

static void page_cb(int rc, kv_page *page, const char *err, void *arg);

/* Pages one entity may take: twice what its first total needs (the catalogue may grow while
 * it is read), or what MAX_CATALOGUE needs without a total, plus the gap repairs and a window
 * of pages in flight. Bounds a run's GETs whatever the answers say. */
static int page_limit(const sync_run *r)
{
    const pager *pg = &r->pg;
    int64_t records = pg->first_total >= 0 ? 2 * pg->first_total : MAX_CATALOGUE;
    return (int)(records / step_of(r)) + 1 + MAX_REFETCH + 2 * r->env.cfg->pages_in_flight;
}

static void fetch_start(sync_run *r, int si)
{
    pager *pg = &r->pg;
    const kvs_config *cfg = r->env.cfg;
    slot *s = &pg->slots[si];
    if (++pg->issued > page_limit(r)) {
        sync_fail(r, "KiotViet's %s pages never ended (%d pages for a reported total of %" PRId64
                    "): stopped so one broken answer cannot spend the hourly GET budget",
                 sync_entity_name(pg->ent), pg->issued - 1,
                 pg->first_total);
        return;
    }
    char q[512], from[KVTIME_BUFSZ + 24] = "";
    /* The stock is read from the products cursor (see cursor_param in sync.c). */
    int64_t cursor = sync_ent_products(r->pg.ent) ? r->row->products_cursor_us
                                                 : r->row->categories_cursor_us;
    if (!r->full && cursor) {
        char t[KVTIME_BUFSZ];
        kvtime_format_vn_local(cursor - (int64_t)cfg->overlap_minutes * 60 * 1000000, t);
        snprintf(from, sizeof from, "&lastModifiedFrom=%s", t);
    }
    if (pg->ent == WRITER_PRODUCTS)
        snprintf(q, sizeof q,
                 "/products?pageSize=%d&currentItem=%" PRId64 "&orderBy=id&orderDirection=Asc"
                 "&includeInventory=true&IncludeSerials=true&includeRemoveIds=true"
                 "&includeSoftDeletedAttribute=false%s%s",
                 r->psize, s->offset, r->env.cfg->price_book ? "&includePricebook=true" : "", from);
    else if (pg->ent == WRITER_STOCK)
        snprintf(q, sizeof q,
                 "/productOnHands?pageSize=%d&currentItem=%" PRId64 "&orderBy=id"
                 "&orderDirection=Asc%s",
                 r->psize, s->offset, from);
    else
        snprintf(q, sizeof q,
                 "/categories?pageSize=%d&currentItem=%" PRId64 "&orderBy=categoryId"
                 "&orderDirection=Asc&hierachicalData=false&includeRemoveIds=true%s",
                 r->psize, s->offset, from);
    fetch *f = kvs_xcalloc(1, sizeof *f);
    f->run = r;
    f->slot = si;
    f->ent = pg->ent;
    f->next = r->fetches;
    if (r->fetches) r->fetches->prev = f;
    r->fetches = f;
    s->inflight = true;
    pg->inflight++;
    f->req = kv_get(r->kv, q, page_cb, f);
}

/* Checks the pair (i, i+1); on a gap schedules a refetch. Returns true when the pair is fine
 * or cannot be judged yet. */
static bool pair_check(sync_run *r, int i)
{
    pager *pg = &r->pg;
    if (pg->unordered || i + 1 >= pg->nslots || !overlap_of(r->psize)) return true;
    slot *a = &pg->slots[i], *b = &pg->slots[i + 1];
    if (!a->fetched || !b->fetched || a->inflight || b->inflight) return true;
    if (a->n < r->psize) return true; /* a reached the end when it was fetched */
    int which;
    if (b->n == 0)
        which = b->seq > a->seq ? i : i + 1; /* b is newer and empty: a's view is stale */
    else if (b->first <= a->last)
        return true;
    else
        which = i; /* rows between a.last and b.first were missed: fetch a again */
    if (++pg->refetches > MAX_REFETCH) {
        sync_fail(r, "the KiotViet catalogue kept changing while it was paged (%d gap repairs); "
                    "the next run tries again",
                 pg->refetches - 1);
        return false;
    }
    rlog_info(&r->lctx, "catalogue shifted while paging (offset %" PRId64 "); fetching again",
              pg->slots[which].offset);
    pg->slots[which].fetched = false;
    fetch_start(r, which);
    return false;
}

static void entity_done(sync_run *r)
{
    pager *pg = &r->pg;
    pg->done = true;
    /* The next incremental read starts from KiotViet's time at our first page of this entity
     * (else at the run's first page, which came earlier), else from the database's clock at
     * the claim: never from this host's clock. The overlap window is subtracted when reading. */
    r->cursor_us[pg->ent] = pg->server_ts ? pg->server_ts
                            : r->kv_ts_us ? r->kv_ts_us
                                          : r->db_start_us;
    int n = r->nremoved[pg->ent];
    if (n > 0) {
        r->jobs++;
        writer_put_ids(r->w, WRITER_REMOVE, pg->ent, r->removed[pg->ent], n);
    }
    if (r->jobs == 0) sync_phase_next(r);
}

/* Issues pages while there is room, and decides when the entity is complete. */
void sync_pager_pump(sync_run *r)
{
    pager *pg = &r->pg;
    if (sync_stopping(r) || pg->done) return;
    int K = r->env.cfg->pages_in_flight, step = step_of(r);
    int64_t upto = pg->end >= 0 && pg->end < pg->total ? pg->end : pg->total;
    while (pg->inflight < K && r->jobs < 2 * K && upto >= 0 && (int64_t)pg->next * step < upto) {
        slot_ensure(pg, pg->next, step);
        fetch_start(r, pg->next++);
        if (sync_stopping(r)) return;
    }
    /* Stores behind: wait for them before judging the end (or fetching successors), so a
     * slow database holds the fetcher back instead of queueing every page in memory. */
    if (pg->inflight > 0 || r->jobs >= 2 * K) return;
    for (int i = 0; i + 1 < pg->nslots; i++)
        if (!pair_check(r, i)) return;
    /* All issued pages are in; a last page that came back full may have successors. */
    if (pg->nslots > 0) {
        slot *last = &pg->slots[pg->nslots - 1];
        if (last->n >= r->psize && pg->nslots == pg->next &&
            (pg->end < 0 || (int64_t)pg->next * step < pg->end)) {
            slot_ensure(pg, pg->next, step);
            fetch_start(r, pg->next++);
            return;
        }
    }
    if (r->jobs > 0) return; /* wait for the stores; job_done pumps again */
    entity_done(r);
}

static void page_cb(int rc, kv_page *page, const char *err, void *arg)
{
    fetch *f = arg;
    sync_run *r = f->run;
    pager *pg = &r->pg;
    if (f->prev) f->prev->next = f->next;
    else r->fetches = f->next;
    if (f->next) f->next->prev = f->prev;
    int si = f->slot;
    enum writer_entity ent = f->ent;
    free(f);
    pg->inflight--;
    slot *s = &pg->slots[si];
    s->inflight = false;
    if (rc != KV_OK) {
        sync_fail(r, "%s page at offset %" PRId64 ": %s",
                 sync_entity_name(ent), s->offset,
                 err ? err : "error");
        return;
    }
    if (sync_stopping(r)) {
        kv_page_free(page);
        return;
    }
    if (r->full && si == 0 && s->seq == 0 && (!page->data || page->total < 0)) {
        /* Read as an empty catalogue, it would end paging and let the reconciliation mark
         * every product deleted. */
        sync_fail(r, "KiotViet's first %s page of a full read has no %s: not trusted (a full "
                    "read needs both \"data\" and \"total\")",
                 sync_entity_name(ent),
                 !page->data ? "\"data\" array" : "\"total\"");
        kv_page_free(page);
        return;
    }
    if (page->total > MAX_CATALOGUE) {
        sync_fail(r, "KiotViet reports a %s total of %" PRId64 ", more than any catalogue holds "
                    "(%d): not trusted",
                 sync_entity_name(ent), page->total, MAX_CATALOGUE);
        kv_page_free(page);
        return;
    }
    if (page->effective_page_size > 0 && page->effective_page_size < r->psize) {
        /* KiotViet serves fewer rows per page than asked (its echoed pageSize): every page
         * planned from the larger size would leave a gap, and a short page would look like
         * the last one. Read the entity again at the size it serves; rows already stored
         * are not stored or counted twice. */
        rlog_info(&r->lctx, "KiotViet serves at most %d %s per page (asked for %d): paging at "
                            "that size",
                  page->effective_page_size, sync_entity_name(ent),
                  r->psize);
        r->psize = page->effective_page_size;
        kv_page_free(page);
        pager_restart(r);
        return;
    }
    if (si == 0 && s->seq == 0) pg->first_total = page->total;
    /* An empty page ends the catalogue there, whatever total it (or a later page) reports. */
    if (page->data && cJSON_GetArraySize(page->data) == 0 && (pg->end < 0 || s->offset < pg->end))
        pg->end = s->offset;
    if (si == 0 && s->seq == 0 && page->timestamp_us) pg->server_ts = page->timestamp_us;
    if (!r->kv_ts_us && page->timestamp_us) r->kv_ts_us = page->timestamp_us;
    s->fetched = true;
    s->seq = ++pg->seq;
    s->total = page->total;
    if (page->total >= 0) pg->total = page->total;
    else if (pg->total < 0) pg->total = 0; /* no total: rely on short pages to stop */

    map_page mp;
    map_page_init(&mp);
    if (page->data) {
        if (ent == WRITER_PRODUCTS)
            map_products(page->data, &r->mopts, &mp);
        else if (ent == WRITER_STOCK)
            map_stock(page->data, &r->mopts, &mp);
        else
            map_categories(page->data, &mp);
    } else {
        REQUIRE(kvs_buf_puts(&mp.rows, "[]") == 0);
    }
    s->n = mp.nrecords;
    s->first = mp.first_id;
    s->last = mp.last_id;
    if (!mp.ascending && !pg->unordered) {
        pg->unordered = true;
        rlog_warn(&r->lctx, "KiotViet did not order %s by id: gap detection is off for this run",
                  sync_entity_name(ent));
    }
    /* A total that grows past what we planned, when there is no total, keeps paging. */
    if (page->total < 0 && mp.nrecords >= r->psize)
        pg->total = s->offset + mp.nrecords + 1;

    /* removedIds (the first page carries them; accept them on any page). */
    if (page->removed && ent != WRITER_STOCK) { /* (stock has none: never a removal) */
        int n, nbad;
        int64_t *ids = map_removed_ids(page->removed, &n, &nbad);
        for (int i = 0; i < n; i++) {
            bool dup = false;
            for (int k = 0; k < r->nremoved[ent] && !dup; k++) dup = r->removed[ent][k] == ids[i];
            if (dup) continue;
            r->removed[ent] = kvs_xrealloc(r->removed[ent],
                                           (size_t)(r->nremoved[ent] + 1) * sizeof(int64_t));
            r->removed[ent][r->nremoved[ent]++] = ids[i];
        }
        free(ids);
    }
    kv_page_free(page);

    /* A record is stored, counted and described the first time this run sees it: the rows a
     * page shares with its neighbour (the overlap, a refetch) were fetched after the run began
     * as well, and changes made since are read by the next run. Sending them again would also
     * make neighbouring pages on different connections wait for each other's commit. */
    int fresh = map_page_keep_unseen(&mp, &r->seen[ent]);
    if (sync_ent_products(ent)) {
        *(ent == WRITER_PRODUCTS ? &r->counts.products_synced : &r->counts.stock_synced) += fresh;
        r->counts.attribute_notes += mp.nnotes;
        if (ent == WRITER_PRODUCTS) r->counts.skipped += mp.nskipped;
        list_append(&r->notes, &r->notes_listed, &mp.notes, mp.note, mp.nnotes);
    } else {
        r->counts.categories_synced += fresh;
    }
    if (mp.nfailed) {
        if (sync_ent_products(ent))
            r->counts.products_failed += mp.nfailed;
        else
            r->counts.categories_failed += mp.nfailed;
        list_append(&r->failures, &r->failures_listed, &mp.failures, mp.failure, mp.nfailed);
        rlog_warn(&r->lctx, "%d record(s) at offset %" PRId64 " could not be mapped", mp.nfailed,
                  s->offset);
        /* A record without an id might be one we hold: reconciliation would be unsafe. */
        if (map_page_failed_without_id(&mp)) r->reconcile_ok = false;
    }
    if (mp.nout) { /* [mapping] product_types leaves them out: marked as removed ones are */
        r->jobs++;
        writer_put_ids(r->w, WRITER_REMOVE, WRITER_PRODUCTS, mp.out_of_scope, mp.nout);
    }
    if (fresh > 0) {
        r->jobs++;
        writer_put_page(r->w, ent, &mp); /* takes the rows */
        sync_progress_send(r); /* as soon as the rows are counted, as `status` shows them */
    }
    map_page_free(&mp);
    sync_pager_pump(r);
}

void sync_pager_begin(sync_run *r, enum writer_entity ent)
{
    pager *pg = &r->pg;
    free(pg->slots);
    memset(pg, 0, sizeof *pg);
    pg->ent = ent;
    pg->total = -1;
    pg->end = -1;
    pg->first_total = -1;
    slot_ensure(pg, 0, step_of(r));
    pg->next = 1;
    fetch_start(r, 0);
}

/* Drops the entity's pages in flight and starts reading it again from the first page. */
static void pager_restart(sync_run *r)
{
    while (r->fetches) {
        fetch *f = r->fetches;
        r->fetches = f->next;
        kv_req_cancel(f->req);
        free(f);
    }
    sync_pager_begin(r, r->pg.ent);
}


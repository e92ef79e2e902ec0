/* A mapped page's records: its buffers, the notes and failures, and the filter that keeps
 * only rows not yet seen in the run (see mapping.h). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "kvjson.h"
#include "mapping_int.h"

void map_page_init(map_page *p)
{
    memset(p, 0, sizeof *p);
    kvs_buf_init(&p->rows);
    kvs_buf_init(&p->failures);
    kvs_buf_init(&p->notes);
    p->ascending = true;
}

void map_page_free(map_page *p)
{
    kvs_buf_free(&p->rows);
    kvs_buf_free(&p->failures);
    kvs_buf_free(&p->notes);
    free(p->row);
    free(p->note);
    free(p->failure);
    free(p->out_of_scope);
    memset(p, 0, sizeof *p);
}

/* Rebuilds the page's rows text and row records from the rows marked in keep. */
static void rows_keep(map_page *p, const bool *keep)
{
    kvs_buf rows;
    kvs_buf_init(&rows);
    B(kvs_buf_reserve(&rows, p->rows.len));
    B(kvs_buf_puts(&rows, "["));
    int k = 0;
    for (int i = 0; i < p->nrows; i++) {
        if (!keep[i]) continue;
        map_row r = p->row[i];
        if (k) B(kvs_buf_puts(&rows, ","));
        size_t start = rows.len;
        B(kvs_buf_append(&rows, p->rows.data + r.start, r.len));
        r.start = start;
        p->row[k++] = r;
    }
    B(kvs_buf_puts(&rows, "]"));
    kvs_buf_free(&p->rows);
    p->rows = rows;
    p->nrows = k;
}

/* Keeps the notes about rows still in the page (ids in keep_ids). */
static void notes_keep(map_page *p, const kvs_idset *keep_ids)
{
    kvs_buf notes;
    kvs_buf_init(&notes);
    int k = 0;
    for (int i = 0; i < p->nnotes; i++) {
        map_item it = p->note[i];
        if (!kvs_idset_has(keep_ids, it.id)) continue;
        if (notes.len) B(kvs_buf_puts(&notes, ","));
        size_t start = notes.len;
        B(kvs_buf_append(&notes, p->notes.data + it.start, it.len));
        it.start = start;
        p->note[k++] = it;
    }
    kvs_buf_free(&p->notes);
    p->notes = notes;
    p->nnotes = k;
}

int map_page_keep_unseen(map_page *p, kvs_idset *seen)
{
    if (p->nrows == 0) return 0;
    bool *keep = kvs_xcalloc((size_t)p->nrows, sizeof *keep);
    int fresh = 0;
    for (int i = 0; i < p->nrows; i++)
        if ((keep[i] = kvs_idset_add(seen, p->row[i].id))) fresh++;
    if (fresh < p->nrows) {
        kvs_idset kept = {0};
        for (int i = 0; i < p->nrows; i++)
            if (keep[i]) kvs_idset_add(&kept, p->row[i].id);
        rows_keep(p, keep);
        notes_keep(p, &kept); /* notes of rows stored earlier in the run were counted then */
        kvs_idset_free(&kept);
    }
    free(keep);
    return fresh;
}

bool map_page_failed_without_id(const map_page *p)
{
    for (int i = 0; i < p->nfailed; i++)
        if (!p->failure[i].id) return true;
    return false;
}

void map_put_str(kvs_buf *b, const char *s)
{
    char *clean = kvs_utf8_sanitize(s);
    B(kvs_buf_json_str(b, clean ? clean : s));
    free(clean);
}

void map_note_add(map_page *p, int64_t id, const char *code, const char *column,
                  const char *attribute, const char *value, const char *why)
{
    kvs_buf *b = &p->notes;
    if (p->nnotes == p->notes_cap) { /* doubling: a page can hold thousands of notes */
        p->notes_cap = p->notes_cap ? p->notes_cap * 2 : 16;
        p->note = kvs_xrealloc(p->note, (size_t)p->notes_cap * sizeof *p->note);
    }
    if (b->len) B(kvs_buf_puts(b, ","));
    map_item *it = &p->note[p->nnotes];
    it->id = id;
    it->start = b->len;
    B(kvs_buf_puts(b, "{\"code\":"));
    map_put_str(b, code ? code : "");
    B(kvs_buf_puts(b, ",\"column\":"));
    map_put_str(b, column);
    B(kvs_buf_puts(b, ",\"attribute\":"));
    map_put_str(b, attribute ? attribute : "");
    B(kvs_buf_puts(b, ",\"value\":"));
    map_put_str(b, value ? value : "");
    B(kvs_buf_puts(b, ",\"problem\":"));
    map_put_str(b, why);
    B(kvs_buf_puts(b, "}"));
    it->len = b->len - it->start;
    p->nnotes++;
}

void map_failure_add(map_page *p, bool has_id, int64_t id, const char *code, const char *msg)
{
    kvs_buf *b = &p->failures;
    if (p->nfailed == p->failures_cap) {
        p->failures_cap = p->failures_cap ? p->failures_cap * 2 : 16;
        p->failure = kvs_xrealloc(p->failure, (size_t)p->failures_cap * sizeof *p->failure);
    }
    if (b->len) B(kvs_buf_puts(b, ","));
    map_item *it = &p->failure[p->nfailed];
    it->id = has_id ? id : 0;
    it->start = b->len;
    if (has_id)
        B(kvs_buf_printf(b, "{\"id\":%" PRId64 ",\"code\":", id));
    else
        B(kvs_buf_puts(b, "{\"id\":null,\"code\":"));
    if (code)
        map_put_str(b, code);
    else
        B(kvs_buf_puts(b, "null"));
    B(kvs_buf_puts(b, ",\"error\":"));
    map_put_str(b, msg);
    B(kvs_buf_puts(b, "}"));
    it->len = b->len - it->start;
    p->nfailed++;
}

/* Tracks the served order of ids, for the pager's gap detection. */
void map_track_id(map_page *p, int64_t id)
{
    if (p->nrecords == 0) p->first_id = id;
    else if (id <= p->last_id) p->ascending = false;
    p->last_id = id;
    p->nrecords++;
}

/* Records row nrows: its id, modification time and span in rows (from start to the end). */
void map_row_push(map_page *p, int64_t id, int64_t modified_us, size_t start)
{
    if (p->nrows == p->rows_cap) { /* doubling keeps a large page linear */
        p->rows_cap = p->rows_cap ? p->rows_cap * 2 : 128;
        p->row = kvs_xrealloc(p->row, (size_t)p->rows_cap * sizeof *p->row);
    }
    p->row[p->nrows] = (map_row){.id = id, .modified_us = modified_us, .start = start,
                                 .len = p->rows.len - start};
    p->nrows++;
}

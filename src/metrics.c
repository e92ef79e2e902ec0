/* metrics: counters and gauges kept as a flat list of labelled series, rendered family by
 * family in the Prometheus text format. A daemon has a handful of integrations, so the list
 * stays short and a linear search is the simplest thing that works. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

enum fam {
    FAM_RUNS,
    FAM_LAST_SUCCESS,
    FAM_ROWS,
    FAM_API,
    FAM_BUDGET,
    FAM_WEBHOOK,
    FAM_COUNT,
};

/* Name, type, help and label names of each family, in rendering order. */
static const struct {
    const char *name, *type, *help;
    const char *labels[3]; /* NULL-terminated when fewer than 3 */
} fams[FAM_COUNT] = {
    [FAM_RUNS] = {"kiotviet_sync_runs_total", "counter", "Sync runs ended, by status.",
                  {"integration", "status", NULL}},
    [FAM_LAST_SUCCESS] = {"kiotviet_sync_last_success_timestamp_seconds", "gauge",
                          "End of the last successful (or partial) run, Unix time.",
                          {"integration", NULL, NULL}},
    [FAM_ROWS] = {"kiotviet_sync_rows_written_total", "counter",
                  "Rows written to the shop's tables by sync runs.", {"integration", NULL, NULL}},
    [FAM_API] = {"kiotviet_api_requests_total", "counter",
                 "KiotViet API requests by HTTP status (0: no answer).",
                 {"integration", "code", NULL}},
    [FAM_BUDGET] = {"kiotviet_api_get_budget_left", "gauge",
                    "GET requests left in the integration's hourly budget.",
                    {"integration", NULL, NULL}},
    [FAM_WEBHOOK] = {"kiotviet_webhook_events_total", "counter",
                     "Webhook notifications received, by type and result.",
                     {"integration", "type", "result"}},
};

/* Upper bounds of the change-to-row latency histogram, seconds. */
static const double lat_bounds[] = {0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900};
#define LAT_N ARRAY_SIZE(lat_bounds)

typedef struct series {
    enum fam fam;
    char *lv[3]; /* owned label values; NULL past the family's labels */
    double v;
} series;

struct kvs_metrics {
    series *s; /* owned array of n */
    size_t n, cap;
    uint64_t lat_buckets[LAT_N]; /* non-cumulative counts per bound; +Inf is lat_count */
    uint64_t lat_count;
    double lat_sum;
};

kvs_metrics *metrics_new(void)
{
    return kvs_xcalloc(1, sizeof(kvs_metrics));
}

void metrics_free(kvs_metrics *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n; i++)
        for (int k = 0; k < 3; k++) free(m->s[i].lv[k]);
    free(m->s);
    free(m);
}

/* The series of family f with these label values (NULL counts as ""), made at 0 when new. */
static series *series_get(kvs_metrics *m, enum fam f, const char *a, const char *b,
                          const char *c)
{
    const char *want[3] = {a ? a : "", b ? b : "", c ? c : ""};
    for (size_t i = 0; i < m->n; i++) {
        series *s = &m->s[i];
        if (s->fam != f) continue;
        bool same = true;
        for (int k = 0; k < 3 && fams[f].labels[k]; k++)
            if (strcmp(s->lv[k], want[k])) same = false;
        if (same) return s;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 16;
        m->s = kvs_xrealloc(m->s, m->cap * sizeof *m->s);
    }
    series *s = &m->s[m->n++];
    memset(s, 0, sizeof *s);
    s->fam = f;
    for (int k = 0; k < 3 && fams[f].labels[k]; k++) s->lv[k] = kvs_strdup(want[k]);
    return s;
}

void metrics_run_end(kvs_metrics *m, const char *integration, const char *status,
                     long rows_written, int64_t end_unix_us)
{
    if (!m) return;
    series_get(m, FAM_RUNS, integration, status, NULL)->v += 1;
    series_get(m, FAM_ROWS, integration, NULL, NULL)->v += rows_written > 0 ? rows_written : 0;
    if (kvs_streq(status, "success") || kvs_streq(status, "partial"))
        series_get(m, FAM_LAST_SUCCESS, integration, NULL, NULL)->v = end_unix_us / 1e6;
}

void metrics_api_request(kvs_metrics *m, const char *integration, int http_status)
{
    if (!m) return;
    char code[16];
    snprintf(code, sizeof code, "%d", http_status);
    series_get(m, FAM_API, integration, code, NULL)->v += 1;
}

void metrics_budget_left(kvs_metrics *m, const char *integration, long left)
{
    if (!m) return;
    series_get(m, FAM_BUDGET, integration, NULL, NULL)->v = (double)left;
}

void metrics_webhook(kvs_metrics *m, const char *integration, const char *type,
                     const char *result)
{
    if (!m) return;
    series_get(m, FAM_WEBHOOK, integration, type, result)->v += 1;
}

void metrics_change_latency(kvs_metrics *m, double seconds)
{
    if (!m || isnan(seconds)) return;
    if (seconds < 0) seconds = 0; /* clocks of two hosts: a change can seem to precede itself */
    for (size_t i = 0; i < LAT_N; i++)
        if (seconds <= lat_bounds[i]) {
            m->lat_buckets[i]++;
            break;
        }
    m->lat_count++;
    m->lat_sum += seconds;
}

/* A label value as the exposition format wants it: backslash, double quote and line feed
 * escaped. */
static int label_value_put(kvs_buf *out, const char *v)
{
    for (const char *p = v; *p; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        int rc = esc ? kvs_buf_puts(out, esc) : kvs_buf_append(out, p, 1);
        if (rc) return rc;
    }
    return 0;
}

/* A sample value: integers without a fraction, others with enough digits to round-trip. */
static int value_put(kvs_buf *out, double v)
{
    if (v == (double)(int64_t)v && fabs(v) < 9e15) return kvs_buf_printf(out, "%lld", (long long)v);
    return kvs_buf_printf(out, "%.17g", v);
}

static int family_render(const kvs_metrics *m, enum fam f, kvs_buf *out)
{
    int rc = kvs_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fams[f].name, fams[f].help,
                            fams[f].name, fams[f].type);
    for (size_t i = 0; !rc && i < m->n; i++) {
        const series *s = &m->s[i];
        if (s->fam != f) continue;
        rc = kvs_buf_printf(out, "%s{", fams[f].name);
        for (int k = 0; !rc && k < 3 && fams[f].labels[k]; k++) {
            rc = kvs_buf_printf(out, "%s%s=\"", k ? "," : "", fams[f].labels[k]);
            if (!rc) rc = label_value_put(out, s->lv[k]);
            if (!rc) rc = kvs_buf_puts(out, "\"");
        }
        if (!rc) rc = kvs_buf_puts(out, "} ");
        if (!rc) rc = value_put(out, s->v);
        if (!rc) rc = kvs_buf_puts(out, "\n");
    }
    return rc;
}

static int latency_render(const kvs_metrics *m, kvs_buf *out)
{
    static const char *name = "kiotviet_change_to_row_seconds";
    int rc = kvs_buf_printf(out,
                            "# HELP %s Time from a change in KiotViet to its row in the shop's "
                            "database.\n# TYPE %s histogram\n",
                            name, name);
    uint64_t cum = 0;
    for (size_t i = 0; !rc && i < LAT_N; i++) {
        cum += m->lat_buckets[i];
        rc = kvs_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, lat_bounds[i],
                            (unsigned long long)cum);
    }
    if (!rc)
        rc = kvs_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum ", name,
                            (unsigned long long)m->lat_count, name);
    if (!rc) rc = value_put(out, m->lat_sum);
    if (!rc)
        rc = kvs_buf_printf(out, "\n%s_count %llu\n", name, (unsigned long long)m->lat_count);
    return rc;
}

int metrics_render(const kvs_metrics *m, kvs_buf *out)
{
    static const kvs_metrics empty;
    if (!m) m = &empty;
    int rc = 0;
    for (int f = 0; !rc && f < FAM_COUNT; f++) rc = family_render(m, (enum fam)f, out);
    if (!rc) rc = latency_render(m, out);
    return rc ? -ENOMEM : 0;
}

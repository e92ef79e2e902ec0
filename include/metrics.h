/* metrics: the daemon's counters and gauges, rendered in the Prometheus text format for
 * GET /metrics.
 *
 * One kvs_metrics object is owned by main and lent by pointer (scheduler env -> sync env ->
 * webhook listener); there is no process-global. Every function accepts a NULL kvs_metrics*
 * and then does nothing, so code paths without metrics (the CLI, unit tests) pass NULL.
 * Everything runs on the loop thread: no locking.
 *
 * Families rendered (label values escaped as the exposition format says: \\, \" and \n):
 *   kiotviet_sync_runs_total{integration,status}            counter
 *   kiotviet_sync_last_success_timestamp_seconds{integration} gauge
 *   kiotviet_sync_rows_written_total{integration}           counter
 *   kiotviet_api_requests_total{integration,code}           counter (code 0: no answer)
 *   kiotviet_api_get_budget_left{integration}               gauge
 *   kiotviet_webhook_events_total{integration,type,result}  counter
 *   kiotviet_change_to_row_seconds                          histogram
 * No secret is ever a label: integrations are named by third_party_integrations.name. */
#ifndef KVS_METRICS_H
#define KVS_METRICS_H

#include <stdint.h>

#include "util.h"

typedef struct kvs_metrics kvs_metrics;

/* Caller owns the result; frees it with metrics_free (NULL-safe). Aborts on OOM. */
kvs_metrics *metrics_new(void);
void metrics_free(kvs_metrics *m);

/* A run of `integration` ended. status: success|partial|failed (other values are counted
 * under their own label); rows_written: rows the run stored; end_unix_us: when it ended
 * (wall clock, microseconds). A success or partial run sets the last success time. */
void metrics_run_end(kvs_metrics *m, const char *integration, const char *status,
                     long rows_written, int64_t end_unix_us);
/* One KiotViet API request answered with http_status (0: no HTTP answer). */
void metrics_api_request(kvs_metrics *m, const char *integration, int http_status);
/* The integration's hourly GET budget has `left` requests left. */
void metrics_budget_left(kvs_metrics *m, const char *integration, long left);
/* One webhook notification of `type` (e.g. product.update; "" or NULL: unknown) ended with
 * result: applied|duplicate|stale|bad_signature|unknown_integration|error (or stored: in the
 * inbox, not applied yet). */
void metrics_webhook(kvs_metrics *m, const char *integration, const char *type,
                     const char *result);
/* A change reached its row `seconds` after it was made in KiotViet. */
void metrics_change_latency(kvs_metrics *m, double seconds);

/* Appends the text exposition (version 0.0.4) to out. 0, or -ENOMEM. */
int metrics_render(const kvs_metrics *m, kvs_buf *out) KVS_MUSTCHECK;

#endif

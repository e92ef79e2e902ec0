/* webhook: the daemon's HTTP side (issue 14). KiotViet's notifications arrive at
 * POST /webhooks/<integration name>; GET /metrics and GET /healthz are served on the same
 * listener, or on a separate one ([metrics] listen).
 *
 * A notification is verified (X-Hub-Signature: the hex HMAC-SHA256 of the raw body keyed with
 * third_party_integrations.webhook_secret), stored in the inbox table kiotviet_webhook_events
 * BEFORE it is answered, and then on_event(arg, integration_id) is called so that the applying
 * side wakes up; the scheduled polls stay the safety net. Statuses (README "Webhooks"):
 *   200 stored (or already stored: same envelope Id)
 *   202 not stored: unknown integration, no webhook_secret, or a signature that does not
 *       match. Never 400/401/403/404/405 on /webhooks/: KiotViet stops delivering to an
 *       endpoint that answers one of those.
 *   413 body over 1 MB; 503 the database could not store it (KiotViet retries).
 * Nothing in a request is trusted before the signature matches: unverified names and bodies
 * never become metric labels or log text. The secret is never logged, counted or answered.
 *
 * The listener runs on the loop (httpd.h) with its own database connection (short connect and
 * statement timeouts, so that an answer comes well within KiotViet's 5 s). */
#ifndef KVS_WEBHOOK_H
#define KVS_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "metrics.h"
#include "util.h"

/* ---- pure parts (unit-tested and fuzzed) ------------------------------------------------- */

/* Whether header (X-Hub-Signature: "sha256=<hex>", "sha1=<hex>" or bare hex; the prefix in any
 * case, the hex in either case, surrounding blanks ignored) is the HMAC-SHA256 of body keyed
 * with secret's bytes. Constant-time compare; false for NULL or empty header or secret. */
bool webhook_signature_ok(const char *header, const char *secret, const void *body, size_t len);

#define WEBHOOK_ID_MAX 128   /* longest envelope Id kept as is (longer ones: hashed) */
#define WEBHOOK_TYPES_MAX 256

/* What the inbox needs from an envelope {"Id", "Attempt", "Notifications": [{"Action"}]}. */
typedef struct webhook_envelope {
    char event_id[WEBHOOK_ID_MAX + 1]; /* "Id" when a plain string (printable ASCII, at most
                                          WEBHOOK_ID_MAX), else the hex SHA-256 of the body */
    int attempt;                       /* "Attempt" when 1..1000000, else 1 */
    char types[WEBHOOK_TYPES_MAX];     /* distinct Action types without the retailer suffix
                                          ("product.update.500400541" -> "product.update"),
                                          comma-separated in order of appearance; "" none */
    int ntypes;
} webhook_envelope;

/* Parses body (len bytes, need not be NUL-terminated). Keys are matched case-insensitively.
 * Always fills out (with the fallbacks above); returns 0 for an envelope, -EINVAL when the
 * body is not a JSON object with a Notifications array. */
int webhook_envelope_parse(const char *body, size_t len, webhook_envelope *out);

/* ---- the listener -------------------------------------------------------------------------- */

typedef struct webhook webhook;

/* Wake-up after a new notification is stored (the applying side; NULL: none). */
typedef void (*webhook_event_cb)(void *arg, const char *integration_id);
/* A start-up check failed (the listener is configured but migration 004 is missing): the
 * daemon cannot run as configured. msg borrowed for the call. */
typedef void (*webhook_fatal_cb)(const char *msg, void *arg);

typedef struct webhook_opts {
    uv_loop_t *loop;
    kvs_metrics *metrics;     /* borrowed, outlives the webhook; NULL: none */
    webhook_event_cb on_event;
    void *on_event_arg;
    webhook_fatal_cb fatal;
    void *fatal_arg;
} webhook_opts;

/* Creates the HTTP side from cfg ([webhook] listen, [metrics] listen, [database]): binds the
 * configured listeners (none configured: nothing listens, and 0 is returned). cfg is read
 * during the call only. Returns 0 with *out (free with webhook_stop), or a negative errno
 * with err (a listener could not be bound: fatal at start). */
int webhook_start(webhook **out, const webhook_opts *o, const kvs_config *cfg, kvs_err *err);
/* SIGHUP with a new, valid configuration: listeners whose address changed are replaced; when
 * a new one cannot be bound the old one keeps running and err says why (negative errno). */
int webhook_reload(webhook *w, const kvs_config *cfg, kvs_err *err);
/* Stops listening; requests waiting for the database are answered 503; frees w once
 * everything is closed (run the loop). NULL-safe. */
void webhook_stop(webhook *w);

#endif

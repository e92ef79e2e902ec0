/* store's inside: the statement templates each store_*.c file defines for its subject, the
 * lease predicates they share, and the one schema substitution (store_sql.c). Not for use
 * outside store*.c. In every template "@" stands for the quoted schema (db_quote_ident). */
#ifndef KVS_STORE_INT_H
#define KVS_STORE_INT_H

#include "store.h"

/* Returns tmpl with every "@" replaced by schema_q (a new string, caller frees). */
char *store_sql_subst(const char *tmpl, const char *schema_q);
/* Every enum store_stmt statement for schema_q (store_sql.c): a new table, ST__COUNT strings,
 * freed by store_sql_table_free. store_new makes the store's own; store_free frees it. */
char **store_sql_table_new(const char *schema_q);
void store_sql_table_free(char **t);
/* The store's statement table (store.c; borrowed from s, lives as long as s). */
char *const *store_stmts(const store *s);

/* The lease predicates, written once (unqualified columns of third_party_integrations).
 * FREE: the row's lease may be taken by the owner in `owner` (a parameter such as "$2"):
 * nobody holds it, it expired, it is the owner's own, or its holder's session is gone. */
#define STORE_LEASE_FREE_FOR(owner)                                                             \
    "(\"sync_lease_owner\" IS NULL OR \"sync_lease_expires_at\" IS NULL OR"                    \
    " \"sync_lease_expires_at\" <= now() OR \"sync_lease_owner\" = " owner " OR "              \
    STORE_LEASE_HOLDER_GONE ")"
/* LIVE (t: "" or an alias with its dot): someone holds the lease, unexpired, alive. */
#define STORE_LEASE_LIVE(t)                                                                     \
    "coalesce(" t "\"sync_lease_owner\" IS NOT NULL AND " t "\"sync_lease_expires_at\" > now()" \
    " AND NOT " STORE_LEASE_HOLDER_GONE ", false)"

/* store_lease.c: integrations, claims, leases, tokens, run-now requests. */
extern const char store_t_list[], store_t_list_now[], store_t_claim[], store_t_claim_due[],
    store_t_renew[], store_t_lease_holder[], store_t_release[], store_t_token_save[],
    store_t_finish[], store_t_fail[], store_t_request_clear[], store_t_find[], store_t_names[],
    store_t_request[], store_t_notify[], store_t_listen[], store_t_rls_hides[],
    store_t_db_now[];
/* store_status.c: sync_logs and the status report. */
extern const char store_t_log_start[], store_t_log_progress[], store_t_log_finish[],
    store_t_log_abandoned[], store_t_log_prune[], store_t_status[], store_t_poll[],
    store_t_daemons[];
/* store_webhook.c: the webhook inbox. */
extern const char store_t_webhook_find[], store_t_webhook_store[], store_t_webhook_check[],
    store_t_health[];
/* store_inbox.c: the webhook inbox. */
extern const char store_t_inbox_read[], store_t_inbox_versions[], store_t_inbox_stock[],
    store_t_inbox_mark[],
    store_t_inbox_prune[], store_t_inbox_pending[], store_t_webhook_secret_set[];
/* store.c: the catalogue. */
extern const char store_t_any_products[];

/* The lease check every write of a run starts with: "WITH lease AS (...)" (see store.c). */
void store_lease_cte(kvs_buf *b, const char *schema_q);
/* store_depth.c: migration 005's tables. The stock-by-branch and serial CTEs a products page
 * upsert carries after its own (s: the page's recordset); the branches' statements (new
 * strings, caller frees). */
void store_depth_page_ctes(kvs_buf *b, const char *schema_q, bool prefilter);
/* Its two halves: stock by branch (si, siw: a stock page's too), serials (se, sew, seg). */
void store_depth_stock_ctes(kvs_buf *b, const char *schema_q, bool prefilter);
void store_depth_serial_ctes(kvs_buf *b, const char *schema_q, bool prefilter);
char *store_depth_branches_upsert(const char *schema_q);
char *store_depth_branches_remove(const char *schema_q);
extern const char store_t_branches_since[], store_t_branches_read[];

#endif

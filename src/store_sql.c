/* store_sql: the table of the daemon's and the CLI's statements and the one schema
 * substitution that makes them (see store.h). The texts live by subject in store.c (the
 * catalogue), store_lease.c (integrations, leases) and store_status.c (sync_logs, status). */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

static const char *const templates[ST__COUNT] = {
    [ST_LIST] = store_t_list,
    [ST_CLAIM] = store_t_claim,
    [ST_RENEW] = store_t_renew,
    [ST_LEASE_HOLDER] = store_t_lease_holder,
    [ST_RELEASE] = store_t_release,
    [ST_LOG_START] = store_t_log_start,
    [ST_LOG_PROGRESS] = store_t_log_progress,
    [ST_LOG_FINISH] = store_t_log_finish,
    [ST_LOG_ABANDONED] = store_t_log_abandoned,
    [ST_TOKEN_SAVE] = store_t_token_save,
    [ST_FINISH] = store_t_finish,
    [ST_FAIL] = store_t_fail,
    [ST_LOG_PRUNE] = store_t_log_prune,
    [ST_REQUEST_CLEAR] = store_t_request_clear,
    [ST_ANY_PRODUCTS] = store_t_any_products,
    [ST_BRANCHES_SINCE] = store_t_branches_since,
    [ST_BRANCHES_READ] = store_t_branches_read,
    [ST_LIST_NOW] = store_t_list_now,
    [ST_CLAIM_DUE] = store_t_claim_due,
    [ST_LISTEN] = store_t_listen,
    [ST_DB_NOW] = store_t_db_now,
    [ST_CTL_STATUS] = store_t_status,
    [ST_CTL_DAEMONS] = store_t_daemons,
    [ST_CTL_FIND] = store_t_find,
    [ST_CTL_NAMES] = store_t_names,
    [ST_CTL_REQUEST] = store_t_request,
    [ST_CTL_NOTIFY] = store_t_notify,
    [ST_CTL_POLL] = store_t_poll,
    [ST_CTL_RLS_HIDES] = store_t_rls_hides,
    [ST_WEBHOOK_FIND] = store_t_webhook_find,
    [ST_WEBHOOK_STORE] = store_t_webhook_store,
    [ST_WEBHOOK_CHECK] = store_t_webhook_check,
    [ST_HEALTH] = store_t_health,
    [ST_INBOX_READ] = store_t_inbox_read,
    [ST_INBOX_VERSIONS] = store_t_inbox_versions,
    [ST_INBOX_STOCK] = store_t_inbox_stock,
    [ST_INBOX_MARK] = store_t_inbox_mark,
    [ST_INBOX_PRUNE] = store_t_inbox_prune,
    [ST_INBOX_PENDING] = store_t_inbox_pending,
    [ST_CTL_WEBHOOK_SECRET] = store_t_webhook_secret_set,
};

char *store_sql_subst(const char *tmpl, const char *schema_q)
{
    kvs_buf b;
    kvs_buf_init(&b);
    for (const char *p = tmpl; *p; p++) {
        if (*p == '@')
            REQUIRE(kvs_buf_puts(&b, schema_q) == 0);
        else
            REQUIRE(kvs_buf_append(&b, p, 1) == 0);
    }
    return kvs_buf_steal(&b);
}

char *store_sql_build(const char *schema_q, enum store_stmt which)
{
    REQUIRE(which < ST__COUNT && templates[which]);
    return store_sql_subst(templates[which], schema_q);
}

char **store_sql_table_new(const char *schema_q)
{
    char **t = kvs_xcalloc(ST__COUNT, sizeof *t);
    for (int i = 0; i < ST__COUNT; i++) t[i] = store_sql_build(schema_q, (enum store_stmt)i);
    return t;
}

void store_sql_table_free(char **t)
{
    if (!t) return;
    for (int i = 0; i < ST__COUNT; i++) free(t[i]);
    free(t);
}

const char *store_sql(const store *s, enum store_stmt which)
{
    REQUIRE(which < ST__COUNT);
    return store_stmts(s)[which];
}

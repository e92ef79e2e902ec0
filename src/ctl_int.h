/* Inside ctl (ctl.c, ctl_status.c, ctl_sync.c); other modules use ctl.h. ctl.c: the blocking
 * connection and queries both subcommands share, sync_logs rows, dispatch and usage errors;
 * ctl_status.c: `status` (text and --json); ctl_sync.c: `sync NAME`. Strings returned from a
 * PGresult are borrowed from it (the caller PQclears); term_text's result is the caller's to
 * free; each command owns its one connection and closes it before returning. */
#ifndef KVS_CTL_INT_H
#define KVS_CTL_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <stdlib.h>

#include "config.h"
#include "ctl.h"
#include "db.h"

#define EX_USAGE_CODE 64
#define CTL_APP_NAME "kiotviet-syncd ctl"
#define DAEMON_APP_NAME "kiotviet-syncd control" /* the scheduler's control connection */
#define SYNC_POLL_MS 300
#define SYNC_DEFAULT_TIMEOUT_S 900

typedef struct run_log {
    bool present;
    long long id;
    const char *status, *type;   /* borrowed from the PGresult */
    int64_t started_us, completed_us;
    int p[5], c[5];              /* synced, created, updated, failed, deactivated */
    int requests;
    const char *error, *daemon_id; /* borrowed, NULL = none */
} run_log;

/* Column values of a PGresult: val is NULL for SQL NULL, else borrowed from r. */
static inline const char *val(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static inline int64_t i64(PGresult *r, int row, int col)
{
    const char *v = val(r, row, col);
    return v ? strtoll(v, NULL, 10) : 0;
}

static inline bool boolv(PGresult *r, int row, int col)
{
    const char *v = val(r, row, col);
    return v && v[0] == 't';
}

/* ctl.c */
kvs_config *ctl_config(const char *cmd, const char *path);
PGconn *ctl_connect(const char *cmd, const kvs_config *cfg);
const char *ctl_path_name(enum db_path p);
PGresult *ctl_query(const char *cmd, PGconn *pg, const char *sql, int n,
                    const char *const *params);
long daemons_connected(PGconn *pg);
PGresult *exposed_columns(PGconn *pg, const char *schema);
char *rls_hides_rows(PGconn *pg, const char *schema_q);
void rls_explain(FILE *f, const char *role);
void run_log_parse(PGresult *r, int row, int c0, run_log *l);
double run_log_seconds(const run_log *l, int64_t now_us);
char *term_text(const char *s);
void run_log_print_line(FILE *f, const char *name, const run_log *l);

/* the subcommands */
int ctl_status(int argc, char **argv);
int ctl_sync(int argc, char **argv);
int ctl_webhooks(int argc, char **argv); /* ctl_webhooks.c */

#endif

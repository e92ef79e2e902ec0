/* ctl: the operator's subcommands of kiotviet-syncd.
 *
 *   kiotviet-syncd status [-c FILE] [--json]
 *   kiotviet-syncd sync NAME [--full] [-c FILE] [--timeout S]
 *
 * Both are short-lived clients of the shop's database, not of the daemon: `status` reads
 * third_party_integrations and sync_logs; `sync` writes a run-now request into the
 * integration's row (sync_requested_at, sync_request_full), which every daemon sharing the
 * database picks up at its next poll, and waits for the sync_logs row of the run that serves
 * it. Going through the table is what makes it work across several daemons and hosts.
 * The configuration is read as every mode reads it (config_load_service): without -c the
 * installed file when it exists; DATABASE_URL, else its url, else the service's credential
 * file database-url, as the service gets it through LoadCredential=.
 * Global options may come before the subcommand (`kiotviet-syncd -c FILE status`); main.c
 * moves them after it.
 * ctl owns its blocking connection (one per command, closed before it returns) and the
 * report's wording; it holds no SQL: its statements are store.h's ST_CTL_*, built for the
 * configured schema by store_sql_build, their columns store.h's STORE_IC_* / STORE_LC_*. */
#ifndef KVS_CTL_H
#define KVS_CTL_H

#include <stdbool.h>


/* Exit codes of `sync` (status uses 0 and 1 only); 64 bad usage, 78 configuration error. */
enum {
    CTL_EX_OK = 0,      /* the run finished: success or partial */
    CTL_EX_FAILED = 1,  /* the run failed or was cancelled, or the request could not be made */
    CTL_EX_TIMEOUT = 2, /* no result within --timeout; the request stays queued */
};

/* True when arg names a subcommand ("status", "sync"). */
bool ctl_is_command(const char *arg);

/* Prints a usage error about arg for command cmd (NULL: the main command), and where arg goes
 * when it belongs elsewhere; returns 64. missing_value: arg needs a value that is missing. */
int cli_usage_error(const char *cmd, const char *arg, bool missing_value);

/* Runs the subcommand argv[0] with its options argv[1..]; returns the process exit code. */
int ctl_main(int argc, char **argv);

#endif

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
 * Without -c they read /etc/kiotviet-sync/kiotviet-sync.conf when it exists; DATABASE_URL
 * overrides its url, and with no URL at all /etc/kiotviet-sync/database-url is used, as the
 * service does through LoadCredential=. */
#ifndef KVS_CTL_H
#define KVS_CTL_H

#include <stdbool.h>

#define CTL_DEFAULT_CONFIG "/etc/kiotviet-sync/kiotviet-sync.conf"
/* Read when neither DATABASE_URL nor [database] url is set (the service's LoadCredential file). */
#define CTL_DEFAULT_URL_FILE "/etc/kiotviet-sync/database-url"

/* Exit codes of `sync` (status uses 0 and 1 only); 64 bad usage, 78 configuration error. */
enum {
    CTL_EX_OK = 0,      /* the run finished: success or partial */
    CTL_EX_FAILED = 1,  /* the run failed or was cancelled, or the request could not be made */
    CTL_EX_TIMEOUT = 2, /* no result within --timeout; the request stays queued */
};

/* True when arg names a subcommand ("status", "sync"). */
bool ctl_is_command(const char *arg);

/* Runs the subcommand argv[0] with its options argv[1..]; returns the process exit code. */
int ctl_main(int argc, char **argv);

#endif

/* Logging: one record per line, levels journald keeps, run identity on every run line.
 *
 * Under systemd (JOURNAL_STREAM names our stderr) records go to the journal through
 * sd_journal_send with PRIORITY, INTEGRATION and RUN_ID fields; elsewhere they go to stderr as
 * "<N>LEVEL [integration#run] message" — the "<N>" prefix is what journald's
 * SyslogLevelPrefix understands, and tests grep the rest.
 *
 * Every registered secret (client secrets, tokens, database password) is replaced by "***"
 * in every record and in every text passed through log_redact(): defence in depth behind
 * code that never formats secrets in the first place. */
#ifndef KVS_LOG_H
#define KVS_LOG_H

#include <stddef.h>

#include "util.h"

enum {
    KVS_LOG_ERR = 3,
    KVS_LOG_WARNING = 4,
    KVS_LOG_NOTICE = 5,
    KVS_LOG_INFO = 6,
    KVS_LOG_DEBUG = 7,
};

/* Who a record is about. Both fields borrowed; either may be NULL. */
typedef struct log_ctx {
    const char *integration; /* third_party_integrations.name */
    const char *run;         /* sync_logs id of the run, or NULL outside a run */
} log_ctx;

extern int log_max_level; /* records above it are dropped before formatting */

void log_init(void);      /* decides journal or stderr; call once at start */
void log_deinit(void);    /* frees the registered secrets */
void log_set_level(int level);
/* "error", "warning", "notice", "info", "debug" -> level, or -1. */
int log_level_parse(const char *name);
const char *log_level_name(int level);

void log_msg(int level, const log_ctx *ctx, const char *fmt, ...) KVS_PRINTF(3, 4);

/* Secrets: copies s (ignored if shorter than 4 bytes). The registry counts holders: adding a
 * secret that is already there only counts one more holder, and log_secret_remove forgets it
 * (wiping the copy) when every add has been matched by a remove. Holders of short-lived
 * secrets (access tokens) remove them when they drop them, so a long run keeps only the live
 * ones; removing a secret that is not registered does nothing. */
void log_secret_add(const char *s);
void log_secret_remove(const char *s);
/* For a holder's own copy: *slot (owned and registered, or NULL) becomes a registered copy of s
 * (or NULL when s is NULL); the old copy is unregistered, wiped and freed. */
void log_secret_hold(char **slot, const char *s);
/* Distinct secrets registered now (for tests and diagnostics). */
size_t log_secret_count(void);
void log_secret_forget_all(void);
/* Replaces every registered secret inside buf (NUL-terminated, capacity cap) by "***". */
void log_redact(char *buf, size_t cap);

#define LOGX(level, ctx, ...)                                              \
    do {                                                                   \
        if ((level) <= log_max_level) log_msg((level), (ctx), __VA_ARGS__); \
    } while (0)

#define log_err(...) LOGX(KVS_LOG_ERR, NULL, __VA_ARGS__)
#define log_warn(...) LOGX(KVS_LOG_WARNING, NULL, __VA_ARGS__)
#define log_notice(...) LOGX(KVS_LOG_NOTICE, NULL, __VA_ARGS__)
#define log_info(...) LOGX(KVS_LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...) LOGX(KVS_LOG_DEBUG, NULL, __VA_ARGS__)

#define rlog_err(ctx, ...) LOGX(KVS_LOG_ERR, (ctx), __VA_ARGS__)
#define rlog_warn(ctx, ...) LOGX(KVS_LOG_WARNING, (ctx), __VA_ARGS__)
#define rlog_notice(ctx, ...) LOGX(KVS_LOG_NOTICE, (ctx), __VA_ARGS__)
#define rlog_info(ctx, ...) LOGX(KVS_LOG_INFO, (ctx), __VA_ARGS__)
#define rlog_debug(ctx, ...) LOGX(KVS_LOG_DEBUG, (ctx), __VA_ARGS__)

#endif

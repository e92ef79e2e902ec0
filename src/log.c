/* Logging to the journal or to stderr; see log.h for the record format. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "kvjson.h"

int log_max_level = KVS_LOG_INFO;

static int use_journal;

/* A registered secret and how many holders registered it: a token replaced by a new one is
 * forgotten once its last holder removes it, so the registry stays as small as the set of
 * live secrets over a long run instead of growing with every refreshed token. */
typedef struct secret {
    char *text;  /* owned; wiped before it is freed */
    size_t refs; /* log_secret_add calls not yet matched by log_secret_remove */
} secret;
static secret *secrets;     /* owned */
static size_t nsecrets;

static const char *const level_names[] = {
    [KVS_LOG_ERR] = "error",   [KVS_LOG_WARNING] = "warning", [KVS_LOG_NOTICE] = "notice",
    [KVS_LOG_INFO] = "info",   [KVS_LOG_DEBUG] = "debug",
};

/* journald hands services a stream whose "device:inode" is in JOURNAL_STREAM; only when our
 * stderr is that very stream do we talk to the journal directly (structured fields). */
static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2) return 0;
    if (fstat(STDERR_FILENO, &st) != 0) return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(void) { use_journal = stderr_is_journal(); }

void log_deinit(void) { log_secret_forget_all(); }

void log_set_level(int level)
{
    if (level < KVS_LOG_ERR) level = KVS_LOG_ERR;
    if (level > KVS_LOG_DEBUG) level = KVS_LOG_DEBUG;
    log_max_level = level;
}

int log_level_parse(const char *name)
{
    if (!name) return -1;
    for (int l = KVS_LOG_ERR; l <= KVS_LOG_DEBUG; l++)
        if (kvs_strcaseeq(name, level_names[l])) return l;
    if (kvs_strcaseeq(name, "warn")) return KVS_LOG_WARNING;
    return -1;
}

const char *log_level_name(int level)
{
    if (level < KVS_LOG_ERR || level > KVS_LOG_DEBUG) return "?";
    return level_names[level];
}

static secret *secret_find(const char *s)
{
    for (size_t i = 0; i < nsecrets; i++)
        if (strcmp(secrets[i].text, s) == 0) return &secrets[i];
    return NULL;
}

static void secret_wipe(secret *e)
{
    explicit_bzero(e->text, strlen(e->text));
    free(e->text);
    e->text = NULL;
}

void log_secret_add(const char *s)
{
    if (!s || strlen(s) < 4) return;
    secret *e = secret_find(s);
    if (e) {
        if (e->refs < SIZE_MAX) e->refs++; /* saturated: simply never forgotten */
        return;
    }
    secrets = kvs_xrealloc(secrets, (nsecrets + 1) * sizeof *secrets);
    secrets[nsecrets].text = kvs_strdup(s);
    secrets[nsecrets].refs = 1;
    nsecrets++;
}

void log_secret_remove(const char *s)
{
    if (!s || strlen(s) < 4) return;
    secret *e = secret_find(s);
    if (!e || e->refs == SIZE_MAX || --e->refs > 0) return;
    secret_wipe(e);
    /* Order does not matter to redaction: the last entry fills the hole. */
    *e = secrets[--nsecrets];
    if (nsecrets == 0) {
        free(secrets);
        secrets = NULL;
    }
}

void log_secret_hold(char **slot, const char *s)
{
    char *old = *slot;
    *slot = s ? kvs_strdup(s) : NULL;
    if (*slot) log_secret_add(*slot);
    if (!old) return;
    log_secret_remove(old);
    explicit_bzero(old, strlen(old));
    free(old);
}

size_t log_secret_count(void) { return nsecrets; }

void log_secret_forget_all(void)
{
    for (size_t i = 0; i < nsecrets; i++) secret_wipe(&secrets[i]);
    free(secrets);
    secrets = NULL;
    nsecrets = 0;
}

/* Replaces every registered secret inside buf by "***". When the text was cut to fit its
 * buffer, a secret may sit at its very end with only its first bytes: such a tail is replaced
 * too, down to min_tail bytes. */
static void redact(char *buf, size_t cap, size_t min_tail)
{
    if (!buf || !cap) return;
    for (size_t i = 0; i < nsecrets; i++) {
        const char *sec = secrets[i].text;
        size_t sl = strlen(sec);
        char *p;
        while ((p = strstr(buf, sec)) != NULL) {
            /* "***" is never longer than a secret (>= 4 bytes), so this only shrinks. */
            memcpy(p, "***", 3);
            memmove(p + 3, p + sl, strlen(p + sl) + 1);
        }
        size_t len = strlen(buf);
        for (size_t k = sl - 1 < len ? sl - 1 : len; k >= min_tail && k > 0; k--) {
            if (memcmp(buf + len - k, sec, k) == 0) {
                /* The cut secret is dropped; "***" follows when there is room. */
                buf[len - k] = '\0';
                if (cap - (len - k) > 3) memcpy(buf + len - k, "***", 4);
                break;
            }
        }
    }
}

void log_redact(char *buf, size_t cap) { redact(buf, cap, 4); }

/* One record per line: control characters (newlines from server messages) become spaces. */
static void flatten(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20) *s = ' ';
}

/* A flattened copy of a context field (the integration name comes from a database row, so it
 * could hold a newline and forge a record of its own). */
static const char *ctx_field(const char *v, char *buf, size_t cap)
{
    if (!v) return NULL;
    snprintf(buf, cap, "%s", v);
    flatten(buf);
    kvs_utf8_clean(buf);
    return buf;
}

void log_msg(int level, const log_ctx *ctx, const char *fmt, ...)
{
    int saved = errno;
    char msg[2048], ibuf[128], rbuf[32];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* A message cut to fit may end in the first bytes of a secret: redact those too. Before
     * flattening: a secret holding a tab or newline would no longer match afterwards. */
    redact(msg, sizeof msg, n >= (int)sizeof msg ? 1 : 4);
    flatten(msg);
    kvs_utf8_clean(msg); /* bytes from KiotViet or the database may not be UTF-8 */

    const char *integ = ctx_field(ctx ? ctx->integration : NULL, ibuf, sizeof ibuf);
    const char *run = ctx_field(ctx ? ctx->run : NULL, rbuf, sizeof rbuf);
    if (use_journal) {
        sd_journal_send("MESSAGE=%s%s%s%s%s%s", integ ? "[" : "", integ ? integ : "",
                        run ? "#" : "", run ? run : "", integ ? "] " : "", msg,
                        "PRIORITY=%d", level, "INTEGRATION=%s", integ ? integ : "",
                        "RUN_ID=%s", run ? run : "", "SYSLOG_IDENTIFIER=kiotviet-syncd", NULL);
    } else {
        char line[2300];
        if (integ)
            snprintf(line, sizeof line, "<%d>%s [%s%s%s] %s\n", level, log_level_name(level), integ,
                     run ? "#" : "", run ? run : "", msg);
        else
            snprintf(line, sizeof line, "<%d>%s %s\n", level, log_level_name(level), msg);
        /* One write per record so concurrent writers never interleave within a line. */
        ssize_t w = write(STDERR_FILENO, line, strlen(line));
        (void)w;
    }
    errno = saved;
}

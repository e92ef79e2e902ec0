/* systemd notifications and watchdog (see notify.h).
 *
 * The datagrams are sent on a non-blocking socket of our own rather than with sd_notify():
 * sd_notify blocks when the receiver's queue is full (Linux queues only ~10 datagrams), and a
 * blocked event loop would stop every run and the watchdog itself. systemd reads at once, so
 * nothing is lost in practice; a receiver that does not read loses messages instead of
 * freezing the daemon. */
#include "notify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static uv_timer_t wd_timer;
static bool wd_on;

static int nfd = -2;                   /* -2: not set up yet, -1: no NOTIFY_SOCKET */
static struct sockaddr_un naddr;
static socklen_t naddr_len;
static char last_status[512];

static void notify_setup(void)
{
    nfd = -1;
    const char *path = getenv("NOTIFY_SOCKET");
    size_t n = path ? strlen(path) : 0;
    if (n < 2 || n >= sizeof naddr.sun_path || (path[0] != '/' && path[0] != '@')) return;
    memset(&naddr, 0, sizeof naddr);
    naddr.sun_family = AF_UNIX;
    memcpy(naddr.sun_path, path, n);
    if (path[0] == '@') naddr.sun_path[0] = '\0'; /* abstract namespace */
    naddr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
    nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
}

static void notify_send(const char *msg)
{
    if (nfd == -2) notify_setup();
    if (nfd < 0) return;
    ssize_t w = sendto(nfd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT,
                       (const struct sockaddr *)&naddr, naddr_len);
    if (w < 0) log_debug("sd_notify: %s not sent: %s", msg, strerror(errno));
}

void notify_ready(void) { notify_send("READY=1"); }

void notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    char buf[64];
    snprintf(buf, sizeof buf, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, usec);
    notify_send(buf);
}

void notify_stopping(void) { notify_send("STOPPING=1"); }

void notify_status(const char *fmt, ...)
{
    char buf[sizeof last_status];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (!strcmp(buf, last_status)) return; /* unchanged: nothing to tell */
    memcpy(last_status, buf, sizeof buf);
    char msg[sizeof buf + 8];
    snprintf(msg, sizeof msg, "STATUS=%s", buf);
    notify_send(msg);
}

static void wd_cb(uv_timer_t *t)
{
    (void)t;
    notify_send("WATCHDOG=1");
}

void notify_watchdog_start(uv_loop_t *loop)
{
    uint64_t usec = 0;
    if (wd_on || sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
    uint64_t half_ms = usec / 2000u;
    if (half_ms == 0) half_ms = 1;
    uv_timer_init(loop, &wd_timer);
    uv_timer_start(&wd_timer, wd_cb, half_ms, half_ms);
    wd_on = true;
    notify_send("WATCHDOG=1");
    log_info("watchdog: heartbeat every %" PRIu64 " ms", half_ms);
}

void notify_watchdog_stop(void)
{
    if (!wd_on) return;
    uv_timer_stop(&wd_timer);
    uv_close((uv_handle_t *)&wd_timer, NULL);
    wd_on = false;
}

/* systemd notifications and watchdog (see notify.h). */
#include "notify.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"

static uv_timer_t wd_timer;
static bool wd_on;

void notify_ready(void) { sd_notify(0, "READY=1"); }

void notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, usec);
}

void notify_stopping(void) { sd_notify(0, "STOPPING=1"); }

void notify_status(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sd_notifyf(0, "STATUS=%s", buf);
}

static void wd_cb(uv_timer_t *t)
{
    (void)t;
    sd_notify(0, "WATCHDOG=1");
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
    sd_notify(0, "WATCHDOG=1");
    log_info("watchdog: heartbeat every %" PRIu64 " ms", half_ms);
}

void notify_watchdog_stop(void)
{
    if (!wd_on) return;
    uv_timer_stop(&wd_timer);
    uv_close((uv_handle_t *)&wd_timer, NULL);
    wd_on = false;
}

/* systemd notifications (sd_notify) and the watchdog heartbeat. Without NOTIFY_SOCKET every
 * call is a no-op, so the daemon runs the same outside systemd. */
#ifndef KVS_NOTIFY_H
#define KVS_NOTIFY_H

#include <uv.h>

#include "util.h"

void notify_ready(void);
/* RELOADING=1 with MONOTONIC_USEC, as systemd's Type=notify-reload expects. */
void notify_reloading(void);
void notify_stopping(void);
void notify_status(const char *fmt, ...) KVS_PRINTF(1, 2);

/* Starts a loop timer sending WATCHDOG=1 at half the period systemd asks for (WATCHDOG_USEC).
 * A stuck loop stops the heartbeat and systemd restarts us. No-op without a watchdog. */
void notify_watchdog_start(uv_loop_t *loop);
void notify_watchdog_stop(void);

#endif

# kiotviet-sync: plain Makefile, pkg-config for every library.
# make            build build/kiotviet-syncd (needs only the build packages; as root it installs
#                 the missing ones, otherwise it prints the apt-get line)
# make check      unit tests (cmocka) + integration tests (pytest, real PostgreSQL, simulator)
# make check-asan the same under AddressSanitizer + UndefinedBehaviorSanitizer
# make demo       throwaway PostgreSQL + simulator + one full sync, summarised
# make bench      performance figures against the targets (see README)
# make soak       minutes of syncing against a faulty simulator: RSS, descriptors, sync_logs
# make install    binary, units, service user, man page, migrations, /etc/kiotviet-sync files
# make uninstall  removes what make install put outside /etc/kiotviet-sync
# check, check-*, demo, bench, soak and fuzz also bring the test packages (PostgreSQL, pytest).

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
SAN     ?=

CC      ?= cc
PKGS    := libuv libcurl libpq libcjson libsystemd libmicrohttpd libcrypto
PYTHON  := /usr/bin/python3

# Debian packages: building needs DEB_BUILD only; the tests, the demo and the benchmark also
# DEB_TEST (a PostgreSQL server, pytest, ...: not for a production server). `make deps` lists
# and installs both.
DEB_BUILD := build-essential pkg-config libcurl4-openssl-dev libcjson-dev libuv1-dev libpq-dev \
             libsystemd-dev libunistring-dev libmicrohttpd-dev libssl-dev
DEB_TEST  := libcmocka-dev postgresql-15 python3 python3-pytest python3-pytest-xdist python3-psycopg openssl systemd \
             pgbouncer
DEB_ALL   := $(DEB_BUILD) $(DEB_TEST)

WARN    := -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes -Wshadow -Wformat=2 \
           -Wno-format-nonliteral -Wno-format-truncation
HARDEN  := -fstack-protector-strong -fPIE -D_FORTIFY_SOURCE=3
OPT     := -O2 -g
ifneq ($(SAN),)
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
HARDEN  := -fPIE
endif
CFLAGS  ?=
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(HARDEN) -Iinclude -MMD -MP \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS += $(if $(SAN),-fsanitize=address$(comma)undefined) -pie -Wl,-z,relro,-z,now
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lunistring -lpthread -lm
comma   := ,

SRCS     := $(sort $(wildcard src/*.c))
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o)
MAIN_OBJ := $(BUILD)/obj/main.o
BIN      := $(BUILD)/kiotviet-syncd
LIB      := $(BUILD)/libkvsync.a

UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps deps-build deps-test check check-unit check-kvsim check-integration check-systemd \
        check-asan demo bench clean install uninstall fuzz check-fuzz soak
all: deps-build $(BIN)

# Installs the missing packages of a list when run as root; otherwise prints the exact command
# and fails (only when something is missing).
define deps_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "deps: installing$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || { echo "deps: apt-get install failed"; exit 1; }; \
	  else \
	    echo "deps: missing packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
endef

deps-build:
	$(call deps_install,$(DEB_BUILD))

deps-test:
	$(call deps_install,$(DEB_ALL))

deps: deps-test

$(BIN): $(MAIN_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/obj/%.o: src/%.c | $(BUILD)/obj
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB) | $(BUILD)/tests
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) -lcmocka

$(BUILD)/obj $(BUILD)/tests:
	@mkdir -p $@

check-unit: deps-test $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# The integration tests mostly wait (on daemons, the simulator, PostgreSQL), so they run in
# PYTEST_JOBS workers (pytest-xdist), each with its own PostgreSQL cluster; PYTEST_JOBS=0 runs
# them in this process, in file order.
PYTEST_JOBS ?= 3
check-integration: deps-test $(BIN)
	KVS_BIN=$(abspath $(BIN)) $(PYTHON) -m pytest -q -p no:cacheprovider -n $(PYTEST_JOBS) \
	    tests/integration $(PYTEST_ARGS)

# The simulator's own tests (tests/kvsim): no daemon, no PostgreSQL.
check-kvsim: deps-test
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/kvsim $(PYTEST_ARGS)

# The systemd units must verify and keep their exposure score low (see scripts/check-systemd.sh).
check-systemd: deps-test $(BIN)
	sh scripts/check-systemd.sh systemd/kiotviet-sync.service
	sh scripts/check-systemd.sh systemd/kiotviet-sync@.service

# The README's test command: unit tests, then integration tests against a throwaway PostgreSQL.
check: deps-test
	$(MAKE) --no-print-directory check-unit check-kvsim check-integration check-systemd

check-asan: deps-test
	$(MAKE) --no-print-directory BUILD=build-asan SAN=1 check-unit check-integration

# Fuzzing (clang + libFuzzer): `make fuzz` runs each target for FUZZ_SECONDS (default 600);
# `make check-fuzz` is the CI-sized run: every target replays its corpus (the seeds, and every
# input a bug was found with) and then fuzzes CHECK_FUZZ_SECONDS (default 15). Not part of
# `make check`; .ci/run runs it.
FUZZ_SECONDS ?= 600
fuzz: deps-test
	sh scripts/fuzz.sh $(FUZZ_SECONDS)

CHECK_FUZZ_SECONDS ?= 15
check-fuzz: deps-test
	sh scripts/fuzz.sh $(CHECK_FUZZ_SECONDS)

demo: deps-test $(BIN)
	$(PYTHON) scripts/demo.py --bin $(abspath $(BIN))

BENCH_ARGS ?=
bench: deps-test $(BIN)
	$(PYTHON) scripts/bench.py --bin $(abspath $(BIN)) $(BENCH_ARGS)

# The soak of issue 5 (a day in miniature): several integrations every few seconds against a
# simulator injecting random faults, for SOAK_SECONDS (default 300). Not part of `make check`.
SOAK_SECONDS ?= 300
soak: deps-test $(BIN)
	$(PYTHON) tests/soak/soak.py --bin $(abspath $(BIN)) --duration $(SOAK_SECONDS)

clean:
	rm -rf build build-asan build-fuzz

# make install [PREFIX=/usr/local] [DESTDIR=]: the binary, both units, the sysusers.d file of the
# service's user, the man page, the migrations; /etc/kiotviet-sync/kiotviet-sync.conf
# (root:kiotviet-sync 0640) and database-url (root 0600, empty) unless present. Without DESTDIR,
# as root, it creates the user (systemd-sysusers) and gives the configuration to its group; with
# DESTDIR it prints those two commands for the target system instead.
SYSCONFDIR  ?= /etc
UNITDIR     ?= /lib/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
ETCDIR      := $(SYSCONFDIR)/kiotviet-sync
SERVICE_USER := kiotviet-sync
UNITS       := kiotviet-sync.service kiotviet-sync@.service
install: $(BIN)
	install -Dm0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/kiotviet-syncd
	for u in $(UNITS); do \
	  install -Dm0644 systemd/$$u $(DESTDIR)$(UNITDIR)/$$u && \
	  sed -i 's|/usr/local/bin/kiotviet-syncd|$(PREFIX)/bin/kiotviet-syncd|' \
	      $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -Dm0644 systemd/kiotviet-sync.sysusers $(DESTDIR)$(SYSUSERSDIR)/kiotviet-sync.conf
	install -d -m0755 $(DESTDIR)$(ETCDIR)
	test -e $(DESTDIR)$(ETCDIR)/kiotviet-sync.conf || \
	    install -m0640 config/kiotviet-sync.conf $(DESTDIR)$(ETCDIR)/kiotviet-sync.conf
	test -e $(DESTDIR)$(ETCDIR)/database-url || \
	    install -m0600 /dev/null $(DESTDIR)$(ETCDIR)/database-url
	install -d $(DESTDIR)$(PREFIX)/share/kiotviet-sync/migrations
	install -m0644 db/migrations/*.sql $(DESTDIR)$(PREFIX)/share/kiotviet-sync/migrations/
	install -Dm0644 doc/kiotviet-syncd.8 $(DESTDIR)$(PREFIX)/share/man/man8/kiotviet-syncd.8
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
	  echo "systemd-sysusers $(SYSUSERSDIR)/kiotviet-sync.conf"; \
	  systemd-sysusers $(SYSUSERSDIR)/kiotviet-sync.conf || exit 1; \
	  echo "chgrp $(SERVICE_USER) $(ETCDIR)/kiotviet-sync.conf"; \
	  chgrp $(SERVICE_USER) $(ETCDIR)/kiotviet-sync.conf || exit 1; \
	else \
	  echo "install: on the target system, as root, run:"; \
	  echo "  systemd-sysusers $(SYSUSERSDIR)/kiotviet-sync.conf"; \
	  echo "  chgrp $(SERVICE_USER) $(ETCDIR)/kiotviet-sync.conf"; \
	fi

# Removes what make install put outside /etc/kiotviet-sync; the configuration, the database URL
# and the service's user stay (the README says how to remove them, and the migrations' schema).
uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/kiotviet-syncd $(DESTDIR)$(SYSUSERSDIR)/kiotviet-sync.conf \
	      $(DESTDIR)$(PREFIX)/share/man/man8/kiotviet-syncd.8
	for u in $(UNITS); do rm -f $(DESTDIR)$(UNITDIR)/$$u; done
	rm -rf $(DESTDIR)$(PREFIX)/share/kiotviet-sync
	@echo "uninstall: kept $(ETCDIR) and the user $(SERVICE_USER); to remove them too:" \
	      "rm -r $(ETCDIR); userdel $(SERVICE_USER)"

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d)

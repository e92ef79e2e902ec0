build-old/obj/store.o: src/store.c include/store.h \
 /usr/include/postgresql/libpq-fe.h \
 /usr/include/postgresql/postgres_ext.h \
 /usr/include/postgresql/pg_config_ext.h include/db.h include/util.h \
 include/mapping.h include/jewel.h include/config.h include/log.h
include/store.h:
/usr/include/postgresql/libpq-fe.h:
/usr/include/postgresql/postgres_ext.h:
/usr/include/postgresql/pg_config_ext.h:
include/db.h:
include/util.h:
include/mapping.h:
include/jewel.h:
include/config.h:
include/log.h:

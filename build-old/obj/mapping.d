build-old/obj/mapping.o: src/mapping.c include/mapping.h include/jewel.h \
 include/util.h include/config.h include/decimal.h include/kvjson.h \
 include/kvtime.h
include/mapping.h:
include/jewel.h:
include/util.h:
include/config.h:
include/decimal.h:
include/kvjson.h:
include/kvtime.h:

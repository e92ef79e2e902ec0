build-old/obj/kvjson.o: src/kvjson.c include/kvjson.h include/util.h \
 include/decimal.h
include/kvjson.h:
include/util.h:
include/decimal.h:

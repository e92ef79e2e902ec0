build-old/obj/jewel.o: src/jewel.c include/jewel.h include/util.h \
 include/decimal.h
include/jewel.h:
include/util.h:
include/decimal.h:

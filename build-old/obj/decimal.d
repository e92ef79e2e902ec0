build-old/obj/decimal.o: src/decimal.c include/decimal.h include/util.h
include/decimal.h:
include/util.h:

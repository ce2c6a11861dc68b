/* Two builds of this file (-DVALUE=1, -DVALUE=2) have the same layout:
 * loaded one after the other at the same base, the same address holds
 * different code (codegen/tests/dbi_invalidation.rs). */
#ifndef VALUE
#define VALUE 1
#endif
long swap_value(void) { return VALUE * 7 + 1; }

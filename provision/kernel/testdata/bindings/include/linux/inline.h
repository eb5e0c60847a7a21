/* Only inline helpers and macros: nothing for bindgen. */
#define INLINE_MAX 4
static inline int inline_twice(int x) { return 2 * x; }

/* The source of ../linked.elf, a module's code as kmodvm links it for llvm-addr2line: in a
 * relocatable object (a .ko) .text and .init.text both start at address 0; linked, every
 * function has an address of its own. other.c has a static function named like one here.
 *
 *   gcc -O2 -g -c two.c other.c && ld -o ../linked.elf --unresolved-symbols=ignore-all -e 0 two.o other.o
 *
 * two.o is left here too: the relocatable object itself.
 */
static inline int twice(int x)
{
	return x * 2;
}

__attribute__((noinline)) int in_text(volatile int *p)
{
	return twice(*p) + 1;
}

__attribute__((section(".init.text"), noinline)) int in_init(volatile int *p)
{
	return twice(*p) + 3;
}

__attribute__((noinline)) static int dup(volatile int *p)
{
	return *p + 5;
}

int use_dup(volatile int *p)
{
	return dup(p);
}

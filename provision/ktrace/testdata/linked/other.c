/* See two.c: a second static function named dup. */
__attribute__((noinline)) static int dup(volatile int *p)
{
	return *p + 7;
}

int use_other_dup(volatile int *p)
{
	return dup(p);
}

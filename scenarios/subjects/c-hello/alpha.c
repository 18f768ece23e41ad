#include <stdio.h>

void greet_alpha(void)
{
    puts("greetings from alpha");
}

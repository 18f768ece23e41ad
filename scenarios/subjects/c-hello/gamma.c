#include <stdio.h>

void greet_gamma(void)
{
    puts("greetings from gamma");
}

#include <stdio.h>

void greet_beta(void)
{
    puts("greetings from beta");
}

/* Sample subject of the determinism drill: embeds the compile date and time, and is linked in
 * directory order (see the Makefile). */
#include <stdio.h>

void greet_alpha(void);
void greet_beta(void);
void greet_gamma(void);

int main(void)
{
    printf("hello, compiled %s %s\n", __DATE__, __TIME__);
    greet_alpha();
    greet_beta();
    greet_gamma();
    return 0;
}

/*
 * inspect_cli.h - sealpipe inspect (inspect_cli.c).
 */
#ifndef SP_INSPECT_CLI_H
#define SP_INSPECT_CLI_H

struct conf;

/* argv[0] is "inspect". Returns the exit status. */
int inspect_main(struct conf *c, int argc, char **argv);

#endif

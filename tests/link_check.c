/* Linked with every object of one internal library and only that
 * library's allowed dependencies (CMakeLists.txt): a call the wrong way
 * (say, core into the server) is an undefined symbol and fails the link. */
int
main(void)
{
	return 0;
}

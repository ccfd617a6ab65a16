/* Fixed test keys of the fuzz targets, so seeds can carry valid signatures
 * (the fuzzer cannot forge one). They sign nothing outside fuzz/: never use
 * them anywhere else. Made with jose_signer_generate and jose_signer_export. */
#ifndef AM_FUZZ_TESTKEYS_H
#define AM_FUZZ_TESTKEYS_H

#define FZ_KEY_EC                                                                                  \
	"{\"kty\":\"EC\",\"kid\":\"fuzz-ec\",\"crv\":\"P-256\",\"x\":"                             \
	"\"k1RBs5UyOT48wmoB7uAJ6aJwNQPuhzncezzjb1bfu"                                              \
	"Hg\",\"y\":\"LeWTgMBvksNofQvJX06WZg3V9hLz7-Y5L0t_mPysLJU\",\"d\":"                        \
	"\"OzlVwmQvBHQRdluX7LX9375Np1aII"                                                          \
	"-Y7L8y-veEF8yU\",\"alg\":\"ES256\"}"

#define FZ_KEY_RSA                                                                                 \
	"{\"kty\":\"RSA\",\"kid\":\"fuzz-rsa\",\"e\":\"AQAB\",\"n\":\"xDEy-"                       \
	"WH8uvZ5JAE60RXk7KoQeFxeFmFBYi1kisE8GJ"                                                    \
	"OaO1qw-MJeML5KfPaU0yH5T9A_IuubI3-6exYlVPXVYtwHTrxeouPfu9zlgSGc3I_k60h_eH7irEuf2ahI1f1VED" \
	"0SaMs7TXZk0lR2DJc3MQnTRUhTTIUO51EKEn_Cu6EYXvSgjjDlKj_jIwioSh-Bt1jOyX-uA5oOsn0aQfTpO-1t7T" \
	"5o2SgyYFvEuKuoyIwm4-FzJHL0NGVhS80DBkgrTeOs3a0o3vDI_0qvhfSGHbnFNeFppTT-5aFoFmabhOSjOasriU" \
	"il92IbOm9wEdTMb85sXC1fBcAC9AnGTAm0rw\",\"d\":"                                            \
	"\"SK1nEi3j1wiWAKn59Vl0d91aA5RIAGdftrRVEfeaQQpws"                                          \
	"HscotIx3UGoy1j28a2csx3UPaXkzwYyeQVPqAT3WstiY57xOctLZsbiN-9RMf2WEjjFi8gJRUUwfotSC_9wAvd0u" \
	"eBLZBsvJyFFp81ekypuGrS7stV5m2QQZKDybNmO5veGfFXO0JC5Wmm0m9VfQhPmR0KDjLMYP2QGZgXp6HUCTOWEH" \
	"F--HaAQ-P0shAtEO5GBNrNVFWDc4xYyCTp6oyjl8Fv3X1z8bjdMCl2gtNhexLiUm4tHO8KPGO1rBvXnoTTV_5aeW" \
	"pKzQoNF2-lEPMIylpReMcYJ-DG7FqapeQ\",\"p\":"                                               \
	"\"4iIi4CTKxVXN3gMUE2VJKdy2jiTME4QKpwTExfY9uL8p9ypE"                                       \
	"7JiWnkEHavptAgnpb1fFtYBCOawC53vXVfrqnU1lEEcCbr2OOWOJFc9K0VMF5Nxg39gBENWbOQqxN3IivAB3Dfod" \
	"e2pOp3eoMMgYfy7UtlGwz6jKBZfAPruG7-c\",\"q\":\"3hq2j_"                                     \
	"87OguhglZBQ0RBwZjlbeetv3dFPo880ihFexvM20"                                                 \
	"fG6EzSvW1yxA3-OmqN20enl73MOp4WGPLoy1RnSJxcf5Z5Cwa1UtToBy6bizrgdq9f85nXMlAjbQRwE1VdMH4PpP" \
	"Gqc9G3Z1OL901qEoI_giRf1qjwRvMmFJX7G_k\",\"dp\":\"bEBlK6HRQ-hQdeBJYwOQo66Z4a_"             \
	"x1cHXC583x4CaiW9"                                                                         \
	"R2pVsi0p8h-OfdnHNbzVpfzioV7u_eDZE6aWaLvnACG99Wu5zVqn9hLGGdV9XdJ9m6ekpot6XnAR1mzfoIB_OSut" \
	"6EsHSDTuVzYt1g2y2dWPoxiKTHsWxeD3t9Nn2va8\",\"dq\":\"DI2F8-"                               \
	"2A827k2fD2D080SDTUArotX7zl9PszfM05"                                                       \
	"4BNaKKqN22M8Jeihq-L-k16iVdpe5nybplR4-z__WD6U982ejLd8b9sZNG1ED-PadqwFM7AFxEbVmspctjSiAPW6" \
	"Jpt5VuExuQoJS5W1O2zsqc8it8BGimNR8TCc3lz7rEE\",\"qi\":\"A9GWzB1PGhYxAGRO5tuBcqU9M0sEcZF-"  \
	"SNl_v"                                                                                    \
	"Dnj55FCwQk5gtL9fRCZvRlXUfE15jvAPR5wOgDF4AtzrvyEfR6J9WEe9M7Doj6EENK2ZL_LuZFmOnHmsEKLiMysf" \
	"si-bsPsBjE6743wRVvFtmMCyUrzmK8FgHldInL2rzgNdpI\",\"alg\":\"RS256\"}"

#endif

/* `authmd mcp`: the agent as a Model Context Protocol server on stdio
 * (docs/agent.md). */
#ifndef AM_MCP_H
#define AM_MCP_H

#include <stdio.h>

#include "authmd/client.h"

/* The MCP protocol revision spoken. */
#define AGENT_MCP_PROTOCOL "2025-06-18"

struct agent_mcp_options {
	const char *version; /* serverInfo.version */
	const char *session; /* the provider session for method "provider", or NULL */
};

/* Serves MCP (JSON-RPC 2.0, one message per line, MCP revision
 * AGENT_MCP_PROTOCOL) from in to out until in ends: initialize, ping,
 * tools/list, tools/call for authmd_discover, authmd_register, authmd_claim,
 * authmd_fetch and authmd_status. Only JSON-RPC messages go to out; logs go
 * to stderr. A line longer than AM_MAX_MCP_MESSAGE_BYTES is dropped with a
 * -32600 error. No stored credential, claim token or session ever appears in
 * what is written to out. Returns 0 at the end of input, 1 when out fails. */
int agent_mcp_serve(struct authmd_client *c, const struct agent_mcp_options *opt, FILE *in,
		    FILE *out);

#endif

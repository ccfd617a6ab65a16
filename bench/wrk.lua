-- The wrk script of `make bench` (bench/bench.py runs it; see docs/performance.md).
-- One file for every row; the first argument after `--` picks the request:
--
--   get                 GET the URL's path, with `Authorization: Bearer $BENCH_BEARER` when
--                       that is set (the environment, so no credential shows in ps)
--   anonymous           POST an anonymous registration to the URL's path
--   idjag PREFIX TYPE   POST an ID-JAG registration asking for credential TYPE, each request
--                       with the next token of PREFIX.<thread number> (one per wrk thread,
--                       written by authmd-bench-mint); each token has its own jti
--
-- The nginx row of a pair sends exactly the same requests as the authmd row.
-- done() prints one line `BENCH {json}` that bench.py reads. wrk counts a
-- response with status >= 400 as a status error; none of the measured
-- endpoints answers 3xx, so that count is the non-2xx count.

local threads = {}

function setup(thread)
	thread:set("id", #threads)
	table.insert(threads, thread)
end

local ID_JAG_URN = "urn:ietf:params:oauth:token-type:id-jag"
local tokens, body_head, body_tail

-- The next pre-minted token. A file that runs out starts over: the replays
-- then fail (400 replay_detected) and the row reports `exhausted`, so a row
-- that outran its tokens cannot pass for a good one.
local function next_token()
	local tok = tokens:read("*l")
	if tok == nil then
		exhausted = exhausted + 1
		tokens:seek("set", 0)
		tok = tokens:read("*l")
	end
	return tok
end

local function idjag_request()
	return wrk.format(nil, nil, nil, body_head .. next_token() .. body_tail)
end

function init(args)
	local mode = args[1]
	exhausted = 0
	if mode == "get" then
		local bearer = os.getenv("BENCH_BEARER")
		if bearer ~= nil and bearer ~= "" then
			wrk.headers["Authorization"] = "Bearer " .. bearer
		end
	elseif mode == "anonymous" then
		wrk.method = "POST"
		wrk.headers["Content-Type"] = "application/json"
		wrk.body = '{"type":"anonymous","requested_credential_type":"api_key"}'
	elseif mode == "idjag" then
		local path = args[2] .. "." .. id
		tokens = io.open(path, "r")
		if tokens == nil then
			error("no token file " .. path)
		end
		wrk.method = "POST"
		wrk.headers["Content-Type"] = "application/json"
		body_head = '{"type":"identity_assertion","assertion_type":"' .. ID_JAG_URN ..
			'","assertion":"'
		body_tail = '","requested_credential_type":"' .. args[3] .. '"}'
		request = idjag_request
	else
		error("unknown mode " .. tostring(mode))
	end
end

function done(summary, latency, requests)
	local ex = 0
	for _, t in ipairs(threads) do
		ex = ex + (t:get("exhausted") or 0)
	end
	local e = summary.errors
	io.write(string.format('BENCH {"requests":%d,"duration_us":%d,"status_errors":%d,' ..
		'"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
		'"p50_us":%d,"p99_us":%d,"max_us":%d,"exhausted":%d}\n',
		summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
		latency:percentile(50), latency:percentile(99), latency.max, ex))
end

-- wrk script driven by benchmarks/load.py; one script serves every scenario.
-- Arguments after `--`:  method  target  id_max  body_file  nonce  [header ...]
--   target     a path with an optional {id} placeholder (a random id in 1..id_max per request),
--              or @FILE: one path per line, a random one per request (e.g. keyset cursors)
--   body_file  "-" for no body; in the body {uniq} becomes a string unique to this request (unique skus
--              for POST batches) and {id} a random id
--   nonce      unique per wrk run, so {uniq} never repeats across runs that share a table; {uniq} is made
--              of [A-Z0-9] only, so it fits strict sku patterns
--   header     "Name: value", repeated; {uniq} in a value becomes the request's {uniq} (e.g. a fresh
--              Idempotency-Key per request)
-- done() prints one line "DXBENCH {json}" that load.py parses (wrk's own text output is not stable).

local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

local method, template, paths, id_max, body, nonce
local headers = {}
local per_request = false -- a header value holds {uniq}: the headers are built for each request
local counter = 0

function init(args)
  method = args[1]
  local target = args[2]
  id_max = tonumber(args[3])
  nonce = args[5]
  if target:sub(1, 1) == "@" then
    paths = {}
    for line in io.lines(target:sub(2)) do
      if #line > 0 then paths[#paths + 1] = line end
    end
  else
    template = target
  end
  if args[4] ~= "-" then
    local file = assert(io.open(args[4], "rb"))
    body = file:read("*a")
    file:close()
    headers["Content-Type"] = "application/json"
  end
  for i = 6, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    headers[name] = value
    if value:find("{uniq}", 1, true) then per_request = true end
  end
  -- each thread has its own Lua state: seed per thread so threads do not walk the same ids
  math.randomseed(os.time() + 7919 * (tid or 0))
end

function request()
  counter = counter + 1
  local path
  if paths then
    path = paths[math.random(#paths)]
  else
    path = template:gsub("{id}", tostring(math.random(id_max)))
  end
  local uniq = nonce .. "T" .. tid .. "N" .. counter
  local payload = nil
  if body then
    payload = body:gsub("{uniq}", uniq)
    payload = payload:gsub("{id}", tostring(math.random(id_max)))
  end
  local sent = headers
  if per_request then
    sent = {}
    for name, value in pairs(headers) do sent[name] = value:gsub("{uniq}", uniq) end
  end
  return wrk.format(method, path, sent, payload)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nDXBENCH {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%.1f,"p99_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end

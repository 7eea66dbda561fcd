-- A batch of 10 eth_blockNumber calls (ids 1..10), uncached, per request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local calls = {}
for i = 1, 10 do
  calls[i] = string.format('{"jsonrpc":"2.0","id":%d,"method":"eth_blockNumber","params":[]}', i)
end
wrk.body = "[" .. table.concat(calls, ",") .. "]"

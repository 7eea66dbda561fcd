-- A cacheable call (eth_getBalance at "latest") with a new address each time:
-- every call is a cache miss that goes through the whole stack.
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format(
    '{"jsonrpc":"2.0","id":%d,"method":"eth_getBalance","params":["0x%040x","latest"]}',
    counter, math.random(1, 2147483647) * 65536 + counter)
  return wrk.format("POST", "/", {["Content-Type"] = "application/json"}, body)
end

-- A read/write mix: authenticated GETs of pooled posts, and every so often a POST with a unique
-- Idempotency-Key. args: pool_file token run_nonce body write_percent
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  ids = {}
  for line in io.lines(args[1]) do
    ids[#ids + 1] = line:match("^(%S+)")
  end
  token, nonce, body = args[2], args[3], args[4]
  write_percent = tonumber(args[5])
  read_headers = { ["Authorization"] = "Bearer " .. token }
  write_headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
  sent = 0
  math.randomseed(tid * 104729 + os.time())
end

function request()
  if math.random(100) <= write_percent then
    sent = sent + 1
    write_headers["Idempotency-Key"] = nonce .. "-" .. tid .. "-" .. sent
    return wrk.format("POST", "/v1/posts", write_headers, body)
  end
  return wrk.format("GET", "/v1/posts/" .. ids[math.random(#ids)], read_headers)
end

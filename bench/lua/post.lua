-- POST a JSON body; with a token, authenticated and with an Idempotency-Key unique to the run,
-- the thread and the request (so every POST creates a post, none is a replay).
-- args: path token|- run_nonce body
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  path, nonce, body = args[1], args[3], args[4]
  headers = { ["Content-Type"] = "application/json" }
  keyed = args[2] ~= "-"
  if keyed then headers["Authorization"] = "Bearer " .. args[2] end
  sent = 0
end

function request()
  sent = sent + 1
  if keyed then headers["Idempotency-Key"] = nonce .. "-" .. tid .. "-" .. sent end
  return wrk.format("POST", path, headers, body)
end

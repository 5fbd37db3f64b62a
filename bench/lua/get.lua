-- GET <prefix><id><suffix> for a post id picked at random (per request) from a pool file of
-- "id etag" lines; optionally authenticated, optionally conditional (If-None-Match: etag).
-- args: pool_file prefix suffix token|- etag|-
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  ids, etags = {}, {}
  for line in io.lines(args[1]) do
    local id, etag = line:match("^(%S+) (%S+)$")
    ids[#ids + 1] = id
    etags[#etags + 1] = etag
  end
  prefix, suffix = args[2], args[3]
  headers = {}
  if args[4] ~= "-" then headers["Authorization"] = "Bearer " .. args[4] end
  conditional = args[5] == "etag"
  math.randomseed(tid * 7919 + os.time())
end

function request()
  local i = math.random(#ids)
  if conditional then headers["If-None-Match"] = etags[i] end
  return wrk.format("GET", prefix .. ids[i] .. suffix, headers)
end

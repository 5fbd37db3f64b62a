-- GET one fixed path (a list page, a bare endpoint), optionally authenticated.
-- args: path token|-
function init(args)
  local headers = {}
  if args[2] ~= "-" then headers["Authorization"] = "Bearer " .. args[2] end
  req = wrk.format("GET", args[1], headers)
end

function request()
  return req
end

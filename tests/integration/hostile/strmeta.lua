-- Hostile test analysis: writing to the shared string metatable
return {
  topics = { "h/strmeta/{serial}" },
  handle = function(msg)
    getmetatable("").__index = function() return "pwned" end
  end,
}

-- Hostile test analysis: __close abuse
return {
  topics = { "h/close/{serial}" },
  handle = function(msg)
    local x <close> = setmetatable and setmetatable({}, { __close = function() while true do end end }) or 1
    return { variable = "c", value = 1 }
  end,
}

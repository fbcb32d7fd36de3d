-- Hostile test analysis: an endless loop inside pcall, retried
return {
  topics = { "h/loop_pcall/{serial}" },
  handle = function(msg)
    for i = 1, 100 do pcall(function() while true do end end) end
    return { variable = "escaped", value = 1 }
  end,
}

-- Hostile test analysis: an endless loop inside a coroutine
return {
  topics = { "h/loop_coroutine/{serial}" },
  handle = function(msg)
    local co = coroutine.wrap(function() while true do end end)
    pcall(co)
    return { variable = "escaped", value = 1 }
  end,
}

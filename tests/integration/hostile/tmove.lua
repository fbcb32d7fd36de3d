-- Hostile test analysis: table.move over math.maxinteger
return {
  topics = { "h/tmove/{serial}" },
  handle = function(msg)
    table.move({1}, 1, math.maxinteger, 2)
  end,
}

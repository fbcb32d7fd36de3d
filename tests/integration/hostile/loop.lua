-- Hostile test analysis: an endless loop
return {
  topics = { "h/loop/{serial}" },
  handle = function(msg)
    while true do end
  end,
}

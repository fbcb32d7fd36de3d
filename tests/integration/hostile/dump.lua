-- Hostile test analysis: string.dump
return {
  topics = { "h/dump/{serial}" },
  handle = function(msg)
    return { variable = "d", value = string.dump(msg.handle or print) }
  end,
}

-- Hostile test analysis: load without an environment
return {
  topics = { "h/load/{serial}" },
  handle = function(msg)
    local f = load("return os")
    return { variable = "l", value = tostring(f) }
  end,
}

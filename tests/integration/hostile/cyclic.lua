-- Hostile test analysis: a cyclic return value
return {
  topics = { "h/cyclic/{serial}" },
  handle = function(msg)
    local t = { variable = "c" }
    t.metadata = { self = t }
    return t
  end,
}

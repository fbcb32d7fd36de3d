-- Hostile test analysis: string.rep of 2^60 bytes
return {
  topics = { "h/rep/{serial}" },
  handle = function(msg)
    return { variable = "r", value = #string.rep("", 1 << 60) .. string.rep("x", 1 << 60) }
  end,
}

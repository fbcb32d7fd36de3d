-- Hostile test analysis: a catastrophic pattern on 4 KB of device input.
-- Lua's matcher backtracks through every split of the input between the
-- twelve lazy items before giving up on the missing "b": no count hook can
-- interrupt it, only the wall-clock limit (the worker is killed).
return {
  topics = { "h/pattern/{serial}" },
  handle = function(msg)
    msg.payload:find(string.rep("a-", 12) .. "b")
    return { variable = "matched", value = 1 }
  end,
}

-- Hostile test analysis: deep recursion
return {
  topics = { "h/recurse/{serial}" },
  handle = function(msg)
    local function f(n) return 1 + f(n + 1) end
    return { variable = "x", value = f(1) }
  end,
}

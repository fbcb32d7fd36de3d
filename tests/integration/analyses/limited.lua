-- Test analysis: its own, lower wall-clock limit (200 ms instead of the
-- daemon's), hit by a pattern no hook can interrupt.
return {
  topics = { "lim/{serial}" },
  limits = { timeout_ms = 200 },
  handle = function(msg)
    msg.payload:find(string.rep("a-", 12) .. "b")
    return { variable = "never", value = 1 }
  end,
}

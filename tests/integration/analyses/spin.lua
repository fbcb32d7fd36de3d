-- Test analysis that never finishes: must hit the instruction limit.
return {
  topics = { "spin/{serial}" },
  handle = function(msg) while true do end end,
}

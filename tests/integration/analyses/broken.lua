-- Test analysis that always raises an error.
return {
  topics = { "broken/{serial}" },
  handle = function(msg) error("sensor exploded") end,
}

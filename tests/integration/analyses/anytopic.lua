-- Test analysis: a filter with no {serial} level. The device comes from the
-- broker plugin's stamp (the publisher), as in TagoIO where a device's data
-- lands in its own bucket whatever topic it publishes to.
return {
  topics = { "readings/#" },
  handle = function(msg) return msg.records end,
}

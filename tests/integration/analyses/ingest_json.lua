-- Test analysis: TagoIO's "MQTT topic -> insert into device bucket" action.
-- Stores whatever the pipeline normalized (TagoIO JSON records, or the raw
-- "payload" record).
return {
  topics = { "devices/{serial}/data" },
  handle = function(msg) return msg.records end,
}

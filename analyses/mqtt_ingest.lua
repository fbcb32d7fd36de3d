--[[
mqtt_ingest.lua - TagoIO's "MQTT topic -> insert into device bucket" action.

Subscribes to devices/{serial}/data, where {serial} is the device's serial
(register it first: sealpipe device add <serial>). The payload is TagoIO's
JSON data format, one record or a list:

  mosquitto_pub -t devices/sensor-01/data \
    -m '[{"variable":"temperature","value":21.5,"unit":"C"},{"variable":"door","value":true}]'

The daemon has already validated it and added metadata.mqtt_topic; this
analysis stores the records unchanged. A payload that is not TagoIO JSON
arrives as one record {variable = "payload", value = <text or hex>} and is
stored as such, unless the device has a parser (--parser), which then
decodes it instead.
]]

return {
  topics = { "devices/{serial}/data" },
  handle = function(msg)
    return msg.records
  end,
}

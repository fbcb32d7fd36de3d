--[[
unit_convert.lua - stores TagoIO records with imperial units in metric.

Subscribes to devices/{serial}/imperial, where {serial} is the device's
serial (register it first: sealpipe device add <serial>). The payload is
TagoIO's JSON data format, one record or a list:

  mosquitto_pub -t devices/sensor-01/imperial \
    -m '[{"variable":"temp","value":71.6,"unit":"°F"},{"variable":"wind","value":10,"unit":"mph"}]'

  ->  temp 22 °C, wind 16.09344 km/h

Conversions (by the record's unit, exactly as written):

  F, °F  -> °C     (v - 32) * 5 / 9
  mi     -> km     v * 1.609344
  lb     -> kg     v * 0.45359237
  inHg   -> hPa    v * 33.8639
  mph    -> km/h   v * 1.609344

Converted values are rounded to 6 decimal places and keep the rest of the
record; metadata.converted_from records the original unit. Records with any
other unit, or whose value is not a number, are stored unchanged. A payload
that is not TagoIO JSON arrives as one "payload" record and is stored as such.
]]

local CONVERT = {
  ["F"] = { unit = "°C", f = function(v) return (v - 32) * 5 / 9 end },
  ["°F"] = { unit = "°C", f = function(v) return (v - 32) * 5 / 9 end },
  ["mi"] = { unit = "km", f = function(v) return v * 1.609344 end },
  ["lb"] = { unit = "kg", f = function(v) return v * 0.45359237 end },
  ["inHg"] = { unit = "hPa", f = function(v) return v * 33.8639 end },
  ["mph"] = { unit = "km/h", f = function(v) return v * 1.609344 end },
}

local function round6(x)
  return math.floor(x * 1e6 + 0.5) / 1e6
end

local function handle(msg)
  for _, r in ipairs(msg.records) do
    local c = r.unit and CONVERT[r.unit]
    if c and math.type(r.value) then
      r.metadata = r.metadata or {}
      r.metadata.converted_from = r.unit
      r.value = round6(c.f(r.value))
      r.unit = c.unit
    end
  end
  return msg.records
end

return {
  topics = { "devices/{serial}/imperial" },
  handle = handle,
}

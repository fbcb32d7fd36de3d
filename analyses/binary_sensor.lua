--[[
binary_sensor.lua - payload parser for a 5-byte binary sensor frame.

Subscribes to sensors/{serial}/raw, where {serial} is the device's serial.
The MQTT payload is raw bytes (not text, not hex):

  offset  size  type               meaning
  0       2     int16 big-endian   temperature in hundredths of a degree C
  2       1     uint8              relative humidity, %
  3       2     uint16 big-endian  battery voltage, mV

Example (hex): 0898 2d 0e74  ->  temperature 22.0 °C, humidity 45 %,
battery 3.7 V. Send it with e.g.
  printf '\x08\x98\x2d\x0e\x74' | mosquitto_pub -t sensors/dev1/raw -s

Longer frames are accepted (extra bytes are ignored, for forward
compatibility); shorter ones are an error, so nothing is stored and the
message is reported as an analysis error.
]]

local FRAME = ">i2 B I2" -- string.unpack format of the frame

local function handle(msg)
  local p = msg.payload
  if #p < 5 then
    error(("frame too short: %d bytes, need 5"):format(#p))
  end
  local centi, humidity, mv = string.unpack(FRAME, p)
  local t = msg.received -- the broker's receive time, Unix ms
  return {
    { variable = "temperature", value = centi / 100, unit = "°C", time = t },
    { variable = "humidity", value = humidity, unit = "%", time = t },
    { variable = "battery", value = mv / 1000, unit = "V", time = t },
  }
end

return {
  topics = { "sensors/{serial}/raw" },
  handle = handle,
}

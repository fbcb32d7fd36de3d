--[[
passthrough.lua - device parser for TagoTiP passthrough frames.

Set it as a device's parser (`--parser passthrough`). A TagoTiP PUSH whose
body is passthrough data (">x<hex>" or ">b<base64>") reaches the parser as
one record, msg.records[1] = {variable = "payload", value = <text>}: the hex
digits (lowercase) for ">x", the base64 text for ">b". Plain MQTT payloads
that are not TagoIO JSON arrive the same way (text, or hex for binary).

This parser reads the bytes as consecutive unsigned 16-bit big-endian
channels and returns payload_size (bytes) plus ch1, ch2, ... A trailing odd
byte is counted in payload_size but not decoded.

Example: body ">x0102ff00"  ->  payload_size 4, ch1 258, ch2 65280.
  sealpipe-device push ... '>x0102ff00'   (or: mosquitto_pub -m '>x0102ff00'
  on $tip/<serial>/push)
]]

local MAX_CHANNELS = 64

local function bytes_of(value)
  if value:match("^%x*$") and #value % 2 == 0 then
    return hex.decode(value)
  end
  return base64.decode(value)
end

local function handle(msg)
  local raw = msg.records[1]
  if raw == nil or raw.variable ~= "payload" or type(raw.value) ~= "string" then
    return msg.records -- already structured data: store it unchanged
  end
  local data, why = bytes_of(raw.value)
  if data == nil then
    error("passthrough data is neither hex nor base64: " .. why)
  end
  local out = { { variable = "payload_size", value = #data, unit = "B", time = raw.time } }
  for i = 1, math.min(#data // 2, MAX_CHANNELS) do
    local v = string.unpack(">I2", data, 2 * i - 1)
    out[#out + 1] = { variable = "ch" .. i, value = v, time = raw.time }
  end
  return out
end

return { handle = handle }

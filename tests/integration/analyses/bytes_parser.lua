-- Test payload parser: 2 bytes big-endian temperature * 100, 1 byte humidity.
-- Used as a device's parser for raw payloads and TagoTiP passthrough.
return {
  topics = { "raw/{serial}" },
  handle = function(msg)
    local p = msg.records[1]
    local bytes = msg.payload
    if p and p.variable == "payload" and msg.topic:sub(1, 1) == "$" then
      bytes = hex.decode(p.value) -- TagoTiP >x passthrough arrives as hex text
    end
    local t, h = string.unpack(">i2B", bytes)
    return {
      { variable = "temperature", value = t / 100, unit = "C" },
      { variable = "humidity", value = h, unit = "%" },
    }
  end,
}

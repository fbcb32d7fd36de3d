--[[
threshold_alert.lua - stores temperatures and publishes an alert when one
rises above a threshold.

Subscribes to devices/{serial}/temperature, where {serial} is the device's
serial (register it first: sealpipe device add <serial>). The payload is
either a number as text or TagoIO JSON with a variable "temperature":

  mosquitto_pub -t devices/sensor-01/temperature -m 31.5
  mosquitto_pub -t devices/sensor-01/temperature \
    -m '{"variable":"temperature","value":31.5,"unit":"°C"}'

The reading is stored as the record "temperature". When it goes from at or
below the threshold to above it, the analysis publishes (QoS 1) on
alerts/{serial}:

  {"serial":"sensor-01","threshold":30,"time":1764000000000,"value":31.5,"variable":"temperature"}

and logs a line. It publishes once per crossing: not again until a reading
at or below the threshold re-arms it. Watch with
  mosquitto_sub -t 'alerts/#'

The threshold is, most specific first: the device param "threshold"
(sealpipe device add sensor-01 --param threshold=25), THRESHOLD in the
sidecar file analyses/threshold_alert.env (a line THRESHOLD=35), else 30.

The last state of each device is kept in a table of this script's Lua state.
That is best-effort: the state is rebuilt after a limit trip, a reload or a
worker restart, and then a device that is already above the threshold alerts
once more. At most MAX_DEVICES devices are remembered (then it starts over).
]]

local DEFAULT_THRESHOLD = 30
local MAX_DEVICES = 10000

local above = {} -- serial -> true while the last reading was above
local ndevices = 0

local function finite(v)
  return math.type(v) ~= nil and v == v and v > -math.huge and v < math.huge
end

local function threshold_of(device)
  local t = tonumber(device.params.threshold)
  if finite(t) then
    return t
  end
  t = tonumber(env.THRESHOLD)
  if finite(t) then
    return t
  end
  return DEFAULT_THRESHOLD
end

-- The reading as a record: a plain number, or the TagoIO "temperature" record.
local function reading(msg)
  local v = tonumber(msg.payload)
  if finite(v) then
    return { variable = "temperature", value = v }
  end
  for _, r in ipairs(msg.records) do
    if r.variable == "temperature" and finite(r.value) then
      return r
    end
  end
  return nil
end

local function remember(serial, state)
  if above[serial] == nil then
    if ndevices >= MAX_DEVICES then
      above, ndevices = {}, 0
    end
    ndevices = ndevices + 1
  end
  above[serial] = state
end

local function handle(msg)
  local dev = msg.device
  if dev == nil then
    error("unknown device")
  end
  local r = reading(msg)
  if r == nil then
    error("payload is neither a number nor a TagoIO temperature record")
  end
  local limit = threshold_of(dev)
  local now_above = r.value > limit
  if now_above and not above[dev.serial] then
    publish("alerts/" .. dev.serial, json.encode({
      serial = dev.serial,
      variable = "temperature",
      value = r.value,
      threshold = limit,
      time = msg.received,
    }), { qos = 1 })
    log("threshold_alert:", dev.serial, "temperature", r.value, "above", limit)
  end
  remember(dev.serial, now_above)
  return r
end

return {
  topics = { "devices/{serial}/temperature" },
  handle = handle,
}

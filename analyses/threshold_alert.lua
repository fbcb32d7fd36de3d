--[[
threshold_alert.lua - stores temperatures and publishes an alert when one
rises above a threshold: a condition on stored data (TagoIO's "trigger by
variable"), declared with `when` and handled by condition(c).

Subscribes to devices/{serial}/temperature, where {serial} is the device's
serial (register it first: sealpipe device add <serial>). The payload is
either a number as text or TagoIO JSON with a variable "temperature":

  mosquitto_pub -t devices/sensor-01/temperature -m 31.5
  mosquitto_pub -t devices/sensor-01/temperature \
    -m '{"variable":"temperature","value":31.5,"unit":"°C"}'

handle() stores the reading as the record "temperature". Once it is
committed, the daemon checks it against `when`: when a device's temperature
goes from at or below the threshold to above it, condition(c) runs and
publishes (QoS 1) on alerts/{serial}:

  {"serial":"sensor-01","threshold":30,"time":1764000000000,"value":31.5,"variable":"temperature"}

and logs a line. It fires once per crossing: not again until a reading at or
below the threshold re-arms it (add `hysteresis = 1` to `when` to re-arm only
at or below threshold - 1). The daemon keeps each device's state in
sealpipe.db (condition_state), so a restart, a reload or a worker crash
neither repeats nor loses an alert. Watch with
  mosquitto_sub -t 'alerts/#'

The threshold is, most specific first: the device param "threshold"
(sealpipe device add sensor-01 --param threshold=25), THRESHOLD in the
sidecar file analyses/threshold_alert.env (a line THRESHOLD=35), else 30.
]]

local DEFAULT_THRESHOLD = 30

local function finite(v)
  return math.type(v) ~= nil and v == v and v > -math.huge and v < math.huge
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

local function handle(msg)
  if msg.device == nil then
    error("unknown device")
  end
  local r = reading(msg)
  if r == nil then
    error("payload is neither a number nor a TagoIO temperature record")
  end
  return r
end

-- Runs once the crossing record is committed, for its device.
local function condition(c)
  local serial = c.device.serial
  publish("alerts/" .. serial, json.encode({
    serial = serial,
    variable = c.variable,
    value = c.value,
    threshold = c.threshold,
    time = c.time,
  }), { qos = 1 })
  log("threshold_alert:", serial, "temperature", c.value, "above", c.threshold)
end

local threshold = tonumber(env.THRESHOLD)
return {
  topics = { "devices/{serial}/temperature" },
  handle = handle,
  when = {
    variable = "temperature",
    above = { param = "threshold", default = finite(threshold) and threshold or DEFAULT_THRESHOLD },
  },
  condition = condition,
}

--[[
json_flatten.lua - stores every value of a nested JSON object as a variable.

Subscribes to devices/{serial}/json, where {serial} is the device's serial
(register it first: sealpipe device add <serial>). The payload is any JSON
object; nested objects and arrays are flattened into variable names joined
with "_":

  mosquitto_pub -t devices/sensor-01/json \
    -m '{"env":{"temp":21.5,"hum":40},"batt":3.7,"ok":true,"cells":[4.1,3.9]}'

  ->  batt 3.7, cells_1 4.1, cells_2 3.9, env_hum 40, env_temp 21.5, ok true

Names are lowercased and every character other than a-z, 0-9 and "_" becomes
"_" (so "Env.Temp" -> "env_temp"), cut to 100 bytes: always a valid TagoIO
variable. Array elements are numbered from 1. null values and empty objects
or arrays store nothing; a string longer than TagoIO's 6144 bytes fails the
message. Keys are visited in sorted (byte) order, so the records come out in
the same order every time. At most MAX_VARS variables are stored; the rest
are dropped with a log line. A payload that is not a JSON object is an error
(nothing is stored; the message is reported as an analysis error).
]]

local MAX_VARS = 100
local MAX_NAME = 100 -- bytes of a TagoIO variable name

-- The variable-name form of one key: lowercase, [a-z0-9_] only.
local function clean(key)
  local name = key:sub(1, MAX_NAME):lower():gsub("[^a-z0-9_]", "_")
  if name == "" then
    return "_"
  end
  return name
end

local function join(prefix, key)
  if prefix == "" then
    return key
  end
  return prefix .. "_" .. key
end

-- Adds the scalars under v to out; returns false once out is full.
local function flatten(prefix, v, out)
  local t = type(v)
  if v == json.null then
    return true
  elseif t == "table" then
    if rawlen(v) > 0 then -- a JSON array (decoded objects never have integer keys)
      for i = 1, #v do
        if not flatten(join(prefix, tostring(i)), v[i], out) then
          return false
        end
      end
    else
      local keys = {}
      for k in pairs(v) do
        keys[#keys + 1] = k
      end
      table.sort(keys)
      for _, k in ipairs(keys) do
        if not flatten(join(prefix, clean(k)), v[k], out) then
          return false
        end
      end
    end
    return true
  end
  if #out >= MAX_VARS then
    return false
  end
  out[#out + 1] = { variable = prefix:sub(1, MAX_NAME), value = v }
  return true
end

local function handle(msg)
  local doc, err = json.decode(msg.payload)
  if doc == nil then
    error("payload is not JSON: " .. err)
  end
  if type(doc) ~= "table" or rawlen(doc) > 0 then
    error("payload is not a JSON object")
  end
  local records = {}
  if not flatten("", doc, records) then
    log("json_flatten: more than", MAX_VARS, "values; the rest were dropped")
  end
  return records
end

return {
  topics = { "devices/{serial}/json" },
  handle = handle,
}

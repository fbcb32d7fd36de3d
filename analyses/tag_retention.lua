--[[
tag_retention.lua - deletes old data of the devices that carry a tag.

Every 10 minutes, for the devices whose tag TAG has its value (TAG=tier=free
means devices with the tag tier=free), deletes their records dated more
than KEEP before the tick's due time (ctx.scheduled), whatever the global
`retention` option keeps; other devices are not touched.

Env (analyses/tag_retention.env):
  TAG=tier=free      key=value; without it the analysis does nothing (and logs so)
  KEEP=30d           a length: a number and s, m, h, d or w; default 30d

Limits: a handler call may make 10 delete_data() calls, each deleting at
most 10,000 records (the oldest first). So one tick handles 10 tagged
devices: with more, successive ticks take the next 10 in serial order and
go round (the place is kept in this script's Lua state; after a reload it
starts again from the first), and a device with more old records than
10,000 is caught up over its next turns.

Try it (with mqtt_ingest.lua also loaded):
  sealpipe device add sensor-01 --cipher none --tag tier=free
  printf 'TAG=tier=free\nKEEP=1h\n' > analyses/tag_retention.env
  mosquitto_pub -t devices/sensor-01/data -m '{"variable":"level","value":1,"time":"2020-01-01T00:00:00Z"}' ...
and within 10 minutes that record is gone (sealpipe query sensor-01 --variable level).
]]

local UNITS = { s = 1000, m = 60 * 1000, h = 3600 * 1000, d = 86400 * 1000, w = 7 * 86400 * 1000 }
local PER_TICK = 10 -- delete_data() calls per handler call

local cursor = "" -- the last device handled; "" to start from the first

-- "30d" -> milliseconds, or nil.
local function length(s)
  local n, unit = string.match(s or "", "^%s*(%d+)%s*([smhdw])%s*$")
  if not n then
    return nil
  end
  return tonumber(n) * UNITS[unit]
end

return {
  schedule = "every 10m",
  tick = function(ctx)
    local key, value = string.match(env.TAG or "", "^([^=]+)=(.*)$")
    local keep = length(env.KEEP or "30d")
    if not key or not keep or keep <= 0 then
      log("tag_retention: set TAG=key=value and KEEP (e.g. 30d) in analyses/tag_retention.env")
      return
    end
    local page = assert(devices{ tags = { [key] = value }, after = cursor, limit = PER_TICK })
    for _, d in ipairs(page) do
      delete_data{ serial = d.serial, before = ctx.scheduled - keep }
    end
    cursor = #page == PER_TICK and page[#page].serial or ""
  end,
}

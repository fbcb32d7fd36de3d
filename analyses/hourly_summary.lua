--[[
hourly_summary.lua - every hour, stores each device's hourly average,
minimum and maximum of some variables.

At minute 0 of every hour (UTC) the tick stands for ctx.scheduled, and
summarises the hour that time closes: from ctx.scheduled - 1 h to
ctx.scheduled - 1 ms. For every registered device and each variable of
VARIABLES that has numbers in that hour, it stores for the device

  summary_<variable>_avg, summary_<variable>_min, summary_<variable>_max

with time = the hour's start and group = the hour's start in ISO 8601
(2026-11-24T10:00:00Z). Strings and booleans are not counted; a device
without numbers in the hour gets nothing. Using ctx.scheduled, not the
clock, a late tick still summarises its own hour. After the daemon was down
over several due times, the one tick that comes stands for the latest of
them (ctx.missed says how many were folded in, and is logged); the hours in
between are not summarised.

Env (analyses/hourly_summary.env):
  VARIABLES=temperature,humidity   comma-separated, at most 33; default temperature

Limits: a handler call may make 100 devices/aggregate/query calls and 100
insert() calls, and store 1000 records. One call lists a page of devices
and aggregates floor(99 / #VARIABLES) of them (99 with one variable); when
there are more it hands the rest to run(ctx) of this same analysis with
run_analysis(), which goes on the same way. A chain is at most 7 runs deep
(run_analysis stops at depth 8), so one hour covers 8 x 99 = 792 devices
with one variable (264 with three); past that it logs what it skipped.
If you rename this file, change NAME below.

Try it (with mqtt_ingest.lua also loaded):
  sealpipe device add sensor-01 --cipher none
  mosquitto_pub -t devices/sensor-01/data -m '[{"variable":"temperature","value":21},{"variable":"temperature","value":23}]' ...
then wait for the hour (or, for a quick look, change the schedule to "every 1m") and
  sealpipe query sensor-01 --variable summary_temperature_avg
]]

local NAME = "hourly_summary"
local HOUR = 3600 * 1000
local CALLS = 100 -- devices{} and aggregate{} calls per handler call
local MAX_DEPTH = 7 -- run_analysis() chains stop at depth 8

local function variables()
  local list = {}
  for v in string.gmatch(env.VARIABLES or "temperature", "[^,%s]+") do
    -- "summary_" .. v .. "_avg" must fit a variable name's 100 bytes.
    if #v > 88 then
      error("hourly_summary: VARIABLES: " .. v:sub(1, 20) .. "... is longer than 88 bytes")
    end
    list[#list + 1] = string.lower(v)
  end
  if #list == 0 or #list > 33 then
    error("hourly_summary: VARIABLES must name 1 to 33 variables")
  end
  return list
end

local function iso(ms)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", ms // 1000)
end

-- The records of one device for the hour [start, stop].
local function summarise(serial, vars, start, stop)
  local records = {}
  for _, v in ipairs(vars) do
    local g = aggregate{ serial = serial, variable = v, start = start, stop = stop }
    if g and g.count > 0 then
      for _, k in ipairs({ "avg", "min", "max" }) do
        records[#records + 1] = { variable = "summary_" .. v .. "_" .. k, value = g[k],
                                  time = start, group = iso(start) }
      end
    end
  end
  return records
end

-- Summarises the hour closed by `scheduled` for the devices after `after`,
-- as many as one call may, and hands the rest on. depth: this call's.
local function run_page(scheduled, after, depth)
  local vars = variables()
  local per = (CALLS - 1) // #vars
  local start, stop = scheduled - HOUR, scheduled - 1
  local page = assert(devices{ after = after, limit = per })
  for _, d in ipairs(page) do
    local records = summarise(d.serial, vars, start, stop)
    if #records > 0 then
      insert(records, d.serial)
    end
  end
  if #page == per then
    local last = page[#page].serial
    if depth < MAX_DEPTH then
      run_analysis(NAME, { scheduled = scheduled, after = last })
    else
      log("hourly_summary: too many devices for one hour; the devices after", last,
          "were not summarised for", iso(start))
    end
  end
end

return {
  schedule = "0 * * * *",
  tick = function(ctx)
    if ctx.missed > 0 then
      log("hourly_summary:", ctx.missed, "hours were missed; summarising", iso(ctx.scheduled - HOUR))
    end
    run_page(ctx.scheduled, "", 0)
  end,
  run = function(ctx)
    local job = json.decode(ctx.payload)
    run_page(job.scheduled, job.after, ctx.depth)
  end,
}

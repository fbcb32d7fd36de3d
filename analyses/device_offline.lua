--[[
device_offline.lua - publishes an alert when a device goes silent.

A device that sent at least one message and then nothing for offline_after
(15 minutes here; a device's own param offline_after overrides it:
  sealpipe device set sensor-01 --param offline_after=1h
) is offline: the daemon runs event(ev) once per silence (a new message
re-arms it; a restart does not report the same silence again), and this
analysis publishes (QoS 1) on alerts/{serial}/offline:

  {"last_sent":1764000000000,"offline_after":900000,"serial":"sensor-01","silent_ms":900412}

last_sent is the device's last message (Unix ms), silent_ms how long it had
been silent when the daemon looked (it looks every 5 s). The alert speaks
for the device's profile, so devices of that profile can subscribe to it.

Env (analyses/device_offline.env, optional): WEBHOOK_URL=https://host/path
also posts the alert there (POST, Content-Type application/json). The host
(and port) of that URL is this analysis's only `webhooks` entry, so nothing
else can be called; the daemon sends it after the alert is committed,
retries it with backoff when the server is down or answers 5xx, and keeps it
as a webhook_failed dead letter when it finally fails (sdk/lua/README.md,
`webhook`).

Try it (with mqtt_ingest.lua also loaded, for the one message):
  sealpipe device add sensor-01 --cipher none --param offline_after=10s
  mosquitto_pub -t devices/sensor-01/data -m '{"variable":"temperature","value":21}' ...
  mosquitto_sub -t 'alerts/#' ...     (logged in as a device of the same profile)
and about 10-15 s later the alert arrives.
]]

-- The webhook's host (and port), from WEBHOOK_URL: the allow-list entry.
local hook_url = env.WEBHOOK_URL
local hook_host = hook_url and hook_url:match("^[Hh][Tt][Tt][Pp][Ss]?://([^/?#]+)")

return {
  on = { "offline" },
  offline_after = "15m",
  webhooks = hook_host and { hook_host } or nil,
  event = function(ev)
    local serial = ev.device.serial
    local alert = json.encode({
      serial = serial,
      last_sent = ev.last_sent,
      silent_ms = ev.silent_ms,
      offline_after = ev.offline_after,
    })
    publish("alerts/" .. serial .. "/offline", alert, { qos = 1 })
    log("device_offline:", serial, "silent for", ev.silent_ms, "ms")
    if hook_host then
      webhook(hook_url, alert)
    end
  end,
}

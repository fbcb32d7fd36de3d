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

Env: none.

Try it (with mqtt_ingest.lua also loaded, for the one message):
  sealpipe device add sensor-01 --cipher none --param offline_after=10s
  mosquitto_pub -t devices/sensor-01/data -m '{"variable":"temperature","value":21}' ...
  mosquitto_sub -t 'alerts/#' ...     (logged in as a device of the same profile)
and about 10-15 s later the alert arrives.
]]

return {
  on = { "offline" },
  offline_after = "15m",
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

    -- WEBHOOK: the place for an HTTP notification. Once webhook() exists,
    -- post `alert` to env.WEBHOOK_URL here when it is set (its host must be
    -- listed in this declaration's `webhooks`). Not called yet.
  end,
}

-- Test analysis: publishes what it received, stores one record, and fails on
-- the payload "fail" (after publishing, so the publish must not be sent).
return {
  topics = { "echo/{serial}" },
  handle = function(msg)
    publish("echo/" .. msg.device.serial .. "/out", "got:" .. msg.payload, { qos = 1 })
    if msg.payload == "fail" then
      error("asked to fail")
    end
    return { variable = "echo", value = msg.payload }
  end,
}

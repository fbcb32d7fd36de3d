-- Test analysis: its own publish payload limit (1 KiB), exceeded.
return {
  topics = { "bigpub/{serial}" },
  limits = { publish_kb = 1 },
  handle = function(msg)
    publish("out/" .. msg.device.serial, string.rep("x", 2048))
    return { variable = "never", value = 1 }
  end,
}

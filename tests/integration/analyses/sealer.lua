-- Test analysis: answers each message with a command sealed for the device
-- (publish{seal_for=}) when the payload is "self", else for the serial it names.
return {
  topics = { "seal/{serial}" },
  handle = function(msg)
    local target = msg.payload ~= "self" and msg.payload or msg.device.serial
    publish("down/" .. target, "CMD|led=on", { qos = 1, seal_for = target })
    return { variable = "sealed", value = target }
  end,
}

-- Test analysis: "cmdreq/{serial}" with payload "<command>" or
-- "plain:<command>" sends that TagoTiP command to the device with
-- tagotip.command (sealed on $tips/{serial}/ack, or plain on $tip/...).
return {
  topics = { "cmdreq/{serial}" },
  handle = function(msg)
    local plain, cmd = msg.payload:match("^(plain:)(.*)$")
    tagotip.command(msg.device.serial, cmd or msg.payload, { plain = plain ~= nil })
    return {}
  end,
}

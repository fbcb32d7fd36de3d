-- Test analysis: insert() for another device and for its own, besides the
-- returned record; "ghost" inserts for a device that does not exist.
return {
  topics = { "ins/{serial}" },
  handle = function(msg)
    local target = msg.payload == "ghost" and "ghost-99" or "other-01"
    insert({ variable = "mirror", value = msg.payload }, target)
    insert({ { variable = "self2", value = 2 } })
    return { variable = "orig", value = msg.payload }
  end,
}
